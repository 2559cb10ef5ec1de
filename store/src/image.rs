//! Images: an immutable view over a manifest and its config (like
//! go-containerregistry's `v1.Image`), and the operations that create, tag,
//! find and list them.
//! (<https://github.com/opencontainers/image-spec/blob/main/manifest.md>)

use std::collections::HashMap;

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType,
    PlatformBuilder,
};

use crate::digest::{ChainId, DiffId, Digest, parse_digest};
use crate::layout::canonical_json;
use crate::reference::Reference;
use crate::store::Store;
use crate::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Result, StoreError};

/// A stored image: its manifest, its config and their digests. Cheap to
/// clone; never changes (a new build is a new image).
#[derive(Clone, Debug)]
pub struct Image {
    digest: Digest,
    manifest_size: u64,
    manifest: ImageManifest,
    config: ImageConfiguration,
    config_json: serde_json::Value,
}

/// One layer: the blob as stored and the digest of its uncompressed tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: DiffId,
}

/// An image with the tags that point at it, in index order.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    pub image: Image,
    /// Fully normalised tags (`docker.io/library/busybox:latest`); empty for
    /// an untagged image.
    pub names: Vec<Reference>,
}

impl Image {
    /// The manifest digest (what `RepoDigests` and `name@sha256:` use).
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The image ID: the config digest, as Docker shows it.
    pub fn id(&self) -> &Digest {
        self.manifest.config().digest()
    }

    /// A descriptor of the manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::ImageManifest,
            self.manifest_size,
            self.digest.clone(),
        )
    }

    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }

    pub fn config(&self) -> &ImageConfiguration {
        &self.config
    }

    /// The config as stored, including Docker extensions that oci-spec's
    /// type drops (`Healthcheck`, `Shell`, `OnBuild`, `ArgsEscaped`).
    pub fn config_json(&self) -> &serde_json::Value {
        &self.config_json
    }

    /// The layers, bottom first, each with its DiffID.
    pub fn layers(&self) -> Vec<Layer> {
        self.manifest
            .layers()
            .iter()
            .zip(self.diff_ids())
            .map(|(descriptor, diff_id)| Layer {
                descriptor: descriptor.clone(),
                diff_id,
            })
            .collect()
    }

    /// `rootfs.diff_ids` (validated when the image was loaded).
    pub fn diff_ids(&self) -> Vec<DiffId> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect()
    }

    /// The chain ID of every layer prefix: the snapshot keys of this image.
    pub fn chain_ids(&self) -> Vec<ChainId> {
        ChainId::chain(&self.diff_ids())
    }

    /// Bytes of content: config plus (compressed) layers.
    pub fn size(&self) -> u64 {
        self.manifest.config().size()
            + self
                .manifest
                .layers()
                .iter()
                .map(Descriptor::size)
                .sum::<u64>()
    }

    /// Every blob the image consists of: manifest, config, layers.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut blobs = vec![self.digest.clone(), self.id().clone()];
        blobs.extend(self.manifest.layers().iter().map(|l| l.digest().clone()));
        blobs
    }
}

