//! Image archives: `hoist save` and `hoist load`.
//!
//! Two formats, both streamed (no layer is ever held in memory, and neither
//! reader needs to seek, so `hoist load < file` works from a pipe):
//! - **docker** (`docker save`/`docker load`): what Docker 25+ writes, an
//!   OCI image layout plus the legacy `manifest.json` and `repositories`.
//!   Layers are uncompressed tars named by their diff_id, so every
//!   `docker load` and `skopeo docker-archive:` reads them.
//! - **oci**: an OCI image layout tarball
//!   (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md>)
//!   with the stored blobs as they are and index.json annotated the way
//!   BuildKit and Docker annotate it (`org.opencontainers.image.ref.name` =
//!   the tag, `io.containerd.image.name` = the full name).
//!
//! Loading spools every file into the store's temp space as it arrives,
//! hashing as it goes; blobs named by digest must match it, and layers are
//! checked against the config's diff_ids before anything is tagged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};

use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use serde::{Deserialize, Serialize};

use crate::compress::Compression;
use crate::digest::{DiffId, Digest, HashingWriter, parse_digest, sha256_bytes};
use crate::extract::{Format, decompress};
use crate::image::{Image, Layer};
use crate::reference::Reference;
use crate::store::Store;
use crate::tar_guard::TarGuard;
use crate::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, StoreError};

/// The archive formats `hoist save --format` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    Docker,
    Oci,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing archive: {0}")]
    Write(#[source] io::Error),
    #[error("reading archive: {0}")]
    Read(#[source] io::Error),
    #[error("invalid archive: {0}")]
    Invalid(String),
    #[error(
        "layer {path} does not match the image config: diff_id is {actual}, config says {expected}"
    )]
    DiffIdMismatch {
        path: String,
        expected: String,
        actual: String,
    },
}

fn invalid(reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid(reason.into())
}

/// One image to save, with the names it is saved under (none when saved by
/// ID: the archive then holds it untagged).
#[derive(Clone, Debug)]
pub struct SaveItem {
    pub image: Image,
    pub references: Vec<Reference>,
}

/// One image read by [`load`].
#[derive(Clone, Debug)]
pub struct LoadedImage {
    pub image: Image,
    /// The tags applied, fully normalised; empty for an untagged image.
    pub tags: Vec<Reference>,
}

/// Names the archive's top-level metadata files, kept in memory (small);
/// everything else is spooled into blobs.
const METADATA_FILES: [&str; 4] = ["manifest.json", "index.json", "repositories", "oci-layout"];
const MAX_METADATA: u64 = 32 << 20;
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

// ---------------------------------------------------------------- save

/// How [`save_with`] writes layers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SaveOptions {
    /// OCI archives: the layers' compression (each layer compressed once,
    /// in parallel, and remembered in the store; see
    /// [`Store::compressed_layer`]). `None` writes the layers as stored.
    /// Docker archives always carry uncompressed layers.
    pub compression: Option<Compression>,
}

