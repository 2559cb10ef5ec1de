//! Sharing the build cache between machines: `--cache-to type=local` and
//! `--cache-from type=local`, in BuildKit's envelope.
//!
//! The directory is an OCI image layout whose one manifest has the config
//! media type `application/vnd.buildkit.cacheconfig.v0` and the cached
//! layers as its layers, so tools that know BuildKit's cache can store,
//! list and collect it. hoist's own records (each step's key, inputs and
//! result) sit in one more blob of media type [`STEPS_MEDIA_TYPE`].

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use hoist_store::digest::sha256_bytes;
use hoist_store::{CacheEntry, ExpectedBlob, Store, StoreError};
use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

/// BuildKit's cache config media type.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.buildkit.cacheconfig.v0";
/// hoist's step records in an exported cache.
pub const STEPS_MEDIA_TYPE: &str = "application/vnd.hoist.cache.steps.v1+json";
/// The contents of one `RUN --mount=type=cache` directory, as a tar
/// (`mounts=true`); the annotation [`MOUNT_ANNOTATION`] names it.
pub const MOUNT_MEDIA_TYPE: &str = "application/vnd.hoist.cache.mount.v1.tar";
const MOUNT_ANNOTATION: &str = "dev.hoist.cache.mount";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

#[derive(Debug, thiserror::Error)]
pub enum CacheExportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path} is not a hoist cache export: {reason}")]
    Invalid { path: String, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CacheExportError + '_ {
    move |source| CacheExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `mode=min` exports the steps whose layers the final image has;
/// `mode=max` every step the build used, intermediate stages included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportMode {
    Min,
    Max,
}

#[derive(Serialize, Deserialize)]
struct Steps {
    entries: Vec<CacheEntry>,
}

/// BuildKit's `CacheConfig`: the layers, and one record per cache key with
/// the layer its result is.
#[derive(Serialize)]
struct CacheConfig {
    layers: Vec<CacheLayer>,
    records: Vec<CacheRecordJson>,
}

#[derive(Serialize)]
struct CacheLayer {
    blob: String,
    parent: i64,
}

#[derive(Serialize)]
struct CacheRecordJson {
    digest: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    results: Vec<CacheResult>,
}

#[derive(Serialize)]
struct CacheResult {
    layer: usize,
}

/// Writes the cache entries `keys` (those of one build) to `dest`. With
/// [`ExportMode::Min`], only entries whose layers are among
/// `final_layers` are written.
pub fn export_local(
    store: &Store,
    keys: &[String],
    final_layers: &[Digest],
    mode: ExportMode,
    mounts: bool,
    dest: &Path,
) -> Result<usize, CacheExportError> {
    let blobs_dir = dest.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(io_error(&blobs_dir))?;
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    for key in keys {
        if !seen.insert(key.clone()) {
            continue;
        }
        let Some(entry) = store.cache_peek(key)? else {
            continue;
        };
        if mode == ExportMode::Min && !entry.blobs.iter().all(|b| final_layers.contains(b)) {
            continue;
        }
        entries.push(entry);
    }
    let mut layers: Vec<Digest> = Vec::new();
    for entry in &entries {
        for blob in &entry.blobs {
            if !layers.contains(blob) {
                layers.push(blob.clone());
            }
        }
    }
    let mut layer_descriptors = Vec::new();
    for digest in &layers {
        let target = blobs_dir.join(digest.digest());
        let size = store.blob_size(digest)?;
        if !target.exists() {
            let mut reader = store.open_blob(digest)?;
            write_atomic(&target, |out| std::io::copy(&mut reader, out).map(|_| ()))?;
        }
        layer_descriptors.push(serde_json::json!({
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": digest.to_string(),
            "size": size,
        }));
    }
    let config = CacheConfig {
        layers: layers
            .iter()
            .map(|d| CacheLayer {
                blob: d.to_string(),
                parent: -1,
            })
            .collect(),
        records: entries
            .iter()
            .map(|e| CacheRecordJson {
                digest: format!("sha256:{}", e.key),
                results: e
                    .blobs
                    .iter()
                    .filter_map(|b| layers.iter().position(|l| l == b))
                    .map(|layer| CacheResult { layer })
                    .collect(),
            })
            .collect(),
    };
    let count = entries.len();
    if mounts {
        layer_descriptors.extend(export_mounts(store, &blobs_dir)?);
    }
    let config = put_json(&blobs_dir, &config)?;
    let steps = put_json(&blobs_dir, &Steps { entries })?;
    layer_descriptors.push(serde_json::json!({
        "mediaType": STEPS_MEDIA_TYPE,
        "digest": steps.0,
        "size": steps.1,
    }));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CACHE_CONFIG_MEDIA_TYPE,
            "digest": config.0,
            "size": config.1,
        },
        "layers": layer_descriptors,
    });
    let manifest = put_json(&blobs_dir, &manifest)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest.0,
            "size": manifest.1,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    let bytes = serde_json::to_vec(&index).map_err(|e| invalid(dest, e))?;
    write_atomic(&dest.join("index.json"), |out| out.write_all(&bytes))?;
    write_atomic(&dest.join("oci-layout"), |out| {
        out.write_all(br#"{"imageLayoutVersion":"1.0.0"}"#)
    })?;
    Ok(count)
}

