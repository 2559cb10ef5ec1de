//! The trash, `<root>/hoist/trash`: trees nobody needs (a duplicate snapshot
//! that a `--no-cache` rebuild makes, a step's scratch root) are moved there
//! with one rename, so that nobody waits for them to be deleted.
//!
//! An entry is named `<unix-nanos>-<what>`, the time it was trashed first
//! ([`entry_path`]). A build deletes only entries older than
//! [`BUILD_MIN_AGE`], on a thread of the lowest priority: deleting costs
//! CPU, and on ext4 without a journal, inodes freed in the last minute are
//! skipped, one by one, whenever new ones are allocated, so deleting while
//! builds run slows the builds that follow. A burst of builds (CI, an
//! edit-build loop) then deletes nothing between them, and the space comes
//! back minutes later. When the filesystem is nearly full ([`nearly_full`])
//! a build empties it all before it starts, and GC always empties it all.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a tree stays in the trash before a build deletes it: longer
/// than the pauses within a burst of builds (an edit-build loop, the
/// builds of a CI job), short enough that the space comes back within the
/// same working session.
pub const BUILD_MIN_AGE: Duration = Duration::from_secs(5 * 60);

/// Below this much free space a filesystem is [`nearly_full`], whatever
/// its size: what a build writes (a `--no-cache` rebuild of a 3 GB image
/// writes 3 GB again, and leaves as much in the trash) does not grow with
/// the disk, so a share of the disk is the wrong measure. A tenth would be
/// 1.6 GB of a 16 GB CI disk, less than such a build needs, and 25 GB of
/// a 250 GB workstation, where every build would then wait for deletes.
const NEARLY_FULL_BYTES: u64 = 4 << 30;
/// Below this share of free inodes a filesystem is [`nearly_full`]...
const NEARLY_FULL_PERCENT: u64 = 10;
/// ...when fewer than this are free too: a tenth of a large ext4
/// filesystem is millions of inodes, where a host of many small files may
/// live for good, and far more than a build creates (an image of 100,000
/// files, and its duplicate in the trash, takes 200,000).
const NEARLY_FULL_INODES: u64 = 1 << 20;

/// A fresh path in the trash directory `trash` for the tree `what`
/// describes (a name, no slashes), stamped with the time.
pub fn entry_path(trash: &Path, what: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    trash.join(format!("{nanos}-{what}"))
}