impl Store {
    /// Loads the image whose manifest is `digest`, verifying the manifest
    /// and config blobs and that every layer blob is present.
    pub fn image(&self, digest: &Digest) -> Result<Image> {
        let bytes = self.read_blob_bytes(digest)?;
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                what: format!("manifest {digest}"),
                source,
            })?;
        if let Some(media_type) = manifest.media_type()
            && *media_type != MediaType::ImageManifest
            && *media_type != docker_manifest()
        {
            return Err(StoreError::invalid(
                format!("manifest {digest}"),
                format!("unsupported media type {media_type}"),
            ));
        }
        let config_desc = manifest.config();
        let config_bytes = self.read_blob_bytes(config_desc.digest())?;
        if config_bytes.len() as u64 != config_desc.size() {
            return Err(StoreError::SizeMismatch {
                digest: config_desc.digest().clone(),
                expected: config_desc.size(),
                actual: config_bytes.len() as u64,
            });
        }
        let image = image_from_parts(digest.clone(), bytes.len() as u64, manifest, &config_bytes)?;
        for layer in image.manifest.layers() {
            let size = self.blob_size(layer.digest())?;
            if size != layer.size() {
                return Err(StoreError::SizeMismatch {
                    digest: layer.digest().clone(),
                    expected: layer.size(),
                    actual: size,
                });
            }
        }
        Ok(image)
    }

    /// Writes `config` (keys sorted, so equal configs get equal IDs) and a
    /// manifest over `layers`, whose blobs must already be stored. The image
    /// is untagged: the session's lease protects it until [`Store::tag`] or
    /// [`Store::add_untagged`].
    pub fn put_image(&self, config: &ImageConfiguration, layers: &[Descriptor]) -> Result<Image> {
        let bytes = canonical_json(config, "image config")?;
        self.put_image_config_bytes(&bytes, layers)
    }

    /// Like [`Store::put_image`] for a config given as JSON, so that Docker
    /// extensions (`Healthcheck`, `Shell`, `OnBuild`) survive. The JSON must
    /// still parse as an OCI image configuration.
    pub fn put_image_json(
        &self,
        config: &serde_json::Value,
        layers: &[Descriptor],
    ) -> Result<Image> {
        let bytes = canonical_json(config, "image config")?;
        self.put_image_config_bytes(&bytes, layers)
    }

    /// Like [`Store::put_image`] for hoist's own config type, which keeps
    /// Docker's fields and serialises canonically (the builder's path).
    pub fn put_image_config(
        &self,
        config: &crate::image_config::ImageConfig,
        layers: &[Descriptor],
    ) -> Result<Image> {
        self.put_image_config_bytes(&config.to_canonical_json(), layers)
    }

    /// Like [`Store::put_image`] for a config blob that is already stored
    /// byte for byte (archives keep their digests).
    pub fn put_image_with_config(
        &self,
        config: &Descriptor,
        layers: &[Descriptor],
    ) -> Result<Image> {
        let config_bytes = self.read_blob_bytes(config.digest())?;
        let config_desc = Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            config.digest().clone(),
        );
        self.put_manifest(config_desc, &config_bytes, layers)
    }

    fn put_image_config_bytes(&self, config_bytes: &[u8], layers: &[Descriptor]) -> Result<Image> {
        // Validate before storing anything.
        serde_json::from_slice::<ImageConfiguration>(config_bytes).map_err(|source| {
            StoreError::Json {
                what: "image config".to_owned(),
                source,
            }
        })?;
        let (digest, size) = self.put_blob_bytes(config_bytes)?;
        self.put_manifest(
            Descriptor::new(MediaType::ImageConfig, size, digest),
            config_bytes,
            layers,
        )
    }

    fn put_manifest(
        &self,
        config: Descriptor,
        config_bytes: &[u8],
        layers: &[Descriptor],
    ) -> Result<Image> {
        for layer in layers {
            let size = self.blob_size(layer.digest())?;
            if size != layer.size() {
                return Err(StoreError::SizeMismatch {
                    digest: layer.digest().clone(),
                    expected: layer.size(),
                    actual: size,
                });
            }
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(layers.to_vec())
            .build()
            .map_err(|err| StoreError::invalid("manifest", err))?;
        let bytes = canonical_json(&manifest, "manifest")?;
        // Validate the pair (diff_ids vs layers) before publishing the manifest.
        let image = image_from_parts(
            crate::digest::sha256_bytes(&bytes),
            bytes.len() as u64,
            manifest,
            config_bytes,
        )?;
        self.put_blob_bytes(&bytes)?;
        Ok(image)
    }

    /// Points `reference` (defaulting to `:latest`) at `image`, replacing
    /// what it pointed at before; a replaced image that is left without tags
    /// stays listed as untagged (`<none>`), as in Docker. Returns the
    /// normalised reference.
    pub fn tag(&self, reference: &str, image: &Image) -> Result<Reference> {
        let reference = Reference::parse_tagged(reference)?;
        if reference.digest().is_some() {
            return Err(StoreError::TagWithDigest(reference.familiar_string()));
        }
        let descriptor = self.index_descriptor(image, Some(&reference));
        let full = reference.to_string();
        self.update_index(|index| {
            // Under the exclusive lock no GC runs: make sure we never publish
            // a tag over content that was collected since `image` was loaded.
            if let Some(missing) = image.blobs().into_iter().find(|b| !self.has_blob(b)) {
                return Err(StoreError::BlobNotFound(missing));
            }
            // The tag names this image already, and no untagged entry of
            // it is left to drop: index.json stays as it is (a no-op
            // rebuild writes nothing).
            let unchanged = index.manifests().contains(&descriptor)
                && !index
                    .manifests()
                    .iter()
                    .any(|d| d.digest() == image.digest() && entry_name(d).is_none());
            if unchanged {
                return Ok((false, ()));
            }
            let mut manifests = manifests_mut(index);
            let replaced = manifests
                .iter()
                .position(|d| entry_name(d).is_some_and(|n| n.to_string() == full));
            let old = replaced.map(|i| manifests.remove(i));
            // The tagged entry supersedes an untagged one of the same image.
            manifests.retain(|d| !(d.digest() == image.digest() && entry_name(d).is_none()));
            manifests.push(descriptor);
            if let Some(old) = old
                && old.digest() != image.digest()
                && !manifests.iter().any(|d| d.digest() == old.digest())
            {
                manifests.push(untagged(&old));
            }
            Ok((true, ()))
        })?;
        Ok(reference)
    }

    /// Lists `image` as untagged (`<none>:<none>`) so that it outlives this
    /// session without a tag; a no-op when it is listed already.
    pub fn add_untagged(&self, image: &Image) -> Result<()> {
        let descriptor = self.index_descriptor(image, None);
        self.update_index(|index| {
            if index
                .manifests()
                .iter()
                .any(|d| d.digest() == image.digest())
            {
                return Ok((false, ()));
            }
            manifests_mut(index).push(descriptor);
            Ok((true, ()))
        })
    }

    /// Removes the tag `reference`. Returns the manifest digest it pointed
    /// at and whether other tags still point there. The image itself stays
    /// until GC unless other tags remain.
    pub fn untag(&self, reference: &str) -> Result<(Digest, bool)> {
        let reference = Reference::parse_tagged(reference)?;
        let full = reference.to_string();
        self.update_index(|index| {
            let mut manifests = manifests_mut(index);
            let Some(i) = manifests
                .iter()
                .position(|d| entry_name(d).is_some_and(|n| n.to_string() == full))
            else {
                return Err(StoreError::ImageNotFound(reference.familiar_string()));
            };
            let removed = manifests.remove(i);
            let still_tagged = manifests.iter().any(|d| d.digest() == removed.digest());
            Ok((true, (removed.digest().clone(), still_tagged)))
        })
    }

    /// Removes every index entry (tags and untagged) of the image with
    /// manifest `digest`; returns the tags removed. Its blobs go at the next
    /// GC.
    pub fn remove_image(&self, digest: &Digest) -> Result<Vec<Reference>> {
        self.update_index(|index| {
            let mut removed = Vec::new();
            let before = index.manifests().len();
            manifests_mut(index).retain(|d| {
                if d.digest() != digest {
                    return true;
                }
                removed.extend(entry_name(d));
                false
            });
            Ok((index.manifests().len() != before, removed))
        })
    }

    /// Finds an image the way `docker inspect` does: by reference
    /// (`busybox`, `busybox:1.36`, `name@sha256:...`), by image ID (config
    /// digest, full or as a hex prefix such as `3f57d9401f8d`), or by
    /// manifest digest. The image is leased to this session.
    pub fn resolve(&self, reference_or_id: &str) -> Result<Image> {
        let index = self.read_index()?;
        let digest = self.find(&index, reference_or_id)?;
        let _guard = self.lock_shared()?;
        if !self.has_blob(&digest) {
            // Collected between our index read and the lock.
            return Err(StoreError::ImageNotFound(reference_or_id.to_owned()));
        }
        let image = self.image(&digest)?;
        for blob in image.blobs() {
            self.session().lease_blob(&blob)?;
        }
        for chain_id in image.chain_ids() {
            self.session().lease_chain_id(&chain_id)?;
        }
        Ok(image)
    }

    /// The tags pointing at the manifest `digest`, in index order.
    pub fn names_of(&self, digest: &Digest) -> Result<Vec<Reference>> {
        let index = self.read_index()?;
        Ok(index
            .manifests()
            .iter()
            .filter(|d| d.digest() == digest)
            .filter_map(entry_name)
            .collect())
    }

    /// Every image in index.json with its tags, in index order. Entries that
    /// are not image manifests (nested indexes written by other tools) or
    /// cannot be read are skipped; `hoist fsck` reports them.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let index = self.read_index()?;
        let mut records: Vec<ImageRecord> = Vec::new();
        let mut position: HashMap<Digest, usize> = HashMap::new();
        for entry in index.manifests() {
            if let Some(&i) = position.get(entry.digest()) {
                records[i].names.extend(entry_name(entry));
                continue;
            }
            let Ok(image) = self.image(entry.digest()) else {
                continue;
            };
            position.insert(entry.digest().clone(), records.len());
            records.push(ImageRecord {
                image,
                names: entry_name(entry).into_iter().collect(),
            });
        }
        Ok(records)
    }

    fn index_descriptor(&self, image: &Image, reference: Option<&Reference>) -> Descriptor {
        let mut descriptor = image.descriptor();
        if let Ok(platform) = PlatformBuilder::default()
            .architecture(image.config.architecture().clone())
            .os(image.config.os().clone())
            .build()
        {
            descriptor.set_platform(Some(platform));
        }
        if let Some(reference) = reference {
            descriptor.set_annotations(Some(HashMap::from([
                (ANNOTATION_REF_NAME.to_owned(), reference.familiar_string()),
                (ANNOTATION_IMAGE_NAME.to_owned(), reference.to_string()),
            ])));
        }
        descriptor
    }
}