/// Writes `items` as an archive of `format` to `out`, layers as stored.
pub fn save(
    store: &Store,
    items: &[SaveItem],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<(), ArchiveError> {
    save_with(store, items, format, &SaveOptions::default(), out)
}

/// Writes `items` as an archive of `format` to `out`.
pub fn save_with(
    store: &Store,
    items: &[SaveItem],
    format: ArchiveFormat,
    options: &SaveOptions,
    out: impl Write,
) -> Result<(), ArchiveError> {
    let compressed = match (format, options.compression) {
        (ArchiveFormat::Oci, Some(compression)) => compress_layers(store, items, compression)?,
        _ => HashMap::new(),
    };
    let mut writer = TarOut {
        tar: tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out)),
        written: HashSet::new(),
    };
    writer.file("oci-layout", OCI_LAYOUT)?;
    writer.dir("blobs/")?;
    writer.dir("blobs/sha256/")?;
    let mut index_entries = Vec::new();
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for item in items {
        let image = &item.image;
        let config_desc = image.manifest().config().clone();
        writer.stored_blob(store, &config_desc)?;
        let manifest_desc = match format {
            ArchiveFormat::Oci if !compressed.is_empty() => {
                let mut manifest = image.manifest().clone();
                let mut layers = Vec::new();
                for layer in image.manifest().layers() {
                    let variant = compressed.get(layer.digest()).unwrap_or(layer);
                    writer.stored_blob(store, variant)?;
                    let mut variant = variant.clone();
                    variant.set_annotations(layer.annotations().clone());
                    layers.push(variant);
                }
                if layers == *image.manifest().layers() {
                    writer.stored_blob(store, &image.descriptor())?;
                    image.descriptor()
                } else {
                    manifest.set_layers(layers);
                    let bytes = crate::layout::canonical_json(&manifest, "manifest")?;
                    let digest = sha256_bytes(&bytes);
                    writer.bytes_blob(&digest, &bytes)?;
                    let mut descriptor = image.descriptor();
                    descriptor.set_digest(digest);
                    descriptor.set_size(bytes.len() as u64);
                    descriptor
                }
            }
            ArchiveFormat::Oci => {
                for layer in image.manifest().layers() {
                    writer.stored_blob(store, layer)?;
                }
                writer.stored_blob(store, &image.descriptor())?;
                image.descriptor()
            }
            ArchiveFormat::Docker => {
                let mut layers = Vec::new();
                for layer in image.layers() {
                    layers.push(writer.uncompressed_layer(
                        store,
                        &layer.descriptor,
                        &layer.diff_id,
                    )?);
                }
                let manifest = docker_oci_manifest(&config_desc, &layers)?;
                let (digest, size) = (sha256_bytes(&manifest), manifest.len() as u64);
                writer.bytes_blob(&digest, &manifest)?;
                let entry = DockerManifestEntry {
                    config: blob_path(config_desc.digest()),
                    repo_tags: item
                        .references
                        .iter()
                        .map(|r| r.familiar_string())
                        .collect(),
                    layers: layers.iter().map(|l| blob_path(l.digest())).collect(),
                };
                if let Some(top) = layers.last() {
                    for reference in &item.references {
                        repositories
                            .entry(reference.familiar_name())
                            .or_default()
                            .insert(
                                reference.tag().unwrap_or("latest").to_owned(),
                                top.digest().digest().to_owned(),
                            );
                    }
                }
                docker_manifest.push(entry);
                Descriptor::new(MediaType::ImageManifest, size, digest)
            }
        };
        if item.references.is_empty() {
            index_entries.push(index_entry(&manifest_desc, None));
        }
        for reference in &item.references {
            index_entries.push(index_entry(&manifest_desc, Some(reference)));
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index_entries,
    });
    writer.file("index.json", &to_json(&index)?)?;
    if format == ArchiveFormat::Docker {
        writer.file("manifest.json", &to_json(&docker_manifest)?)?;
        writer.file("repositories", &to_json(&repositories)?)?;
    }
    let buffered = writer.tar.into_inner().map_err(ArchiveError::Write)?;
    let mut out = buffered
        .into_inner()
        .map_err(|err| ArchiveError::Write(err.into_error()))?;
    out.flush().map_err(ArchiveError::Write)
}

/// Every distinct layer of `items` with `compression`, keyed by the stored
/// layer's digest: layers in parallel, each on every core.
fn compress_layers(
    store: &Store,
    items: &[SaveItem],
    compression: Compression,
) -> Result<HashMap<Digest, Descriptor>, ArchiveError> {
    use rayon::prelude::*;
    let mut layers: Vec<Layer> = items.iter().flat_map(|item| item.image.layers()).collect();
    let mut seen = HashSet::new();
    layers.retain(|layer| seen.insert(layer.descriptor.digest().clone()));
    let variants = layers
        .par_iter()
        .map(|layer| {
            let variant = store.compressed_layer(&layer.descriptor, &layer.diff_id, compression)?;
            Ok((layer.descriptor.digest().clone(), variant))
        })
        .collect::<Result<HashMap<_, _>, StoreError>>()?;
    Ok(variants)
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, ArchiveError> {
    serde_json::to_vec(value).map_err(|err| ArchiveError::Write(err.into()))
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.digest())
}