/// Moves the tree `dir` into the trash directory `trash` as `what` (see
/// [`entry_path`]) with one rename. Within one filesystem a rename fails
/// only when it is full (the trash needs a new directory block) or the
/// trash is gone: then `dir` is deleted in place, which is what frees the
/// space. Gone already is fine.
pub fn move_in(trash: &Path, dir: &Path, what: &str) -> std::io::Result<()> {
    // ENOENT names no side: `dir` gone, or the trash; deleting tells.
    let result =
        std::fs::rename(dir, entry_path(trash, what)).or_else(|_| std::fs::remove_dir_all(dir));
    match result {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

/// Deletes the entries of the trash directory `trash` trashed at least
/// `min_age` ago (all of them for [`Duration::ZERO`]); an entry whose name
/// holds no time, left by an older hoist, counts as old. It needs no lock
/// and no open store, so callers may run it on a thread of its own while
/// they work, and leave the rest to the next call if the process ends
/// first; several may run at once. Returns the trees deleted.
pub fn empty_trash(trash: &Path, min_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(trash) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let young = trashed_at(&entry.file_name().to_string_lossy())
            .and_then(|at| now.duration_since(at).ok())
            .is_some_and(|age| age < min_age);
        // Gone already (another process emptying it) is fine too.
        if !young && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether the filesystem holding `path` has less than 4 GiB of space
/// ([`NEARLY_FULL_BYTES`]), or less than a tenth and fewer than about a
/// million ([`NEARLY_FULL_INODES`]) of its inodes, left for
/// unprivileged users: then a build must not wait for the trash to age.
/// `false` when it cannot tell.
pub fn nearly_full(path: &Path) -> bool {
    rustix::fs::statvfs(path).is_ok_and(|fs| {
        Left {
            bytes: fs.f_bavail.saturating_mul(fs.f_frsize),
            inodes: fs.f_favail,
            total_inodes: fs.f_files,
        }
        .is_nearly_full()
    })
}

/// What a filesystem has left for unprivileged users.
struct Left {
    bytes: u64,
    inodes: u64,
    total_inodes: u64,
}

impl Left {
    fn is_nearly_full(&self) -> bool {
        // Some filesystems report no inode count at all (btrfs: 0 files).
        let few_inodes = self.total_inodes > 0
            && self.inodes < NEARLY_FULL_INODES
            && self.inodes.saturating_mul(100)
                < self.total_inodes.saturating_mul(NEARLY_FULL_PERCENT);
        self.bytes < NEARLY_FULL_BYTES || few_inodes
    }
}

fn trashed_at(name: &str) -> Option<SystemTime> {
    let (nanos, _) = name.split_once('-')?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree moves in with one rename; with no trash to move into it is
    /// deleted in place; a tree already gone is no error.
    #[test]
    fn move_in_renames_or_deletes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let trash = dir.path().join("trash");
        std::fs::create_dir(&trash).unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/f"), b"x").unwrap();

        move_in(&trash, &tree, "tree").unwrap();
        assert!(!tree.exists());
        let moved: Vec<_> = std::fs::read_dir(&trash).unwrap().flatten().collect();
        assert_eq!(moved.len(), 1);
        assert!(moved[0].path().join("sub/f").is_file());
        assert!(trashed_at(&moved[0].file_name().to_string_lossy()).is_some());

        std::fs::create_dir_all(tree.join("sub")).unwrap();
        move_in(&dir.path().join("no-trash"), &tree, "tree").unwrap();
        assert!(!tree.exists(), "deleted in place");

        move_in(&trash, &tree, "tree").unwrap();
    }

    #[test]
    fn names_hold_the_time_they_were_trashed() {
        let before = SystemTime::now();
        let path = entry_path(Path::new("/t"), "sess-step-3");
        let name = path.file_name().unwrap().to_str().unwrap();
        let at = trashed_at(name).unwrap();
        assert!(at >= before - Duration::from_millis(1), "{name}");
        assert!(name.ends_with("-sess-step-3"), "{name}");
        for legacy in ["s-123-step-4", "tree", "snap-1-1764700000000000000"] {
            assert_eq!(trashed_at(legacy), None, "{legacy}");
        }
    }

    #[test]
    fn nearly_full_is_under_4_gib_free_whatever_the_disk_or_few_inodes() {
        const G: u64 = 1_000_000_000;
        const M: u64 = 1_000_000;
        // (case, bytes free, inodes free, inodes in all, nearly full)
        for (what, bytes, inodes, total_inodes, full) in [
            ("16 GB disk, 2 GB (12 %) free", 2 * G, M / 2, M, true),
            ("16 GB disk, 5 GB free", 5 * G, M / 2, M, false),
            (
                "250 GB disk, 25 GB (10 %) free",
                25 * G,
                8 * M,
                16 * M,
                false,
            ),
            ("2 TB disk, 3 GB free", 3 * G, 8 * M, 128 * M, true),
            ("small fs, 9 % of inodes free", 25 * G, M * 9 / 100, M, true),
            ("small fs, 10 % of inodes free", 25 * G, M / 10, M, false),
            (
                "large fs, 1.4 M (9 %) inodes free",
                25 * G,
                1_400_000,
                16 * M,
                false,
            ),
            (
                "large fs, 0.5 M (3 %) inodes free",
                25 * G,
                M / 2,
                16 * M,
                true,
            ),
            ("no inode count (btrfs)", 25 * G, 0, 0, false),
            ("saturating", u64::MAX, u64::MAX, u64::MAX, false),
        ] {
            let left = Left {
                bytes,
                inodes,
                total_inodes,
            };
            assert_eq!(left.is_nearly_full(), full, "{what}");
        }
    }
}