/// Imports a cache written by [`export_local`]: every step record, with
/// the layers it needs (verified against their digests). Returns how many
/// records were imported.
pub fn import_local(store: &Store, src: &Path) -> Result<usize, CacheExportError> {
    let blobs_dir = src.join("blobs/sha256");
    let read = |path: &Path| std::fs::read(path).map_err(io_error(path));
    let index: serde_json::Value =
        serde_json::from_slice(&read(&src.join("index.json"))?).map_err(|e| invalid(src, e))?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or_else(|| invalid(src, "index.json names no manifest"))?;
    let blob_path = |digest: &str| -> Result<std::path::PathBuf, CacheExportError> {
        let digest = hoist_store::digest::parse_digest(digest).map_err(|e| invalid(src, e))?;
        Ok(blobs_dir.join(digest.digest()))
    };
    let manifest: serde_json::Value = serde_json::from_slice(&read(&blob_path(manifest_digest)?)?)
        .map_err(|e| invalid(src, e))?;
    if manifest["config"]["mediaType"] != CACHE_CONFIG_MEDIA_TYPE {
        return Err(invalid(src, "its config is not a BuildKit cache config"));
    }
    let steps_digest = manifest["layers"]
        .as_array()
        .and_then(|layers| {
            layers
                .iter()
                .find(|l| l["mediaType"] == STEPS_MEDIA_TYPE)
                .and_then(|l| l["digest"].as_str())
        })
        .ok_or_else(|| invalid(src, "it has no hoist step records"))?;
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        if layer["mediaType"] != MOUNT_MEDIA_TYPE {
            continue;
        }
        let (Some(digest), Some(name)) = (
            layer["digest"].as_str(),
            layer["annotations"][MOUNT_ANNOTATION].as_str(),
        ) else {
            return Err(invalid(src, "a cache mount without its name"));
        };
        import_mount(store, &blob_path(digest)?, digest, name, src)?;
    }
    let steps_bytes = read(&blob_path(steps_digest)?)?;
    if sha256_bytes(&steps_bytes).to_string() != steps_digest {
        return Err(invalid(src, "the step records do not match their digest"));
    }
    let steps: Steps = serde_json::from_slice(&steps_bytes).map_err(|e| invalid(src, e))?;
    let mut imported = 0;
    for entry in steps.entries {
        for blob in &entry.blobs {
            if store.has_blob(blob) {
                continue;
            }
            let path = blobs_dir.join(blob.digest());
            let file = std::fs::File::open(&path).map_err(io_error(&path))?;
            store.put_blob(file, Some(&ExpectedBlob::from(blob)))?;
        }
        store.cache_put(&entry)?;
        imported += 1;
    }
    Ok(imported)
}

