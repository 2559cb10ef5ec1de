//! `hoist fsck`: verify every blob, image, tag, snapshot and cache entry,
//! and with `repair`, drop what cannot be trusted.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest, MediaType};

use crate::cache::{read_entry, validate_key};
use crate::digest::{Digest, hash_file, parse_digest};
use crate::image::entry_name;
use crate::store::{Store, fsync_dir, remove_dir_atomic, remove_file_if_exists};
use crate::{Result, StoreError};

/// One thing wrong with the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `oci-layout` is missing or invalid.
    Layout(String),
    /// A blob's content does not match its name.
    CorruptBlob { expected: Digest, actual: Digest },
    /// A file in `blobs/sha256` that is not a blob, or in `hoist/cache` or
    /// `hoist/snapshots` that does not belong there.
    StrayFile(PathBuf),
    /// An index.json entry whose image is missing or broken.
    BrokenImage {
        name: String,
        digest: Digest,
        reason: String,
    },
    /// A snapshot that is not a well-formed, complete directory.
    BadSnapshot { path: PathBuf, reason: String },
    /// A cache entry that cannot be read or whose blobs are gone.
    BadCacheEntry { path: PathBuf, reason: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Layout(reason) => write!(f, "oci-layout: {reason}"),
            Problem::CorruptBlob { expected, actual } => {
                write!(
                    f,
                    "blob {expected} is corrupt: expected {expected}, read {actual}"
                )
            }
            Problem::StrayFile(path) => write!(f, "{}: not part of the store", path.display()),
            Problem::BrokenImage {
                name,
                digest,
                reason,
            } => write!(f, "image {name} ({digest}) is broken: {reason}"),
            Problem::BadSnapshot { path, reason } => {
                write!(f, "snapshot {}: {reason}", path.display())
            }
            Problem::BadCacheEntry { path, reason } => {
                write!(f, "cache entry {}: {reason}", path.display())
            }
        }
    }
}

