//! Snapshots: each layer of an image extracted once, in overlayfs format,
//! into `hoist/snapshots/<chainid-hex>/`, so that a stack of them serves as
//! an overlay lowerdir list.
//!
//! A snapshot directory exists only when complete: layers are extracted
//! into the session's temp directory (cleaned on the next start after a
//! crash) and renamed into place by [`Store::commit_snapshot`].
//! (<https://github.com/opencontainers/image-spec/blob/main/config.md#layer-chainid>)

use std::path::{Path, PathBuf};

use crate::StoreError;
use crate::digest::{ChainId, DiffId};
use crate::extract::{ApplyOptions, ExtractError, WhiteoutMode, apply_layer, is_real_root};
use crate::image::{Image, Layer};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("extracting layer {digest}: {source}")]
    Extract {
        digest: String,
        #[source]
        source: ExtractError,
    },
    #[error(
        "layer {digest} does not match the image config: diff_id is {actual}, config says {expected}"
    )]
    DiffIdMismatch {
        digest: String,
        expected: DiffId,
        actual: DiffId,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Extraction options for snapshots of the current process: overlay
/// whiteouts, with `user.overlay.*` xattrs unless running as real root
/// (rootless overlay is mounted with `userxattr`).
pub fn snapshot_options() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        userxattr: !is_real_root(),
        ..ApplyOptions::default()
    }
}

/// Makes sure every layer of `image` has its snapshot and returns their
/// directories, bottom layer first (reverse it for overlay's `lowerdir=`,
/// which lists the top first; see [`lowerdir_option`]).
pub fn ensure_snapshots(store: &Store, image: &Image) -> Result<Vec<PathBuf>, SnapshotError> {
    ensure_snapshots_with(store, image, &snapshot_options())
}

/// [`ensure_snapshots`] with explicit extraction options.
pub fn ensure_snapshots_with(
    store: &Store,
    image: &Image,
    opts: &ApplyOptions,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let layers = image.layers();
    let chain_ids = image.chain_ids();
    if layers.len() != chain_ids.len() {
        return Err(StoreError::Invalid {
            what: format!("image {}", image.digest()),
            reason: "layer count does not match rootfs.diff_ids".into(),
        }
        .into());
    }
    let mut paths = Vec::with_capacity(layers.len());
    for (layer, chain_id) in layers.iter().zip(&chain_ids) {
        paths.push(ensure_snapshot(store, chain_id, layer, opts)?);
    }
    Ok(paths)
}

/// The snapshot of one layer whose stack below it has the chain ID
/// `chain_id` names, extracted from the layer's blob when missing.
pub fn ensure_snapshot(
    store: &Store,
    chain_id: &ChainId,
    layer: &Layer,
    opts: &ApplyOptions,
) -> Result<PathBuf, SnapshotError> {
    store.lease_chain_id(chain_id)?;
    let path = store.snapshot_path(chain_id);
    if path.is_dir() {
        return Ok(path);
    }
    let staged = store.temp_path("snapshot");
    let result = extract_into(store, &layer.descriptor, &layer.diff_id, &staged, opts);
    if let Err(err) = result {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(err);
    }
    Ok(store.commit_snapshot(&staged, chain_id)?)
}

fn extract_into(
    store: &Store,
    descriptor: &oci_spec::image::Descriptor,
    diff_id: &DiffId,
    staged: &Path,
    opts: &ApplyOptions,
) -> Result<(), SnapshotError> {
    std::fs::create_dir(staged).map_err(|source| SnapshotError::Io {
        path: staged.to_owned(),
        source,
    })?;
    let reader = store.open_descriptor(descriptor)?;
    let stats = apply_layer(reader, staged, opts).map_err(|source| {
        // The verified reader reports a corrupt blob as an io error at EOF.
        SnapshotError::Extract {
            digest: descriptor.digest().to_string(),
            source,
        }
    })?;
    if stats.diff_id != *diff_id {
        return Err(SnapshotError::DiffIdMismatch {
            digest: descriptor.digest().to_string(),
            expected: diff_id.clone(),
            actual: stats.diff_id,
        });
    }
    Ok(())
}

/// Moves a builder's upperdir (already a diff in overlay format) into place
/// as the snapshot of `chain_id`, with no re-extraction. The upperdir must
/// be on the store's filesystem (under [`Store::tmp_dir`]). Returns the
/// snapshot's path. Overlay's bookkeeping xattrs (`origin`, `impure`, ...)
/// are removed first; only `opaque` has meaning in a lower layer.
pub fn commit_snapshot(
    store: &Store,
    chain_id: &ChainId,
    upperdir: &Path,
) -> Result<PathBuf, SnapshotError> {
    strip_overlay_bookkeeping(upperdir)?;
    Ok(store.commit_snapshot(upperdir, chain_id)?)
}

fn strip_overlay_bookkeeping(root: &Path) -> Result<(), SnapshotError> {
    for item in walkdir::WalkDir::new(root).follow_links(false) {
        let item = item.map_err(|err| SnapshotError::Io {
            path: err.path().unwrap_or(root).to_owned(),
            source: err.into(),
        })?;
        // Only directories carry overlay's own xattrs in an upperdir.
        if !item.file_type().is_dir() {
            continue;
        }
        let io_err = |source| SnapshotError::Io {
            path: item.path().to_owned(),
            source,
        };
        let names = match xattr::list(item.path()) {
            Ok(names) => names,
            Err(err) if err.raw_os_error() == Some(libc::ENOTSUP) => continue,
            Err(err) => return Err(io_err(err)),
        };
        for name in names {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
            let overlay = bytes
                .strip_prefix(b"trusted.overlay.")
                .or_else(|| bytes.strip_prefix(b"user.overlay."));
            if overlay.is_some_and(|what| what != b"opaque") {
                xattr::remove(item.path(), &name).map_err(io_err)?;
            }
        }
    }
    Ok(())
}

/// The `lowerdir=` value for snapshot paths given bottom first.
pub fn lowerdir_option(bottom_first: &[PathBuf]) -> String {
    bottom_first
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_lists_the_top_layer_first() {
        let cases = [
            (vec!["/s/a"], "/s/a"),
            (vec!["/s/a", "/s/b", "/s/c"], "/s/c:/s/b:/s/a"),
        ];
        for (paths, expected) in cases {
            let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
            assert_eq!(lowerdir_option(&paths), expected, "case {paths:?}");
        }
    }
}
