//! Writing one tar entry at a time inside the destination root.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dev, FileType, Mode, OFlags, Timespec, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use crate::inroot::ops::{self, is_overlay_xattr};
use crate::inroot::{Root, os};

use super::whiteout::WHITEOUT_PREFIX;
use super::{ApplyOptions, ExtractError, WhiteoutMode, tolerate_unmapped};

#[derive(Default)]
pub(super) struct Counters {
    pub(super) entries: u64,
    pub(super) whiteouts: u64,
    pub(super) skipped_devices: u64,
    pub(super) skipped_xattrs: u64,
}

/// Metadata applied to a directory after its contents, so its mtime sticks
/// and a read-only mode does not stop extraction into it.
pub(super) struct DirMeta {
    pub(super) path: Vec<u8>,
    pub(super) mode: u32,
    pub(super) mtime: Timespec,
}

/// What a tar entry carries beyond its header, from PAX records.
#[derive(Default)]
pub(super) struct Extras {
    pub(super) uid: Option<u64>,
    pub(super) gid: Option<u64>,
    pub(super) mtime: Option<Timespec>,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) struct Applier<'a> {
    pub(super) root: &'a Root,
    pub(super) opts: &'a ApplyOptions,
    pub(super) dirs: Vec<DirMeta>,
    /// Paths created by this layer, which an opaque whiteout keeps (Apply).
    pub(super) unpacked: HashSet<Vec<u8>>,
    pub(super) stats: Counters,
}

pub(super) fn open_root(dest: &Path) -> Result<Root, ExtractError> {
    Root::open(dest).map_err(|source| ExtractError::Io {
        path: ".".into(),
        dest: dest.to_owned(),
        source,
    })
}

/// Splits a tar name into components, refusing names that could only be
/// meant to escape. `.` and empty components are dropped.
pub(super) fn clean_path(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    if raw.contains(&0) {
        return Err("NUL in path".into());
    }
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path traversal through ..".into()),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

pub(super) fn join(parts: &[&[u8]]) -> Vec<u8> {
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

/// A cleaned tar path (from [`join`]) as a path inside the root.
fn in_root(path: &[u8]) -> &Path {
    Path::new(os(path))
}

pub(super) fn timespec(secs: u64) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
        tv_nsec: 0,
    }
}

/// Go's archive/tar, which Docker and containerd apply layers with, reads
/// a numeric header field of only NULs and spaces as 0; the tar crate
/// calls it an error.
pub(super) fn blank_is_zero(field: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    if field.iter().all(|&b| b == 0 || b == b' ') {
        Ok(0)
    } else {
        parsed
    }
}

/// Parses a PAX time such as `1700000000.123456789`.
pub(super) fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        let padded = format!("{digits:0<9}");
        padded.parse().ok()?
    };
    Some(Timespec { tv_sec, tv_nsec })
}

