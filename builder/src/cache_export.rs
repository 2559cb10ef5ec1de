//! Sharing the build cache between machines: `--cache-to type=local|registry`
//! and `--cache-from type=local|registry`, in BuildKit's envelope.
//!
//! The directory is an OCI image layout whose one manifest has the config
//! media type `application/vnd.buildkit.cacheconfig.v0` and the cached
//! layers as its layers, so tools that know BuildKit's cache can store,
//! list and collect it. hoist's own records (each step's key and result)
//! sit in one more blob of media type [`STEPS_MEDIA_TYPE`]. As in
//! BuildKit's, they hold digests, never the values that went into a key
//! (build args, env, URLs): a miss against an imported record is explained
//! only as far as its parent and instruction go.
//!
//! Importing is lazy, as BuildKit's: the step records become cache
//! entries at once, but a layer is copied or downloaded only when the
//! build reads it (a later RUN mounts it, or the final image lists it).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hoist_store::digest::{DiffId, HashingWriter, sha256_bytes};
use hoist_store::registry::{Client, RegistryBlobs, RegistryError};
use hoist_store::{
    BlobSource, CacheEntry, Compression, ExpectedBlob, Reference, Store, StoreError,
};
use oci_spec::image::{Descriptor, Digest, MediaType};
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
/// BuildKit's (containerd's) annotation naming a compressed layer's
/// uncompressed digest.
const UNCOMPRESSED_ANNOTATION: &str = "containerd.io/uncompressed";

#[derive(Debug, thiserror::Error)]
pub enum CacheExportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
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

/// The entries of `keys` worth exporting, and their layers in order.
fn select_entries(
    store: &Store,
    keys: &[String],
    final_layers: &[Digest],
    mode: ExportMode,
) -> Result<(Vec<CacheEntry>, Vec<Digest>), CacheExportError> {
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
        // Digests only leave the machine, as in BuildKit's cache: never a
        // build arg's value or a URL's credentials.
        entries.push(CacheEntry {
            payload: crate::cache::redact_for_export(&entry.payload),
            ..entry
        });
    }
    // Stages that run at the same time record their keys in whatever
    // order they finish: sort, as BuildKit's sortConfig does, so that the
    // same build exports the same cache manifest.
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let mut layers: Vec<Digest> = entries
        .iter()
        .flat_map(|entry| entry.blobs.iter().cloned())
        .collect();
    layers.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    layers.dedup();
    Ok((entries, layers))
}

/// BuildKit's cache config over `layers` (as the envelope names them),
/// one record per entry.
fn cache_config(entries: &[CacheEntry], layers: &[Digest], named: &[String]) -> CacheConfig {
    CacheConfig {
        layers: named
            .iter()
            .map(|d| CacheLayer {
                blob: d.clone(),
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
    }
}

/// The envelope's manifest: BuildKit's config, then the layers, then
/// hoist's step records.
fn envelope(
    config: (String, usize),
    mut layers: Vec<serde_json::Value>,
    steps: (String, usize),
) -> serde_json::Value {
    layers.push(serde_json::json!({
        "mediaType": STEPS_MEDIA_TYPE,
        "digest": steps.0,
        "size": steps.1,
    }));
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CACHE_CONFIG_MEDIA_TYPE,
            "digest": config.0,
            "size": config.1,
        },
        "layers": layers,
    })
}