fn index_entry(descriptor: &Descriptor, reference: Option<&Reference>) -> serde_json::Value {
    let mut entry = serde_json::json!({
        "mediaType": descriptor.media_type().to_string(),
        "digest": descriptor.digest().to_string(),
        "size": descriptor.size(),
    });
    if let Some(reference) = reference {
        entry["annotations"] = serde_json::json!({
            ANNOTATION_IMAGE_NAME: reference.to_string(),
            ANNOTATION_REF_NAME: reference.tag().unwrap_or("latest"),
        });
    }
    entry
}

/// The OCI manifest Docker writes beside manifest.json: uncompressed layers.
fn docker_oci_manifest(
    config: &Descriptor,
    layers: &[Descriptor],
) -> Result<Vec<u8>, ArchiveError> {
    let desc = |d: &Descriptor| {
        serde_json::json!({
            "mediaType": d.media_type().to_string(),
            "digest": d.digest().to_string(),
            "size": d.size(),
        })
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest().to_string(),
            "size": config.size(),
        },
        "layers": layers.iter().map(desc).collect::<Vec<_>>(),
    });
    to_json(&manifest)
}

#[derive(Serialize, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

struct TarOut<W: Write> {
    tar: tar::Builder<W>,
    written: HashSet<String>,
}

impl<W: Write> TarOut<W> {
    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        // Fixed, so that saving the same images twice gives the same bytes.
        header.set_mtime(0);
        header
    }

    fn dir(&mut self, path: &str) -> Result<(), ArchiveError> {
        let mut header = Self::header(tar::EntryType::Directory, 0, 0o755);
        self.tar
            .append_data(&mut header, path, io::empty())
            .map_err(ArchiveError::Write)
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        let mut header = Self::header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
        self.tar
            .append_data(&mut header, path, bytes)
            .map_err(ArchiveError::Write)
    }

    fn bytes_blob(&mut self, digest: &Digest, bytes: &[u8]) -> Result<(), ArchiveError> {
        if self.written.insert(digest.to_string()) {
            self.file(&blob_path(digest), bytes)?;
        }
        Ok(())
    }

    /// Appends a regular file of `size` bytes read from `reader`, in large
    /// chunks (tar::Builder copies through an 8 KiB buffer).
    fn stream(&mut self, path: &str, size: u64, reader: impl Read) -> Result<(), ArchiveError> {
        let mut header = Self::header(tar::EntryType::Regular, size, 0o644);
        header.set_path(path).map_err(ArchiveError::Write)?;
        header.set_cksum();
        let out = self.tar.get_mut();
        out.write_all(header.as_bytes())
            .map_err(ArchiveError::Write)?;
        let copied = copy_large(&mut reader.take(size), out)
            .map_err(|err| blob_error(err, "writing archive"))?;
        if copied != size {
            return Err(invalid(format!(
                "{path} ended after {copied} of {size} bytes"
            )));
        }
        let pad = (512 - size % 512) % 512;
        out.write_all(&[0; 512][..pad as usize])
            .map_err(ArchiveError::Write)
    }

    /// Streams a stored blob, verified as it is read.
    fn stored_blob(&mut self, store: &Store, descriptor: &Descriptor) -> Result<(), ArchiveError> {
        if !self.written.insert(descriptor.digest().to_string()) {
            return Ok(());
        }
        let reader = store.open_descriptor(descriptor)?;
        self.stream(&blob_path(descriptor.digest()), descriptor.size(), reader)
    }

    /// Writes a layer uncompressed under its diff_id, decompressing a
    /// compressed blob on the fly (after a first pass that learns the size
    /// the tar header needs and checks the diff_id).
    fn uncompressed_layer(
        &mut self,
        store: &Store,
        descriptor: &Descriptor,
        diff_id: &DiffId,
    ) -> Result<Descriptor, ArchiveError> {
        let digest = diff_id.digest();
        if descriptor.digest() == &digest {
            self.stored_blob(store, descriptor)?;
            return Ok(Descriptor::new(
                MediaType::ImageLayer,
                descriptor.size(),
                digest,
            ));
        }
        let (size, actual) = {
            let (mut reader, _) = decompress(store.open_descriptor(descriptor)?)
                .map_err(|err| blob_error(err, "reading layer"))?;
            let mut hashing = HashingWriter::new(io::sink());
            io::copy(&mut reader, &mut hashing).map_err(|err| blob_error(err, "reading layer"))?;
            let (_, digest, size) = hashing
                .finish()
                .map_err(|err| blob_error(err, "reading layer"))?;
            (size, digest)
        };
        if actual != digest {
            return Err(ArchiveError::DiffIdMismatch {
                path: descriptor.digest().to_string(),
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        if self.written.insert(digest.to_string()) {
            let (reader, _) = decompress(store.open_descriptor(descriptor)?)
                .map_err(|err| blob_error(err, "reading layer"))?;
            self.stream(&blob_path(&digest), size, reader)?;
        }
        Ok(Descriptor::new(MediaType::ImageLayer, size, digest))
    }
}

/// Unwraps a store error carried through io (a corrupt blob) so the user
/// sees the digest.
fn blob_error(err: io::Error, context: &str) -> ArchiveError {
    if err.get_ref().is_some_and(|e| e.is::<StoreError>()) {
        if let Some(inner) = err.into_inner()
            && let Ok(store) = inner.downcast::<StoreError>()
        {
            return ArchiveError::Store(*store);
        }
        return invalid(format!("{context}: corrupt blob"));
    }
    ArchiveError::Write(io::Error::new(err.kind(), format!("{context}: {err}")))
}

/// `io::copy` with a 1 MiB buffer: a tenth of the syscalls and hash calls
/// of the default 8 KiB when neither side is a `BufWriter`/`BufReader`.
fn copy_large(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
}

// ---------------------------------------------------------------- load

/// What the archive held, by path.
#[derive(Default)]
struct Spooled {
    metadata: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, (Digest, u64)>,
    symlinks: HashMap<String, String>,
}

impl Spooled {
    fn blob(&self, path: &str) -> Result<(Digest, u64), ArchiveError> {
        let mut path = normalize(path);
        for _ in 0..16 {
            if let Some(found) = self.blobs.get(&path) {
                return Ok(found.clone());
            }
            match self.symlinks.get(&path) {
                Some(target) => path = target.clone(),
                None => break,
            }
        }
        Err(invalid(format!("{path} is named but not in the archive")))
    }
}

/// `./a//b` -> `a/b`.
fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Resolves a symlink target relative to the link's directory.
fn resolve_link(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let mut parts: Vec<&str> = link.split('/').collect();
        parts.pop();
        parts
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

/// Reads a docker or OCI archive from `reader` (which may be compressed)
/// into the store and tags what it names.
pub fn load(store: &Store, reader: impl Read) -> Result<Vec<LoadedImage>, ArchiveError> {
    let (reader, _) = decompress(reader).map_err(ArchiveError::Read)?;
    let spooled = spool(store, reader)?;
    if let Some(manifest) = spooled.metadata.get("manifest.json") {
        load_docker(store, &spooled, manifest)
    } else if let Some(index) = spooled.metadata.get("index.json") {
        load_oci(store, &spooled, index)
    } else {
        Err(invalid(
            "neither manifest.json nor index.json found (not a docker or OCI archive)",
        ))
    }
}

fn spool(store: &Store, reader: impl Read) -> Result<Spooled, ArchiveError> {
    let mut spooled = Spooled::default();
    let mut archive = tar::Archive::new(TarGuard::new(reader));
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalize(&raw);
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Link {
                        normalize(&target)
                    } else {
                        resolve_link(&path, &target)
                    };
                    spooled.symlinks.insert(path, resolved);
                }
                continue;
            }
            _ => continue,
        }
        if METADATA_FILES.contains(&path.as_str()) {
            if entry.size() > MAX_METADATA {
                return Err(invalid(format!(
                    "{path} is too large ({} bytes)",
                    entry.size()
                )));
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(ArchiveError::Read)?;
            spooled.metadata.insert(path, bytes);
            continue;
        }
        // Legacy per-layer metadata that nothing reads.
        if path.ends_with("/json") || path.ends_with("/VERSION") {
            continue;
        }
        let expected = match path.strip_prefix("blobs/sha256/") {
            Some(hex) => Some(crate::blob::ExpectedBlob {
                digest: parse_digest(&format!("sha256:{hex}"))
                    .map_err(|err| invalid(format!("{path}: {err}")))?,
                size: Some(entry.size()),
            }),
            None => None,
        };
        let mut writer = store.blob_writer()?;
        copy_large(&mut entry, &mut writer).map_err(ArchiveError::Read)?;
        let found = writer.commit(expected.as_ref()).map_err(|err| match err {
            StoreError::DigestMismatch { expected, actual } => invalid(format!(
                "{path} is corrupt: expected {expected}, read {actual}"
            )),
            other => ArchiveError::Store(other),
        })?;
        spooled.blobs.insert(path, found);
    }
    // Drain the end-of-archive padding so a pipe writer never sees EPIPE.
    io::copy(&mut archive.into_inner().into_inner(), &mut io::sink())
        .map_err(ArchiveError::Read)?;
    Ok(spooled)
}