impl Applier<'_> {
    pub(super) fn io_err(&self, path: &[u8], source: impl Into<io::Error>) -> ExtractError {
        ExtractError::Io {
            path: String::from_utf8_lossy(path).into_owned(),
            dest: self.root.path().to_owned(),
            source: source.into(),
        }
    }

    pub(super) fn apply_entries<R: Read>(
        &mut self,
        archive: &mut tar::Archive<R>,
    ) -> Result<(), ExtractError> {
        for entry in archive.entries().map_err(ExtractError::Read)? {
            let mut entry = entry.map_err(ExtractError::Read)?;
            self.stats.entries += 1;
            self.apply_entry(&mut entry)?;
        }
        Ok(())
    }

    pub(super) fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), ExtractError> {
        let extras = read_extras(entry).map_err(ExtractError::Read)?;
        let raw = entry.path_bytes().into_owned();
        let unsafe_path = |reason: String| ExtractError::Unsafe {
            path: String::from_utf8_lossy(&raw).into_owned(),
            reason,
        };
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let parts = clean_path(&raw).map_err(unsafe_path)?;
        let Some((name, parent_parts)) = parts.split_last() else {
            // The root itself: only a directory entry makes sense.
            if kind.is_dir() {
                let meta = self.meta(entry, &extras)?;
                self.chown_at(self.root.fd(), b".", &meta, &raw)?;
                self.set_xattrs_at(self.root.fd(), b".", &extras, &raw)?;
                self.dirs.push(DirMeta {
                    path: b".".to_vec(),
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
                return Ok(());
            }
            return Err(unsafe_path("non-directory entry for the root".into()));
        };
        let (name, parent_parts) = (*name, parent_parts.to_vec());

        if name.starts_with(WHITEOUT_PREFIX) {
            return self.apply_whiteout(entry, &raw, &parent_parts, name);
        }

        let parent = self.open_dir(&parent_parts, true, &raw)?;
        let path = join(&parts);
        if self.opts.whiteouts == WhiteoutMode::Apply {
            self.unpacked.insert(path.clone());
        }
        let meta = self.meta(entry, &extras)?;
        match kind {
            EntryType::Directory => {
                let exists_as_dir = matches!(
                    rustix::fs::statat(&parent, os(name), AtFlags::SYMLINK_NOFOLLOW),
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory
                );
                if !exists_as_dir {
                    self.remove_existing(&parent, name, &raw)?;
                    rustix::fs::mkdirat(&parent, os(name), Mode::from_raw_mode(0o700))
                        .map_err(|err| self.io_err(&raw, err))?;
                }
                self.chown_at(parent.as_fd(), name, &meta, &raw)?;
                self.set_xattrs_at(parent.as_fd(), name, &extras, &raw)?;
                self.dirs.push(DirMeta {
                    path,
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.remove_existing(&parent, name, &raw)?;
                let mut file =
                    ops::create_file(&parent, os(name)).map_err(|err| self.io_err(&raw, err))?;
                io::copy(entry, &mut file).map_err(ExtractError::Read)?;
                if self.opts.chown {
                    tolerate_unmapped(
                        rustix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
                            .map_err(io::Error::from),
                    )
                    .map_err(|err| self.io_err(&raw, err))?;
                }
                // After chown, which clears setuid/setgid.
                rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
                    .map_err(|err| self.io_err(&raw, err))?;
                // After writing and chown, which clear security.capability.
                for (key, value) in &extras.xattrs {
                    let result = rustix::fs::fsetxattr(&file, os(key), value, XattrFlags::empty());
                    self.xattr_result(result, &raw, key)?;
                }
                ops::set_times_fd(&file, meta.mtime).map_err(|err| self.io_err(&raw, err))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_path("symlink without a target".into()))?
                    .into_owned();
                self.remove_existing(&parent, name, &raw)?;
                rustix::fs::symlinkat(os(&target), &parent, os(name))
                    .map_err(|err| self.io_err(&raw, err))?;
                self.chown_at(parent.as_fd(), name, &meta, &raw)?;
                self.set_xattrs_at(parent.as_fd(), name, &extras, &raw)?;
                self.utimes_at(parent.as_fd(), name, meta.mtime, &raw)?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_path("hardlink without a target".into()))?
                    .into_owned();
                let target = clean_path(&target_raw)
                    .map_err(|reason| unsafe_path(format!("hardlink target: {reason}")))?;
                let Some((target_name, target_parent)) = target.split_last() else {
                    return Err(unsafe_path("hardlink to the root".into()));
                };
                if target == parts {
                    return Err(unsafe_path("hardlink to itself".into()));
                }
                let target_dir = self.open_dir(target_parent, false, &raw)?;
                self.remove_existing(&parent, name, &raw)?;
                rustix::fs::linkat(
                    &target_dir,
                    os(target_name),
                    &parent,
                    os(name),
                    AtFlags::empty(),
                )
                .map_err(|err| self.io_err(&raw, err))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !self.opts.devices {
                    self.stats.skipped_devices += 1;
                    return Ok(());
                }
                let dev = device_of(entry).map_err(ExtractError::Read)?;
                self.remove_existing(&parent, name, &raw)?;
                rustix::fs::mknodat(
                    &parent,
                    os(name),
                    file_type,
                    Mode::from_raw_mode(0o600),
                    dev,
                )
                .map_err(|err| self.io_err(&raw, err))?;
                self.chown_at(parent.as_fd(), name, &meta, &raw)?;
                rustix::fs::chmodat(
                    &parent,
                    os(name),
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .map_err(|err| self.io_err(&raw, err))?;
                self.utimes_at(parent.as_fd(), name, meta.mtime, &raw)?;
            }
            other => {
                return Err(ExtractError::Unsupported {
                    path: String::from_utf8_lossy(&raw).into_owned(),
                    kind: other.as_byte(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn meta<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        extras: &Extras,
    ) -> Result<Meta, ExtractError> {
        let header = entry.header();
        let uid = extras
            .uid
            .map_or_else(|| blank_is_zero(&header.as_old().uid, header.uid()), Ok)
            .map_err(ExtractError::Read)?;
        let gid = extras
            .gid
            .map_or_else(|| blank_is_zero(&header.as_old().gid, header.gid()), Ok)
            .map_err(ExtractError::Read)?;
        let mode = blank_is_zero(&header.as_old().mode, header.mode().map(u64::from))
            .map_err(ExtractError::Read)? as u32
            & 0o7777;
        let mtime = match extras.mtime {
            Some(mtime) => mtime,
            None => timespec(
                blank_is_zero(&header.as_old().mtime, header.mtime())
                    .map_err(ExtractError::Read)?,
            ),
        };
        let id = |id: u64| {
            u32::try_from(id)
                .map_err(|_| ExtractError::Read(io::Error::other(format!("id {id} out of range"))))
        };
        Ok(Meta {
            uid: rustix::fs::Uid::from_raw(id(uid)?),
            gid: rustix::fs::Gid::from_raw(id(gid)?),
            mode,
            mtime,
        })
    }

    /// Opens the directory `parts` (relative to the root, resolved inside
    /// it), creating missing ones (0755, as Docker does) when `create`.
    pub(super) fn open_dir(
        &self,
        parts: &[&[u8]],
        create: bool,
        raw: &[u8],
    ) -> Result<OwnedFd, ExtractError> {
        let open = |path: &[u8]| {
            self.root
                .open_in(in_root(path), OFlags::PATH | OFlags::DIRECTORY, true)
        };
        match open(&join(parts)) {
            Ok(fd) => return Ok(fd),
            Err(err) if create && err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(self.io_err(raw, err)),
        }
        let mut dir = open(b".").map_err(|err| self.io_err(raw, err))?;
        for depth in 1..=parts.len() {
            let prefix = join(&parts[..depth]);
            dir = match open(&prefix) {
                Ok(fd) => fd,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    let name = parts[depth - 1];
                    match rustix::fs::mkdirat(&dir, os(name), Mode::from_raw_mode(0o755)) {
                        Ok(()) => {}
                        // Something is there but does not resolve: a dangling
                        // symlink, typically one aimed outside the root.
                        Err(Errno::EXIST) => {
                            return Err(ExtractError::Unsafe {
                                path: String::from_utf8_lossy(raw).into_owned(),
                                reason: format!(
                                    "parent {:?} is not a directory inside the root",
                                    String::from_utf8_lossy(&prefix)
                                ),
                            });
                        }
                        Err(err) => return Err(self.io_err(raw, err)),
                    }
                    open(&prefix).map_err(|err| self.io_err(raw, err))?
                }
                Err(err) => return Err(self.io_err(raw, err)),
            };
        }
        Ok(dir)
    }

    /// Removes whatever is at `parent/name` so a new entry can take its
    /// place. Never follows a symlink there.
    pub(super) fn remove_existing(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        match rustix::fs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(err) => Err(self.io_err(raw, err)),
            Ok(_) => self.remove_all(parent, name, raw),
        }
    }

    pub(super) fn remove_all(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        ops::remove_all(parent, os(name)).map_err(|err| self.io_err(raw, err))
    }

    pub(super) fn list_dir(&self, dir: &OwnedFd, raw: &[u8]) -> Result<Vec<Vec<u8>>, ExtractError> {
        ops::list_names(dir).map_err(|err| self.io_err(raw, err))
    }

    pub(super) fn chown_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        if !self.opts.chown {
            return Ok(());
        }
        tolerate_unmapped(ops::chown_at(
            parent,
            os(name),
            meta.uid.as_raw(),
            meta.gid.as_raw(),
        ))
        .map_err(|err| self.io_err(raw, err))
    }

    pub(super) fn utimes_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        mtime: Timespec,
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        ops::set_times_at(parent, os(name), mtime).map_err(|err| self.io_err(raw, err))
    }

    /// Sets the entry's xattrs on a directory or symlink (a regular file
    /// gets them through its open fd, after its content and owner).
    pub(super) fn set_xattrs_at(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        extras: &Extras,
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        for (key, value) in &extras.xattrs {
            let result = ops::set_xattr_at(parent, os(name), os(key), value);
            self.xattr_result(result, raw, key)?;
        }
        Ok(())
    }

    pub(super) fn xattr_result(
        &mut self,
        result: rustix::io::Result<()>,
        raw: &[u8],
        key: &[u8],
    ) -> Result<(), ExtractError> {
        match result {
            Ok(()) => Ok(()),
            Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS) if !self.opts.strict_xattrs => {
                self.stats.skipped_xattrs += 1;
                Ok(())
            }
            Err(err) => Err(self.io_err(
                raw,
                io::Error::new(
                    io::Error::from(err).kind(),
                    format!("setting xattr {}: {err}", String::from_utf8_lossy(key)),
                ),
            )),
        }
    }

    /// Applies directory modes and mtimes, deepest first, once everything
    /// inside them is written.
    pub(super) fn finish_dirs(&mut self) -> Result<(), ExtractError> {
        let dirs = std::mem::take(&mut self.dirs);
        // A directory listed twice gets the metadata of its last entry.
        let last: std::collections::HashMap<&[u8], usize> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| (dir.path.as_slice(), i))
            .collect();
        for (i, dir) in dirs.iter().enumerate().rev() {
            if last.get(dir.path.as_slice()) != Some(&i) {
                continue;
            }
            let fd = match self.root.open_in(
                in_root(&dir.path),
                OFlags::RDONLY | OFlags::DIRECTORY,
                false,
            ) {
                Ok(fd) => fd,
                // Replaced or deleted by a later entry.
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue;
                }
                Err(err) => return Err(self.io_err(&dir.path, err)),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir.mode))
                .map_err(|err| self.io_err(&dir.path, err))?;
            ops::set_times_fd(&fd, dir.mtime).map_err(|err| self.io_err(&dir.path, err))?;
        }
        Ok(())
    }
}