/// Tars every cache mount directory into a blob; returns their
/// descriptors.
fn export_mounts(
    store: &Store,
    blobs_dir: &Path,
) -> Result<Vec<serde_json::Value>, CacheExportError> {
    let mounts = store.root().join("hoist/mounts");
    let mut names: Vec<String> = match std::fs::read_dir(&mounts) {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(io_error(&mounts)(err)),
    };
    names.sort();
    let mut descriptors = Vec::new();
    for name in names {
        let dir = mounts.join(&name);
        let mut tmp = tempfile::NamedTempFile::new_in(blobs_dir).map_err(io_error(blobs_dir))?;
        {
            let mut tar = tar::Builder::new(std::io::BufWriter::new(tmp.as_file_mut()));
            tar.follow_symlinks(false);
            tar.append_dir_all(".", &dir).map_err(io_error(&dir))?;
            tar.into_inner()
                .and_then(|mut w| w.flush())
                .map_err(io_error(&dir))?;
        }
        let (digest, size) = hash_file(tmp.path())?;
        let target = blobs_dir.join(&digest["sha256:".len()..]);
        tmp.persist(&target)
            .map_err(|e| io_error(&target)(e.error))?;
        descriptors.push(serde_json::json!({
            "mediaType": MOUNT_MEDIA_TYPE,
            "digest": digest,
            "size": size,
            "annotations": {MOUNT_ANNOTATION: name},
        }));
    }
    Ok(descriptors)
}

/// Restores one cache mount directory, unless the store has it already.
/// The tar is checked against its digest first, and unpacked inside the
/// directory only (the tar crate refuses `..` and absolute paths).
fn import_mount(
    store: &Store,
    blob: &Path,
    digest: &str,
    name: &str,
    src: &Path,
) -> Result<(), CacheExportError> {
    if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(src, format!("invalid cache mount name {name:?}")));
    }
    let target = store.root().join("hoist/mounts").join(name);
    if target.exists() {
        return Ok(());
    }
    if hash_file(blob)?.0 != digest {
        return Err(invalid(src, format!("cache mount {digest} is corrupt")));
    }
    let staged = store.temp_path("cache-mount");
    std::fs::create_dir_all(&staged).map_err(io_error(&staged))?;
    let file = std::fs::File::open(blob).map_err(io_error(blob))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.unpack(&staged).map_err(io_error(blob))?;
    let parent = store.root().join("hoist/mounts");
    std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    match std::fs::rename(&staged, &target) {
        Ok(()) => Ok(()),
        // Another build restored it first.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(())
        }
        Err(err) => Err(io_error(&target)(err)),
    }
}

/// A file's sha256 digest and size, streamed.
fn hash_file(path: &Path) -> Result<(String, u64), CacheExportError> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut hasher = sha2::Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(io_error(path))?;
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

fn invalid(path: &Path, reason: impl ToString) -> CacheExportError {
    CacheExportError::Invalid {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Stores a JSON blob; returns its digest and size.
fn put_json(blobs_dir: &Path, value: &impl Serialize) -> Result<(String, usize), CacheExportError> {
    let bytes = serde_json::to_vec(value).map_err(|e| invalid(blobs_dir, e))?;
    let digest = sha256_bytes(&bytes);
    write_atomic(&blobs_dir.join(digest.digest()), |out| {
        out.write_all(&bytes)
    })?;
    Ok((digest.to_string(), bytes.len()))
}

/// Writes `path` through a temp file beside it and a rename.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), CacheExportError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_error(dir))?;
    write(tmp.as_file_mut()).map_err(io_error(path))?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|e| io_error(path)(e.error))?;
    Ok(())
}
