//! Safe layer extraction: applies an OCI layer tar (gzip, zstd or plain,
//! detected by magic bytes) to a directory as if the directory were the
//! root of the filesystem.
//!
//! Layers are hostile input. Every path is resolved inside `dest` with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` and every entry is
//! created relative to a directory fd, so neither `..`, absolute names,
//! symlinks nor hardlinks can reach outside `dest`. Names are never joined
//! into host paths and followed.
//!
//! Whiteouts (<https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts>)
//! are either converted to overlayfs form ([`WhiteoutMode::Overlay`], for
//! snapshots used as lowerdirs) or applied by deleting
//! ([`WhiteoutMode::Apply`], for a flattened root filesystem).

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{
    AtFlags, Dev, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use crate::digest::{DiffId, sha256_of};
use crate::tar_guard::TarGuard;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// How OCI whiteout entries are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Keep the layer a diff in overlayfs format: `.wh.name` becomes a 0/0
    /// character device, `.wh..wh..opq` an `overlay.opaque=y` xattr.
    Overlay,
    /// Delete what the whiteouts name, for a flattened root filesystem.
    Apply,
}

/// The compression of a layer stream, detected from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gzip,
    Zstd,
    Uncompressed,
}

/// Options for [`apply_layer`]. [`Default`] suits the current process:
/// ownership kept when root, devices only for real (non-userns) root.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    /// Use `user.overlay.*` rather than `trusted.overlay.*` (overlay mounted
    /// with `userxattr`, as rootless overlay is).
    pub userxattr: bool,
    /// chown entries to the tar's uid/gid.
    pub chown: bool,
    /// Create block and character devices (others are skipped and counted).
    pub devices: bool,
    /// Fail instead of skipping (and counting) an xattr the kernel refuses
    /// with EPERM, EACCES or ENOTSUP. Off by default, as in Docker, which
    /// warns and goes on.
    pub strict_xattrs: bool,
    /// Decompression bomb guard: the largest uncompressed stream accepted.
    pub max_uncompressed: u64,
    /// Decompression bomb guard: the largest uncompressed/compressed ratio,
    /// checked once more than `ratio_grace` bytes have been decompressed.
    pub max_ratio: u64,
    pub ratio_grace: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        Self {
            whiteouts: WhiteoutMode::Overlay,
            userxattr: false,
            chown: root,
            devices: is_real_root(),
            strict_xattrs: false,
            max_uncompressed: 256 << 30,
            // Deflate cannot exceed ~1032:1; legitimate layers stay far below.
            max_ratio: 512,
            ratio_grace: 64 << 20,
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Clone, Debug)]
pub struct ApplyStats {
    /// sha256 of the uncompressed tar, to check against the config's diff_ids.
    pub diff_id: DiffId,
    pub format: Format,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub entries: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
    pub skipped_xattrs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("reading layer: {0}")]
    Read(#[source] io::Error),
    #[error(
        "layer looks like a decompression bomb: {uncompressed} bytes from {compressed} compressed ({reason})"
    )]
    Bomb {
        uncompressed: u64,
        compressed: u64,
        reason: String,
    },
    #[error("unsafe layer entry {path:?}: {reason}")]
    Unsafe { path: String, reason: String },
    #[error("invalid whiteout {path:?}: {reason}")]
    Whiteout { path: String, reason: String },
    #[error("unsupported layer entry {path:?}: type {kind:?}")]
    Unsupported { path: String, kind: u8 },
    #[error("extracting {path:?} into {dest}: {source}")]
    Io {
        path: String,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// In a user namespace that maps a single ID (rootless without subordinate
/// ranges) an owner outside the map cannot be set: the kernel says EINVAL.
/// The file keeps the namespace's root as owner instead, as podman's
/// `ignore_chown_errors` does; with subordinate ranges every ID of a
/// normal image is mapped and this never happens.
fn tolerate_unmapped(result: rustix::io::Result<()>) -> rustix::io::Result<()> {
    match result {
        Err(rustix::io::Errno::INVAL) if !is_real_root() => Ok(()),
        other => other,
    }
}

/// True when running as root in the initial user namespace, the only place
/// where device nodes can be created.
pub fn is_real_root() -> bool {
    if !rustix::process::geteuid().is_root() {
        return false;
    }
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|map| {
            let fields: Vec<&str> = map.split_whitespace().collect();
            fields == ["0", "0", "4294967295"]
        })
        .unwrap_or(false)
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<(Box<dyn Read + 'a>, Format)> {
    let mut buffered = BufReader::with_capacity(128 << 10, reader);
    let head = buffered.fill_buf()?;
    let format = detect(head);
    let reader: Box<dyn Read + 'a> = match format {
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Format::Uncompressed => Box::new(buffered),
    };
    Ok((reader, format))
}