fn load_docker(
    store: &Store,
    spooled: &Spooled,
    manifest: &[u8],
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(manifest).map_err(|err| invalid(format!("manifest.json: {err}")))?;
    let mut loaded = Vec::new();
    for entry in entries {
        let (config_digest, config_size) = spooled.blob(&entry.config)?;
        let config: serde_json::Value =
            serde_json::from_slice(&store.read_blob_bytes(&config_digest)?)
                .map_err(|err| invalid(format!("{}: {err}", entry.config)))?;
        let diff_ids: Vec<String> = config
            .pointer("/rootfs/diff_ids")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| invalid(format!("{}: no rootfs.diff_ids", entry.config)))?;
        if diff_ids.len() != entry.layers.len() {
            return Err(invalid(format!(
                "manifest.json lists {} layers for {} but its config has {} diff_ids",
                entry.layers.len(),
                entry.config,
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&diff_ids) {
            let (digest, size) = spooled.blob(path)?;
            layers.push(layer_descriptor(store, path, digest, size, diff_id)?);
        }
        let config_desc = Descriptor::new(MediaType::ImageConfig, config_size, config_digest);
        let image = store.put_image_with_config(&config_desc, &layers)?;
        let tags = tag_all(store, &image, &entry.repo_tags)?;
        loaded.push(LoadedImage { image, tags });
    }
    Ok(loaded)
}

/// Checks a docker-archive layer against its diff_id and describes it.
/// Docker writes layers uncompressed (blob digest = diff_id); other tools
/// sometimes compress them, which is accepted after decompressing to check.
fn layer_descriptor(
    store: &Store,
    path: &str,
    digest: Digest,
    size: u64,
    diff_id: &str,
) -> Result<Descriptor, ArchiveError> {
    if digest.to_string() == diff_id {
        return Ok(Descriptor::new(MediaType::ImageLayer, size, digest));
    }
    let (mut reader, format) =
        decompress(store.open_blob(&digest)?).map_err(|err| blob_error(err, "reading layer"))?;
    if format == Format::Uncompressed {
        return Err(ArchiveError::DiffIdMismatch {
            path: path.to_owned(),
            expected: diff_id.to_owned(),
            actual: digest.to_string(),
        });
    }
    let mut hashing = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut hashing).map_err(|err| blob_error(err, "reading layer"))?;
    let (_, actual, _) = hashing
        .finish()
        .map_err(|err| blob_error(err, "reading layer"))?;
    if actual.to_string() != diff_id {
        return Err(ArchiveError::DiffIdMismatch {
            path: path.to_owned(),
            expected: diff_id.to_owned(),
            actual: actual.to_string(),
        });
    }
    let media_type = match format {
        Format::Gzip => MediaType::ImageLayerGzip,
        Format::Zstd => MediaType::ImageLayerZstd,
        // Decompressed to check the diff_id above, but OCI has no media
        // type to keep the blob under.
        Format::Bzip2 | Format::Xz | Format::Uncompressed => {
            return Err(invalid(format!(
                "layer {path} is compressed with {}, which an OCI image cannot carry",
                format!("{format:?}").to_lowercase()
            )));
        }
    };
    Ok(Descriptor::new(media_type, size, digest))
}

fn tag_all(store: &Store, image: &Image, names: &[String]) -> Result<Vec<Reference>, ArchiveError> {
    let mut tags = Vec::new();
    for name in names {
        tags.push(store.tag(name, image)?);
    }
    if tags.is_empty() {
        store.add_untagged(image)?;
    }
    Ok(tags)
}

fn load_oci(
    store: &Store,
    spooled: &Spooled,
    index: &[u8],
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let index: ImageIndex =
        serde_json::from_slice(index).map_err(|err| invalid(format!("index.json: {err}")))?;
    let mut loaded = Vec::new();
    for descriptor in index.manifests() {
        let digest = pick_manifest(store, spooled, descriptor)?;
        let image = store.image(&digest)?;
        let names: Vec<String> = oci_name(descriptor).into_iter().collect();
        let tags = tag_all(store, &image, &names)?;
        loaded.push(LoadedImage { image, tags });
    }
    Ok(loaded)
}

/// The image manifest an index entry stands for: itself, or for a nested
/// index the linux/amd64 entry (or its only entry).
fn pick_manifest(
    store: &Store,
    spooled: &Spooled,
    descriptor: &Descriptor,
) -> Result<Digest, ArchiveError> {
    let in_archive = |digest: &Digest| spooled.blob(&blob_path(digest)).map(|(d, _)| d);
    let digest = in_archive(descriptor.digest())?;
    if *descriptor.media_type() != MediaType::ImageIndex
        && descriptor.media_type().to_string()
            != "application/vnd.docker.distribution.manifest.list.v2+json"
    {
        return Ok(digest);
    }
    let nested: ImageIndex = serde_json::from_slice(&store.read_blob_bytes(&digest)?)
        .map_err(|err| invalid(format!("index {digest}: {err}")))?;
    let manifests = nested.manifests();
    let chosen = manifests
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
            })
        })
        .or(if manifests.len() == 1 {
            manifests.first()
        } else {
            None
        })
        .ok_or_else(|| invalid(format!("index {digest} has no linux/amd64 image")))?;
    in_archive(chosen.digest())
}