/// Writes the cache entries `keys` (those of one build) to `dest`. With
/// [`ExportMode::Min`], only entries whose layers are among
/// `final_layers` are written. Layers go uncompressed, as the store keeps
/// them (a local directory is not worth the CPU).
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
    let (entries, layers) = select_entries(store, keys, final_layers, mode)?;
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
    let named: Vec<String> = layers.iter().map(|d| d.to_string()).collect();
    let config = cache_config(&entries, &layers, &named);
    let count = entries.len();
    if mounts {
        for (name, dir) in mount_dirs(store)? {
            let mut tmp =
                tempfile::NamedTempFile::new_in(&blobs_dir).map_err(io_error(&blobs_dir))?;
            write_mount_tar(&dir, tmp.as_file_mut())?;
            let (digest, size) = hash_file(tmp.path())?;
            let target = blobs_dir.join(&digest["sha256:".len()..]);
            tmp.persist(&target)
                .map_err(|e| io_error(&target)(e.error))?;
            layer_descriptors.push(mount_descriptor(&digest, size, &name));
        }
    }
    let config = put_json(&blobs_dir, &config)?;
    let steps = put_json(&blobs_dir, &Steps { entries })?;
    let manifest = put_json(&blobs_dir, &envelope(config, layer_descriptors, steps))?;
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

/// Pushes the cache entries `keys` to `reference` as BuildKit HEAD's
/// `--cache-to type=registry` does by default (`image-manifest=true`): an
/// OCI image manifest whose config is the cache config and whose layers
/// are the cached layers, compressed with `compression` (once per layer:
/// the store remembers the result). A layer imported lazily from this
/// registry is mounted or found there, never downloaded to be pushed back.
/// Returns how many records were exported.
#[allow(clippy::too_many_arguments)]
pub fn export_registry(
    store: &Store,
    client: &Client,
    reference: &Reference,
    keys: &[String],
    final_layers: &[Digest],
    mode: ExportMode,
    mounts: bool,
    compression: Compression,
) -> Result<usize, CacheExportError> {
    let (entries, layers) = select_entries(store, keys, final_layers, mode)?;
    let pushed_layers = layers
        .iter()
        .map(|digest| registry_layer(store, digest, compression))
        .collect::<Result<Vec<_>, _>>()?;
    let mut blobs: Vec<Descriptor> = pushed_layers.clone();
    let mut layer_descriptors: Vec<serde_json::Value> = pushed_layers
        .iter()
        .zip(&layers)
        .map(|(pushed, diff)| {
            serde_json::json!({
                "mediaType": pushed.media_type().to_string(),
                "digest": pushed.digest().to_string(),
                "size": pushed.size(),
                "annotations": {UNCOMPRESSED_ANNOTATION: diff.to_string()},
            })
        })
        .collect();
    let named: Vec<String> = pushed_layers
        .iter()
        .map(|d| d.digest().to_string())
        .collect();
    let count = entries.len();
    if mounts {
        for (name, dir) in mount_dirs(store)? {
            let mut writer = store.blob_writer()?;
            write_mount_tar(&dir, &mut writer)?;
            let (digest, size) = writer.commit(None)?;
            layer_descriptors.push(mount_descriptor(digest.as_ref(), size, &name));
            blobs.push(Descriptor::new(
                MediaType::Other(MOUNT_MEDIA_TYPE.to_owned()),
                size,
                digest,
            ));
        }
    }
    let mut put = |value: &serde_json::Value, media_type: &str| {
        let bytes = serde_json::to_vec(value).map_err(|e| invalid_ref(reference, e))?;
        let (digest, size) = store.put_blob_bytes(&bytes)?;
        blobs.push(Descriptor::new(
            MediaType::Other(media_type.to_owned()),
            size,
            digest.clone(),
        ));
        Ok::<_, CacheExportError>((digest.to_string(), size as usize))
    };
    let config = serde_json::to_value(cache_config(&entries, &layers, &named))
        .map_err(|e| invalid_ref(reference, e))?;
    let config = put(&config, CACHE_CONFIG_MEDIA_TYPE)?;
    let steps = serde_json::to_value(Steps { entries }).map_err(|e| invalid_ref(reference, e))?;
    let steps = put(&steps, STEPS_MEDIA_TYPE)?;
    let manifest = serde_json::to_vec(&envelope(config, layer_descriptors, steps))
        .map_err(|e| invalid_ref(reference, e))?;
    client.push_artifact(store, reference, &blobs, &manifest)?;
    Ok(count)
}

