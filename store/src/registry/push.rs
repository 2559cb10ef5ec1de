//! Push: layers in parallel, then the config, then the manifest. A blob
//! the registry has is skipped after a HEAD; one another repository of
//! the same registry is known to hold is mounted; anything else is one
//! POST and one streamed PUT.
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-blobs>)

use oci_spec::image::Descriptor;
use reqwest::StatusCode;
use reqwest::blocking::Response;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use crate::compress::Compression;
use crate::digest::{Digest, parse_digest, sha256_bytes};
use crate::image::Image;
use crate::reference::Reference;
use crate::registry::auth::repository_scope;
use crate::registry::client::{Host, origin, status_error};
use crate::registry::error::redact_url;
use crate::registry::manifest::OCI_MANIFEST;
use crate::registry::pull::for_each_parallel;
use crate::registry::{Client, RegistryError, TransferProgress};
use crate::store::Store;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Docker's default `--max-concurrent-uploads`.
pub const DEFAULT_CONCURRENT_UPLOADS: usize = 5;

/// How to push.
pub struct PushOptions<'a> {
    pub max_concurrent_uploads: usize,
    /// What uncompressed layers become on the way out (once per layer:
    /// [`Store::compressed_layer`] remembers the result); `None` pushes
    /// the blobs as stored. Compressed layers are pushed as they are.
    pub compression: Option<Compression>,
    pub progress: &'a dyn TransferProgress,
}

impl<'a> PushOptions<'a> {
    /// Gzip for uncompressed layers, [`DEFAULT_CONCURRENT_UPLOADS`].
    pub fn new(progress: &'a dyn TransferProgress) -> Self {
        PushOptions {
            max_concurrent_uploads: DEFAULT_CONCURRENT_UPLOADS,
            compression: Some(Compression::default()),
            progress,
        }
    }
}

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    /// The manifest digest, as the registry names the image.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
}

pub(crate) struct Target<'a> {
    pub(crate) host: &'a Host,
    pub(crate) reference: &'a Reference,
    pub(crate) scopes: Vec<String>,
}