fn detect(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else {
        Format::Uncompressed
    }
}

/// Applies one layer tar stream to `dest` (which must exist).
///
/// The whole stream is read (past the tar end marker) so that the returned
/// diff_id covers every byte.
pub fn apply_layer(
    reader: impl Read,
    dest: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ExtractError> {
    let compressed = Rc::new(Cell::new(0u64));
    let counting = CountingReader {
        inner: reader,
        count: compressed.clone(),
    };
    let (decoded, format) = decompress(counting).map_err(ExtractError::Read)?;
    let bomb = Rc::new(Cell::new(None));
    let guarded = GuardedReader {
        inner: decoded,
        hasher: Sha256::new(),
        read: 0,
        compressed: compressed.clone(),
        opts,
        bomb: bomb.clone(),
    };
    let root = open_root(dest)?;
    let mut applier = Applier {
        root: root.as_fd(),
        dest,
        opts,
        dirs: Vec::new(),
        unpacked: HashSet::new(),
        stats: Counters::default(),
    };
    // Caps the extension headers the tar crate reads whole into memory.
    let mut archive = tar::Archive::new(TarGuard::new(guarded));
    let result = applier.apply_entries(&mut archive);
    let check_bomb = |err: ExtractError| match bomb.take() {
        Some(bomb) => bomb,
        None => err,
    };
    result.map_err(check_bomb)?;
    let mut guarded = archive.into_inner().into_inner();
    io::copy(&mut guarded, &mut io::sink()).map_err(|err| check_bomb(ExtractError::Read(err)))?;
    applier.finish_dirs()?;
    let Counters {
        entries,
        whiteouts,
        skipped_devices,
        skipped_xattrs,
    } = applier.stats;
    Ok(ApplyStats {
        diff_id: DiffId::new(&sha256_of(guarded.hasher)),
        format,
        compressed_bytes: compressed.get(),
        uncompressed_bytes: guarded.read,
        entries,
        whiteouts,
        skipped_devices,
        skipped_xattrs,
    })
}

struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Hashes the decompressed stream and stops it when it grows past the
/// bomb limits. The reason is parked in `bomb` because the tar reader
/// rewraps io errors.
struct GuardedReader<'a, R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    compressed: Rc<Cell<u64>>,
    opts: &'a ApplyOptions,
    bomb: Rc<Cell<Option<ExtractError>>>,
}

impl<R: Read> Read for GuardedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        let compressed = self.compressed.get().max(1);
        let reason = if self.read > self.opts.max_uncompressed {
            Some(format!("limit is {} bytes", self.opts.max_uncompressed))
        } else if self.read > self.opts.ratio_grace && self.read / compressed > self.opts.max_ratio
        {
            Some(format!("ratio limit is {}:1", self.opts.max_ratio))
        } else {
            None
        };
        if let Some(reason) = reason {
            self.bomb.set(Some(ExtractError::Bomb {
                uncompressed: self.read,
                compressed,
                reason,
            }));
            return Err(io::Error::other("decompression bomb"));
        }
        Ok(n)
    }
}

#[derive(Default)]
struct Counters {
    entries: u64,
    whiteouts: u64,
    skipped_devices: u64,
    skipped_xattrs: u64,
}

/// Metadata applied to a directory after its contents, so its mtime sticks
/// and a read-only mode does not stop extraction into it.
struct DirMeta {
    path: Vec<u8>,
    mode: u32,
    mtime: Timespec,
}

/// What a tar entry carries beyond its header, from PAX records.
#[derive(Default)]
struct Extras {
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Timespec>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Applier<'a> {
    root: BorrowedFd<'a>,
    dest: &'a Path,
    opts: &'a ApplyOptions,
    dirs: Vec<DirMeta>,
    /// Paths created by this layer, which an opaque whiteout keeps (Apply).
    unpacked: HashSet<Vec<u8>>,
    stats: Counters,
}

fn open_root(dest: &Path) -> Result<OwnedFd, ExtractError> {
    rustix::fs::open(
        dest,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| ExtractError::Io {
        path: ".".into(),
        dest: dest.to_owned(),
        source: err.into(),
    })
}

/// Splits a tar name into components, refusing names that could only be
/// meant to escape. `.` and empty components are dropped.
fn clean_path(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
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

fn join(parts: &[&[u8]]) -> Vec<u8> {
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

fn timespec(secs: u64) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
        tv_nsec: 0,
    }
}

