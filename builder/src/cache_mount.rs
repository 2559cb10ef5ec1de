//! `RUN --mount=type=cache` directories and their `sharing` modes, as
//! BuildKit has them: `shared` (the default) lets every build use the
//! directory at once, `locked` waits until no other build uses it, and
//! `private` gives a build a fresh directory when another one holds it.
//!
//! Each directory (`hoist/mounts/<sha256 of id>`) has a lock file in
//! `hoist/mount-locks`; a user holds it shared (`shared`) or exclusive
//! (`locked`, `private`) for the length of its RUN. Every user also holds
//! `<hex>.use` shared, which `hoist builder prune` takes exclusive (without
//! waiting) before it removes a directory: a mount in use is never removed.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hoist_parser::Sharing;
use rustix::fs::FlockOperation;

use crate::error::StepError;

/// Who owns a new cache directory, and its mode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// The cache mounts one RUN holds; dropping it releases them.
#[derive(Default)]
pub(crate) struct Leases {
    held: RefCell<Vec<Lease>>,
}

struct Lease {
    _lock: Option<File>,
    _in_use: File,
    _private: Option<tempfile::TempDir>,
}

impl Leases {
    /// The directory of cache mount `id` for this RUN, held as `sharing`
    /// says. `mounts` is `hoist/mounts`; `tmp` is where a private copy
    /// goes when the shared one is taken.
    pub fn acquire(
        &self,
        mounts: &Path,
        tmp: &Path,
        id: &str,
        sharing: Sharing,
        owner: Owner,
    ) -> Result<PathBuf, StepError> {
        let hex = hoist_store::digest::sha256_bytes(id.as_bytes());
        let hex = &hex.to_string()["sha256:".len()..];
        let dir = mounts.join(hex);
        let locks = mounts.with_file_name("mount-locks");
        fs_err::create_dir_all(&locks).map_err(StepError::io("creating cache mount locks"))?;
        // Held shared for the whole RUN, whatever the sharing mode: a
        // prune takes it exclusive and leaves a mount in use alone. Taken
        // first, so a prune in progress finishes before the directory is
        // looked at (and made again if it went).
        let in_use = lock_in_use(&locks.join(format!("{hex}.use")))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(locks.join(hex))
            .map_err(StepError::io("opening a cache mount lock"))?;
        let (lock, dir, private) = match sharing {
            Sharing::Shared => {
                // Shared users never wait; holding the lock shared only
                // makes `locked` and `private` users see them.
                let held = rustix::fs::flock(&lock, FlockOperation::NonBlockingLockShared).is_ok();
                (held.then_some(lock), dir, None)
            }
            Sharing::Locked => {
                rustix::fs::flock(&lock, FlockOperation::LockExclusive)
                    .map_err(|e| StepError::io("locking a cache mount")(std::io::Error::from(e)))?;
                (Some(lock), dir, None)
            }
            Sharing::Private => {
                if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
                    (Some(lock), dir, None)
                } else {
                    let fresh = tempfile::Builder::new()
                        .prefix("cache-mount-")
                        .tempdir_in(tmp)
                        .map_err(StepError::io("creating a private cache mount"))?;
                    let path = fresh.path().join("dir");
                    (None, path, Some(fresh))
                }
            }
        };
        if dir.is_dir() {
            // Its mtime is its last use, for `prune --filter until=`.
            let now = std::time::SystemTime::now();
            let _ = File::open(&dir).and_then(|d| d.set_modified(now));
        } else {
            fs_err::create_dir_all(&dir).map_err(StepError::io("creating a cache mount"))?;
            std::os::unix::fs::chown(&dir, Some(owner.uid), Some(owner.gid))
                .map_err(StepError::io("chown of a cache mount"))?;
            fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(owner.mode))
                .map_err(StepError::io("chmod of a cache mount"))?;
        }
        self.held.borrow_mut().push(Lease {
            _lock: lock,
            _in_use: in_use,
            _private: private,
        });
        Ok(dir)
    }
}