/// The name an OCI index entry gives its image: `io.containerd.image.name`,
/// else a `ref.name` that is a full reference (a bare tag names no image).
fn oci_name(descriptor: &Descriptor) -> Option<String> {
    let annotations = descriptor.annotations().as_ref()?;
    if let Some(name) = annotations.get(ANNOTATION_IMAGE_NAME) {
        return Some(name.clone());
    }
    let ref_name = annotations.get(ANNOTATION_REF_NAME)?;
    (ref_name.contains(':') || ref_name.contains('/')).then(|| ref_name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_archive_paths() {
        let cases = [
            ("./manifest.json", "manifest.json"),
            ("blobs//sha256/ab", "blobs/sha256/ab"),
            ("a/./b/", "a/b"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input), expected, "case {input}");
        }
    }

    #[test]
    fn resolves_symlinks_like_docker_save_writes_them() {
        let cases = [
            ("abc/layer.tar", "../def/layer.tar", "def/layer.tar"),
            ("abc/layer.tar", "x.tar", "abc/x.tar"),
            ("a.tar", "/b.tar", "b.tar"),
        ];
        for (link, target, expected) in cases {
            assert_eq!(
                resolve_link(link, target),
                expected,
                "case {link} -> {target}"
            );
        }
    }

    #[test]
    fn oversized_tar_extension_headers_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("root")).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(10 << 20);
        header.set_cksum();
        let mut data = header.as_bytes().to_vec();
        data.resize(data.len() + (10 << 20), b'a');
        let err = load(&store, data.as_slice()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading archive: tar GNU long name header ('L') of 10485760 bytes at offset 0 exceeds the 1 MiB limit"
        );
    }
}
