//! Artifacts that are not runnable images, such as a build cache in
//! BuildKit's envelope: a manifest pushed under a tag with blobs of any
//! media type, read back by tag, and blobs fetched one at a time when
//! something needs them ([`RegistryBlobs`], a lazy [`BlobSource`]).

use std::collections::HashMap;
use std::sync::Arc;

use oci_spec::image::Descriptor;

use crate::compress::Compression;
use crate::digest::{DiffId, Digest, sha256_bytes};
use crate::lazy::BlobSource;
use crate::reference::Reference;
use crate::registry::auth::repository_scope;
use crate::registry::pull::for_each_parallel;
use crate::registry::push::{Pushed, Target, mount_sources, push_scopes, push_tag};
use crate::registry::{Client, RegistryError};
use crate::store::Store;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Uploads at the same time when pushing an artifact's blobs.
const CONCURRENT_UPLOADS: usize = 4;

impl Client {
    /// The manifest `reference` names (a tag, `:latest` when none, or a
    /// digest) exactly as the registry sent it, with its digest; no
    /// platform is chosen from an index.
    pub fn fetch_raw_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, Digest)> {
        let reference = reference.clone().with_default_tag();
        let host = self.host(reference.domain())?;
        let part = match (reference.digest(), reference.tag()) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        let what = reference.familiar_string();
        let (bytes, _, digest) = self.fetch_manifest(&host, &reference, &part, &what)?;
        if let Some(pinned) = reference.digest()
            && *pinned != digest
        {
            return Err(RegistryError::invalid(
                &what,
                format!("the registry sent a manifest with digest {digest}"),
            ));
        }
        Ok((bytes, digest))
    }

    /// Streams one blob of `reference`'s repository into the store,
    /// verified against `descriptor` (resuming a broken transfer).
    pub fn fetch_blob(
        &self,
        store: &Store,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let host = self.host(reference.domain())?;
        let scopes = [repository_scope(reference.path(), "pull")];
        self.download_blob(store, &host, &scopes, reference, descriptor, None)
    }

    /// Pushes `blobs` (stored, or lazily available: a blob this registry
    /// is known to hold in another repository is mounted, not fetched)
    /// and then `manifest` under `reference`'s tag.
    pub fn push_artifact(
        &self,
        store: &Store,
        reference: &Reference,
        blobs: &[Descriptor],
        manifest: &[u8],
    ) -> Result<Pushed> {
        let (reference, tag) = push_tag(reference)?;
        let host = self.host(reference.domain())?;
        let name = reference.name();
        let target = Target {
            host: &host,
            reference: &reference,
            scopes: push_scopes(store, &reference, blobs.iter().map(Descriptor::digest)),
        };
        for_each_parallel(blobs, CONCURRENT_UPLOADS, |blob| {
            let mounts = mount_sources(store, &reference, blob.digest());
            self.push_blob(store, &target, blob, &mounts, None)
        })?;
        let digest = sha256_bytes(manifest);
        let pushed = self.push_manifest(&target, manifest, &digest, &tag)?;
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest().clone()).collect();
        store.add_blob_sources(&digests, &name)?;
        Ok(pushed)
    }
}

/// The blobs of one repository, fetched on demand: compressed layers
/// (each stored under its uncompressed digest, as the store keeps layers,
/// with the compressed blob remembered as its variant so that pushing it
/// again costs no compression) and any other blob as it is.
pub struct RegistryBlobs {
    client: Arc<Client>,
    reference: Reference,
    /// Uncompressed digest to the compressed layer in the registry.
    layers: HashMap<Digest, Descriptor>,
    /// Blobs fetched byte for byte.
    raw: HashMap<Digest, Descriptor>,
}

impl RegistryBlobs {
    pub fn new(client: Arc<Client>, reference: Reference) -> Self {
        RegistryBlobs {
            client,
            reference,
            layers: HashMap::new(),
            raw: HashMap::new(),
        }
    }

    /// The layer whose uncompressed digest is `diff_id` is `compressed`
    /// in the registry (which also becomes fetchable as it is).
    pub fn add_layer(&mut self, diff_id: Digest, compressed: Descriptor) {
        self.raw
            .insert(compressed.digest().clone(), compressed.clone());
        self.layers.insert(diff_id, compressed);
    }

    /// Every digest this source can provide.
    pub fn digests(&self) -> Vec<Digest> {
        self.layers.keys().chain(self.raw.keys()).cloned().collect()
    }
}

impl BlobSource for RegistryBlobs {
    fn fetch(&self, store: &Store, digest: &Digest) -> crate::Result<()> {
        let as_store_error = |err: RegistryError| match err {
            RegistryError::Store(err) => err,
            other => crate::StoreError::invalid(format!("blob {digest}"), other),
        };
        if let Some(compressed) = self.layers.get(digest) {
            if !store.has_blob(compressed.digest()) {
                self.client
                    .fetch_blob(store, &self.reference, compressed)
                    .map_err(as_store_error)?;
            }
            let diff_id = DiffId::new(digest);
            store.compressed_layer(compressed, &diff_id, Compression::Uncompressed)?;
            let kind = match Compression::of_media_type(compressed.media_type()) {
                Some("gzip") => Some(Compression::default()),
                Some("zstd") => Some(Compression::ZSTD_DEFAULT),
                _ => None,
            };
            if let Some(kind) = kind {
                store.record_variant(&diff_id, kind, compressed)?;
            }
            return Ok(());
        }
        if let Some(descriptor) = self.raw.get(digest) {
            return self
                .client
                .fetch_blob(store, &self.reference, descriptor)
                .map_err(as_store_error);
        }
        Err(crate::StoreError::BlobNotFound(digest.clone()))
    }

    fn describe(&self) -> String {
        self.reference.familiar_string()
    }

    fn remote_variant(&self, digest: &Digest) -> Option<(String, Descriptor)> {
        self.layers
            .get(digest)
            .map(|d| (self.reference.name(), d.clone()))
    }
}
