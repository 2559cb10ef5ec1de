//! A directory treated as a root: every path under it is resolved by the
//! kernel with `openat2(RESOLVE_IN_ROOT)`, so `..` and absolute symlinks
//! stop at the root instead of escaping it, exactly as if chrooted. Leaf
//! operations then go through `*at` calls on the resolved parent directory
//! with no-follow flags, so a symlink already in the tree is never written
//! through.
//!
//! Both writers of image filesystems use it: layer apply
//! ([`crate::extract`]) and the builder's COPY/ADD. The leaf operations
//! (create, link, chown, xattrs, times, recursive removal) are in [`ops`]
//! and take a directory fd and a name, never a host path.

pub mod ops;

pub use ops::{
    chown_at, copied_xattrs, copy_xattrs, create_file, list_names, make_dir, os, remove_all,
    set_times_at, set_times_fd, set_xattr_at,
};

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};

/// Symlink hops allowed while resolving one path (Linux's own limit is 40).
const MAX_LINKS: usize = 40;

/// An open root directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// A resolved parent directory and a leaf name inside it.
#[derive(Debug)]
pub struct Leaf {
    pub dir: OwnedFd,
    pub name: PathBuf,
}

impl Root {
    /// Opens `path` (following symlinks on the host side: the caller chose it).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `rel` (absolute or relative, both mean "under the root"),
    /// following symlinks inside the root; with `follow_last == false` a
    /// final symlink is opened itself (needs `O_PATH`).
    pub fn open_in(&self, rel: &Path, flags: OFlags, follow_last: bool) -> io::Result<OwnedFd> {
        let mut rel = root_relative(rel);
        if rel.as_os_str().is_empty() {
            rel.push(".");
        }
        let mut flags = flags | OFlags::CLOEXEC;
        if !follow_last {
            flags |= OFlags::NOFOLLOW;
        }
        Ok(rustix::fs::openat2(
            &self.fd,
            &rel,
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Stats `rel` inside the root.
    pub fn stat_in(&self, rel: &Path, follow_last: bool) -> io::Result<Stat> {
        let fd = self.open_in(rel, OFlags::PATH, follow_last)?;
        Ok(rustix::fs::fstat(&fd)?)
    }

    /// Resolves the parent of `rel` (which must exist and be a directory)
    /// and returns it with the leaf name, for no-follow `*at` operations.
    /// `rel` naming the root itself is an error.
    pub fn leaf(&self, rel: &Path) -> io::Result<Leaf> {
        let rel = root_relative(rel);
        let name = rel
            .file_name()
            .map(Path::new)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = self.open_in(parent, OFlags::PATH | OFlags::DIRECTORY, true)?;
        Ok(Leaf {
            dir,
            name: name.to_owned(),
        })
    }

    /// Creates `rel` and its missing parents inside the root with mode 0755
    /// and the given owner (BuildKit gives new parents the `--chown` owner),
    /// following existing symlinks inside the root, and returns the
    /// directory opened with `O_PATH`.
    pub fn mkdir_all(&self, rel: &Path, owner: Option<(u32, u32)>) -> io::Result<OwnedFd> {
        // Resolve first, so that a symlink (even a dangling one) is followed
        // inside the root and the missing tail is created where it leads.
        let rel = self.resolve(rel)?;
        let mut current = self.open_in(Path::new(""), OFlags::PATH | OFlags::DIRECTORY, true)?;
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            prefix.push(name);
            match self.open_in(&prefix, OFlags::PATH | OFlags::DIRECTORY, false) {
                Ok(fd) => current = fd,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    make_dir(&current, name, 0o755, owner)?;
                    current = self.open_in(&prefix, OFlags::PATH | OFlags::DIRECTORY, false)?;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(current)
    }
}

impl Root {
    /// Resolves every symlink in `rel` inside the root (like continuity's
    /// `fs.RootPath`); a missing tail is appended lexically.
    pub fn resolve(&self, rel: &Path) -> io::Result<PathBuf> {
        let mut todo: Vec<OsString> = root_relative_components(rel);
        todo.reverse();
        let mut out = PathBuf::new();
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == ".." {
                out.pop();
                continue;
            }
            let candidate = out.join(&name);
            let stat = match self.stat_in(&candidate, false) {
                Ok(stat) => stat,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    out = candidate;
                    while let Some(rest) = todo.pop() {
                        if rest == ".." {
                            out.pop();
                        } else {
                            out.push(rest);
                        }
                    }
                    break;
                }
                Err(err) => return Err(err),
            };
            if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
                out = candidate;
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let leaf = self.leaf(&candidate)?;
            let target = rustix::fs::readlinkat(&leaf.dir, &leaf.name, Vec::new())?;
            let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
            if target.is_absolute() {
                out = PathBuf::new();
            }
            let mut parts = raw_components(&target);
            parts.reverse();
            todo.extend(parts);
        }
        Ok(out)
    }
}

fn raw_components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn root_relative_components(path: &Path) -> Vec<OsString> {
    raw_components(path)
}

/// Makes `rel` relative ("/" and "" both mean the root) after a lexical
/// clean; `..` above the root stays at the root, as in a chroot.
pub fn root_relative(rel: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The path as bytes, for messages and hashing.
pub fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}
