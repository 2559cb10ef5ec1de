//! Writing entries into the destination root: every parent is resolved with
//! `RESOLVE_IN_ROOT` and every leaf is touched with no-follow `*at` calls,
//! so a symlink already in the image can redirect a write only to somewhere
//! inside the image, never outside it, and never through the leaf itself.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use hoist_store::inroot::{
    Root, chown_at, copy_xattrs, create_file, make_dir, set_times_at, set_times_fd,
};
use rustix::fs::{AtFlags, FileType, Mode, Timespec};

use super::chmod::Chmod;

/// Metadata to give a written entry.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
}

/// Writes entries under one destination root.
pub struct Writer<'a> {
    pub root: &'a Root,
    /// `Some` to force ownership (`--chown`, or 0:0 for the context).
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<&'a Chmod>,
    /// Source (dev, ino) of multiply-linked files -> their first destination.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories whose mtime is set last, after their contents.
    dir_times: Vec<(PathBuf, (i64, i64))>,
}

impl<'a> Writer<'a> {
    pub fn new(root: &'a Root, owner: Option<(u32, u32)>, chmod: Option<&'a Chmod>) -> Self {
        Self {
            root,
            owner,
            chmod,
            links: HashMap::new(),
            dir_times: Vec::new(),
        }
    }

    /// The owner for new parent directories: BuildKit gives them the
    /// `--chown` owner, otherwise root.
    pub fn parent_owner(&self) -> (u32, u32) {
        self.owner.unwrap_or((0, 0))
    }

    pub(crate) fn final_meta(&self, meta: Meta, is_dir: bool) -> Meta {
        let (uid, gid) = self.owner.unwrap_or((meta.uid, meta.gid));
        let mode = match self.chmod {
            Some(chmod) => chmod.apply(meta.mode, is_dir),
            None => meta.mode & 0o7777,
        };
        Meta {
            mode,
            uid,
            gid,
            mtime: meta.mtime,
        }
    }

