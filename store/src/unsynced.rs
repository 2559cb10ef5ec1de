//! Data left to the kernel to write back, and what a machine crash costs.
//!
//! Two kinds of published data are not fsynced when they are published:
//! snapshots (a cache of their blobs, see [`Store::commit_snapshot`]) and
//! blobs committed with [`crate::BlobWriter::commit_unsynced`] (the layers
//! the builder makes, and the compressed variants of layers).
//! Each is first recorded, durably, under `hoist/unsynced/<boot-id>/`
//! (snapshots by chain ID, blobs under `blobs/` by digest). A process that
//! dies leaves its page cache intact, so only a machine crash can lose the
//! data, and a crash changes the boot ID. The first open in a later boot
//! then:
//! - removes every snapshot recorded under an earlier boot (extracted again
//!   from its blob when needed);
//! - hashes every blob recorded under an earlier boot, removes those that
//!   are missing, short or overwritten, and drops what needs them: the
//!   build-cache entries that name them (a later build misses and rebuilds),
//!   the variant records that name them (the next push makes the variant
//!   again) and the index.json entries whose image has them (reported by
//!   [`Store::lost_in_crash`]).
//!
//! So that a reboot does not mean hashing every blob ever built, each open
//! settles this boot's blob records older than [`SETTLED_AFTER`]: the kernel
//! has written such data back by then (`vm.dirty_expire_centisecs`), so
//! their `fdatasync` is cheap, and the record goes.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::cache::read_entry;
use crate::digest::{Digest, hash_file, parse_digest};
use crate::gc::list_dir_names;
use crate::image::entry_name;
use crate::store::{Store, fsync_dir, remove_dir_atomic, remove_file_if_exists};
use crate::{Result, StoreError};

/// This boot's blob records older than this are settled by the next open:
/// the kernel writes dirty data back after 30 s (`dirty_expire_centisecs`).
pub const SETTLED_AFTER: Duration = Duration::from_secs(30);

/// At most this many records are settled per open, so that no open pays
/// for a long run of builds at once.
const SETTLE_PER_OPEN: usize = 64;

/// What an unsynced record stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unsynced {
    /// `hoist/snapshots/<chainid>`.
    Snapshot,
    /// `blobs/sha256/<hex>`.
    Blob,
}

/// The subdirectory of a boot's records that holds blob records.
const BLOBS: &str = "blobs";

impl Store {
    /// `hoist/unsynced`.
    fn unsynced_root(&self) -> PathBuf {
        self.root().join("hoist/unsynced")
    }

    /// Where the records of `kind` made during boot `boot` live.
    fn unsynced_dir(&self, boot: &str, kind: Unsynced) -> PathBuf {
        let dir = self.unsynced_root().join(boot);
        match kind {
            Unsynced::Snapshot => dir,
            Unsynced::Blob => dir.join(BLOBS),
        }
    }

    /// Records `hex` as published unsynced in this boot, durably: the
    /// record must reach the disk before the publishing rename can.
    pub(crate) fn record_unsynced(&self, kind: Unsynced, hex: &str) -> Result<()> {
        let dir = self.unsynced_dir(boot_id()?, kind);
        let marker = dir.join(hex);
        if marker.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        File::create(&marker).map_err(StoreError::io(&marker))?;
        fsync_dir(&dir)?;
        // A new record directory must itself be durable: its entry (and
        // that of the boot directory above it) is synced once per process
        // (whoever made it may not have synced it yet), not once per record.
        static SYNCED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
        let mut synced = SYNCED.lock().unwrap_or_else(|poison| poison.into_inner());
        let synced = synced.get_or_insert_with(HashSet::new);
        if !synced.contains(&dir) {
            let root = self.unsynced_root();
            for parent in dir.ancestors().skip(1) {
                fsync_dir(parent)?;
                if parent == root {
                    break;
                }
            }
            synced.insert(dir);
        }
        Ok(())
    }

    /// Drops this boot's record of something GC removed.
    pub(crate) fn forget_unsynced(&self, kind: Unsynced, hex: &str) -> Result<()> {
        let marker = self.unsynced_dir(boot_id()?, kind).join(hex);
        remove_file_if_exists(&marker).map(|_| ())
    }

