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
