//! Pull: resolve a tag to a manifest (through an index, choosing the
//! platform), then stream the config and layers into the store's verified
//! writer, several at a time, resuming an interrupted blob with `Range`.
//! The manifest and index bytes are stored exactly as the registry sent
//! them, so digests match the registry's.
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests>)

use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oci_spec::image::{Descriptor, ImageManifest};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use crate::StoreError;
use crate::blob::{Durability, ExpectedBlob};
use crate::digest::{Digest, parse_digest, sha256_bytes};
use crate::image::Image;
use crate::reference::Reference;
use crate::registry::auth::repository_scope;
use crate::registry::client::{Host, read_limited, status_error};
use crate::registry::error::redact_url;
use crate::registry::manifest::{
    ACCEPT, Fetched, MAX_MANIFEST_SIZE, Platform, choose_platform, docker_manifest_to_oci,
    parse_manifest,
};
use crate::registry::{Client, RegistryError, TransferProgress};
use crate::store::Store;

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Blobs downloaded at the same time unless told otherwise.
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 4;

/// How to pull.
pub struct PullOptions<'a> {
    /// The platform to choose from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// Blobs downloaded at the same time.
    pub max_concurrent_downloads: usize,
    pub progress: &'a dyn TransferProgress,
    /// Point the reference's tag at the image (as `hoist pull` does); when
    /// false the image is only listed untagged (a build's base for another
    /// platform than the tag's image).
    pub tag: bool,
}

impl<'a> PullOptions<'a> {
    pub fn new(progress: &'a dyn TransferProgress) -> Self {
        PullOptions {
            platform: None,
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
            progress,
            tag: true,
        }
    }
}

/// What a pull did.
#[derive(Debug)]
pub struct Pulled {
    pub image: Image,
    /// The normalised reference pulled (with its default tag).
    pub reference: Reference,
    /// The digest the registry names the image by: the index's for a
    /// multi-platform image, else the manifest's.
    pub repo_digest: Digest,
    /// Nothing was downloaded and the tag already pointed at the image.
    pub up_to_date: bool,
}

/// A manifest chosen and fetched, not yet stored.
struct Resolved {
    repo_digest: Digest,
    index: Option<(Digest, Vec<u8>)>,
    manifest_digest: Digest,
    manifest_bytes: Vec<u8>,
    manifest: ImageManifest,
}