/// Opens the use lock at `path` and holds it shared. A prune removes the
/// lock files with their mount while it holds this lock exclusive: when
/// the file this RUN locked is no longer the one at `path`, nobody else
/// will see the lock, so it opens the path again.
fn lock_in_use(path: &Path) -> Result<File, StepError> {
    use std::os::unix::fs::MetadataExt as _;
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(StepError::io("opening a cache mount lock"))?;
        rustix::fs::flock(&file, FlockOperation::LockShared)
            .map_err(|e| StepError::io("locking a cache mount")(std::io::Error::from(e)))?;
        let held = file
            .metadata()
            .map_err(StepError::io("reading a cache mount lock"))?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => return Ok(file),
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(StepError::io("reading a cache mount lock")(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const OWNER: Owner = Owner {
        uid: 0,
        gid: 0,
        mode: 0o755,
    };

    /// `locked` waits for the holder; `private` takes a fresh directory
    /// instead; `shared` takes the same one at once.
    #[test]
    fn r8_cache_mount_sharing_modes() {
        let root = tempfile::tempdir().unwrap();
        let mounts = root.path().join("hoist/mounts");
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let holder = Leases::default();
        let held = holder
            .acquire(&mounts, &tmp, "id", Sharing::Locked, OWNER)
            .unwrap();

        let private = Leases::default();
        let fresh = private
            .acquire(&mounts, &tmp, "id", Sharing::Private, OWNER)
            .unwrap();
        assert_ne!(fresh, held, "private: a fresh directory while held");
        assert!(fresh.starts_with(&tmp));
        drop(private);
        assert!(!fresh.exists(), "the private copy goes with its user");

        let shared = Leases::default();
        assert_eq!(
            shared
                .acquire(&mounts, &tmp, "id", Sharing::Shared, OWNER)
                .unwrap(),
            held
        );
        drop(shared);

        let (events, order) = mpsc::channel();
        std::thread::scope(|scope| {
            let waiter_events = events.clone();
            let (mounts, tmp) = (&mounts, &tmp);
            scope.spawn(move || {
                let waiter = Leases::default();
                waiter
                    .acquire(mounts, tmp, "id", Sharing::Locked, OWNER)
                    .unwrap();
                waiter_events.send("waiter got it").unwrap();
            });
            // The waiter cannot get it while we hold it: wait for it to
            // block, by its lock attempt failing for a third party.
            let probe = Leases::default();
            let other = probe
                .acquire(mounts, tmp, "id", Sharing::Private, OWNER)
                .unwrap();
            assert_ne!(other, held);
            events.send("holder releases").unwrap();
            drop(holder);
        });
        let order: Vec<&str> = order.try_iter().collect();
        assert_eq!(order, ["holder releases", "waiter got it"]);
    }

    /// A prune never removes a cache mount a RUN holds, whatever its
    /// sharing mode, and removes it once the RUN let go.
    #[test]
    fn r8_prune_leaves_a_cache_mount_in_use() {
        let root = tempfile::tempdir().unwrap();
        let store = hoist_store::Store::open(root.path()).unwrap();
        let mounts = store.root().join("hoist/mounts");
        let prune = hoist_store::gc::GcOptions {
            cache_mounts: true,
            ..Default::default()
        };
        for sharing in [Sharing::Shared, Sharing::Locked, Sharing::Private] {
            let run = Leases::default();
            let dir = run
                .acquire(&mounts, store.tmp_dir(), "id", sharing, OWNER)
                .unwrap();
            std::fs::write(dir.join("warm"), "x").unwrap();
            let report = store.gc(&prune).unwrap();
            assert_eq!(report.cache_mounts, 0, "{sharing:?}: in use");
            assert!(dir.join("warm").is_file(), "{sharing:?}: in use");
        }
        // A shared user that came while a locked one held the mount has no
        // sharing lock, but it still uses the directory.
        let locked = Leases::default();
        let dir = locked
            .acquire(&mounts, store.tmp_dir(), "id", Sharing::Locked, OWNER)
            .unwrap();
        let shared = Leases::default();
        let same = shared
            .acquire(&mounts, store.tmp_dir(), "id", Sharing::Shared, OWNER)
            .unwrap();
        assert_eq!(same, dir);
        drop(locked);
        assert_eq!(store.gc(&prune).unwrap().cache_mounts, 0);
        assert!(dir.join("warm").is_file());
        drop(shared);
        // Every lease above is dropped now.
        let locks = store.root().join("hoist/mount-locks");
        assert_eq!(
            std::fs::read_dir(&locks).unwrap().count(),
            2,
            "use and sharing"
        );
        let report = store.gc(&prune).unwrap();
        assert_eq!(report.cache_mounts, 1);
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read_dir(&locks).unwrap().count(),
            0,
            "the lock files go with their mount"
        );
    }

    /// A RUN that opened a use lock which a prune then removed does not
    /// keep the removed file: it locks the one at the path, which the next
    /// prune sees.
    #[test]
    fn r8_a_use_lock_removed_while_waited_for_is_opened_again() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("x.use");
        let pruner = File::create(&path).unwrap();
        rustix::fs::flock(&pruner, FlockOperation::LockExclusive).unwrap();
        let old_inode = std::os::unix::fs::MetadataExt::ino(&pruner.metadata().unwrap());
        std::thread::scope(|scope| {
            let path = &path;
            let user = scope.spawn(move || lock_in_use(path).unwrap());
            // Once the user waits on the old file (a blocked flock shows
            // in /proc/locks as "->"), remove it and let go, as a prune.
            let blocked = format!(":{old_inode} ");
            while !std::fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .any(|l| l.contains("->") && l.contains(&blocked))
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            std::fs::remove_file(path).unwrap();
            drop(pruner);
            let held = user.join().unwrap();
            let at_path = File::open(path).expect("the user made the lock file again");
            assert_eq!(
                rustix::fs::flock(&at_path, FlockOperation::NonBlockingLockExclusive),
                Err(rustix::io::Errno::WOULDBLOCK),
                "the user holds the lock at the path"
            );
            drop(held);
        });
    }
}
