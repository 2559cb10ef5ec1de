//! Opening a store root and the file primitives every module shares:
//! atomic replace (temp, fsync, rename, fsync the directory) and locks.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::digest::ChainId;
use crate::lock::{LockGuard, lock, try_lock};
use crate::session::{Leases, Session, sweep_and_collect_leases};
use crate::unsynced::{SETTLED_AFTER, Unsynced};
use crate::{Result, StoreError};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub(crate) const EMPTY_INDEX: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// An open store root. Cheap to share between threads (`&Store` is enough
/// for every operation); dropping it removes its session's temp directory.
pub struct Store {
    root: PathBuf,
    session: Session,
    lazy: crate::lazy::Lazy,
    /// Images this open removed because a crash lost blobs they need.
    pub(crate) lost_in_crash: Vec<String>,
    /// Why this open could not finish undoing a machine crash.
    unfinished_recovery: Option<StoreError>,
}

/// The default root: `/var/lib/hoist` for root, else `$XDG_DATA_HOME/hoist`,
/// else `~/.local/share/hoist`. (`--root` and `$HOIST_ROOT` are the cli's.)
pub fn default_root() -> Result<PathBuf> {
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/hoist"));
    }
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    if let Some(data) = non_empty("XDG_DATA_HOME") {
        return Ok(PathBuf::from(data).join("hoist"));
    }
    match non_empty("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/hoist")),
        None => Err(StoreError::invalid(
            "store root",
            "neither $XDG_DATA_HOME nor $HOME is set; pass --root",
        )),
    }
}