/// The layer `digest` (uncompressed, as the store keeps it) as pushed.
fn registry_layer(
    store: &Store,
    digest: &Digest,
    compression: Compression,
) -> Result<Descriptor, CacheExportError> {
    if !store.has_blob(digest)
        && let Some((_, remote)) = store
            .lazy_source(digest)
            .and_then(|source| source.remote_variant(digest))
    {
        return Ok(remote);
    }
    let plain = Descriptor::new(
        MediaType::ImageLayer,
        store.blob_size(digest)?,
        digest.clone(),
    );
    Ok(store.compressed_layer(&plain, &DiffId::new(digest), compression)?)
}

/// Imports a cache written by [`export_local`]: every step record, with
/// its layers left in `src` until a build needs them (then they are
/// copied, verified). Returns how many records were imported.
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
    let manifest_bytes = read(&blob_path(manifest_digest)?)?;
    if sha256_bytes(&manifest_bytes).to_string() != manifest_digest {
        return Err(invalid(src, "the manifest does not match its digest"));
    }
    let manifest = parse_envelope(&manifest_bytes).map_err(|reason| invalid(src, reason))?;
    for (digest, name) in &manifest.mounts {
        let path = blob_path(digest)?;
        if hash_file(&path)?.0 != *digest {
            return Err(invalid(src, format!("cache mount {digest} is corrupt")));
        }
        let file = std::fs::File::open(&path).map_err(io_error(&path))?;
        import_mount(store, file, name).map_err(|e| match e {
            MountError::Io(err) => io_error(&path)(err),
            MountError::Store(err) => err.into(),
            MountError::Name(name) => invalid(src, format!("invalid cache mount name {name:?}")),
        })?;
    }
    let steps_bytes = read(&blob_path(&manifest.steps)?)?;
    if sha256_bytes(&steps_bytes).to_string() != manifest.steps {
        return Err(invalid(src, "the step records do not match their digest"));
    }
    let steps: Steps = serde_json::from_slice(&steps_bytes).map_err(|e| invalid(src, e))?;
    let source: Arc<dyn BlobSource> = Arc::new(DirectoryBlobs {
        dir: blobs_dir.clone(),
    });
    let mut imported = 0;
    for entry in steps.entries {
        for blob in &entry.blobs {
            if !store.has_blob(blob) && blobs_dir.join(blob.digest()).is_file() {
                store.add_lazy_blob(blob.clone(), source.clone())?;
            }
        }
        store.import_cache_entry(entry)?;
        imported += 1;
    }
    Ok(imported)
}

