//! Incremental COPY: when a COPY from the build context misses only
//! because some of its files changed, the files that did not change are
//! taken from the earlier build's snapshot of the same step (a hard link
//! into the new upperdir) instead of being copied again.
//!
//! Snapshots are immutable overlay lowerdirs, so sharing their inodes is
//! safe. A file is taken only when everything the copy would give it is
//! already what the earlier snapshot holds: the same content (the same
//! digest of the same context path, under a source whose paths map one to
//! one onto the destination), type, mode, owner, size, mtime and extended
//! attributes. Anything else is copied as usual,
//! so the upperdir, and the layer written from it, are the same as a copy
//! from scratch would make.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hoist_store::inroot::Root;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timestamps};

use super::write::Meta;

/// The unchanged files of an earlier build of a COPY step, and the ones
/// this copy took from it.
pub struct Reuse {
    /// The earlier build's snapshot of the step (its committed upperdir).
    old: OwnedFd,
    /// Context paths (as the checksum names them) whose digest is the same
    /// in the earlier build and in this one.
    unchanged: HashSet<String>,
    /// Destination paths taken from the snapshot, with the inode they link.
    taken: Mutex<Vec<(PathBuf, (u64, u64))>>,
}

impl std::fmt::Debug for Reuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reuse")
            .field("unchanged", &self.unchanged.len())
            .finish_non_exhaustive()
    }
}

/// One plain file the copy is about to write.
pub(crate) struct Candidate<'a> {
    /// The context path of its source, as the checksum names it.
    pub key: &'a str,
    /// Its source, relative to the source root.
    pub src: &'a Path,
    /// Its source's stat, from the walk.
    pub stat: &'a Stat,
    /// Where it goes, relative to the destination root.
    pub dest: &'a Path,
    /// The metadata the copy would give it (owner and `--chmod` applied).
    pub meta: Meta,
}