impl Client {
    /// Pulls `reference` into `store` and tags it (a digest-only reference
    /// is kept untagged). Mirrors configured for the registry are tried
    /// first.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        options: &PullOptions<'_>,
    ) -> Result<Pulled> {
        let reference = reference.clone().with_default_tag();
        let platform = options.platform.clone().unwrap_or_else(Platform::host);
        let mirrors = self.settings().for_host(reference.domain()).mirrors;
        for mirror in &mirrors {
            // A mirror that fails in any way is skipped, as Docker does.
            let pulled = self.mirror(mirror).and_then(|host| {
                let resolved = self.resolve(&host, &reference, &platform)?;
                self.pull_resolved(store, &host, &reference, resolved, options)
            });
            if let Ok(pulled) = pulled {
                return Ok(pulled);
            }
        }
        let host = self.host(reference.domain())?;
        let resolved = self.resolve(&host, &reference, &platform)?;
        self.pull_resolved(store, &host, &reference, resolved, options)
    }

    /// The digest the registry names `reference` by, from a manifest HEAD
    /// (which Docker Hub does not count against its rate limit).
    pub fn resolve_digest(&self, reference: &Reference) -> Result<Digest> {
        let reference = reference.clone().with_default_tag();
        let host = self.host(reference.domain())?;
        let what = reference.familiar_string();
        let scopes = [repository_scope(reference.path(), "pull")];
        let url = manifest_url(&host, &reference);
        let response = self.request(&host, &scopes, &|http, _| {
            Ok(http.head(&url).header("Accept", ACCEPT))
        })?;
        match response.status() {
            StatusCode::NOT_FOUND => return Err(RegistryError::ManifestNotFound(what)),
            status if !status.is_success() => return Err(status_error(response, &what)),
            _ => {}
        }
        let header = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_digest(v).ok());
        match header {
            Some(digest) => Ok(digest),
            // No digest header: fetch the manifest and hash it.
            None => {
                let part = reference_part(&reference);
                Ok(self.fetch_manifest(&host, &reference, &part, &what)?.2)
            }
        }
    }

    fn resolve(&self, host: &Host, reference: &Reference, platform: &Platform) -> Result<Resolved> {
        let what = reference.familiar_string();
        let part = reference_part(reference);
        let (bytes, content_type, digest) = self.fetch_manifest(host, reference, &part, &what)?;
        if let Some(pinned) = reference.digest()
            && *pinned != digest
        {
            return Err(RegistryError::invalid(
                &what,
                format!("the registry sent a manifest with digest {digest}"),
            ));
        }
        match parse_manifest(&what, &bytes, content_type.as_deref())? {
            Fetched::Manifest(manifest) => Ok(Resolved {
                repo_digest: digest.clone(),
                index: None,
                manifest_digest: digest,
                manifest_bytes: bytes,
                manifest: *manifest,
            }),
            Fetched::Index(index) => {
                let entry = choose_platform(&index, platform)?;
                let child = entry.digest().to_string();
                let child_what = format!("{what} ({platform})");
                let (child_bytes, child_type, child_digest) =
                    self.fetch_manifest(host, reference, &child, &child_what)?;
                if child_digest != *entry.digest() || child_bytes.len() as u64 != entry.size() {
                    return Err(RegistryError::invalid(
                        &child_what,
                        format!(
                            "the registry sent {child_digest} ({} bytes) for {child} ({} bytes)",
                            child_bytes.len(),
                            entry.size()
                        ),
                    ));
                }
                match parse_manifest(&child_what, &child_bytes, child_type.as_deref())? {
                    Fetched::Manifest(manifest) => Ok(Resolved {
                        repo_digest: digest.clone(),
                        index: Some((digest, bytes)),
                        manifest_digest: child_digest,
                        manifest_bytes: child_bytes,
                        manifest: *manifest,
                    }),
                    Fetched::Index(_) => Err(RegistryError::invalid(
                        &child_what,
                        "an index inside an index is not supported",
                    )),
                }
            }
        }
    }

    /// GETs a manifest (at most [`MAX_MANIFEST_SIZE`]); returns its bytes,
    /// `Content-Type` and digest, checked against `Docker-Content-Digest`.
    pub(crate) fn fetch_manifest(
        &self,
        host: &Host,
        reference: &Reference,
        part: &str,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>, Digest)> {
        let scopes = [repository_scope(reference.path(), "pull")];
        let url = format!("{}/v2/{}/manifests/{part}", host.base, reference.path());
        let response = self.get_following(host, &scopes, &url, &[("Accept", ACCEPT.to_owned())])?;
        match response.status() {
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::ManifestNotFound(what.to_owned()));
            }
            status if !status.is_success() => return Err(status_error(response, what)),
            _ => {}
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let claimed = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_digest(v).ok());
        let bytes = read_limited(response, MAX_MANIFEST_SIZE, &format!("manifest of {what}"))?;
        let digest = sha256_bytes(&bytes);
        if let Some(claimed) = claimed
            && claimed != digest
        {
            return Err(RegistryError::invalid(
                what,
                format!("the registry says the manifest is {claimed}, its content is {digest}"),
            ));
        }
        Ok((bytes, content_type, digest))
    }

    fn pull_resolved(
        &self,
        store: &Store,
        host: &Host,
        reference: &Reference,
        resolved: Resolved,
        options: &PullOptions<'_>,
    ) -> Result<Pulled> {
        let scopes = [repository_scope(reference.path(), "pull")];
        let layers = resolved.manifest.layers().clone();
        let downloaded = AtomicBool::new(false);
        let fetch = |descriptor: &Descriptor, progress: Option<&dyn TransferProgress>| {
            // A pull is durable: a blob stored unsynced is synced now.
            if store.lease_existing_blob(descriptor.digest(), Durability::Now)? {
                if let Some(progress) = progress {
                    progress.exists(descriptor);
                }
                return Ok(());
            }
            downloaded.store(true, Ordering::Relaxed);
            if let Some(progress) = progress {
                progress.started(descriptor);
            }
            self.download_blob(store, host, &scopes, reference, descriptor, progress)?;
            if let Some(progress) = progress {
                progress.finished(descriptor);
            }
            Ok(())
        };
        // The config first: it says whether the image is for the platform
        // asked for before any layer is fetched.
        let config = resolved.manifest.config();
        fetch(config, None)?;
        if resolved.index.is_none()
            && let Some(wanted) = &options.platform
        {
            check_platform(store, config, wanted, reference)?;
        }
        options.progress.resolved(&layers);
        for_each_parallel(&layers, options.max_concurrent_downloads.max(1), |layer| {
            fetch(layer, Some(options.progress))
        })?;
        let manifest_bytes = &resolved.manifest_bytes;
        store.put_blob(
            &manifest_bytes[..],
            Some(&ExpectedBlob {
                digest: resolved.manifest_digest.clone(),
                size: Some(manifest_bytes.len() as u64),
            }),
        )?;
        if let Some((digest, bytes)) = &resolved.index {
            store.put_blob(
                &bytes[..],
                Some(&ExpectedBlob {
                    digest: digest.clone(),
                    size: Some(bytes.len() as u64),
                }),
            )?;
        }
        // A Docker schema2 manifest is also kept in OCI form, which the
        // layout's index names, so that tools reading the store as an OCI
        // layout (skopeo, umoci) accept it; a push sends the original.
        let what = reference.familiar_string();
        let image = match docker_manifest_to_oci(&what, manifest_bytes)? {
            Some(oci) => {
                let (digest, _) = store.put_blob_bytes(&oci)?;
                let image = store.image(&digest)?;
                store.set_original_manifest(image.digest(), &resolved.manifest_digest)?;
                image
            }
            None => store.image(&resolved.manifest_digest)?,
        };
        let name = reference.name();
        store.add_repo_digest(image.digest(), &format!("{name}@{}", resolved.repo_digest))?;
        store.add_blob_sources(&image.blobs()[1..], &name)?;
        let downloaded = downloaded.load(Ordering::Relaxed);
        let up_to_date = if reference.tag().is_some() && options.tag {
            let tagged = reference.without_digest();
            let had_tag = store.names_of(image.digest())?.contains(&tagged);
            store.tag(&tagged.to_string(), &image)?;
            had_tag && !downloaded
        } else {
            store.add_untagged(&image)?;
            !downloaded
        };
        Ok(Pulled {
            image,
            reference: reference.clone(),
            repo_digest: resolved.repo_digest,
            up_to_date,
        })
    }

    /// Streams one blob into the store, verified against its descriptor;
    /// a broken transfer resumes with `Range` where the server allows it.
    pub(crate) fn download_blob(
        &self,
        store: &Store,
        host: &Host,
        scopes: &[String],
        reference: &Reference,
        descriptor: &Descriptor,
        progress: Option<&dyn TransferProgress>,
    ) -> Result<()> {
        let digest = descriptor.digest();
        let size = descriptor.size();
        let what = format!("{}: blob {digest}", reference.familiar_name());
        let url = format!("{}/v2/{}/blobs/{digest}", host.base, reference.path());
        let mut writer = download_writer(store)?;
        let mut written: u64 = 0;
        let mut interruptions = 0;
        let policy = self.retry_policy();
        loop {
            let range = if written > 0 {
                vec![("Range", format!("bytes={written}-"))]
            } else {
                Vec::new()
            };
            let response = self.get_following(host, scopes, &url, &range)?;
            match response.status() {
                StatusCode::PARTIAL_CONTENT if written > 0 => {
                    let starts_here = response
                        .headers()
                        .get("Content-Range")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with(&format!("bytes {written}-")));
                    if !starts_here {
                        return Err(RegistryError::invalid(
                            &what,
                            "the registry resumed the download at the wrong offset",
                        ));
                    }
                }
                StatusCode::OK => {
                    if written > 0 {
                        // No range support: start over.
                        writer = download_writer(store)?;
                        written = 0;
                    }
                }
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::invalid(
                        &what,
                        "blob unknown to the registry",
                    ));
                }
                _ => return Err(status_error(response, &what)),
            }
            let url_shown = redact_url(response.url().as_str());
            match copy_body(
                response,
                &mut writer,
                &mut written,
                size,
                descriptor,
                progress,
            ) {
                Ok(()) if written == size => break,
                result @ (Ok(()) | Err(CopyError::Read(_))) => {
                    // Cut short: resume from what arrived.
                    let cause = match result {
                        Err(CopyError::Read(err)) => err.to_string(),
                        _ => "the response ended early".to_owned(),
                    };
                    interruptions += 1;
                    if interruptions >= policy.attempts {
                        return Err(RegistryError::Transport {
                            url: url_shown,
                            reason: format!(
                                "the download broke off {interruptions} times (at {written} of {size} bytes): {cause}"
                            ),
                        });
                    }
                    std::thread::sleep(policy.backoff(interruptions - 1));
                }
                Err(CopyError::TooLong) => {
                    return Err(StoreError::SizeMismatch {
                        digest: digest.clone(),
                        expected: size,
                        actual: written,
                    }
                    .into());
                }
                Err(CopyError::Write(err)) => {
                    return Err(StoreError::Io {
                        path: writer.temp_path().to_path_buf(),
                        source: err,
                    }
                    .into());
                }
            }
        }
        writer.commit(Some(&ExpectedBlob::from(descriptor)))?;
        Ok(())
    }
}

