//! Mount stubs: the empty files and directories created in the upperdir to
//! mount /etc/hosts, /etc/resolv.conf, /etc/hostname or a RUN --mount target
//! on. Like BuildKit's MountStubsCleaner they are removed after the run when
//! still empty, keeping the parent directory's timestamps, so they never
//! reach the layer.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};

use crate::plan::Stub;

/// Removes `created` (paths relative to the root, shallowest first) from
/// `upperdir`, deepest first, stopping at the first one the run filled.
///
/// The run had the upperdir in its hands until now, so every path is
/// resolved beneath it with no symlinks at all (CVE-2024-23652: a run that
/// swaps a stub's parent for a symlink to a host directory made BuildKit's
/// cleanup delete there). hoist made each stub and its parents as real
/// directories; a symlink on the way means the run replaced them, and the
/// stub is left alone.
pub(crate) fn remove(upperdir: &Path, created: &[&Path]) {
    let Ok(upper) = rustix::fs::open(
        upperdir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    for rel in created.iter().rev() {
        if remove_one(&upper, rel) == Some(false) {
            return;
        }
    }
}

/// Removes one stub if it is still empty: `Some(false)` when the run filled
/// it (or it cannot be removed), which ends the cleanup, and `None` when it
/// is gone or unreachable without a symlink.
fn remove_one(upper: &OwnedFd, rel: &Path) -> Option<bool> {
    let name = rel.file_name()?;
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent_rel = if parent_rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent_rel
    };
    let parent = rustix::fs::openat2(
        upper,
        parent_rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let st = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let kind = FileType::from_raw_mode(st.st_mode);
    let empty = match kind {
        FileType::Directory => {
            let dir = rustix::fs::openat(
                &parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            let mut entries = rustix::fs::Dir::read_from(&dir).ok()?;
            entries.all(|e| {
                e.map(|e| matches!(e.file_name().to_bytes(), b"." | b".."))
                    .unwrap_or(false)
            })
        }
        FileType::RegularFile => st.st_size == 0,
        _ => false,
    };
    if !empty {
        return Some(false);
    }
    let times = rustix::fs::fstat(&parent).ok()?;
    let flags = if kind == FileType::Directory {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    if rustix::fs::unlinkat(&parent, name, flags).is_err() {
        return Some(false);
    }
    let _ = rustix::fs::futimens(
        &parent,
        &Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: times.st_atime,
                tv_nsec: times.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: times.st_mtime,
                tv_nsec: times.st_mtime_nsec as _,
            },
        },
    );
    Some(true)
}

/// The stub paths the child reported: stub `id` created from prefix `from` on.
pub(crate) fn created(stubs: &[Stub], id: u32, from: u32) -> Vec<&Path> {
    stubs
        .get(id as usize)
        .map(|s| s.iter().skip(from as usize).map(|p| p.as_path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_empty_stubs() {
        let cases = [
            ("empty file and its new dir", "", true, true),
            ("file written by the run", "data", false, false),
        ];
        for (name, content, file_gone, dir_gone) in cases {
            let up = tempfile::tempdir().unwrap();
            std::fs::create_dir(up.path().join("etc")).unwrap();
            std::fs::write(up.path().join("etc/hosts"), content).unwrap();
            remove(up.path(), &[Path::new("etc"), Path::new("etc/hosts")]);
            assert_eq!(
                !up.path().join("etc/hosts").exists(),
                file_gone,
                "case {name}: file"
            );
            assert_eq!(
                !up.path().join("etc").exists(),
                dir_gone,
                "case {name}: dir"
            );
        }
    }

    /// CVE-2024-23652: a stub whose parent the run swapped for a symlink
    /// (absolute or relative, to a directory outside the upperdir) is left
    /// alone, and so is what the symlink points at.
    #[test]
    fn r11_cve_2024_23652_never_removes_through_a_symlink() {
        for (case, link) in [("absolute", None), ("relative", Some("../outside"))] {
            let tmp = tempfile::tempdir().unwrap();
            let up = tmp.path().join("upper");
            let outside = tmp.path().join("outside");
            std::fs::create_dir_all(&up).unwrap();
            std::fs::create_dir_all(outside.join("sub")).unwrap();
            std::fs::write(outside.join("hosts"), "").unwrap();
            let target = link.map_or_else(|| outside.clone(), Into::into);
            std::os::unix::fs::symlink(&target, up.join("newdir")).unwrap();
            remove(&up, &[Path::new("newdir"), Path::new("newdir/sub")]);
            remove(&up, &[Path::new("newdir"), Path::new("newdir/hosts")]);
            assert!(outside.join("sub").is_dir(), "case {case}: sub removed");
            assert!(
                outside.join("hosts").is_file(),
                "case {case}: hosts removed"
            );
            assert!(
                up.join("newdir").is_symlink(),
                "case {case}: the link itself"
            );
        }
    }
}