impl Reuse {
    /// `old_files` and `new_files` are the (path, digest) lists of the two
    /// builds' source checksums; `dirs` the paths that are directories.
    pub fn new(
        old_snapshot: &Path,
        old_files: &[(String, String)],
        new_files: &[(String, String)],
        dirs: &std::collections::BTreeSet<String>,
    ) -> io::Result<Self> {
        let old = rustix::fs::open(
            old_snapshot,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let earlier: HashMap<&str, &str> = old_files
            .iter()
            .map(|(path, digest)| (path.as_str(), digest.as_str()))
            .collect();
        let unchanged = new_files
            .iter()
            .filter(|(path, digest)| {
                !dirs.contains(path) && earlier.get(path.as_str()) == Some(&digest.as_str())
            })
            .map(|(path, _)| path.clone())
            .collect();
        Ok(Self {
            old,
            unchanged,
            taken: Mutex::new(Vec::new()),
        })
    }

    /// How many files this copy took from the earlier snapshot.
    pub fn taken(&self) -> usize {
        self.taken.lock().map_or(0, |taken| taken.len())
    }

    /// Splits `candidates` into the ones the earlier snapshot already holds
    /// exactly (remembered, to be linked by [`Reuse::link_into`] once the
    /// copy is done) and the ones to copy, whose indices are returned.
    pub(crate) fn select(&self, src_root: &Root, candidates: &[Candidate<'_>]) -> Vec<usize> {
        use rayon::prelude::*;
        // Parent directories, opened once each: the snapshot's without
        // following any symlink, the source's inside its root.
        let mut old_dirs: HashMap<&Path, Option<OwnedFd>> = HashMap::new();
        let mut src_dirs: HashMap<&Path, Option<OwnedFd>> = HashMap::new();
        for candidate in candidates {
            let old_parent = candidate.dest.parent().unwrap_or(Path::new(""));
            old_dirs
                .entry(old_parent)
                .or_insert_with(|| open_beneath(&self.old, old_parent).ok());
            let src_parent = candidate.src.parent().unwrap_or(Path::new(""));
            src_dirs.entry(src_parent).or_insert_with(|| {
                src_root
                    .open_in(src_parent, OFlags::PATH | OFlags::DIRECTORY, true)
                    .ok()
            });
        }
        let found: Vec<Option<(u64, u64)>> = candidates
            .par_iter()
            .map(|c| {
                if !self.unchanged.contains(c.key) {
                    return None;
                }
                let old_dir = old_dirs.get(c.dest.parent()?)?.as_ref()?;
                let src_dir = src_dirs.get(c.src.parent()?)?.as_ref()?;
                let name = c.dest.file_name()?;
                let old = rustix::fs::statat(old_dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
                let same = FileType::from_raw_mode(old.st_mode) == FileType::RegularFile
                    && old.st_mode & 0o7777 == c.meta.mode
                    && old.st_uid == c.meta.uid
                    && old.st_gid == c.meta.gid
                    && old.st_size == c.stat.st_size
                    && (old.st_mtime, old.st_mtime_nsec as i64) == c.meta.mtime;
                if !same {
                    return None;
                }
                let old_xattrs = xattrs_of(old_dir, name)?;
                (xattrs_of(src_dir, c.src.file_name()?)? == old_xattrs)
                    .then_some((old.st_dev, old.st_ino))
            })
            .collect();
        // One inode linked at two paths would become a hard link in the
        // layer, where a copy from scratch writes two files.
        let mut inodes = HashSet::new();
        let mut taken = Vec::new();
        let mut copy = Vec::new();
        for (i, inode) in found.into_iter().enumerate() {
            match inode {
                Some(inode) if inodes.insert(inode) => {
                    taken.push((candidates[i].dest.to_owned(), inode));
                }
                _ => copy.push(i),
            }
        }
        if let Ok(mut all) = self.taken.lock() {
            all.extend(taken);
        }
        copy
    }

    /// Links every taken file from the earlier snapshot into `upper` (the
    /// new upperdir, unmounted), keeping the mtimes the copy gave their
    /// directories. Fails when a file or directory is not where the copy
    /// should have left it; the caller then copies from scratch.
    ///
    /// Directories are linked into on every core, one directory a task:
    /// a link changes only its own directory's mtime, so each task saves
    /// and restores the mtime of a directory no other task touches.
    pub fn link_into(&self, upper: &Path) -> io::Result<usize> {
        use rayon::prelude::*;
        let upper = rustix::fs::open(
            upper,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut taken = self
            .taken
            .lock()
            .map_err(|_| io::Error::other("a copy thread panicked"))?;
        // By parent first, so that each directory is one run of entries
        // (a plain sort puts `a/b/c/f` between `a/b/a` and `a/b/d`).
        taken.sort_by(|(a, _), (b, _)| {
            (a.parent(), a.file_name()).cmp(&(b.parent(), b.file_name()))
        });
        taken
            .chunk_by(|(a, _), (b, _)| a.parent() == b.parent())
            .collect::<Vec<_>>()
            .into_par_iter()
            .try_for_each(|group| self.link_dir(&upper, group))?;
        Ok(taken.len())
    }

    /// Links `group`, taken files that share one parent directory, into
    /// that directory of `upper`, and gives it back its mtime.
    fn link_dir(&self, upper: &OwnedFd, group: &[(PathBuf, (u64, u64))]) -> io::Result<()> {
        let Some((first, _)) = group.first() else {
            return Ok(());
        };
        let parent = first.parent().unwrap_or(Path::new(""));
        let old_dir = open_beneath(&self.old, parent)?;
        let new_dir = File::from(rustix::fs::openat2(
            upper,
            dir_path(parent),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        )?);
        let before = rustix::fs::fstat(&new_dir)?;
        for (dest, inode) in group {
            let name = dest
                .file_name()
                .ok_or_else(|| io::Error::other("a taken file has no name"))?;
            rustix::fs::linkat(&old_dir, name, &new_dir, name, AtFlags::empty())?;
            let linked = rustix::fs::statat(&new_dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if (linked.st_dev, linked.st_ino) != *inode {
                return Err(io::Error::other(format!(
                    "{} changed in the earlier snapshot",
                    dest.display()
                )));
            }
        }
        rustix::fs::futimens(
            new_dir.as_fd(),
            &Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: before.st_atime,
                    tv_nsec: before.st_atime_nsec as _,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: before.st_mtime,
                    tv_nsec: before.st_mtime_nsec as _,
                },
            },
        )?;
        Ok(())
    }
}

/// `dir` (relative) under `root`, with no symlink on the way.
fn open_beneath(root: &OwnedFd, dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(
        root,
        dir_path(dir),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )?)
}

fn dir_path(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// The extended attributes of `name` in `dir` that a copy carries (all but
/// overlay's own), sorted; `None` when they cannot be read. The names are
/// listed relative to `dir` where the kernel can (`listxattrat`): most
/// files have none, and then that one call is all. Otherwise, and for the
/// values, which have no `*at` call this code can use yet, the name is
/// reached through the directory's `/proc/self/fd` link (the name itself
/// is never followed).
fn xattrs_of(dir: &OwnedFd, name: &std::ffi::OsStr) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c_name = std::ffi::CString::new(name.as_bytes()).ok()?;
    let listed = hoist_sandbox::list_xattrs_at(dir.as_fd(), &c_name, &mut []).ok()?;
    if listed == Some(0) {
        return Some(Vec::new());
    }
    let path = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    let size = rustix::fs::llistxattr_query(&path).ok()?;
    if size == 0 {
        return Some(Vec::new());
    }
    let mut names = vec![0u8; size];
    let len = rustix::fs::llistxattr(&path, &mut names[..]).ok()?;
    let mut out = Vec::new();
    for key in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if hoist_store::inroot::ops::is_overlay_xattr(key) {
            continue;
        }
        let key_os = hoist_store::inroot::os(key);
        let vsize = rustix::fs::lgetxattr_query(&path, key_os).ok()?;
        let mut value = vec![0u8; vsize];
        let vlen = rustix::fs::lgetxattr(&path, key_os, &mut value[..]).ok()?;
        value.truncate(vlen);
        out.push((key.to_vec(), value));
    }
    out.sort();
    Some(out)
}