pub(super) struct Meta {
    pub(super) uid: rustix::fs::Uid,
    pub(super) gid: rustix::fs::Gid,
    pub(super) mode: u32,
    pub(super) mtime: Timespec,
}

pub(super) fn device_of<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<Dev> {
    let header = entry.header();
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    Ok(rustix::fs::makedev(major, minor))
}

pub(super) fn read_extras<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Extras> {
    let mut extras = Extras::default();
    let Some(pax) = entry.pax_extensions()? else {
        return Ok(extras);
    };
    for record in pax {
        let record = record?;
        let key = record.key_bytes();
        let value = record.value_bytes();
        let number = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
        };
        match key {
            b"uid" => extras.uid = number(),
            b"gid" => extras.gid = number(),
            b"mtime" => extras.mtime = parse_pax_time(value),
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.")
                    && !is_overlay_xattr(name)
                {
                    extras.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(extras)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_escapes() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("a/b", Some(&["a", "b"])),
            ("./a//b/", Some(&["a", "b"])),
            ("./", Some(&[])),
            ("/etc/passwd", None),
            ("../x", None),
            ("a/../../x", None),
            ("a/..", None),
        ];
        for (input, expected) in cases {
            let got = clean_path(input.as_bytes()).ok().map(|parts| {
                parts
                    .iter()
                    .map(|p| String::from_utf8(p.to_vec()).unwrap())
                    .collect::<Vec<_>>()
            });
            let expected = expected.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, expected, "case {input:?}");
        }
    }

    #[test]
    fn parses_pax_times() {
        let cases = [
            ("1700000000", Some((1_700_000_000, 0))),
            ("1700000000.5", Some((1_700_000_000, 500_000_000))),
            ("1.123456789123", Some((1, 123_456_789))),
            ("x", None),
        ];
        for (input, expected) in cases {
            let got = parse_pax_time(input.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
            assert_eq!(got, expected, "case {input:?}");
        }
    }
}
