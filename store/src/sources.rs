//! Where content came from: the repository digests of pulled and pushed
//! images (`RepoDigests`, `hoist images --digests`) and the repositories
//! each blob is known to exist in (for cross-repository mounts on push).
//!
//! One small JSON file per digest in `hoist/sources/<hex>.json`, edited
//! under the exclusive lock and replaced atomically. These are hints: a
//! missing or stale file only costs a mount or a digest in a listing.
//!
//! A repository digest that names an index pulled with the image keeps
//! that index's bytes in the store (GC marks them while the image lives).
//! The index ties the platforms pulled from one tag together, as Docker's
//! containerd store keeps them under one name, so that a build for another
//! platform finds its image without asking the registry again.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::Image;
use crate::registry::manifest::{Fetched, Platform, choose_platform, parse_manifest};
use crate::store::Store;
use crate::{Result, StoreError};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sources {
    /// `docker.io/library/busybox@sha256:...`: how the registry names the
    /// image (for a multi-platform pull, the index digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    repo_digests: Vec<String>,
    /// Full repository names (`127.0.0.1:5000/lib/busybox`) that hold the
    /// blob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    repositories: Vec<String>,
    /// For an image manifest the store keeps in OCI form: the digest of the
    /// Docker schema2 manifest it was pulled as, kept as a blob so that a
    /// push sends the registry's bytes (and digest) back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    original_manifest: Option<String>,
}

impl Store {
    /// Records that the image with manifest `digest` is `repo_digest`
    /// (`name@sha256:...`) in a registry; the newest record comes first.
    pub fn add_repo_digest(&self, digest: &Digest, repo_digest: &str) -> Result<()> {
        self.edit_sources(digest, |sources| {
            let repository = repo_digest.split('@').next().unwrap_or(repo_digest);
            // One digest per repository, as Docker keeps it.
            sources
                .repo_digests
                .retain(|d| d.split('@').next() != Some(repository));
            sources.repo_digests.insert(0, repo_digest.to_owned());
        })
    }

    /// The recorded repository digests of the image with manifest `digest`.
    pub fn repo_digests(&self, digest: &Digest) -> Vec<String> {
        self.read_sources(digest).repo_digests
    }

    /// Records that the image with manifest `digest` (in OCI form) was
    /// pulled as the manifest blob `original`, which GC then keeps with it.
    pub fn set_original_manifest(&self, digest: &Digest, original: &Digest) -> Result<()> {
        self.edit_sources(digest, |sources| {
            sources.original_manifest = Some(original.to_string());
        })
    }

    /// The manifest the image with manifest `digest` was pulled as, when
    /// the store keeps another form of it.
    pub fn original_manifest(&self, digest: &Digest) -> Option<Digest> {
        self.read_sources(digest)
            .original_manifest
            .and_then(|d| crate::digest::parse_digest(&d).ok())
    }

    /// The blobs the store holds that the repository digests of the image
    /// with manifest `digest` name, other than its manifests: the indexes
    /// it was pulled through, which GC keeps with it.
    pub fn pulled_indexes(&self, digest: &Digest) -> Vec<Digest> {
        let mut indexes: Vec<Digest> = self
            .repo_digests(digest)
            .iter()
            .filter_map(|r| r.rsplit_once('@'))
            .filter_map(|(_, d)| crate::digest::parse_digest(d).ok())
            .filter(|d| d != digest && self.original_manifest(digest).as_ref() != Some(d))
            .filter(|d| self.has_blob(d))
            .collect();
        indexes.dedup();
        indexes
    }

    /// The image the store holds for `platform` out of the registry index
    /// `image` was pulled through: the index's entry for `platform`, when
    /// the store lists that manifest (or an image pulled as it). `None`
    /// when no such index or image is kept. The image is leased.
    pub fn image_for_platform(&self, image: &Image, platform: &Platform) -> Result<Option<Image>> {
        for index_digest in self.pulled_indexes(image.digest()) {
            let Ok(bytes) = self.read_blob_bytes(&index_digest) else {
                continue;
            };
            let what = format!("index {index_digest}");
            let Ok(Fetched::Index(index)) = parse_manifest(&what, &bytes, None) else {
                continue;
            };
            let Ok(entry) = choose_platform(&index, platform) else {
                continue;
            };
            let listed = self.read_index()?;
            let found = listed.manifests().iter().find(|d| {
                d.digest() == entry.digest()
                    || self.original_manifest(d.digest()).as_ref() == Some(entry.digest())
            });
            let Some(found) = found else { continue };
            match self.resolve(found.digest().as_ref()) {
                Ok(image) => return Ok(Some(image)),
                // Collected since the index was read.
                Err(StoreError::ImageNotFound(_)) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// Records that `repository` (a full name) holds the blob `digest`.
    pub fn add_blob_sources(&self, digests: &[Digest], repository: &str) -> Result<()> {
        for digest in digests {
            self.edit_sources(digest, |sources| {
                if !sources.repositories.iter().any(|r| r == repository) {
                    sources.repositories.push(repository.to_owned());
                }
            })?;
        }
        Ok(())
    }

    /// The repositories known to hold the blob `digest`.
    pub fn blob_sources(&self, digest: &Digest) -> Vec<String> {
        self.read_sources(digest).repositories
    }

    fn sources_path(&self, digest: &Digest) -> Result<PathBuf> {
        let digest = crate::digest::parse_digest(digest.as_ref())?;
        Ok(self
            .root()
            .join("hoist/sources")
            .join(format!("{}.json", digest.digest())))
    }

    fn read_sources(&self, digest: &Digest) -> Sources {
        self.sources_path(digest)
            .ok()
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Applies `edit` to the record of `digest`. An edit that changes
    /// nothing (a re-push, a re-pull) writes nothing and takes no lock: it
    /// costs a read, not an exclusive lock and two fsyncs per record.
    fn edit_sources(&self, digest: &Digest, edit: impl Fn(&mut Sources)) -> Result<()> {
        let path = self.sources_path(digest)?;
        let unchanged = |current: &Sources| {
            let mut edited = current.clone();
            edit(&mut edited);
            edited == *current
        };
        if unchanged(&self.read_sources(digest)) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        }
        let _guard = self.lock_exclusive()?;
        let mut sources = self.read_sources(digest);
        edit(&mut sources);
        let bytes = serde_json::to_vec(&sources).map_err(|source| StoreError::Json {
            what: format!("sources of {digest}"),
            source,
        })?;
        self.write_atomic(&path, &bytes)
    }
}
