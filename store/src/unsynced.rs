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
//! If that recovery fails (a full disk, an unreadable directory), the
//! records stay for the next open to try again, and the store opens all the
//! same ([`Store::unfinished_recovery`]), so that the commands that free
//! space or repair the store still run.
//!
//! So that a reboot does not mean hashing every blob ever built, each open
//! settles this boot's blob records older than [`SETTLED_AFTER`]: the kernel
//! has written such data back by then (`vm.dirty_expire_centisecs`), so
//! their `fdatasync` is cheap, and the record goes. A durable write that
//! finds its blob stored already settles that blob's record at once
//! ([`Store::settle_one`]).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
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
            // Published again (its blob had gone, or never came): as dirty
            // as a new one, so it must not look old enough to settle cheaply.
            File::options()
                .write(true)
                .open(&marker)
                .and_then(|file| file.set_modified(SystemTime::now()))
                .map_err(StoreError::io(&marker))?;
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

    /// The record directories of earlier boots.
    fn earlier_boots(&self) -> Result<Vec<PathBuf>> {
        let root = self.unsynced_root();
        let current = boot_id()?;
        let mut boots = Vec::new();
        for boot in std::fs::read_dir(&root).map_err(StoreError::io(&root))? {
            let boot = boot.map_err(StoreError::io(&root))?;
            if boot.file_name().to_str() != Some(current) {
                boots.push(boot.path());
            }
        }
        Ok(boots)
    }

    /// Removes the snapshots recorded under earlier boots, each before its
    /// record. Done first, and on its own, because the store is used even
    /// when [`Store::recover_earlier_boots`] fails, and no snapshot a crash
    /// may have cut short must stay in use. Call with the exclusive lock
    /// held.
    pub(crate) fn remove_earlier_boots_snapshots(&self) -> Result<()> {
        for boot in self.earlier_boots()? {
            for name in list_dir_names(&boot)? {
                if name != BLOBS {
                    remove_dir_atomic(self, &self.snapshots_dir().join(&name))?;
                    remove_file_if_exists(&boot.join(&name))?;
                }
            }
        }
        Ok(())
    }

    /// Undoes what a crash may have lost of the blobs of earlier boots (see
    /// the module docs), then removes their records. The images removed
    /// from index.json go to [`Store::lost_in_crash`]. On an error the
    /// records stay, for the next open to try again. Call with the
    /// exclusive lock held, after [`Store::remove_earlier_boots_snapshots`].
    pub(crate) fn recover_earlier_boots(&mut self) -> Result<()> {
        let root = self.unsynced_root();
        let boots = self.earlier_boots()?;
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
        if !lost.is_empty() {
            // The removals must be durable before the records that made us
            // look at these blobs go.
            fsync_dir(&self.blobs_dir())?;
            self.drop_cache_entries_needing(&lost)?;
            // Before the images: a lost variant costs no image.
            self.forget_variants_of(&lost)?;
            self.lost_in_crash = self.drop_images_needing(&lost)?;
        }
        for boot in &boots {
            std::fs::remove_dir_all(boot).map_err(StoreError::io(boot))?;
        }
        fsync_dir(&root)
    }

    /// Whether the blob `expected` is there and its content matches its
    /// name. One that cannot be read (missing, or an I/O error) is as good
    /// as lost.
    fn blob_is_intact(&self, expected: &Digest) -> Result<bool> {
        let path = self.blob_path(expected)?;
        Ok(hash_file(&path).is_ok_and(|actual| actual == *expected))
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
    /// after the next boot; a store whose lock is held is settled by a
    /// later open.
    pub(crate) fn settle_unsynced_blobs(&self, age: Duration) -> usize {
        let Ok(boot) = boot_id() else { return 0 };
        let dir = self.unsynced_dir(boot, Unsynced::Blob);
        // A look without the lock first, so that most opens take none.
        if old_records(&dir, age).is_empty() {
            return 0;
        }
        // Exclusive, and only if free: a record whose blob is missing counts
        // as settled, which is right only while no commit is between
        // finding that record and renaming the blob in (a commit holds the
        // shared lock from its record to its rename).
        let Ok(Some(_guard)) = self.try_lock_exclusive() else {
            return 0;
        };
        self.settle_records(&old_records(&dir, age)).unwrap_or(0)
    }

    /// Makes the blob `hex` durable now if this boot recorded it as
    /// unsynced, and removes the record: for a write that promises
    /// durability (a pull, a load, an import, [`crate::BlobWriter::commit`])
    /// and found the blob stored already. Call with a lock held and the
    /// blob present, so that no GC removes it meanwhile.
    pub(crate) fn settle_one(&self, hex: &str) -> Result<()> {
        let Ok(boot) = boot_id() else {
            return Ok(()); // no boot ID, no records
        };
        if !self.unsynced_dir(boot, Unsynced::Blob).join(hex).exists() {
            return Ok(());
        }
        self.settle_records(&[OsString::from(hex)]).map(|_| ())
    }

    /// fdatasyncs the recorded blobs `names`, then `blobs/` (their renames
    /// were not synced either), then removes their records; returns how
    /// many went. A missing blob counts as settled (see the callers'
    /// locks). A blob whose sync fails keeps its record; the first such
    /// error is returned after the others are settled.
    fn settle_records(&self, names: &[OsString]) -> Result<usize> {
        let dir = self.unsynced_dir(boot_id()?, Unsynced::Blob);
        let mut synced = Vec::new();
        let mut failed = None;
        for name in names {
            let blob = self.blobs_dir().join(name);
            match File::open(&blob).and_then(|file| file.sync_data()) {
                Ok(()) => synced.push(name),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => synced.push(name),
                Err(err) => failed = failed.or(Some(StoreError::io(&blob)(err))),
            }
        }
        let mut removed = 0;
        if !synced.is_empty() {
            fsync_dir(&self.blobs_dir())?;
            for name in synced {
                removed += usize::from(remove_file_if_exists(&dir.join(name))?);
            }
        }
        failed.map_or(Ok(removed), Err)
    }
}

/// The records in `dir` older than `age`, at most [`SETTLE_PER_OPEN`].
fn old_records(dir: &Path, age: Duration) -> Vec<OsString> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let cutoff = SystemTime::now().checked_sub(age);
    entries
        .flatten()
        .filter(|e| {
            let modified = e.metadata().and_then(|m| m.modified());
            matches!((modified, cutoff), (Ok(m), Some(c)) if m <= c)
        })
        .take(SETTLE_PER_OPEN)
        .map(|e| e.file_name())
        .collect()
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