    /// Creates (or reuses) a directory at `dest`. A new directory, or any
    /// existing one when `overwrite_meta`, gets the source's metadata.
    pub fn dir(&mut self, dest: &Path, meta: Meta, overwrite_meta: bool) -> io::Result<()> {
        if dest.as_os_str().is_empty() {
            // The image root itself always exists and keeps its metadata.
            return Ok(());
        }
        let leaf = self.root.leaf(dest)?;
        let meta = self.final_meta(meta, true);
        match rustix::fs::statat(&leaf.dir, &leaf.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                if !overwrite_meta {
                    return Ok(());
                }
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("cannot copy to non-directory: /{}", dest.display()),
                ));
            }
            Err(err) if err == rustix::io::Errno::NOENT => {
                make_dir(
                    &leaf.dir,
                    leaf.name.as_os_str(),
                    meta.mode,
                    Some((meta.uid, meta.gid)),
                )?;
            }
            Err(err) => return Err(err.into()),
        }
        chown_at(&leaf.dir, leaf.name.as_os_str(), meta.uid, meta.gid)?;
        rustix::fs::chmodat(
            &leaf.dir,
            &leaf.name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )?;
        self.dir_times.push((dest.to_owned(), meta.mtime));
        Ok(())
    }

    /// Writes a regular file from `content`, replacing a non-directory.
    /// Returns the open destination so the caller can copy xattrs.
    pub fn file(&mut self, dest: &Path, content: &mut dyn Read, meta: Meta) -> io::Result<File> {
        let mut file = self.create_file(dest)?;
        io::copy(content, &mut file)?;
        self.finish_fd(file.as_fd(), meta, false)?;
        Ok(file)
    }

    /// A new, empty regular file at `dest` (replacing a non-directory).
    fn create_file(&self, dest: &Path) -> io::Result<File> {
        let leaf = self.root.leaf(dest)?;
        clear_leaf(&leaf.dir, &leaf.name, dest)?;
        create_file(&leaf.dir, leaf.name.as_os_str())
    }

    /// Copies a regular file from an open source, keeping hardlinks that
    /// the source has within this copy.
    pub fn copy_file(
        &mut self,
        dest: &Path,
        src: File,
        meta: Meta,
        link_key: Option<(u64, u64)>,
    ) -> io::Result<()> {
        if let Some(key) = link_key {
            if let Some(first) = self.links.get(&key).cloned() {
                return self.hardlink(dest, &first);
            }
            self.links.insert(key, dest.to_owned());
        }
        self.copy_single_link_file(dest, src, meta)
    }

    /// Copies a regular file that has no other links in this copy. It needs
    /// no bookkeeping, so it takes `&self` and many can run at once.
    pub fn copy_single_link_file(&self, dest: &Path, mut src: File, meta: Meta) -> io::Result<()> {
        let mut out = self.create_file(dest)?;
        // File to File: std copies with copy_file_range, in the kernel, and
        // filesystems with reflinks (XFS, btrfs) share the blocks instead.
        io::copy(&mut src, &mut out)?;
        self.finish_fd(out.as_fd(), meta, false)?;
        copy_xattrs(src.as_fd(), out.as_fd());
        set_times_fd(out.as_fd(), timespec(meta.mtime))
    }

    /// Creates a symlink (never followed) with the given ownership and time.
    pub fn symlink(&mut self, dest: &Path, target: &Path, meta: Meta) -> io::Result<()> {
        let leaf = self.root.leaf(dest)?;
        clear_leaf(&leaf.dir, &leaf.name, dest)?;
        rustix::fs::symlinkat(target, &leaf.dir, &leaf.name)?;
        let meta = self.final_meta(meta, false);
        chown_at(&leaf.dir, leaf.name.as_os_str(), meta.uid, meta.gid)?;
        set_times_at(&leaf.dir, leaf.name.as_os_str(), timespec(meta.mtime))
    }

    /// Links `dest` to an entry already written under the root.
    pub fn hardlink(&mut self, dest: &Path, existing: &Path) -> io::Result<()> {
        let old = self.root.leaf(existing)?;
        let new = self.root.leaf(dest)?;
        clear_leaf(&new.dir, &new.name, dest)?;
        rustix::fs::linkat(&old.dir, &old.name, &new.dir, &new.name, AtFlags::empty())?;
        Ok(())
    }

    /// Creates a device node or fifo.
    pub fn node(
        &mut self,
        dest: &Path,
        file_type: FileType,
        rdev: u64,
        meta: Meta,
    ) -> io::Result<()> {
        let leaf = self.root.leaf(dest)?;
        clear_leaf(&leaf.dir, &leaf.name, dest)?;
        let meta = self.final_meta(meta, false);
        rustix::fs::mknodat(
            &leaf.dir,
            &leaf.name,
            file_type,
            Mode::from_raw_mode(meta.mode),
            rdev,
        )?;
        chown_at(&leaf.dir, leaf.name.as_os_str(), meta.uid, meta.gid)?;
        rustix::fs::chmodat(
            &leaf.dir,
            &leaf.name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )?;
        set_times_at(&leaf.dir, leaf.name.as_os_str(), timespec(meta.mtime))
    }

    fn finish_fd(&self, fd: impl AsFd, meta: Meta, is_dir: bool) -> io::Result<()> {
        let meta = self.final_meta(meta, is_dir);
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )?;
        // After chown, which clears set-id bits.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode))?;
        set_times_fd(fd, timespec(meta.mtime))
    }

    /// Sets directory mtimes, deepest first, once everything is written.
    pub fn finish(&mut self) -> io::Result<()> {
        self.dir_times
            .sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
        for (dest, mtime) in std::mem::take(&mut self.dir_times) {
            let leaf = self.root.leaf(&dest)?;
            set_times_at(&leaf.dir, leaf.name.as_os_str(), timespec(mtime))?;
        }
        Ok(())
    }
}

/// Removes a non-directory at the leaf so a new entry can take its place;
/// an existing directory is an error, as in BuildKit.
fn clear_leaf(dir: &OwnedFd, name: &Path, dest: &Path) -> io::Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "cannot replace directory /{} with a non-directory",
                    dest.display()
                ),
            ))
        }
        Ok(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
        Err(err) if err == rustix::io::Errno::NOENT => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn timespec(mtime: (i64, i64)) -> Timespec {
    Timespec {
        tv_sec: mtime.0,
        tv_nsec: mtime.1 as _,
    }
}