/// What fsck found (and, when repairing, removed).
#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    pub blobs_checked: usize,
    pub images_checked: usize,
    pub snapshots_checked: usize,
    pub cache_entries_checked: usize,
    pub problems: Vec<Problem>,
    /// True when the problems were repaired.
    pub repaired: bool,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Verifies the whole store. With `repair`, removes corrupt blobs, stray
    /// files, index entries whose image is broken, bad snapshots and bad
    /// cache entries (holding the exclusive lock, so no writer interleaves).
    pub fn fsck(&self, repair: bool) -> Result<FsckReport> {
        let _guard = if repair {
            self.lock_exclusive()?
        } else {
            self.lock_shared()?
        };
        let mut report = FsckReport {
            repaired: repair,
            ..FsckReport::default()
        };
        self.check_layout(repair, &mut report)?;
        let good = self.check_blobs(repair, &mut report)?;
        self.check_index(repair, &good, &mut report)?;
        self.check_snapshots(repair, &mut report)?;
        self.check_cache(repair, &good, &mut report)?;
        Ok(report)
    }

    fn check_layout(&self, repair: bool, report: &mut FsckReport) -> Result<()> {
        let path = self.root().join("oci-layout");
        let reason = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) if v.get("imageLayoutVersion").is_some_and(|v| v.is_string()) => {
                    return Ok(());
                }
                _ => "invalid imageLayoutVersion".to_owned(),
            },
            Err(err) => err.to_string(),
        };
        report.problems.push(Problem::Layout(reason));
        if repair {
            self.write_atomic(&path, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(())
    }

    /// Hashes every blob; returns the hex names of the good ones.
    fn check_blobs(&self, repair: bool, report: &mut FsckReport) -> Result<HashSet<String>> {
        let dir = self.blobs_dir();
        let mut good = HashSet::new();
        for item in std::fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
            let item = item.map_err(StoreError::io(&dir))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            let is_file = item.file_type().is_ok_and(|t| t.is_file());
            let expected = parse_digest(&format!("sha256:{name}")).ok();
            let Some(expected) = expected.filter(|_| is_file && name.len() == 64) else {
                report.problems.push(Problem::StrayFile(path.clone()));
                if repair {
                    remove_any(self, &path)?;
                }
                continue;
            };
            report.blobs_checked += 1;
            let actual = hash_file(&path).map_err(StoreError::io(&path))?;
            if actual == expected {
                good.insert(name);
            } else {
                report
                    .problems
                    .push(Problem::CorruptBlob { expected, actual });
                if repair {
                    remove_file_if_exists(&path)?;
                }
            }
        }
        if repair {
            fsync_dir(&dir)?;
        }
        Ok(good)
    }

    fn check_index(
        &self,
        repair: bool,
        good: &HashSet<String>,
        report: &mut FsckReport,
    ) -> Result<()> {
        let index = match self.read_index() {
            Ok(index) => index,
            Err(err) => {
                report
                    .problems
                    .push(Problem::Layout(format!("index.json: {err}")));
                if repair {
                    self.write_atomic(&self.root().join("index.json"), crate::store::EMPTY_INDEX)?;
                }
                return Ok(());
            }
        };
        let mut keep = Vec::new();
        let mut dropped = false;
        for entry in index.manifests() {
            report.images_checked += 1;
            match self.check_image(entry, good) {
                Ok(()) => keep.push(entry.clone()),
                Err(reason) => {
                    let name = entry_name(entry)
                        .map_or_else(|| "<none>".to_owned(), |r| r.familiar_string());
                    report.problems.push(Problem::BrokenImage {
                        name,
                        digest: entry.digest().clone(),
                        reason,
                    });
                    dropped = true;
                }
            }
        }
        if repair && dropped {
            self.update_index_locked(|index| {
                index.set_manifests(keep);
                Ok((true, ()))
            })?;
        }
        Ok(())
    }

    /// Checks one index entry: manifest, config, layers all present, good
    /// and consistent.
    fn check_image(&self, entry: &Descriptor, good: &HashSet<String>) -> Result<(), String> {
        let present = |d: &Digest, what: &str| -> Result<(), String> {
            if good.contains(d.digest()) {
                Ok(())
            } else {
                Err(format!("{what} {d} is missing or corrupt"))
            }
        };
        present(entry.digest(), "manifest")?;
        let size = self.blob_size(entry.digest()).map_err(|e| e.to_string())?;
        if size != entry.size() {
            return Err(format!(
                "manifest size is {size}, the index says {}",
                entry.size()
            ));
        }
        let bytes = self
            .read_blob_bytes(entry.digest())
            .map_err(|e| e.to_string())?;
        if *entry.media_type() == MediaType::ImageIndex {
            // Written by another tool; its children are checked as blobs only.
            return Ok(());
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| format!("invalid manifest: {e}"))?;
        let config = manifest.config();
        present(config.digest(), "config")?;
        let config_bytes = self
            .read_blob_bytes(config.digest())
            .map_err(|e| e.to_string())?;
        if config_bytes.len() as u64 != config.size() {
            return Err(format!("config {} has the wrong size", config.digest()));
        }
        let parsed: ImageConfiguration =
            serde_json::from_slice(&config_bytes).map_err(|e| format!("invalid config: {e}"))?;
        if parsed.rootfs().diff_ids().len() != manifest.layers().len() {
            return Err("the config's diff_ids do not match the manifest's layers".to_owned());
        }
        for layer in manifest.layers() {
            present(layer.digest(), "layer")?;
            let size = self.blob_size(layer.digest()).map_err(|e| e.to_string())?;
            if size != layer.size() {
                return Err(format!(
                    "layer {} is {size} bytes, the manifest says {}",
                    layer.digest(),
                    layer.size()
                ));
            }
        }
        Ok(())
    }

    fn check_snapshots(&self, repair: bool, report: &mut FsckReport) -> Result<()> {
        let dir = self.snapshots_dir();
        for item in std::fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
            let item = item.map_err(StoreError::io(&dir))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            report.snapshots_checked += 1;
            let reason = if !is_hex64(&name) {
                "not named by a chain ID (an interrupted extraction?)"
            } else if !item.file_type().is_ok_and(|t| t.is_dir()) {
                "not a directory"
            } else {
                continue;
            };
            report.problems.push(Problem::BadSnapshot {
                path: path.clone(),
                reason: reason.to_owned(),
            });
            if repair {
                remove_any(self, &path)?;
            }
        }
        Ok(())
    }

    fn check_cache(
        &self,
        repair: bool,
        good: &HashSet<String>,
        report: &mut FsckReport,
    ) -> Result<()> {
        let dir = self.cache_dir();
        for item in std::fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
            let item = item.map_err(StoreError::io(&dir))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            let Some(key) = name
                .strip_suffix(".json")
                .filter(|k| validate_key(k).is_ok())
            else {
                report.problems.push(Problem::StrayFile(path.clone()));
                if repair {
                    remove_any(self, &path)?;
                }
                continue;
            };
            report.cache_entries_checked += 1;
            let reason = match read_entry(&path) {
                Ok(Some(entry)) if entry.key != key => {
                    Some("its key does not match its name".to_owned())
                }
                Ok(Some(entry)) => entry
                    .blobs
                    .iter()
                    .find(|b| !good.contains(b.digest()))
                    .map(|b| format!("blob {b} is missing or corrupt")),
                Ok(None) => None,
                Err(err) => Some(err.to_string()),
            };
            if let Some(reason) = reason {
                report.problems.push(Problem::BadCacheEntry {
                    path: path.clone(),
                    reason,
                });
                if repair {
                    remove_file_if_exists(&path)?;
                }
            }
        }
        Ok(())
    }
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn remove_any(store: &Store, path: &std::path::Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => remove_dir_atomic(store, path),
        Ok(_) => remove_file_if_exists(path).map(|_| ()),
        Err(_) => Ok(()),
    }
}