impl Client {
    /// Pushes `image` to `reference` (a tag; `:latest` when none).
    pub fn push(
        &self,
        store: &Store,
        image: &Image,
        reference: &Reference,
        options: &PushOptions<'_>,
    ) -> Result<Pushed> {
        let reference = reference.clone().with_default_tag();
        let Some(tag) = reference.tag().map(str::to_owned) else {
            return Err(RegistryError::invalid(
                reference.familiar_string(),
                "push needs a tag, not a digest",
            ));
        };
        // Compress first (layers in parallel, each on every core), so the
        // manifest and the mount sources are known before any upload.
        let (layers, manifest_bytes) = self.outgoing_layers(store, image, options.compression)?;
        let manifest_digest = sha256_bytes(&manifest_bytes);
        let host = self.host(reference.domain())?;
        let name = reference.name();
        // Repositories of the same registry the blobs are known in: one
        // token covers pushing here and mounting from all of them.
        let prefix = format!("{}/", reference.domain());
        let mounts_of = |digest: &Digest| -> Vec<String> {
            store
                .blob_sources(digest)
                .into_iter()
                .filter(|repo| *repo != name)
                .filter_map(|repo| repo.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        };
        let config = image.manifest().config();
        let mut blobs: Vec<&Descriptor> = layers.iter().collect();
        blobs.push(config);
        let mut scopes = vec![repository_scope(reference.path(), "pull,push")];
        for blob in &blobs {
            for source in mounts_of(blob.digest()) {
                let scope = repository_scope(&source, "pull");
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        }
        let target = Target {
            host: &host,
            reference: &reference,
            scopes,
        };
        options.progress.resolved(&layers);
        for_each_parallel(&layers, options.max_concurrent_uploads.max(1), |layer| {
            self.push_blob(
                store,
                &target,
                layer,
                &mounts_of(layer.digest()),
                Some(options.progress),
            )
        })?;
        self.push_blob(store, &target, config, &mounts_of(config.digest()), None)?;
        let pushed = self.push_manifest(&target, &manifest_bytes, &manifest_digest, &tag)?;
        store.add_repo_digest(image.digest(), &format!("{name}@{}", pushed.digest))?;
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest().clone()).collect();
        store.add_blob_sources(&digests, &name)?;
        Ok(pushed)
    }

    /// The layers as the registry gets them and the manifest naming them:
    /// the stored manifest byte for byte when no layer changes.
    fn outgoing_layers(
        &self,
        store: &Store,
        image: &Image,
        compression: Option<Compression>,
    ) -> Result<(Vec<Descriptor>, Vec<u8>)> {
        use rayon::prelude::*;
        let stored = store.read_blob_bytes(image.digest())?;
        let Some(compression) = compression else {
            return Ok((image.manifest().layers().clone(), stored));
        };
        let layers = image
            .layers()
            .par_iter()
            .map(|layer| {
                let kind = Compression::of_media_type(layer.descriptor.media_type());
                if kind == Some("uncompressed") {
                    store.compressed_layer(&layer.descriptor, &layer.diff_id, compression)
                } else {
                    Ok(layer.descriptor.clone())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if layers == *image.manifest().layers() {
            return Ok((layers, stored));
        }
        let what = format!("manifest {}", image.digest());
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&stored).map_err(|err| RegistryError::invalid(&what, err))?;
        manifest["layers"] =
            serde_json::to_value(&layers).map_err(|err| RegistryError::invalid(&what, err))?;
        let bytes =
            serde_json::to_vec(&manifest).map_err(|err| RegistryError::invalid(&what, err))?;
        Ok((layers, bytes))
    }

    pub(crate) fn push_blob(
        &self,
        store: &Store,
        target: &Target<'_>,
        blob: &Descriptor,
        mount_from: &[String],
        progress: Option<&dyn TransferProgress>,
    ) -> Result<()> {
        let host = target.host;
        let path = target.reference.path();
        let digest = blob.digest();
        let what = format!("{}: blob {digest}", target.reference.familiar_name());
        let head_url = format!("{}/v2/{path}/blobs/{digest}", host.base);
        let head = self.request(host, &target.scopes, &|http, _| Ok(http.head(&head_url)))?;
        match head.status() {
            status if status.is_success() => {
                if let Some(progress) = progress {
                    progress.exists(blob);
                }
                return Ok(());
            }
            StatusCode::NOT_FOUND => {}
            _ => return Err(status_error(head, &what)),
        }
        for source in mount_from {
            let url = format!(
                "{}/v2/{path}/blobs/uploads/?mount={digest}&from={source}",
                host.base
            );
            let response = self.request(host, &target.scopes, &|http, _| {
                Ok(http.post(&url).header(CONTENT_LENGTH, 0))
            })?;
            match response.status() {
                StatusCode::CREATED => {
                    if let Some(progress) = progress {
                        progress.mounted(blob, source);
                    }
                    return Ok(());
                }
                // The registry could not mount and opened an upload.
                StatusCode::ACCEPTED => {
                    if let Some(progress) = progress {
                        progress.started(blob);
                    }
                    let location = upload_location(&response, &what)?;
                    self.upload(store, target, blob, &location, &what)?;
                    if let Some(progress) = progress {
                        progress.finished(blob);
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        if let Some(progress) = progress {
            progress.started(blob);
        }
        // A failed PUT may leave its upload session unusable: start over
        // with a new one, once.
        let mut attempt = 0;
        loop {
            let result = self
                .start_upload(target, &what)
                .and_then(|location| self.upload(store, target, blob, &location, &what));
            match result {
                Ok(()) => break,
                Err(RegistryError::Transport { .. } | RegistryError::Status { .. })
                    if attempt == 0 =>
                {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
        if let Some(progress) = progress {
            progress.finished(blob);
        }
        Ok(())
    }

    /// `POST /v2/<name>/blobs/uploads/`: the new upload's URL.
    fn start_upload(&self, target: &Target<'_>, what: &str) -> Result<String> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/",
            target.host.base,
            target.reference.path()
        );
        let response = self.request(target.host, &target.scopes, &|http, _| {
            Ok(http.post(&url).header(CONTENT_LENGTH, 0))
        })?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(response, what));
        }
        upload_location(&response, what)
    }

    /// One streamed `PUT <location>?digest=...` of the whole blob, read
    /// through the store's verifying reader.
    fn upload(
        &self,
        store: &Store,
        target: &Target<'_>,
        blob: &Descriptor,
        location: &str,
        what: &str,
    ) -> Result<()> {
        let mut url = reqwest::Url::parse(location)
            .map_err(|err| RegistryError::invalid(what, format!("upload location: {err}")))?;
        url.query_pairs_mut()
            .append_pair("digest", blob.digest().as_ref());
        let same_origin = origin(url.as_str()) == origin(&target.host.base);
        let make = |http: &reqwest::blocking::Client| -> Result<_> {
            let reader = store.open_descriptor(blob)?;
            Ok(http
                .put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, blob.size())
                .body(reqwest::blocking::Body::sized(reader, blob.size())))
        };
        let response = if same_origin {
            self.request(target.host, &target.scopes, &|http, _| make(http))?
        } else {
            // Never send the registry's credentials to another host.
            self.send_retrying(&target.host.http_client(), &|| {
                make(&target.host.http_client())
            })?
        };
        if !response.status().is_success() {
            return Err(status_error(response, what));
        }
        Ok(())
    }

    pub(crate) fn push_manifest(
        &self,
        target: &Target<'_>,
        bytes: &[u8],
        digest: &Digest,
        tag: &str,
    ) -> Result<Pushed> {
        let host = target.host;
        let path = target.reference.path();
        let what = target.reference.familiar_string();
        let size = bytes.len() as u64;
        let media_type = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        let url = format!("{}/v2/{path}/manifests/{tag}", host.base);
        // An unchanged tag needs no PUT: a re-push is HEADs only.
        let head = self.request(host, &target.scopes, &|http, _| {
            Ok(http.head(&url).header("Accept", media_type.as_str()))
        })?;
        if head.status().is_success()
            && head
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_digest(v).ok())
                .is_some_and(|d| d == *digest)
        {
            return Ok(Pushed {
                digest: digest.clone(),
                size,
            });
        }
        let response = self.request(host, &target.scopes, &|http, _| {
            Ok(http
                .put(&url)
                .header(CONTENT_TYPE, media_type.as_str())
                .body(bytes.to_vec()))
        })?;
        if !response.status().is_success() {
            return Err(status_error(response, &what));
        }
        if let Some(claimed) = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_digest(v).ok())
            && claimed != *digest
        {
            return Err(RegistryError::invalid(
                &what,
                format!("the registry stored the manifest as {claimed}, expected {digest}"),
            ));
        }
        Ok(Pushed {
            digest: digest.clone(),
            size,
        })
    }
}

/// The absolute upload URL from a `Location` header, which may be relative.
fn upload_location(response: &Response, what: &str) -> Result<String> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            RegistryError::invalid(
                what,
                format!(
                    "{} answered without an upload location",
                    redact_url(response.url().as_str())
                ),
            )
        })?;
    response
        .url()
        .join(location)
        .map(|url| url.to_string())
        .map_err(|err| RegistryError::invalid(what, format!("upload location: {err}")))
}
