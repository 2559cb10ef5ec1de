//! The build-cache index: `hoist/cache/<key>.json`, one small record per
//! cache key. The builder chooses the key (a sha256 hex of whatever
//! identifies a step) and the payload; the store keeps the blobs and chain
//! IDs an entry references alive for GC, and uses the file's mtime as its
//! last-used time for `prune --keep-storage`.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::{ChainId, Digest};
use crate::store::{Store, remove_file_if_exists};
use crate::{Result, StoreError};

/// One cache entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// 64 lowercase hex characters.
    pub key: String,
    /// The builder's record (e.g. the resulting layer and config changes).
    pub payload: serde_json::Value,
    /// Blobs the entry needs (layers, configs); GC keeps them.
    #[serde(default)]
    pub blobs: Vec<Digest>,
    /// Snapshots the entry needs; GC keeps them.
    #[serde(default)]
    pub chain_ids: Vec<ChainId>,
    /// When the entry was last used (the record file's mtime); not stored
    /// in the JSON.
    #[serde(skip, default = "epoch")]
    pub last_used: SystemTime,
}

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

impl CacheEntry {
    /// A new entry; `last_used` is set when it is stored.
    pub fn new(
        key: impl Into<String>,
        payload: serde_json::Value,
        blobs: Vec<Digest>,
        chain_ids: Vec<ChainId>,
    ) -> CacheEntry {
        CacheEntry {
            key: key.into(),
            payload,
            blobs,
            chain_ids,
            last_used: epoch(),
        }
    }
}

/// Checks that a cache key is 64 lowercase hex characters (it becomes a file
/// name).
pub fn validate_key(key: &str) -> Result<()> {
    if key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::InvalidCacheKey(key.to_owned()))
    }
}

impl Store {
    /// Looks up `key`. A hit leases the entry's blobs and chain IDs to this
    /// session (so GC keeps them while the build uses them) and marks the
    /// entry used. An entry whose blobs are gone counts as a miss, unless
    /// an imported cache can provide them ([`Store::import_cache_entry`]).
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        validate_key(key)?;
        let path = self.cache_path(key);
        let _guard = self.lock_shared()?;
        let usable = |entry: &CacheEntry| {
            entry.key == key && entry.blobs.iter().all(|b| self.can_provide_blob(b))
        };
        let local = read_entry(&path)?.filter(|e| usable(e));
        let (mut entry, imported) = match local {
            Some(entry) => (entry, false),
            None => match self.imported_entry(key).filter(|e| usable(e)) {
                Some(entry) => (entry, true),
                None => return Ok(None),
            },
        };
        for blob in &entry.blobs {
            self.session().lease_blob(blob)?;
        }
        for chain_id in &entry.chain_ids {
            self.session().lease_chain_id(chain_id)?;
        }
        if imported {
            self.mark_imported_used(key);
            entry.last_used = SystemTime::now();
        } else {
            entry.last_used = touch(&path)?;
        }
        Ok(Some(entry))
    }

    /// Reads an entry without using it: no lease, no last-used update (for
    /// explaining a miss by the entry it did not match, and for exporting
    /// the entries a build used, imported ones included).
    pub fn cache_peek(&self, key: &str) -> Result<Option<CacheEntry>> {
        validate_key(key)?;
        match read_entry(&self.cache_path(key))? {
            Some(entry) => Ok(Some(entry)),
            None => Ok(self.imported_entry(key)),
        }
    }

    /// Stores (or replaces) an entry atomically. Its blobs must be stored.
    pub fn cache_put(&self, entry: &CacheEntry) -> Result<()> {
        validate_key(&entry.key)?;
        for blob in &entry.blobs {
            if !self.has_blob(blob) {
                return Err(StoreError::BlobNotFound(blob.clone()));
            }
        }
        let bytes = serde_json::to_vec(entry).map_err(|source| StoreError::Json {
            what: format!("cache entry {}", entry.key),
            source,
        })?;
        let _guard = self.lock_shared()?;
        self.write_atomic(&self.cache_path(&entry.key), &bytes)
    }

    /// Marks an entry used now, without reading it.
    pub fn cache_touch(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let _guard = self.lock_shared()?;
        match touch(&self.cache_path(key)) {
            // An imported entry lives in memory until its blobs are stored.
            Err(err) if err.is_not_found() && self.imported_entry(key).is_some() => Ok(()),
            result => result.map(|_| ()),
        }
    }

    /// Removes an entry; `false` when there was none.
    pub fn cache_remove(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        remove_file_if_exists(&self.cache_path(key))
    }

    /// Every readable entry, least recently used first. Unreadable records
    /// are skipped (`hoist fsck` reports them).
    pub fn cache_list(&self) -> Result<Vec<CacheEntry>> {
        let dir = self.cache_dir();
        let mut entries = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
            let item = item.map_err(StoreError::io(&dir))?;
            let name = item.file_name();
            let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if validate_key(key).is_err() {
                continue;
            }
            if let Ok(Some(entry)) = read_entry(&item.path())
                && entry.key == key
            {
                entries.push(entry);
            }
        }
        entries.sort_by_key(|e| e.last_used);
        Ok(entries)
    }

    pub(crate) fn cache_path(&self, key: &str) -> PathBuf {
        self.cache_dir().join(format!("{key}.json"))
    }
}