impl Store {
    /// Opens the store at `root`, creating the layout when missing (the root
    /// itself with mode 0700), moves what crashed processes left in
    /// `hoist/tmp` to the trash, removes what a machine crash may have lost (see
    /// [`Store::lost_in_crash`]).
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)
                .map_err(StoreError::io(&root))?;
        }
        for dir in [
            "blobs/sha256",
            "hoist/tmp",
            "hoist/snapshots",
            "hoist/cache",
            "hoist/compressed",
            "hoist/unsynced",
            "hoist/trash",
        ] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(StoreError::io(&path))?;
        }
        let session = Session::create(&root.join("hoist/tmp"), &root.join("hoist/trash"))?;
        let mut store = Store {
            root,
            session,
            lazy: crate::lazy::Lazy::default(),
            lost_in_crash: Vec::new(),
            unfinished_recovery: None,
        };
        store.create_if_missing("oci-layout", OCI_LAYOUT)?;
        store.create_if_missing("index.json", EMPTY_INDEX)?;
        {
            // Shared: a concurrent GC must not run while we sweep tmp.
            let _guard = store.lock_shared()?;
            sweep_and_collect_leases(&store.tmp_root(), &store.session)?;
        }
        if store.has_earlier_boot_records()? {
            let _guard = store.lock_exclusive()?;
            store.remove_earlier_boots_snapshots()?;
            // A failure here must not keep every command from running
            // (`rmi` and `system prune` free a full disk, `fsck --repair`
            // mends what cannot be read): the next open tries again.
            if let Err(err) = store.recover_earlier_boots() {
                store.unfinished_recovery = Some(err);
            }
        }
        store.settle_unsynced_blobs(SETTLED_AFTER);
        Ok(store)
    }

    /// The images (`name:tag`, or the manifest digest of an untagged one)
    /// that this open removed from index.json: a machine crash lost layers
    /// they need before those reached the disk (see
    /// [`crate::BlobWriter::commit_unsynced`]). Build them again.
    pub fn lost_in_crash(&self) -> &[String] {
        &self.lost_in_crash
    }

    /// Why this open could not finish checking what a machine crash cut
    /// short (a full disk, an unreadable directory): until an open does,
    /// some cache entries or tags may name a blob the crash cost.
    pub fn unfinished_recovery(&self) -> Option<&StoreError> {
        self.unfinished_recovery.as_ref()
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This session's private temp directory on the store's filesystem.
    /// Everything written there disappears with the session (or on the next
    /// open after a crash); rename finished work out of it.
    pub fn tmp_dir(&self) -> &Path {
        self.session.dir()
    }

    /// A fresh, unused path inside [`Store::tmp_dir`].
    pub fn temp_path(&self, prefix: &str) -> PathBuf {
        self.session.temp_path(prefix)
    }

    /// `hoist/snapshots`: `<dir>/<chainid-hex>` exists only when complete.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("hoist/snapshots")
    }

    /// The directory of the snapshot for `chain_id` (it may not exist).
    pub fn snapshot_path(&self, chain_id: &ChainId) -> PathBuf {
        self.snapshots_dir().join(chain_id.hex())
    }

    /// Protects the snapshot of `chain_id` from GC for this session's
    /// lifetime. Call it before looking a snapshot up or creating one.
    pub fn lease_chain_id(&self, chain_id: &ChainId) -> Result<()> {
        let _guard = self.lock_shared()?;
        self.session.lease_chain_id(chain_id)
    }

    /// Protects the blob `digest` from GC for this session's lifetime.
    pub fn lease_blob(&self, digest: &crate::digest::Digest) -> Result<()> {
        let _guard = self.lock_shared()?;
        self.session.lease_blob(digest)
    }

    /// Publishes a fully extracted snapshot: leases `chain_id`, renames
    /// `staged` (a directory inside [`Store::tmp_dir`]) to
    /// `hoist/snapshots/<hex>`. When another process won the race the
    /// staged copy is removed and the existing one kept. Returns the
    /// snapshot's path.
    ///
    /// Durability: a snapshot's files are never fsynced, one by one or with
    /// `syncfs`. A snapshot is only a cache of the layer blob it was made
    /// from (or made into). So before the rename, the snapshot is recorded
    /// as written during this boot (`hoist/unsynced/<boot-id>/<hex>`, the
    /// one fsync it costs); the kernel writes its data back in its own
    /// time, and [`Store::open`] in a later boot removes every snapshot
    /// recorded under an earlier boot, which is then extracted again from
    /// its blob when needed. A process that dies leaves its page cache
    /// intact, so only a machine crash (or a reboot) costs anything, and
    /// never a corrupt snapshot. (The blob a build made is itself durable
    /// only some 30 s later: see [`crate::BlobWriter::commit_unsynced`].)
    pub fn commit_snapshot(&self, staged: &Path, chain_id: &ChainId) -> Result<PathBuf> {
        let target = self.snapshot_path(chain_id);
        let _guard = self.lock_shared()?;
        self.session.lease_chain_id(chain_id)?;
        if target.exists() {
            self.discard_tree(staged)?;
            return Ok(target);
        }
        self.record_unsynced(Unsynced::Snapshot, chain_id.hex())?;
        match std::fs::rename(staged, &target) {
            Ok(()) => {}
            // ENOTEMPTY/EEXIST: a concurrent commit of the same chain won.
            Err(_) if target.is_dir() => {
                self.discard_tree(staged)?;
                return Ok(target);
            }
            Err(err) => return Err(StoreError::io(&target)(err)),
        }
        // No fsync of snapshots/: a rename lost in a crash leaves the tree
        // in a dead session's directory, removed by the next open.
        Ok(target)
    }

    /// `hoist/trash`: trees nobody needs, deleted off the critical path
    /// once they are a few minutes old, or by GC (see [`crate::trash`]).
    pub fn trash_dir(&self) -> PathBuf {
        self.root.join("hoist/trash")
    }

    /// Moves a tree nobody needs (a duplicate of a snapshot that already
    /// exists, as a `--no-cache` rebuild makes) to the trash: one rename,
    /// where deleting 20,000 just-written files can take many seconds.
    fn discard_tree(&self, dir: &Path) -> Result<()> {
        let name = dir
            .strip_prefix(self.tmp_root())
            .map(|rel| rel.to_string_lossy().replace('/', "-"))
            .unwrap_or_else(|_| "tree".to_owned());
        crate::trash::move_in(&self.trash_dir(), dir, &name).map_err(StoreError::io(dir))
    }

    pub(crate) fn lazy(&self) -> &crate::lazy::Lazy {
        &self.lazy
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    pub(crate) fn tmp_root(&self) -> PathBuf {
        self.root.join("hoist/tmp")
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.root.join("hoist/cache")
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub(crate) fn lock_path(&self) -> PathBuf {
        self.root.join("hoist/lock")
    }

    pub(crate) fn lock_shared(&self) -> Result<LockGuard> {
        lock(&self.lock_path(), false)
    }

    pub(crate) fn lock_exclusive(&self) -> Result<LockGuard> {
        lock(&self.lock_path(), true)
    }

    /// The exclusive lock if nobody holds the lock now; `None` when busy.
    pub(crate) fn try_lock_exclusive(&self) -> Result<Option<LockGuard>> {
        try_lock(&self.lock_path())
    }

    /// Sweeps dead sessions and returns the leases of the live ones. Call
    /// with the exclusive lock held.
    pub(crate) fn live_leases(&self) -> Result<Leases> {
        sweep_and_collect_leases(&self.tmp_root(), &self.session)
    }

    /// Atomically replaces `path` with `bytes`: temp file in the session,
    /// fsync, rename, fsync the parent directory.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.temp_path("replace");
        let mut file = File::create(&tmp).map_err(StoreError::io(&tmp))?;
        file.write_all(bytes).map_err(StoreError::io(&tmp))?;
        file.sync_all().map_err(StoreError::io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(StoreError::io(path))?;
        if let Some(parent) = path.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }

    fn create_if_missing(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(name);
        if path.exists() {
            return Ok(());
        }
        // Exclusive: two first opens racing must not clobber a tag written
        // in between.
        let _guard = self.lock_exclusive()?;
        if path.exists() {
            return Ok(());
        }
        self.write_atomic(&path, bytes)
    }
}

/// fsyncs a directory so that renames into it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(StoreError::io(path)(err)),
    }
}

/// Removes a directory tree atomically as seen by others: rename it into the
/// session first so a crash mid-delete never leaves a half tree in place.
pub(crate) fn remove_dir_atomic(store: &Store, dir: &Path) -> Result<()> {
    match unpublish_dir(store, dir)? {
        Some(doomed) => std::fs::remove_dir_all(&doomed).map_err(StoreError::io(&doomed)),
        None => Ok(()),
    }
}

/// Moves `dir` into the session's temp directory (fsyncing its parent) and
/// returns where it went; `None` when it did not exist. Deleting the moved
/// tree can then happen without holding any lock.
pub(crate) fn unpublish_dir(store: &Store, dir: &Path) -> Result<Option<PathBuf>> {
    let doomed = store.temp_path("doomed");
    match std::fs::rename(dir, &doomed) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StoreError::io(dir)(err)),
    }
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(Some(doomed))
}
