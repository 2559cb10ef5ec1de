//! Leaf operations inside a resolved directory: every call is an `*at`
//! call on a directory fd with no-follow flags, so a symlink at the leaf is
//! acted on itself and never written through.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

/// Creates one directory with an exact mode (no umask) and owner.
pub fn make_dir(
    parent: impl AsFd,
    name: &OsStr,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let parent = parent.as_fd();
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        chown_at(parent, name, uid, gid)?;
    }
    rustix::fs::chmodat(
        parent,
        name,
        Mode::from_raw_mode(mode & 0o7777),
        AtFlags::empty(),
    )?;
    Ok(())
}

/// `fchownat(AT_SYMLINK_NOFOLLOW)`.
pub fn chown_at(dir: impl AsFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// A new, empty regular file (mode 0600 until its metadata is set):
/// `O_CREAT | O_EXCL | O_NOFOLLOW`, so nothing already at the leaf, a
/// symlink least of all, is ever opened.
pub fn create_file(dir: impl AsFd, name: &OsStr) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// The names in a directory, `.` and `..` left out, in directory order.
pub fn list_names(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for item in rustix::fs::Dir::new(fd)? {
        let item = item?;
        let name = item.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` and, for a directory, everything under it, without ever
/// following a symlink (a missing `name` is not an error).
pub fn remove_all(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok(()),
        Err(err) => return Err(err.into()),
        Ok(st) => st,
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    let child_dir = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_names(&child_dir)? {
        remove_all(&child_dir, os(&child))?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

fn timestamps(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

/// Sets atime and mtime of the leaf itself (a symlink is not followed).
pub fn set_times_at(dir: impl AsFd, name: &OsStr, mtime: Timespec) -> io::Result<()> {
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &timestamps(mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Sets atime and mtime of an open file.
pub fn set_times_fd(fd: impl AsFd, mtime: Timespec) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &timestamps(mtime))?)
}

/// Sets one extended attribute on the leaf itself, whatever its type: a
/// symlink gets it on the link (`lsetxattr`), a fifo or device is never
/// opened. There is no `*at` form of `lsetxattr`, so the leaf is named
/// through the directory fd's `/proc/self/fd` entry, which pins the
/// directory already resolved inside the root.
pub fn set_xattr_at(
    dir: impl AsFd,
    name: &OsStr,
    key: &OsStr,
    value: &[u8],
) -> rustix::io::Result<()> {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    path.push(name);
    rustix::fs::lsetxattr(&path, key, value, XattrFlags::empty())
}

/// Overlay's own xattrs (`trusted.overlay.*`, `user.overlay.*`) could
/// redirect lookups or fake metadata in a snapshot, so no image content
/// ever sets or carries them.
pub fn is_overlay_xattr(key: &[u8]) -> bool {
    key.starts_with(b"trusted.overlay.") || key.starts_with(b"user.overlay.")
}

/// Copies extended attributes between open files, skipping overlayfs'
/// private ones; attributes the destination filesystem refuses are dropped,
/// as BuildKit does.
pub fn copy_xattrs(src: impl AsFd, dst: impl AsFd) {
    for (name, value) in copied_xattrs(src) {
        let _ = rustix::fs::fsetxattr(&dst, os(&name), &value, XattrFlags::empty());
    }
}

/// The extended attributes [`copy_xattrs`] copies from an open file, as
/// (name, value) sorted by name: all but overlayfs' private ones. None when
/// the filesystem has none or cannot list them; an attribute removed while
/// it is read is left out.
pub fn copied_xattrs(src: impl AsFd) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(size) = rustix::fs::flistxattr_query(&src) else {
        return Vec::new();
    };
    if size == 0 {
        return Vec::new();
    }
    let mut names = vec![0u8; size];
    let Ok(len) = rustix::fs::flistxattr(&src, &mut names[..]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if is_overlay_xattr(name) {
            continue;
        }
        let Ok(vsize) = rustix::fs::fgetxattr_query(&src, os(name)) else {
            continue;
        };
        let mut value = vec![0u8; vsize];
        if let Ok(vlen) = rustix::fs::fgetxattr(&src, os(name), &mut value[..]) {
            value.truncate(vlen);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    out
}

/// Bytes as an `OsStr` (tar names are bytes, not UTF-8).
pub fn os(bytes: &[u8]) -> &OsStr {
    use std::os::unix::ffi::OsStrExt;
    OsStr::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A directory `root/` holding a symlink `link` to a sibling directory
    /// `outside/` that holds `keep`, and a tree `tree/a/b` with a symlink
    /// `tree/out` to `outside/` too.
    fn setup() -> (tempfile::TempDir, File) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("tree/a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep").unwrap();
        symlink(&outside, root.join("link")).unwrap();
        symlink(&outside, root.join("tree/out")).unwrap();
        let dir = File::open(&root).unwrap();
        (tmp, dir)
    }

    #[test]
    fn leaf_operations_never_follow_a_symlink_at_the_leaf() {
        let (tmp, root) = setup();
        let outside = tmp.path().join("outside");
        let cases: &[(&str, &dyn Fn() -> io::Result<()>)] = &[
            ("create_file", &|| create_file(&root, os(b"link")).map(drop)),
            ("set_times_at", &|| {
                set_times_at(
                    &root,
                    os(b"link"),
                    Timespec {
                        tv_sec: 7,
                        tv_nsec: 0,
                    },
                )
            }),
            ("chown_at", &|| chown_at(&root, os(b"link"), 0, 0)),
            ("remove_all of a tree holding a link out", &|| {
                remove_all(&root, os(b"tree"))
            }),
            ("remove_all of the link", &|| remove_all(&root, os(b"link"))),
        ];
        for (case, op) in cases {
            let _ = op();
            assert_eq!(
                std::fs::read_to_string(outside.join("keep")).unwrap(),
                "keep",
                "case {case}"
            );
            let mtime = std::fs::metadata(&outside).unwrap().modified().unwrap();
            assert_ne!(
                mtime,
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(7),
                "case {case}: the link's target was touched"
            );
        }
        assert!(!tmp.path().join("root/tree").exists(), "the tree is gone");
        assert!(
            !tmp.path().join("root/link").exists(),
            "the link itself is gone"
        );
    }

    #[test]
    fn create_file_refuses_anything_already_there() {
        let (_tmp, root) = setup();
        let err = create_file(&root, os(b"link")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn set_xattr_at_sets_the_link_itself_or_nothing() {
        let (tmp, root) = setup();
        // user.* xattrs are refused on symlinks (EPERM): never set on the
        // target instead.
        let _ = set_xattr_at(&root, os(b"link"), os(b"user.x"), b"1");
        assert!(
            xattr::get(tmp.path().join("outside"), "user.x")
                .unwrap()
                .is_none()
        );
        // A directory gets it.
        set_xattr_at(&root, os(b"tree"), os(b"user.x"), b"1").unwrap();
        assert_eq!(
            xattr::get(tmp.path().join("root/tree"), "user.x").unwrap(),
            Some(b"1".to_vec())
        );
    }

    #[test]
    fn overlay_xattrs_are_recognised() {
        let cases: &[(&[u8], bool)] = &[
            (b"trusted.overlay.opaque", true),
            (b"user.overlay.redirect", true),
            (b"user.overlayfoo", false),
            (b"security.capability", false),
        ];
        for (key, want) in cases {
            assert_eq!(is_overlay_xattr(key), *want, "case {key:?}");
        }
    }
}
