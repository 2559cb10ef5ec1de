//! Lazy blobs and imported cache entries: what `--cache-from` makes
//! available without copying it.
//!
//! BuildKit imports a remote cache as records whose layers stay remote
//! until something reads them. hoist does the same: an importer registers
//! each layer of the imported cache with a [`BlobSource`] and each step
//! record with [`Store::import_cache_entry`]. A cache lookup then counts a
//! lazily available blob as present ([`Store::can_provide_blob`]), and the
//! blob is fetched (verified, into `blobs/`) only when something opens it:
//! the snapshot a later `RUN` mounts, or the final image's manifest. A step
//! of an intermediate stage that nothing reads again costs no download.
//!
//! Both maps live as long as the [`Store`] value (one build): nothing about
//! an import is written to disk until its blobs are. After a build,
//! [`Store::persist_imported_cache`] writes the imported entries the build
//! used whose blobs it fetched, so the next build finds them locally.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::cache::{CacheEntry, validate_key};
use crate::digest::Digest;
use crate::store::Store;
use crate::{Result, StoreError};

/// Somewhere a blob can be fetched from on demand (an imported cache: a
/// directory or a registry).
pub trait BlobSource: Send + Sync {
    /// Stores the blob `digest` in `store`, verified against `digest`
    /// (e.g. through [`Store::put_blob`] with an expected digest).
    fn fetch(&self, store: &Store, digest: &Digest) -> Result<()>;

    /// Where the blob comes from, for messages.
    fn describe(&self) -> String;

    /// The compressed form of the uncompressed layer `digest` this source
    /// holds, as `(repository, descriptor)` when it is a registry (so a
    /// cache export to the same registry can mount it instead of
    /// downloading and uploading it).
    fn remote_variant(&self, _digest: &Digest) -> Option<(String, oci_spec::image::Descriptor)> {
        None
    }
}

/// The lazy blobs and imported entries of one open store.
#[derive(Default)]
pub(crate) struct Lazy {
    blobs: Mutex<HashMap<Digest, Arc<dyn BlobSource>>>,
    entries: Mutex<HashMap<String, CacheEntry>>,
    used: Mutex<HashSet<String>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::invalid("lazy blob table", "a thread panicked while holding it")
}

impl Store {
    /// Makes `digest` available from `source` without fetching it.
    pub fn add_lazy_blob(&self, digest: Digest, source: Arc<dyn BlobSource>) -> Result<()> {
        self.lazy()
            .blobs
            .lock()
            .map_err(poisoned)?
            .insert(digest, source);
        Ok(())
    }

    /// Whether the blob is stored or can be fetched on demand.
    pub fn can_provide_blob(&self, digest: &Digest) -> bool {
        self.has_blob(digest) || self.lazy_source(digest).is_some()
    }

    /// The source a lazy blob comes from, when the store does not hold it.
    pub fn lazy_source(&self, digest: &Digest) -> Option<Arc<dyn BlobSource>> {
        self.lazy().blobs.lock().ok()?.get(digest).cloned()
    }

