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
//!
//! The module is split by concern: [`decompress`] detects and undoes the
//! stream's compression, [`bomb`] stops decompression bombs, `whiteout`
//! handles OCI whiteouts and `apply` writes each entry.

mod apply;
pub mod bomb;
pub mod decompress;
mod whiteout;

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::digest::{BackgroundSha256, DiffId};
use crate::tar_guard::TarGuard;
use apply::{Applier, Counters, open_root};
use bomb::GuardedReader;
pub use decompress::{CountingReader, Format, decompress};

/// How OCI whiteout entries are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Keep the layer a diff in overlayfs format: `.wh.name` becomes a 0/0
    /// character device, `.wh..wh..opq` an `overlay.opaque=y` xattr.
    Overlay,
    /// Delete what the whiteouts name, for a flattened root filesystem.
    Apply,
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
pub(crate) fn tolerate_unmapped(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) && !is_real_root() => Ok(()),
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
        hasher: BackgroundSha256::new(),
        read: 0,
        compressed: compressed.clone(),
        opts,
        bomb: bomb.clone(),
    };
    let root = open_root(dest)?;
    let mut applier = Applier {
        root: &root,
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
    let diff_id = guarded.hasher.finish().map_err(ExtractError::Read)?;
    Ok(ApplyStats {
        diff_id: DiffId::new(&diff_id),
        format,
        compressed_bytes: compressed.get(),
        uncompressed_bytes: guarded.read,
        entries,
        whiteouts,
        skipped_devices,
        skipped_xattrs,
    })
}