    /// Whether `hoist/unsynced` holds records of another boot (a cheap
    /// check, made without a lock, on every open).
    pub(crate) fn has_earlier_boot_records(&self) -> Result<bool> {
        let root = self.unsynced_root();
        let current = boot_id()?;
        match std::fs::read_dir(&root) {
            Ok(mut entries) => {
                Ok(entries.any(|e| e.map_or(true, |e| e.file_name().to_str() != Some(current))))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(StoreError::io(&root)(err)),
        }
    }

    /// Undoes what a crash may have lost from earlier boots (see the module
    /// docs), then removes their records. Returns the names of the images
    /// removed from index.json. Call with the exclusive lock held.
    pub(crate) fn recover_earlier_boots(&self) -> Result<Vec<String>> {
        let root = self.unsynced_root();
        let current = boot_id()?;
        let mut boots = Vec::new();
        for boot in std::fs::read_dir(&root).map_err(StoreError::io(&root))? {
            let boot = boot.map_err(StoreError::io(&root))?;
            if boot.file_name().to_str() != Some(current) {
                boots.push(boot.path());
            }
        }
        let mut lost = HashSet::new();
        for boot in &boots {
            for hex in list_dir_names(&boot.join(BLOBS))? {
                let Ok(expected) = parse_digest(&format!("sha256:{hex}")) else {
                    continue; // not a record hoist wrote
                };
                if !self.blob_is_intact(&expected)? {
                    remove_file_if_exists(&self.blob_path_hex(&hex))?;
                    lost.insert(hex);
                }
            }
        }
        let mut lost_images = Vec::new();
        if !lost.is_empty() {
            // The removals must be durable before the records that made us
            // look at these blobs go.
            fsync_dir(&self.blobs_dir())?;
            self.drop_cache_entries_needing(&lost)?;
            // Before the images: a lost variant costs no image.
            self.forget_variants_of(&lost)?;
            lost_images = self.drop_images_needing(&lost)?;
        }
        for boot in &boots {
            for name in list_dir_names(boot)? {
                if name != BLOBS {
                    remove_dir_atomic(self, &self.snapshots_dir().join(name))?;
                }
            }
            std::fs::remove_dir_all(boot).map_err(StoreError::io(boot))?;
        }
        fsync_dir(&root)?;
        Ok(lost_images)
    }

    /// Whether the blob `expected` is there and its content matches its
    /// name.
    fn blob_is_intact(&self, expected: &Digest) -> Result<bool> {
        let path = self.blob_path(expected)?;
        match hash_file(&path) {
            Ok(actual) => Ok(actual == *expected),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(StoreError::io(&path)(err)),
        }
    }

    /// Removes the build-cache entries that name a blob in `lost`.
    fn drop_cache_entries_needing(&self, lost: &HashSet<String>) -> Result<()> {
        let dir = self.cache_dir();
        let mut dropped = false;
        for name in list_dir_names(&dir)? {
            let path = dir.join(&name);
            // An unreadable entry is fsck's to report, not ours to judge.
            let Ok(Some(entry)) = read_entry(&path) else {
                continue;
            };
            if entry.blobs.iter().any(|b| lost.contains(b.digest())) {
                dropped |= remove_file_if_exists(&path)?;
            }
        }
        if dropped {
            fsync_dir(&dir)?;
        }
        Ok(())
    }

    /// Removes the index.json entries whose image has a blob in `lost`;
    /// returns their names.
    fn drop_images_needing(&self, lost: &HashSet<String>) -> Result<Vec<String>> {
        self.update_index_locked(|index| {
            let mut names = Vec::new();
            let mut kept = Vec::new();
            for entry in index.manifests() {
                // An image that cannot be read is fsck's to report.
                let needs_lost = self
                    .image_refs(entry.digest())
                    .is_ok_and(|refs| refs.blobs.iter().any(|b| lost.contains(b)));
                if needs_lost {
                    names.push(
                        entry_name(entry).map_or_else(
                            || entry.digest().to_string(),
                            |name| name.familiar_string(),
                        ),
                    );
                } else {
                    kept.push(entry.clone());
                }
            }
            let changed = !names.is_empty();
            index.set_manifests(kept);
            Ok((changed, names))
        })
    }

    /// Makes this boot's blob records older than `age` durable and removes
    /// them, at most [`SETTLE_PER_OPEN`] per call; returns how many went.
    /// Best effort: a blob whose sync fails keeps its record, and is hashed
    /// after the next boot.
    pub(crate) fn settle_unsynced_blobs(&self, age: Duration) -> usize {
        let Ok(boot) = boot_id() else { return 0 };
        let dir = self.unsynced_dir(boot, Unsynced::Blob);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let cutoff = SystemTime::now().checked_sub(age);
        let settled: Vec<_> = entries
            .flatten()
            .filter(|e| {
                let modified = e.metadata().and_then(|m| m.modified());
                matches!((modified, cutoff), (Ok(m), Some(c)) if m <= c)
            })
            .take(SETTLE_PER_OPEN)
            .map(|e| e.file_name())
            .collect();
        if settled.is_empty() {
            return 0;
        }
        // Shared: no GC may remove a blob (and a new commit of the same
        // digest record it again) between its sync and its record's removal.
        let Ok(_guard) = self.lock_shared() else {
            return 0;
        };
        let mut synced = Vec::new();
        for name in settled {
            let blob = self.blobs_dir().join(&name);
            let done = match File::open(&blob) {
                Ok(file) => file.sync_data().is_ok(),
                Err(err) => err.kind() == std::io::ErrorKind::NotFound,
            };
            if done {
                synced.push(name);
            }
        }
        // The blobs' renames were not synced either.
        if synced.is_empty() || fsync_dir(&self.blobs_dir()).is_err() {
            return 0;
        }
        synced
            .iter()
            .filter(|name| std::fs::remove_file(dir.join(name)).is_ok())
            .count()
    }
}

/// This boot's ID (`/proc/sys/kernel/random/boot_id`), read once.
fn boot_id() -> Result<&'static str> {
    static BOOT_ID: std::sync::OnceLock<std::result::Result<String, String>> =
        std::sync::OnceLock::new();
    const PATH: &str = "/proc/sys/kernel/random/boot_id";
    let id = BOOT_ID.get_or_init(|| match std::fs::read_to_string(PATH) {
        Ok(text) => {
            let id = text.trim().to_owned();
            let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            if valid {
                Ok(id)
            } else {
                Err(format!("unexpected content {id:?}"))
            }
        }
        Err(err) => Err(err.to_string()),
    });
    id.as_deref()
        .map_err(|reason| StoreError::invalid(PATH, reason))
}