/// Imports a cache pushed by [`export_registry`]: the manifest and the
/// step records are read now, the layers only when a build needs them.
/// Returns how many records were imported.
pub fn import_registry(
    store: &Store,
    client: Arc<Client>,
    reference: &Reference,
) -> Result<usize, CacheExportError> {
    let (manifest_bytes, _) = client.fetch_raw_manifest(reference)?;
    let manifest =
        parse_envelope(&manifest_bytes).map_err(|reason| invalid_ref(reference, reason))?;
    let small = |digest: &str, size: u64| -> Result<Vec<u8>, CacheExportError> {
        let digest =
            hoist_store::digest::parse_digest(digest).map_err(|e| invalid_ref(reference, e))?;
        if !store.has_blob(&digest) {
            let descriptor = Descriptor::new(MediaType::Other(String::new()), size, digest.clone());
            client.fetch_blob(store, reference, &descriptor)?;
        }
        Ok(store.read_blob_bytes(&digest)?)
    };
    let steps: Steps = serde_json::from_slice(&small(&manifest.steps, manifest.steps_size)?)
        .map_err(|e| invalid_ref(reference, e))?;
    for (digest, name) in &manifest.mounts {
        let parsed =
            hoist_store::digest::parse_digest(digest).map_err(|e| invalid_ref(reference, e))?;
        if !store.has_blob(&parsed) {
            let size = manifest.mount_sizes.get(digest).copied().unwrap_or(0);
            let descriptor = Descriptor::new(MediaType::Other(String::new()), size, parsed.clone());
            client.fetch_blob(store, reference, &descriptor)?;
        }
        let reader = store.open_blob(&parsed)?;
        import_mount(store, reader, name).map_err(|e| match e {
            MountError::Io(err) => invalid_ref(reference, err),
            MountError::Store(err) => err.into(),
            MountError::Name(name) => {
                invalid_ref(reference, format!("invalid cache mount name {name:?}"))
            }
        })?;
    }
    let mut blobs = RegistryBlobs::new(client, reference.clone());
    for (diff_id, compressed) in manifest.layers {
        blobs.add_layer(diff_id, compressed);
    }
    let digests = blobs.digests();
    let source: Arc<dyn BlobSource> = Arc::new(blobs);
    for digest in &digests {
        if !store.has_blob(digest) {
            store.add_lazy_blob(digest.clone(), source.clone())?;
        }
    }
    // The repository holds these blobs: a push elsewhere in the same
    // registry can mount them.
    store.add_blob_sources(&digests, &reference.name())?;
    let mut imported = 0;
    for entry in steps.entries {
        store.import_cache_entry(entry)?;
        imported += 1;
    }
    Ok(imported)
}

/// What an envelope manifest holds.
struct Envelope {
    /// The step records' digest and size.
    steps: String,
    steps_size: u64,
    /// Layers: the uncompressed digest, and the blob as stored.
    layers: Vec<(Digest, Descriptor)>,
    /// Cache mount tars: digest and mount name.
    mounts: Vec<(String, String)>,
    mount_sizes: std::collections::HashMap<String, u64>,
}

fn parse_envelope(bytes: &[u8]) -> Result<Envelope, String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("its manifest: {e}"))?;
    if manifest["config"]["mediaType"] != CACHE_CONFIG_MEDIA_TYPE {
        return Err("its config is not a BuildKit cache config".to_owned());
    }
    let mut envelope = Envelope {
        steps: String::new(),
        steps_size: 0,
        layers: Vec::new(),
        mounts: Vec::new(),
        mount_sizes: Default::default(),
    };
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let descriptor: Descriptor = serde_json::from_value(layer.clone())
            .map_err(|e| format!("a layer descriptor: {e}"))?;
        let digest = descriptor.digest().to_string();
        match layer["mediaType"].as_str().unwrap_or_default() {
            STEPS_MEDIA_TYPE => {
                envelope.steps = digest;
                envelope.steps_size = descriptor.size();
            }
            MOUNT_MEDIA_TYPE => {
                let name = layer["annotations"][MOUNT_ANNOTATION]
                    .as_str()
                    .ok_or("a cache mount without its name")?;
                envelope
                    .mount_sizes
                    .insert(digest.clone(), descriptor.size());
                envelope.mounts.push((digest, name.to_owned()));
            }
            _ => {
                let uncompressed = match layer["annotations"][UNCOMPRESSED_ANNOTATION].as_str() {
                    Some(d) => hoist_store::digest::parse_digest(d).map_err(|e| e.to_string())?,
                    None => descriptor.digest().clone(),
                };
                envelope.layers.push((uncompressed, descriptor));
            }
        }
    }
    if envelope.steps.is_empty() {
        return Err("it has no hoist step records".to_owned());
    }
    Ok(envelope)
}

/// The blobs of an exported cache directory, copied (verified) on demand.
struct DirectoryBlobs {
    dir: PathBuf,
}