/// A builder-side record kept beside the cache entries, one file per key
/// (a 64-hex name): indexes that make lookups and explanations cheap but
/// whose loss only costs time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheRecord {
    /// `hoist/context-index/<key>.txt`: a build context's file digests by
    /// stat, so an unchanged file is not read again.
    ContextIndex,
    /// `hoist/context-checksum/<key>.txt`: one COPY source checksum of a
    /// build context, with the fingerprint of the walk it was computed
    /// from, so unchanged sources cost a walk and no lookup.
    ContextChecksum,
    /// `hoist/cache-recent/<key>.json`: the recent cache keys of one step
    /// position, for explaining misses.
    Recent,
    /// `hoist/cache-files/<key>.json`: the per-file digests behind one
    /// COPY source checksum, for naming changed files.
    Files,
}

impl CacheRecord {
    /// Every kind, for the collection by age (see [`Store::gc`]).
    pub(crate) const ALL: [CacheRecord; 4] = [
        CacheRecord::ContextIndex,
        CacheRecord::ContextChecksum,
        CacheRecord::Recent,
        CacheRecord::Files,
    ];

    pub(crate) fn dir(self) -> &'static str {
        match self {
            CacheRecord::ContextIndex => "hoist/context-index",
            CacheRecord::ContextChecksum => "hoist/context-checksum",
            CacheRecord::Recent => "hoist/cache-recent",
            CacheRecord::Files => "hoist/cache-files",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            CacheRecord::ContextIndex | CacheRecord::ContextChecksum => "txt",
            CacheRecord::Recent | CacheRecord::Files => "json",
        }
    }

    /// Whether a record is fsynced before its rename. A record is left to
    /// the kernel when its reader takes whatever a crash can leave of it
    /// (a rename that reached the disk before the data did: an empty,
    /// zero-filled or cut-short file) for no record: the recent keys, which
    /// only explain misses, and the remembered checksums, whose parser
    /// rejects every such file (a test cuts one at every byte) and whose
    /// loss costs one checksum. The context index, a line per file, could
    /// lose a line's end and still parse; the others decide what a build
    /// reuses.
    fn synced(self) -> bool {
        !matches!(self, CacheRecord::Recent | CacheRecord::ContextChecksum)
    }
}

impl Store {
    /// Opens a record for reading; `None` when there is none.
    pub fn cache_record_reader(
        &self,
        kind: CacheRecord,
        key: &str,
    ) -> Result<Option<std::io::BufReader<std::fs::File>>> {
        validate_key(key)?;
        let path = self.cache_record_path(kind, key);
        match std::fs::File::open(&path) {
            Ok(file) => Ok(Some(std::io::BufReader::new(file))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::io(&path)(err)),
        }
    }

    /// Replaces a record atomically with what `write` streams: a temp file
    /// in the session, fsync (not for the kinds whose reader rejects a
    /// torn record), rename.
    /// Concurrent writers each leave a whole record; the last rename wins.
    pub fn cache_record_write(
        &self,
        kind: CacheRecord,
        key: &str,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<()> {
        validate_key(key)?;
        let path = self.cache_record_path(kind, key);
        let dir = self.root().join(kind.dir());
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        let tmp = self.temp_path("record");
        let file = std::fs::File::create(&tmp).map_err(StoreError::io(&tmp))?;
        let mut out = std::io::BufWriter::new(file);
        write(&mut out).map_err(StoreError::io(&tmp))?;
        let file = out
            .into_inner()
            .map_err(|err| StoreError::io(&tmp)(err.into_error()))?;
        if kind.synced() {
            file.sync_all().map_err(StoreError::io(&tmp))?;
        }
        drop(file);
        std::fs::rename(&tmp, &path).map_err(StoreError::io(&path))?;
        Ok(())
    }

    /// Removes a record; `false` when there was none.
    pub fn cache_record_remove(&self, kind: CacheRecord, key: &str) -> Result<bool> {
        validate_key(key)?;
        remove_file_if_exists(&self.cache_record_path(kind, key))
    }

    fn cache_record_path(&self, kind: CacheRecord, key: &str) -> PathBuf {
        self.root()
            .join(kind.dir())
            .join(format!("{key}.{}", kind.extension()))
    }
}

/// Reads an entry; `None` when absent.
pub(crate) fn read_entry(path: &std::path::Path) -> Result<Option<CacheEntry>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StoreError::io(path)(err)),
    };
    let mut entry: CacheEntry =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: path.display().to_string(),
            source,
        })?;
    entry.last_used = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(StoreError::io(path))?;
    Ok(Some(entry))
}

fn touch(path: &std::path::Path) -> Result<SystemTime> {
    let now = SystemTime::now();
    match filetime::set_file_mtime(path, filetime::FileTime::from_system_time(now)) {
        Ok(()) => Ok(now),
        Err(err) => Err(StoreError::io(path)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_sha256_hex() {
        let cases: &[(&str, bool)] = &[
            (&"a".repeat(64), true),
            (&"0123456789abcdef".repeat(4), true),
            (&"A".repeat(64), false),
            (&"a".repeat(63), false),
            ("../../etc/passwd", false),
            ("", false),
        ];
        for (key, ok) in cases {
            assert_eq!(validate_key(key).is_ok(), *ok, "key {key:?}");
        }
    }
}
