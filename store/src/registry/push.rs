//! Push: layers in parallel, then the config, then the manifest. A blob
//! the registry has is skipped after a HEAD; one another repository of
//! the same registry is known to hold is mounted; anything else is one
//! POST and one streamed PUT.
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-blobs>)

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oci_spec::image::Descriptor;
use reqwest::StatusCode;
use reqwest::blocking::Response;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use crate::compress::Compression;
use crate::digest::{Digest, parse_digest, sha256_bytes};
use crate::image::{Image, Layer};
use crate::reference::Reference;
use crate::registry::auth::repository_scope;
use crate::registry::client::{BodySender, Host, StreamBody, body_channel, origin, status_error};
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
        let (reference, tag) = push_tag(reference)?;
        let stored_layers = image.layers();
        // Each layer as the registry gets it, where that is known without
        // compressing: `None` for those compressed on the way out.
        let known: Vec<Option<Descriptor>> = stored_layers
            .iter()
            .map(|layer| match options.compression {
                None => Ok(Some(layer.descriptor.clone())),
                Some(compression) => {
                    store.known_compressed_layer(&layer.descriptor, &layer.diff_id, compression)
                }
            })
            .collect::<Result<_, _>>()?;
        let host = self.host(reference.domain())?;
        let name = reference.name();
        let mounts_of = |digest: &Digest| mount_sources(store, &reference, digest);
        let config = image.manifest().config();
        let scopes = push_scopes(
            store,
            &reference,
            known
                .iter()
                .flatten()
                .map(Descriptor::digest)
                .chain([config.digest()]),
        );
        let target = Target {
            host: &host,
            reference: &reference,
            scopes,
        };
        // Progress names each layer as the store holds it (for a layer
        // stored uncompressed, by its diff ID, as `docker push` does).
        let shown: Vec<Descriptor> = stored_layers
            .iter()
            .map(|layer| layer.descriptor.clone())
            .collect();
        options.progress.resolved(&shown);
        // Every layer's outgoing form known means the manifest is too: a
        // tag that already names it needs nothing more, since a registry
        // holds the blobs of each manifest it holds (it refuses a manifest
        // PUT whose blobs it lacks). A re-push is one HEAD, not one per
        // blob.
        let tag_checked = known.iter().all(Option::is_some);
        if tag_checked {
            let layers: Vec<Descriptor> = known.iter().flatten().cloned().collect();
            let manifest_bytes = manifest_for(store, image, &layers)?;
            let manifest_digest = sha256_bytes(&manifest_bytes);
            if self.tag_names(&target, &manifest_bytes, &manifest_digest, &tag)? {
                for layer in &shown {
                    options.progress.exists(layer);
                }
                let pushed = Pushed {
                    digest: manifest_digest,
                    size: manifest_bytes.len() as u64,
                };
                record_push(store, image, &name, &layers, config, &pushed)?;
                return Ok(pushed);
            }
        }
        let jobs: Vec<usize> = (0..stored_layers.len()).collect();
        let outgoing: Vec<Mutex<Option<Descriptor>>> =
            known.iter().map(|d| Mutex::new(d.clone())).collect();
        for_each_parallel(&jobs, options.max_concurrent_uploads.max(1), |&i| {
            let shown = Shown {
                progress: options.progress,
                layer: &shown[i],
            };
            let pushed = match (&known[i], options.compression) {
                (Some(blob), _) => {
                    self.push_blob(
                        store,
                        &target,
                        blob,
                        &mounts_of(blob.digest()),
                        Some(&shown),
                    )?;
                    return Ok(());
                }
                (None, Some(compression)) => {
                    self.push_compressing(store, &target, &stored_layers[i], compression, &shown)?
                }
                (None, None) => unreachable!("layers are known when nothing is compressed"),
            };
            *outgoing[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(pushed);
            Ok(())
        })?;
        let layers: Vec<Descriptor> = outgoing
            .into_iter()
            .map(|d| d.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                RegistryError::invalid(reference.familiar_string(), "a layer was not pushed")
            })?;
        self.push_blob(store, &target, config, &mounts_of(config.digest()), None)?;
        let manifest_bytes = manifest_for(store, image, &layers)?;
        let manifest_digest = sha256_bytes(&manifest_bytes);
        // The tag was found naming another manifest above: no second HEAD.
        let pushed = if tag_checked {
            self.put_manifest(&target, &manifest_bytes, &manifest_digest, &tag)?
        } else {
            self.push_manifest(&target, &manifest_bytes, &manifest_digest, &tag)?
        };
        record_push(store, image, &name, &layers, config, &pushed)?;
        Ok(pushed)
    }

    /// Compresses a stored layer and uploads it at the same time: the
    /// compressed bytes go both into the store (as the variant the next
    /// push and save reuse) and, through a bounded channel, into one
    /// streamed `PATCH`; the closing `PUT ?digest=` names the digest known
    /// only at the end. If the stream fails the compression still
    /// completes, and the stored variant is uploaded as any stored blob.
    fn push_compressing(
        &self,
        store: &Store,
        target: &Target<'_>,
        layer: &Layer,
        compression: Compression,
        shown: &Shown<'_>,
    ) -> Result<Descriptor> {
        let what = format!(
            "{}: layer {}",
            target.reference.familiar_name(),
            layer.diff_id
        );
        shown.started();
        let location = self.start_upload(target, &what)?;
        let (sender, body) = body_channel(None);
        let (compressed, streamed) = std::thread::scope(|scope| {
            let compressing = scope.spawn(move || {
                let mut tee = ChannelWriter {
                    sender: Some(sender),
                };
                let result = store.compress_layer_teed(
                    &layer.descriptor,
                    &layer.diff_id,
                    compression,
                    &mut tee,
                    &|done| shown.advanced(done),
                );
                if result.is_ok() {
                    tee.finish();
                }
                result
            });
            let streamed = self.stream_upload(target, &location, body, &what);
            let compressed = compressing
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (compressed, streamed)
        });
        let blob = compressed?;
        let finished = streamed
            .and_then(|location| self.finish_upload(target, &location, blob.digest(), &what));
        match finished {
            Ok(()) => shown.finished(),
            // Start over from the stored variant.
            Err(_) => self.push_blob(store, target, &blob, &[], Some(shown))?,
        }
        Ok(blob)
    }

    /// `PATCH <location>` with a body of unknown length (chunked): the
    /// whole blob in one request. Returns where the upload continues. A
    /// body that streams once cannot be sent again: on any failure the
    /// caller starts over from the store.
    fn stream_upload(
        &self,
        target: &Target<'_>,
        location: &str,
        body: StreamBody,
        what: &str,
    ) -> Result<String> {
        let response = self.send_streamed(
            target.host,
            &target.scopes,
            reqwest::Method::PATCH,
            location,
            "application/octet-stream",
            body,
        )?;
        if response.status != StatusCode::ACCEPTED {
            return Err(response.error(what));
        }
        response.location.ok_or_else(|| {
            RegistryError::invalid(
                what,
                format!("{} answered without an upload location", response.url),
            )
        })
    }

    /// `PUT <location>?digest=...` with no body: closes a streamed upload.
    fn finish_upload(
        &self,
        target: &Target<'_>,
        location: &str,
        digest: &Digest,
        what: &str,
    ) -> Result<()> {
        let mut url = reqwest::Url::parse(location)
            .map_err(|err| RegistryError::invalid(what, format!("upload location: {err}")))?;
        url.query_pairs_mut().append_pair("digest", digest.as_ref());
        let url = url.to_string();
        let response = self.send_to_upload(target, &url, &|http| {
            Ok(http
                .put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, 0))
        })?;
        if !response.status().is_success() {
            return Err(status_error(response, what));
        }
        Ok(())
    }

    /// Sends a request to an upload URL: with the registry's credentials
    /// on its own origin, without them anywhere else.
    fn send_to_upload(
        &self,
        target: &Target<'_>,
        url: &str,
        make: &dyn Fn(&reqwest::blocking::Client) -> Result<reqwest::blocking::RequestBuilder>,
    ) -> Result<Response> {
        if origin(url) == origin(&target.host.base) {
            self.request(target.host, &target.scopes, &|http, _| make(http))
        } else {
            let http = target.host.http_client();
            self.send_retrying(&http, &|| make(&http))
        }
    }

    pub(crate) fn push_blob(
        &self,
        store: &Store,
        target: &Target<'_>,
        blob: &Descriptor,
        mount_from: &[String],
        progress: Option<&Shown<'_>>,
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
                    progress.exists();
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
                        progress.mounted(source);
                    }
                    return Ok(());
                }
                // The registry could not mount and opened an upload.
                StatusCode::ACCEPTED => {
                    if let Some(progress) = progress {
                        progress.started();
                    }
                    let location = upload_location(&response, &what)?;
                    self.upload(store, target, blob, &location, &what, progress)?;
                    if let Some(progress) = progress {
                        progress.finished();
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        if let Some(progress) = progress {
            progress.started();
        }
        // A failed PUT may leave its upload session unusable: start over
        // with a new one, once.
        let mut attempt = 0;
        loop {
            let result = self
                .start_upload(target, &what)
                .and_then(|location| self.upload(store, target, blob, &location, &what, progress));
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
            progress.finished();
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
        progress: Option<&Shown<'_>>,
    ) -> Result<()> {
        let mut url = reqwest::Url::parse(location)
            .map_err(|err| RegistryError::invalid(what, format!("upload location: {err}")))?;
        url.query_pairs_mut()
            .append_pair("digest", blob.digest().as_ref());
        let url = url.to_string();
        // The body must be 'static: it counts into a shared counter, which
        // a watcher reports while the request runs.
        let sent = Arc::new(AtomicU64::new(0));
        let make = |http: &reqwest::blocking::Client| -> Result<_> {
            sent.store(0, Ordering::Relaxed);
            let reader = Counting {
                inner: store.open_descriptor(blob)?,
                sent: sent.clone(),
            };
            Ok(http
                .put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, blob.size())
                .body(reqwest::blocking::Body::sized(reader, blob.size())))
        };
        let response = std::thread::scope(|scope| {
            let (stop, stopped) = std::sync::mpsc::channel::<()>();
            if let Some(progress) = progress {
                let sent = &sent;
                scope.spawn(move || {
                    // The bar counts the layer as shown: scale the bytes sent.
                    let report = || {
                        let done = sent.load(Ordering::Relaxed);
                        progress.advanced(scale(done, blob.size(), progress.layer.size()));
                    };
                    while let Err(RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(PROGRESS_INTERVAL)
                    {
                        report();
                    }
                    report();
                });
            }
            let response = self.send_to_upload(target, &url, &make);
            drop(stop);
            response
        })?;
        if !response.status().is_success() {
            return Err(status_error(response, what));
        }
        Ok(())
    }

    /// Whether `tag` already names the manifest `digest` in the target
    /// repository (a `HEAD`, with the manifest's media type accepted).
    fn tag_names(
        &self,
        target: &Target<'_>,
        bytes: &[u8],
        digest: &Digest,
        tag: &str,
    ) -> Result<bool> {
        let host = target.host;
        let url = format!(
            "{}/v2/{}/manifests/{tag}",
            host.base,
            target.reference.path()
        );
        let media_type = manifest_media_type(bytes);
        let head = self.request(host, &target.scopes, &|http, _| {
            Ok(http.head(&url).header("Accept", media_type.as_str()))
        })?;
        Ok(head.status().is_success()
            && head
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_digest(v).ok())
                .is_some_and(|d| d == *digest))
    }

    pub(crate) fn push_manifest(
        &self,
        target: &Target<'_>,
        bytes: &[u8],
        digest: &Digest,
        tag: &str,
    ) -> Result<Pushed> {
        // An unchanged tag needs no PUT.
        if self.tag_names(target, bytes, digest, tag)? {
            return Ok(Pushed {
                digest: digest.clone(),
                size: bytes.len() as u64,
            });
        }
        self.put_manifest(target, bytes, digest, tag)
    }

    /// `PUT /v2/<name>/manifests/<tag>`, checking the digest the registry
    /// names it by.
    fn put_manifest(
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
        let media_type = manifest_media_type(bytes);
        let url = format!("{}/v2/{path}/manifests/{tag}", host.base);
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

/// `reference` with `:latest` when it names no tag, and its tag: a push
/// needs one, not a digest.
pub(crate) fn push_tag(reference: &Reference) -> Result<(Reference, String)> {
    let reference = reference.clone().with_default_tag();
    match reference.tag().map(str::to_owned) {
        Some(tag) => Ok((reference, tag)),
        None => Err(RegistryError::invalid(
            reference.familiar_string(),
            "push needs a tag, not a digest",
        )),
    }
}

/// The repositories of `reference`'s registry, other than its own, the
/// store knows `digest` to be in: where the registry can mount it from.
pub(crate) fn mount_sources(store: &Store, reference: &Reference, digest: &Digest) -> Vec<String> {
    let name = reference.name();
    let prefix = format!("{}/", reference.domain());
    store
        .blob_sources(digest)
        .into_iter()
        .filter(|repo| *repo != name)
        .filter_map(|repo| repo.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

/// The token scopes of a push to `reference`: pushing there, and pulling
/// from every repository of the same registry `digests` can be mounted
/// from, so that one token covers them all.
pub(crate) fn push_scopes<'d>(
    store: &Store,
    reference: &Reference,
    digests: impl IntoIterator<Item = &'d Digest>,
) -> Vec<String> {
    let mut scopes = vec![repository_scope(reference.path(), "pull,push")];
    for digest in digests {
        for source in mount_sources(store, reference, digest) {
            let scope = repository_scope(&source, "pull");
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    scopes
}

/// The `mediaType` a manifest names (OCI's image manifest when none).
fn manifest_media_type(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| OCI_MANIFEST.to_owned())
}

/// The manifest bytes a push of `image` with outgoing `layers` sends: a
/// pulled Docker manifest the store keeps in OCI form goes back as it
/// came, with its digest, when no layer changed.
fn manifest_for(store: &Store, image: &Image, layers: &[Descriptor]) -> Result<Vec<u8>> {
    let original = store
        .original_manifest(image.digest())
        .filter(|_| layers == image.manifest().layers().as_slice())
        .filter(|original| store.has_blob(original));
    match original {
        Some(original) => Ok(store.read_blob_bytes(&original)?),
        None => outgoing_manifest(store, image, layers),
    }
}

/// Remembers a finished push: the image's repository digest, and that the
/// repository now holds each blob (a later push elsewhere on the same
/// registry mounts them from there).
fn record_push(
    store: &Store,
    image: &Image,
    name: &str,
    layers: &[Descriptor],
    config: &Descriptor,
    pushed: &Pushed,
) -> Result<()> {
    store.add_repo_digest(image.digest(), &format!("{name}@{}", pushed.digest))?;
    let digests: Vec<Digest> = layers
        .iter()
        .chain([config])
        .map(|b| b.digest().clone())
        .collect();
    store.add_blob_sources(&digests, name)?;
    Ok(())
}

/// The manifest as pushed: the stored one byte for byte when no layer
/// changed, else the stored one with `layers` replaced.
fn outgoing_manifest(store: &Store, image: &Image, layers: &[Descriptor]) -> Result<Vec<u8>> {
    let stored = store.read_blob_bytes(image.digest())?;
    if layers == image.manifest().layers().as_slice() {
        return Ok(stored);
    }
    let what = format!("manifest {}", image.digest());
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&stored).map_err(|err| RegistryError::invalid(&what, err))?;
    manifest["layers"] =
        serde_json::to_value(layers).map_err(|err| RegistryError::invalid(&what, err))?;
    serde_json::to_vec(&manifest).map_err(|err| RegistryError::invalid(&what, err))
}

/// One layer's progress, named as the store holds the layer.
pub(crate) struct Shown<'a> {
    progress: &'a dyn TransferProgress,
    layer: &'a Descriptor,
}

impl Shown<'_> {
    fn started(&self) {
        self.progress.started(self.layer);
    }
    fn advanced(&self, done: u64) {
        self.progress.advanced(self.layer, done);
    }
    fn finished(&self) {
        self.progress.finished(self.layer);
    }
    fn exists(&self) {
        self.progress.exists(self.layer);
    }
    fn mounted(&self, from: &str) {
        self.progress.mounted(self.layer, from);
    }
}

/// `done` of `total` as the same share of `shown`.
fn scale(done: u64, total: u64, shown: u64) -> u64 {
    if total == 0 {
        return shown;
    }
    u64::try_from(u128::from(done) * u128::from(shown) / u128::from(total)).unwrap_or(shown)
}

/// How often an upload of a stored blob reports its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// A reader that counts the bytes that went through it.
struct Counting<R> {
    inner: R,
    sent: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The compressor's side of a streamed upload. Once the upload has gone
/// (it failed), writes still succeed: the store's copy must complete.
struct ChannelWriter {
    sender: Option<BodySender>,
}

impl ChannelWriter {
    /// Ends the body: one whose writer goes away without this fails the
    /// upload, never sends a short blob.
    fn finish(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.finish();
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(sender) = &mut self.sender
            && !sender.send(Bytes::copy_from_slice(buf))
        {
            self.sender = None;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
