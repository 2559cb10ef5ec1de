//! One session per open [`crate::Store`]: a private, flock-held directory
//! under `hoist/tmp` for temp files, and the lease file listing what this
//! session created or looked up, so that GC leaves work in flight alone.
//!
//! A session directory whose lock can be taken belongs to a dead process
//! (flocks die with their holder, even on SIGKILL), and the next open moves
//! it to the trash ([`crate::trash`]) with one rename: after a build killed
//! in a 20,000-file COPY, the next build does not wait for the delete.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::{ChainId, Digest, parse_digest};
use crate::lock::try_lock_exclusive;
use crate::{Result, StoreError};

const LEASES: &str = "leases";

pub(crate) struct Session {
    dir: PathBuf,
    /// The store's trash, where dead sessions and trees left behind go.
    trash: PathBuf,
    _lock: File,
    leases: File,
    leased: Mutex<HashSet<String>>,
    counter: AtomicU64,
}

/// What live sessions hold: roots for GC.
#[derive(Default)]
pub(crate) struct Leases {
    pub blobs: HashSet<String>,
    pub chain_ids: HashSet<String>,
}

impl Session {
    pub(crate) fn create(tmp_root: &Path, trash: &Path) -> Result<Session> {
        for attempt in 0u32.. {
            let dir = tmp_root.join(format!("s-{}-{}-{attempt}", std::process::id(), nanos()));
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(StoreError::io(&dir)(err)),
            }
            let lock = match File::open(&dir) {
                Ok(lock) => lock,
                // Swept by another process's open before we could lock it.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(StoreError::io(&dir)(err)),
            };
            // Another process's cleanup may have grabbed the new directory
            // between mkdir and flock; then take a new name.
            if !try_lock_exclusive(&lock, &dir)? || !same_inode(&lock, &dir) {
                continue;
            }
            let leases_path = dir.join(LEASES);
            let leases = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&leases_path)
                .map_err(StoreError::io(&leases_path))?;
            return Ok(Session {
                dir,
                trash: trash.to_owned(),
                _lock: lock,
                leases,
                leased: Mutex::new(HashSet::new()),
                counter: AtomicU64::new(0),
            });
        }
        unreachable!("the loop only exits by returning")
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh path inside the session directory.
    pub(crate) fn temp_path(&self, prefix: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{prefix}-{n}"))
    }

    pub(crate) fn lease_blob(&self, digest: &Digest) -> Result<()> {
        self.lease(&format!("blob {digest}"))
    }

    pub(crate) fn lease_chain_id(&self, chain_id: &ChainId) -> Result<()> {
        self.lease(&format!("chain {chain_id}"))
    }

    fn lease(&self, line: &str) -> Result<()> {
        let mut leased = self
            .leased
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if leased.contains(line) {
            return Ok(());
        }
        // One write(2) per line with O_APPEND: readers never see a torn line
        // from concurrent writers of this session.
        (&self.leases)
            .write_all(format!("{line}\n").as_bytes())
            .map_err(StoreError::io(self.dir.join(LEASES)))?;
        leased.insert(line.to_owned());
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next open anyway. Trees
        // their owners left here go to the trash, one rename each, rather
        // than hold up the end of the command; what is left is a few small
        // files.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = discard(&entry.path(), &self.trash);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn same_inode(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Moves every entry of `hoist/tmp` not held by a live session to the
/// trash (a stray file is deleted), and returns the leases of the live ones
/// (including `own`).
pub(crate) fn sweep_and_collect_leases(tmp_root: &Path, own: &Session) -> Result<Leases> {
    let mut leases = Leases::default();
    let entries = std::fs::read_dir(tmp_root).map_err(StoreError::io(tmp_root))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io(tmp_root))?;
        let path = entry.path();
        if path == own.dir {
            read_leases(&path, &mut leases);
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue; // vanished meanwhile: its owner cleaned up
        };
        if try_lock_exclusive(&file, &path)? {
            // Dead owner. Holding its lock while it moves keeps a racing
            // sweeper from taking it too (it then reads no leases from the
            // path, which is gone); the name is never reused, and a session
            // being created checks that its lock is on the path's inode.
            // Recovery from a machine crash (crate::unsynced) needs nothing
            // in here, and the trash deletes it no sooner than before.
            discard(&path, &own.trash).map_err(StoreError::io(&path))?;
        } else {
            read_leases(&path, &mut leases);
        }
    }
    Ok(leases)
}

/// Moves the directory `path` to the trash ([`crate::trash::move_in`]);
/// deletes a file. Gone already is fine.
fn discard(path: &Path, trash: &Path) -> std::io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            return crate::trash::move_in(trash, path, &name);
        }
        Ok(_) => std::fs::remove_file(path),
        Err(err) => Err(err),
    };
    match result {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

fn read_leases(dir: &Path, leases: &mut Leases) {
    let Ok(file) = File::open(dir.join(LEASES)) else {
        return;
    };
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        // A torn or unknown line leases nothing; its writer has not yet
        // published the thing it names.
        if let Some(d) = line.strip_prefix("blob ") {
            if let Ok(d) = parse_digest(d) {
                leases.blobs.insert(d.digest().to_owned());
            }
        } else if let Some(c) = line.strip_prefix("chain ")
            && let Ok(c) = c.parse::<ChainId>()
        {
            leases.chain_ids.insert(c.hex().to_owned());
        }
    }
}