/// A blob writer for a download. Its data goes to the disk as it arrives
/// rather than all in the commit's fsync, which then waits for the last
/// few MiB only: the disk works while the network does. (The advice that
/// starts the write-back leaves dirty pages and pages under write-back in
/// the page cache.)
fn download_writer(store: &Store) -> Result<crate::blob::BlobWriter<'_>> {
    let mut writer = store.blob_writer()?;
    writer.write_back_early();
    Ok(writer)
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
    TooLong,
}

/// Copies a response body into the blob writer, never past `size` bytes.
fn copy_body(
    mut response: reqwest::blocking::Response,
    writer: &mut impl Write,
    written: &mut u64,
    size: u64,
    descriptor: &Descriptor,
    progress: Option<&dyn TransferProgress>,
) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(CopyError::Read(err)),
        };
        if *written + n as u64 > size {
            return Err(CopyError::TooLong);
        }
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
        *written += n as u64;
        if let Some(progress) = progress {
            progress.advanced(descriptor, *written);
        }
    }
}

/// Refuses a single-platform image that is not for the platform the user
/// asked for, as Docker does.
fn check_platform(
    store: &Store,
    config: &Descriptor,
    wanted: &Platform,
    reference: &Reference,
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct ConfigPlatform {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let bytes = store.read_blob_bytes(config.digest())?;
    let what = format!("config of {}", reference.familiar_string());
    let found: ConfigPlatform =
        serde_json::from_slice(&bytes).map_err(|err| RegistryError::invalid(&what, err))?;
    let actual = Platform::normalized(&found.os, &found.architecture, found.variant.as_deref());
    let matches = actual.os == wanted.os
        && actual.architecture == wanted.architecture
        && (wanted.variant.is_none() || actual.variant == wanted.variant);
    if matches {
        return Ok(());
    }
    Err(RegistryError::invalid(
        format!("image with reference {}", reference.familiar_string()),
        format!(
            "it was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
        ),
    ))
}

/// The tag or digest part of a manifest URL.
fn reference_part(reference: &Reference) -> String {
    match (reference.digest(), reference.tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_owned(),
        (None, None) => "latest".to_owned(),
    }
}

fn manifest_url(host: &Host, reference: &Reference) -> String {
    format!(
        "{}/v2/{}/manifests/{}",
        host.base,
        reference.path(),
        reference_part(reference)
    )
}

/// Runs `work` on every item with up to `workers` threads; the first error
/// stops the rest from starting and is returned.
pub(crate) fn for_each_parallel<T: Sync>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.min(items.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(err) = work(item) {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(err);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}