    /// Fetches a lazy blob when the store does not hold it yet; a no-op for
    /// a stored blob or an unknown one (the caller's read then reports it
    /// missing).
    pub fn ensure_blob(&self, digest: &Digest) -> Result<()> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let Some(source) = self.lazy_source(digest) else {
            return Ok(());
        };
        self.lease_blob(digest)?;
        source.fetch(self, digest).map_err(|err| {
            StoreError::invalid(
                format!("blob {digest}"),
                format!("fetching it from {}: {err}", source.describe()),
            )
        })?;
        if !self.has_blob(digest) {
            return Err(StoreError::BlobNotFound(digest.clone()));
        }
        Ok(())
    }

    /// Adds an imported cache entry, whose blobs may be lazy. It answers
    /// [`Store::cache_get`] when the store has no usable entry of its own.
    pub fn import_cache_entry(&self, entry: CacheEntry) -> Result<()> {
        validate_key(&entry.key)?;
        self.lazy()
            .entries
            .lock()
            .map_err(poisoned)?
            .insert(entry.key.clone(), entry);
        Ok(())
    }

    /// The imported entry of `key`, if any.
    pub(crate) fn imported_entry(&self, key: &str) -> Option<CacheEntry> {
        self.lazy().entries.lock().ok()?.get(key).cloned()
    }

    pub(crate) fn mark_imported_used(&self, key: &str) {
        if let Ok(mut used) = self.lazy().used.lock() {
            used.insert(key.to_owned());
        }
    }

    /// Writes to the local cache every imported entry a build used whose
    /// blobs are all stored now; returns how many. Entries whose blobs
    /// were never fetched stay remote (and are imported again next time).
    pub fn persist_imported_cache(&self) -> Result<usize> {
        let used: Vec<String> = self
            .lazy()
            .used
            .lock()
            .map_err(poisoned)?
            .iter()
            .cloned()
            .collect();
        let mut written = 0;
        for key in used {
            let Some(entry) = self.imported_entry(&key) else {
                continue;
            };
            if entry.blobs.iter().all(|b| self.has_blob(b)) {
                self.cache_put(&entry)?;
                written += 1;
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::ExpectedBlob;
    use crate::digest::sha256_bytes;

    /// Serves blobs from memory and counts fetches.
    struct Memory {
        blobs: HashMap<Digest, Vec<u8>>,
        fetches: AtomicUsize,
    }

    impl BlobSource for Memory {
        fn fetch(&self, store: &Store, digest: &Digest) -> Result<()> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let bytes = self
                .blobs
                .get(digest)
                .ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?;
            let expected = ExpectedBlob {
                digest: digest.clone(),
                size: None,
            };
            store.put_blob(bytes.as_slice(), Some(&expected))?;
            Ok(())
        }

        fn describe(&self) -> String {
            "memory".to_owned()
        }
    }

    #[test]
    fn an_imported_entry_hits_and_its_blob_comes_once_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (used, unused) = (b"used layer".to_vec(), b"unused layer".to_vec());
        let (used_digest, unused_digest) = (sha256_bytes(&used), sha256_bytes(&unused));
        let source = Arc::new(Memory {
            blobs: HashMap::from([(used_digest.clone(), used), (unused_digest.clone(), unused)]),
            fetches: AtomicUsize::new(0),
        });
        for digest in [&used_digest, &unused_digest] {
            store.add_lazy_blob(digest.clone(), source.clone()).unwrap();
        }
        let (hit, other) = ("a".repeat(64), "b".repeat(64));
        let entry = |key: &str, blob: &Digest| {
            CacheEntry::new(key, serde_json::json!({}), vec![blob.clone()], Vec::new())
        };
        store.import_cache_entry(entry(&hit, &used_digest)).unwrap();
        store
            .import_cache_entry(entry(&other, &unused_digest))
            .unwrap();

        let found = store
            .cache_get(&hit)
            .unwrap()
            .expect("an imported entry hits");
        assert_eq!(found.blobs, vec![used_digest.clone()]);
        store.cache_touch(&hit).unwrap();
        assert_eq!(
            source.fetches.load(Ordering::SeqCst),
            0,
            "a hit fetches nothing"
        );
        assert!(store.can_provide_blob(&used_digest) && !store.has_blob(&used_digest));

        // Reading it fetches it, once.
        assert_eq!(store.read_blob_bytes(&used_digest).unwrap(), b"used layer");
        assert_eq!(store.blob_size(&used_digest).unwrap(), 10);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);

        // Only the used entry with its blob stored is written locally.
        assert_eq!(store.persist_imported_cache().unwrap(), 1);
        assert!(store.cache_path(&hit).is_file());
        assert!(!store.cache_path(&other).exists());
        assert!(!store.has_blob(&unused_digest));
        let report = store.fsck(false).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