/// Parses a PAX time such as `1700000000.123456789`.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
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
    fn io_err(&self, path: &[u8], source: impl Into<io::Error>) -> ExtractError {
        ExtractError::Io {
            path: String::from_utf8_lossy(path).into_owned(),
            dest: self.dest.to_owned(),
            source: source.into(),
        }
    }

    fn apply_entries<R: Read>(
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

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ExtractError> {
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
                self.chown_at(self.root, b".", &meta, &raw)?;
                self.set_xattrs_dir(self.root, b".", &extras, &raw)?;
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
                self.set_xattrs_dir(parent.as_fd(), name, &extras, &raw)?;
                self.dirs.push(DirMeta {
                    path,
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.remove_existing(&parent, name, &raw)?;
                let fd = rustix::fs::openat(
                    &parent,
                    os(name),
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|err| self.io_err(&raw, err))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file).map_err(ExtractError::Read)?;
                if self.opts.chown {
                    tolerate_unmapped(rustix::fs::fchown(&file, Some(meta.uid), Some(meta.gid)))
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
                rustix::fs::futimens(&file, &times(meta.mtime))
                    .map_err(|err| self.io_err(&raw, err))?;
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
                if !extras.xattrs.is_empty() {
                    let proc_path = proc_fd_path(parent.as_fd(), name);
                    for (key, value) in &extras.xattrs {
                        let result =
                            rustix::fs::lsetxattr(&proc_path, os(key), value, XattrFlags::empty());
                        self.xattr_result(result, &raw, key)?;
                    }
                }
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

    fn apply_whiteout<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        raw: &[u8],
        parent_parts: &[&[u8]],
        name: &[u8],
    ) -> Result<(), ExtractError> {
        let invalid = |reason: &str| ExtractError::Whiteout {
            path: String::from_utf8_lossy(raw).into_owned(),
            reason: reason.into(),
        };
        if entry.size() != 0 {
            return Err(invalid("a whiteout has no content"));
        }
        if entry.header().entry_type().is_dir() {
            return Err(invalid("a whiteout cannot be a directory"));
        }
        self.stats.whiteouts += 1;
        if name == OPAQUE_MARKER {
            let parent = self.open_dir(parent_parts, true, raw)?;
            return match self.opts.whiteouts {
                WhiteoutMode::Overlay => {
                    let dir = rustix::fs::openat(
                        &parent,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|err| self.io_err(raw, err))?;
                    rustix::fs::fsetxattr(
                        &dir,
                        self.overlay_xattr("opaque"),
                        b"y",
                        XattrFlags::empty(),
                    )
                    .map_err(|err| self.io_err(raw, err))
                }
                WhiteoutMode::Apply => {
                    let dir_path = join(parent_parts);
                    let prefix = if parent_parts.is_empty() {
                        Vec::new()
                    } else {
                        dir_path.clone()
                    };
                    let children = self.list_dir(&parent, raw)?;
                    for child in children {
                        let mut child_path = prefix.clone();
                        if !child_path.is_empty() {
                            child_path.push(b'/');
                        }
                        child_path.extend_from_slice(&child);
                        if !self.unpacked.contains(&child_path) {
                            self.remove_all(&parent, &child, raw)?;
                        }
                    }
                    Ok(())
                }
            };
        }
        if name.starts_with(b".wh..wh.") {
            // Other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): ignored, as Docker does.
            return Ok(());
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(invalid("whiteout names no file"));
        }
        let parent = match self.opts.whiteouts {
            WhiteoutMode::Overlay => self.open_dir(parent_parts, true, raw)?,
            WhiteoutMode::Apply => match self.open_dir(parent_parts, false, raw) {
                Ok(parent) => parent,
                // Nothing there to delete.
                Err(ExtractError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    return Ok(());
                }
                Err(err) => return Err(err),
            },
        };
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                self.remove_existing(&parent, target, raw)?;
                rustix::fs::mknodat(
                    &parent,
                    os(target),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|err| self.io_err(raw, err))?;
                let mtime = timespec(entry.header().mtime().map_err(ExtractError::Read)?);
                self.utimes_at(parent.as_fd(), target, mtime, raw)
            }
            WhiteoutMode::Apply => self.remove_all(&parent, target, raw),
        }
    }

    fn overlay_xattr(&self, what: &str) -> String {
        let prefix = if self.opts.userxattr {
            "user"
        } else {
            "trusted"
        };
        format!("{prefix}.overlay.{what}")
    }

    fn meta<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        extras: &Extras,
    ) -> Result<Meta, ExtractError> {
        let header = entry.header();
        let uid = extras
            .uid
            .map_or_else(|| header.uid(), Ok)
            .map_err(ExtractError::Read)?;
        let gid = extras
            .gid
            .map_or_else(|| header.gid(), Ok)
            .map_err(ExtractError::Read)?;
        let mode = header.mode().map_err(ExtractError::Read)? & 0o7777;
        let mtime = match extras.mtime {
            Some(mtime) => mtime,
            None => timespec(header.mtime().map_err(ExtractError::Read)?),
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
    fn open_dir(&self, parts: &[&[u8]], create: bool, raw: &[u8]) -> Result<OwnedFd, ExtractError> {
        let open = |path: &[u8]| {
            rustix::fs::openat2(
                self.root,
                os(path),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            )
        };
        match open(&join(parts)) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            Err(err) => return Err(self.io_err(raw, err)),
        }
        let mut dir = open(b".").map_err(|err| self.io_err(raw, err))?;
        for depth in 1..=parts.len() {
            let prefix = join(&parts[..depth]);
            dir = match open(&prefix) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
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
    fn remove_existing(
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

    fn remove_all(&self, parent: &OwnedFd, name: &[u8], raw: &[u8]) -> Result<(), ExtractError> {
        let st = match rustix::fs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok(()),
            Err(err) => return Err(self.io_err(raw, err)),
            Ok(st) => st,
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return rustix::fs::unlinkat(parent, os(name), AtFlags::empty())
                .map_err(|err| self.io_err(raw, err));
        }
        let dir = rustix::fs::openat(
            parent,
            os(name),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| self.io_err(raw, err))?;
        for child in self.list_dir(&dir, raw)? {
            self.remove_all(&dir, &child, raw)?;
        }
        rustix::fs::unlinkat(parent, os(name), AtFlags::REMOVEDIR)
            .map_err(|err| self.io_err(raw, err))
    }

    fn list_dir(&self, dir: &OwnedFd, raw: &[u8]) -> Result<Vec<Vec<u8>>, ExtractError> {
        let fd = rustix::fs::openat(
            dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| self.io_err(raw, err))?;
        let mut names = Vec::new();
        for item in rustix::fs::Dir::new(fd).map_err(|err| self.io_err(raw, err))? {
            let item = item.map_err(|err| self.io_err(raw, err))?;
            let name = item.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        Ok(names)
    }

    fn chown_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        if !self.opts.chown {
            return Ok(());
        }
        let flags = if name == b"." {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        tolerate_unmapped(rustix::fs::chownat(
            parent,
            os(name),
            Some(meta.uid),
            Some(meta.gid),
            flags,
        ))
        .map_err(|err| self.io_err(raw, err))
    }

    fn utimes_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        mtime: Timespec,
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        rustix::fs::utimensat(parent, os(name), &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| self.io_err(raw, err))
    }

    fn set_xattrs_dir(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        extras: &Extras,
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        if extras.xattrs.is_empty() {
            return Ok(());
        }
        let dir = rustix::fs::openat(
            parent,
            os(name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| self.io_err(raw, err))?;
        for (key, value) in &extras.xattrs {
            let result = rustix::fs::fsetxattr(&dir, os(key), value, XattrFlags::empty());
            self.xattr_result(result, raw, key)?;
        }
        Ok(())
    }

    fn xattr_result(
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
    fn finish_dirs(&mut self) -> Result<(), ExtractError> {
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
            let fd = match rustix::fs::openat2(
                self.root,
                os(&dir.path),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            ) {
                Ok(fd) => fd,
                // Replaced or deleted by a later entry.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(err) => return Err(self.io_err(&dir.path, err)),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir.mode))
                .map_err(|err| self.io_err(&dir.path, err))?;
            rustix::fs::futimens(&fd, &times(dir.mtime))
                .map_err(|err| self.io_err(&dir.path, err))?;
        }
        Ok(())
    }
}

struct Meta {
    uid: rustix::fs::Uid,
    gid: rustix::fs::Gid,
    mode: u32,
    mtime: Timespec,
}

fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

/// A path that names `name` inside the directory `dir` is open on, for the
/// few calls (lsetxattr on a symlink) that have no *at form.
fn proc_fd_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(os(name));
    path
}

fn device_of<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<Dev> {
    let header = entry.header();
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    Ok(rustix::fs::makedev(major, minor))
}

/// Overlay's own xattrs in a layer could redirect lookups or fake metadata
/// in the snapshot, so a tar never gets to set them.
fn is_overlay_xattr(key: &[u8]) -> bool {
    key.starts_with(b"trusted.overlay.") || key.starts_with(b"user.overlay.")
}

fn read_extras<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Extras> {
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
    fn detects_compression_by_magic() {
        let cases: &[(&[u8], Format)] = &[
            (&[0x1f, 0x8b, 8, 0], Format::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0], Format::Zstd),
            (b"etc/passwd\0", Format::Uncompressed),
            (b"", Format::Uncompressed),
        ];
        for (head, expected) in cases {
            assert_eq!(detect(head), *expected, "case {head:?}");
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