impl BlobSource for DirectoryBlobs {
    fn fetch(&self, store: &Store, digest: &Digest) -> Result<(), StoreError> {
        let path = self.dir.join(digest.digest());
        let file = std::fs::File::open(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        store.put_blob(
            file,
            Some(&ExpectedBlob {
                digest: digest.clone(),
                size: None,
            }),
        )?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

fn mount_descriptor(digest: &str, size: u64, name: &str) -> serde_json::Value {
    serde_json::json!({
        "mediaType": MOUNT_MEDIA_TYPE,
        "digest": digest,
        "size": size,
        "annotations": {MOUNT_ANNOTATION: name},
    })
}

/// Every cache mount directory, by name, in name order.
fn mount_dirs(store: &Store) -> Result<Vec<(String, PathBuf)>, CacheExportError> {
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
    Ok(names
        .into_iter()
        .map(|name| {
            let dir = mounts.join(&name);
            (name, dir)
        })
        .collect())
}

/// Tars one cache mount directory into `out`.
fn write_mount_tar(dir: &Path, out: &mut impl Write) -> Result<(), CacheExportError> {
    let mut tar = tar::Builder::new(std::io::BufWriter::new(out));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir).map_err(io_error(dir))?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_error(dir))
}

enum MountError {
    Io(std::io::Error),
    Store(StoreError),
    Name(String),
}

/// Restores one cache mount directory from its (verified) tar, unless the
/// store has it already. The tar is unpacked inside the directory only
/// (the tar crate refuses `..` and absolute paths).
fn import_mount(store: &Store, tar: impl std::io::Read, name: &str) -> Result<(), MountError> {
    if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(MountError::Name(name.to_owned()));
    }
    let target = store.root().join("hoist/mounts").join(name);
    if target.exists() {
        return Ok(());
    }
    let staged = store.temp_path("cache-mount");
    std::fs::create_dir_all(&staged).map_err(MountError::Io)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(tar));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.unpack(&staged).map_err(MountError::Io)?;
    let parent = store.root().join("hoist/mounts");
    std::fs::create_dir_all(&parent).map_err(|source| {
        MountError::Store(StoreError::Io {
            path: parent.clone(),
            source,
        })
    })?;
    match std::fs::rename(&staged, &target) {
        Ok(()) => Ok(()),
        // Another build restored it first.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(())
        }
        Err(err) => Err(MountError::Io(err)),
    }
}

/// A file's sha256 digest and size, streamed.
fn hash_file(path: &Path) -> Result<(String, u64), CacheExportError> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut hasher = HashingWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut hasher).map_err(io_error(path))?;
    let (_, digest, size) = hasher.finish().map_err(io_error(path))?;
    Ok((digest.to_string(), size))
}

fn invalid_ref(reference: &Reference, reason: impl ToString) -> CacheExportError {
    CacheExportError::Invalid {
        path: reference.familiar_string(),
        reason: reason.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The records and layers a cache exports do not depend on the order
    /// the build's stages recorded their keys in.
    #[test]
    fn r8_exported_records_do_not_depend_on_the_order_stages_finish() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let mut keys = Vec::new();
        for (i, content) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
            let (blob, _) = store.put_blob_bytes(content).unwrap();
            let key = format!("{i}").repeat(64);
            store
                .cache_put(&CacheEntry {
                    key: key.clone(),
                    payload: serde_json::Value::Null,
                    blobs: vec![blob],
                    chain_ids: Vec::new(),
                    last_used: std::time::UNIX_EPOCH,
                })
                .unwrap();
            keys.push(key);
        }
        let forward = select_entries(&store, &keys, &[], ExportMode::Max).unwrap();
        keys.reverse();
        let backward = select_entries(&store, &keys, &[], ExportMode::Max).unwrap();
        let keys_of = |(entries, _): &(Vec<CacheEntry>, Vec<Digest>)| {
            entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>()
        };
        assert_eq!(keys_of(&forward), keys_of(&backward));
        assert_eq!(forward.1, backward.1, "the layers in the same order");
        assert_eq!(forward.1.len(), 3);
    }
}
