//! flock(2) guards on `hoist/lock`.
//!
//! Shared: writers publishing new content (blob renames, lease appends,
//! cache writes, snapshot renames). Exclusive: index.json edits and GC, so a
//! collector never sees half-published work. Each guard opens its own file
//! description, so guards in different threads of one process exclude each
//! other too; never nest two guards in one thread.

use std::fs::File;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::{Result, StoreError};

pub(crate) struct LockGuard {
    _file: File,
}

pub(crate) fn lock(path: &Path, exclusive: bool) -> Result<LockGuard> {
    let file = open(path)?;
    let op = if exclusive {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::LockShared
    };
    loop {
        match flock(&file, op) {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(StoreError::io(path)(err.into())),
        }
    }
}

/// Takes the exclusive lock on `path` if nobody holds it, without waiting;
/// `None` when some guard does.
pub(crate) fn try_lock(path: &Path) -> Result<Option<LockGuard>> {
    let file = open(path)?;
    Ok(try_lock_exclusive(&file, path)?.then_some(LockGuard { _file: file }))
}

fn open(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(StoreError::io(path))
}

/// Tries to take an exclusive lock without blocking; `false` when someone
/// else holds it.
pub(crate) fn try_lock_exclusive(file: &File, path: &Path) -> Result<bool> {
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(err) => Err(StoreError::io(path)(err.into())),
    }
}