fn docker_manifest() -> MediaType {
    MediaType::Other("application/vnd.docker.distribution.manifest.v2+json".to_owned())
}

fn image_from_parts(
    digest: Digest,
    manifest_size: u64,
    manifest: ImageManifest,
    config_bytes: &[u8],
) -> Result<Image> {
    let what = || format!("config {}", manifest.config().digest());
    let config: ImageConfiguration =
        serde_json::from_slice(config_bytes).map_err(|source| StoreError::Json {
            what: what(),
            source,
        })?;
    let config_json = serde_json::from_slice(config_bytes).map_err(|source| StoreError::Json {
        what: what(),
        source,
    })?;
    let diff_ids = config.rootfs().diff_ids();
    for diff_id in diff_ids {
        parse_digest(diff_id).map_err(|err| StoreError::invalid(what(), err))?;
    }
    if diff_ids.len() != manifest.layers().len() {
        return Err(StoreError::invalid(
            format!("image {digest}"),
            format!(
                "the manifest has {} layers but the config lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    Ok(Image {
        digest,
        manifest_size,
        manifest,
        config,
        config_json,
    })
}

/// The tag an index entry carries: the full name annotation, else the
/// normalised `ref.name` written by another tool.
pub(crate) fn entry_name(descriptor: &Descriptor) -> Option<Reference> {
    let annotations = descriptor.annotations().as_ref()?;
    let name = annotations
        .get(ANNOTATION_IMAGE_NAME)
        .or_else(|| annotations.get(ANNOTATION_REF_NAME))?;
    Reference::parse_tagged(name).ok()
}

fn untagged(descriptor: &Descriptor) -> Descriptor {
    let mut d = descriptor.clone();
    d.set_annotations(None);
    d
}

impl Store {
    /// Resolves `query` against index.json to a manifest digest.
    fn find(&self, index: &ImageIndex, query: &str) -> Result<Digest> {
        let entries = index.manifests();
        // Docker names a missing image in its normalised familiar form.
        let shown = Reference::parse_tagged(query)
            .map_or_else(|_| query.to_owned(), |r| r.familiar_string());
        let not_found = || StoreError::ImageNotFound(shown.clone());
        // A full digest: a manifest digest or an image ID (config digest).
        if let Ok(digest) = parse_digest(query) {
            if entries.iter().any(|d| d.digest() == &digest) {
                return Ok(digest);
            }
            return self
                .find_by_id_prefix(index, digest.digest())?
                .ok_or_else(not_found);
        }
        let is_hex =
            |s: &str| !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if let Ok(reference) = Reference::parse_normalized(query) {
            let reference = reference.with_default_tag();
            let found = match reference.digest() {
                // The manifest's own digest, else the digest the registry
                // names the pulled image by (its index, or the Docker
                // manifest the store keeps in OCI form).
                Some(digest) => entries.iter().find(|d| d.digest() == digest).or_else(|| {
                    let repo_digest = format!("{}@{digest}", reference.name());
                    entries
                        .iter()
                        .find(|d| self.repo_digests(d.digest()).contains(&repo_digest))
                }),
                None => {
                    let full = reference.to_string();
                    entries
                        .iter()
                        .find(|d| entry_name(d).is_some_and(|n| n.to_string() == full))
                }
            };
            if let Some(d) = found {
                return Ok(d.digest().clone());
            }
            // Docker tries a name first, then an ID prefix.
            if !is_hex(query.strip_prefix("sha256:").unwrap_or(query)) {
                return Err(StoreError::ImageNotFound(reference.familiar_string()));
            }
        }
        let hex = query.strip_prefix("sha256:").unwrap_or(query);
        if !is_hex(hex) || hex.len() > 64 {
            return Err(not_found());
        }
        self.find_by_id_prefix(index, hex)?.ok_or_else(not_found)
    }

    /// Finds the manifest whose image ID (config digest) starts with `hex`.
    /// IDs are not in index.json, so this reads each manifest (small).
    fn find_by_id_prefix(&self, index: &ImageIndex, hex: &str) -> Result<Option<Digest>> {
        let mut found: Option<(Digest, Digest)> = None;
        for entry in index.manifests() {
            let Ok(bytes) = self.read_blob_bytes(entry.digest()) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes) else {
                continue;
            };
            let id = manifest.config().digest();
            if !id.digest().starts_with(hex) {
                continue;
            }
            match &found {
                Some((other_id, _)) if other_id != id => {
                    return Err(StoreError::AmbiguousId(hex.to_owned()));
                }
                Some(_) => {}
                None => found = Some((id.clone(), entry.digest().clone())),
            }
        }
        Ok(found.map(|(_, manifest)| manifest))
    }
}

/// oci-spec has no mutable accessor for the manifest list.
fn manifests_mut(index: &mut ImageIndex) -> ManifestsMut<'_> {
    let manifests = index.manifests().clone();
    ManifestsMut { index, manifests }
}

/// Edits the manifest list and writes it back on drop.
struct ManifestsMut<'a> {
    index: &'a mut ImageIndex,
    manifests: Vec<Descriptor>,
}

impl std::ops::Deref for ManifestsMut<'_> {
    type Target = Vec<Descriptor>;
    fn deref(&self) -> &Self::Target {
        &self.manifests
    }
}

impl std::ops::DerefMut for ManifestsMut<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.manifests
    }
}

impl Drop for ManifestsMut<'_> {
    fn drop(&mut self) {
        self.index
            .set_manifests(std::mem::take(&mut self.manifests));
    }
}
