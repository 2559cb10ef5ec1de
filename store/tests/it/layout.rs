//! Opening a root: the layout it creates, and what it cleans up.

use std::os::unix::fs::PermissionsExt;

use hoist_store::Store;
use hoist_store::fsck::Problem;

use crate::common::{assert_valid, temp_store};

#[test]
fn open_creates_the_layout_with_a_private_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/root");
    let store = Store::open(&root).unwrap();
    for path in ["oci-layout", "index.json", "hoist/lock"] {
        assert!(root.join(path).is_file(), "{path}");
    }
    for path in [
        "blobs/sha256",
        "hoist/tmp",
        "hoist/snapshots",
        "hoist/cache",
    ] {
        assert!(root.join(path).is_dir(), "{path}");
    }
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the root is private");
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    assert!(store.tmp_dir().starts_with(root.join("hoist/tmp")));
    assert_valid(&store);
}

#[test]
fn open_removes_dead_sessions_but_not_live_ones() {
    let (_dir, live) = temp_store();
    let root = live.root().to_owned();
    let in_flight = live.temp_path("in-flight");
    std::fs::write(&in_flight, b"half a layer").unwrap();
    // What a SIGKILLed process leaves: a session nobody holds, and a stray.
    let dead = root.join("hoist/tmp/s-1-2-0");
    std::fs::create_dir_all(dead.join("snapshot/usr")).unwrap();
    std::fs::write(dead.join("blob-0"), b"partial").unwrap();
    std::fs::write(root.join("hoist/tmp/stray"), b"x").unwrap();

    let other = Store::open(&root).unwrap();
    assert!(!dead.exists(), "a dead session is removed");
    assert_eq!(
        trash_entries(&root),
        ["s-1-2-0"],
        "a dead session waits in the trash, moved there whole"
    );
    assert!(
        !root.join("hoist/tmp/stray").exists(),
        "an unheld stray is removed"
    );
    assert!(
        in_flight.exists(),
        "a live session's files are never touched"
    );
    drop(other);
    drop(live);
    let sessions = std::fs::read_dir(root.join("hoist/tmp")).unwrap().count();
    assert_eq!(sessions, 0, "closed sessions clean up after themselves");
}

/// A tree left in a session goes to the trash when the store closes,
/// rather than be deleted as the command ends.
#[test]
fn a_closing_session_moves_trees_to_the_trash() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let context = store.temp_path("context");
    std::fs::create_dir_all(context.join("src")).unwrap();
    std::fs::write(context.join("src/main.c"), b"int main;").unwrap();
    std::fs::write(store.temp_path("file"), b"x").unwrap();
    let session = store.tmp_dir().to_owned();
    drop(store);
    assert!(!session.exists(), "the session is gone");
    let name = context.file_name().unwrap().to_str().unwrap();
    assert_eq!(trash_entries(&root), [name], "the tree is in the trash");
}

/// The trash's entries, by what they were before (without the time).
fn trash_entries(root: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("hoist/trash"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.split_once('-')
                .map_or(name.clone(), |(_, what)| what.to_owned())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn fsck_reports_and_repairs_strays() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    std::fs::write(root.join("blobs/sha256/not-a-digest"), b"x").unwrap();
    std::fs::create_dir(root.join("hoist/snapshots/half-extracted")).unwrap();
    std::fs::write(
        root.join("hoist/snapshots").join("a".repeat(64)),
        b"not a dir",
    )
    .unwrap();
    std::fs::write(
        root.join("hoist/cache")
            .join(format!("{}.json", "b".repeat(64))),
        b"{broken",
    )
    .unwrap();
    let report = store.fsck(false).unwrap();
    let kinds: Vec<&str> = report
        .problems
        .iter()
        .map(|p| match p {
            Problem::StrayFile(_) => "stray",
            Problem::BadSnapshot { .. } => "snapshot",
            Problem::BadCacheEntry { .. } => "cache",
            _ => "other",
        })
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["cache", "snapshot", "snapshot", "stray"],
        "{:#?}",
        report.problems
    );
    store.fsck(true).unwrap();
    assert_valid(&store);
}

/// A duplicate snapshot (a `--no-cache` rebuild of the same layer) goes to
/// the trash with one rename instead of being deleted file by file; the
/// trash is emptied later: by anyone of what is old enough, and all of it
/// by GC (issue 9).
#[test]
fn r9_duplicate_snapshots_go_to_the_trash() {
    use hoist_store::trash::{BUILD_MIN_AGE, empty_trash};
    let dir = tempfile::tempdir().unwrap();
    let store = hoist_store::Store::open(dir.path().join("root")).unwrap();
    let chain: hoist_store::digest::ChainId =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
    let stage = |content: &[u8]| {
        let staged = store.temp_path("snap");
        std::fs::create_dir_all(staged.join("d")).unwrap();
        for i in 0..50 {
            std::fs::write(staged.join(format!("d/{i}")), content).unwrap();
        }
        staged
    };
    let first = store.commit_snapshot(&stage(b"one"), &chain).unwrap();
    let staged = stage(b"two");
    let second = store.commit_snapshot(&staged, &chain).unwrap();
    assert_eq!(first, second);
    assert!(!staged.exists(), "the duplicate left the session");
    assert_eq!(
        std::fs::read(first.join("d/7")).unwrap(),
        b"one",
        "the first one stays"
    );
    let trash = store.trash_dir();
    let entries = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&trash)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let young = entries();
    assert_eq!(young.len(), 1);
    crate::common::assert_valid(&store);

    // One trashed an hour ago, and one left by an older hoist (no time).
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let nanos = hour_ago
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    for old in [format!("{nanos}-snap-1"), "s-step-1".to_owned()] {
        std::fs::create_dir_all(trash.join(old).join("d")).unwrap();
    }
    assert_eq!(empty_trash(&trash, BUILD_MIN_AGE), 2, "the old ones");
    assert_eq!(entries(), young, "the young one stays");
    assert_eq!(empty_trash(&trash, BUILD_MIN_AGE), 0, "nothing twice");

    // GC empties all of it.
    store.commit_snapshot(&stage(b"three"), &chain).unwrap();
    assert_eq!(entries().len(), 2);
    store.gc(&hoist_store::gc::GcOptions::default()).unwrap();
    assert_eq!(entries().len(), 0);
    crate::common::assert_valid(&store);
}
