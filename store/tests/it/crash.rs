//! SIGKILL at random points during writes and during prune: the next open
//! must find a store that fsck calls clean.

use std::time::{Duration, Instant};

use hoist_store::gc::GcOptions;
use hoist_store::{CacheEntry, Store};

use crate::common::{Rng, spawn_child, temp_store, tiny_image};

const ROOT_VAR: &str = "HOIST_IT_CRASH_ROOT";
const ITERATIONS: usize = 20;

/// Writes forever (until killed): images, tags, cache entries, snapshots,
/// untags.
#[test]
#[ignore = "a helper process, run by sigkill_during_writes_leaves_a_clean_store"]
fn child_writer() {
    let root = std::env::var(ROOT_VAR).expect("run by the crash tests");
    let store = Store::open(&root).unwrap();
    let mut rng = Rng::new();
    for i in 0u64.. {
        let seed = format!("{}-{i}", rng.next());
        let image = tiny_image(&store, &seed);
        store.tag(&format!("w:{}", i % 7), &image).unwrap();
        let key = format!("{:064x}", rng.next());
        store
            .cache_put(&CacheEntry::new(
                key,
                serde_json::json!({"i": i}),
                image.blobs(),
                image.chain_ids(),
            ))
            .unwrap();
        let staged = store.temp_path("snap");
        std::fs::create_dir_all(staged.join("d")).unwrap();
        for f in 0..20 {
            std::fs::write(staged.join(format!("d/{f}")), seed.as_bytes()).unwrap();
        }
        store
            .commit_snapshot(&staged, &image.chain_ids()[0])
            .unwrap();
        if i % 5 == 4 {
            let _ = store.untag(&format!("w:{}", (i + 3) % 7));
        }
    }
}

/// Collects everything collectable (until killed, or done).
#[test]
#[ignore = "a helper process, run by sigkill_during_prune_leaves_a_clean_store"]
fn child_pruner() {
    let root = std::env::var(ROOT_VAR).expect("run by the crash tests");
    let store = Store::open(&root).unwrap();
    // Tell the parent the collection starts now, so its kill lands in it.
    std::fs::write(started_marker(std::path::Path::new(&root)), b"").unwrap();
    store
        .gc(&GcOptions {
            all_cache: true,
            dangling_images: true,
            ..GcOptions::default()
        })
        .unwrap();
}

/// Beside the store root, not inside it.
fn started_marker(root: &std::path::Path) -> std::path::PathBuf {
    root.with_extension("prune-started")
}

/// Starts a pruner and returns it once its collection has begun.
fn start_pruner(root: &std::path::Path) -> (std::process::Child, Instant) {
    let marker = started_marker(root);
    let _ = std::fs::remove_file(&marker);
    let mut child = spawn_child("crash::child_pruner", &[(ROOT_VAR, root.to_str().unwrap())]);
    while !marker.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pruner exited before starting"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    (child, Instant::now())
}

fn assert_clean_after_reopen(root: &std::path::Path, what: &str, iteration: usize) {
    let store =
        Store::open(root).unwrap_or_else(|e| panic!("{what} #{iteration}: open failed: {e}"));
    let report = store.fsck(false).unwrap();
    assert!(
        report.is_clean(),
        "{what} #{iteration}: {:#?}",
        report.problems
    );
    let leftovers = std::fs::read_dir(root.join("hoist/tmp")).unwrap().count();
    assert_eq!(
        leftovers, 1,
        "{what} #{iteration}: only our own session remains in hoist/tmp"
    );
    for image in store.list_images().unwrap() {
        store.image(image.image.digest()).unwrap();
    }
}

#[test]
fn sigkill_during_writes_leaves_a_clean_store() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    drop(store);
    let mut rng = Rng::new();
    for iteration in 0..ITERATIONS {
        let mut child = spawn_child("crash::child_writer", &[(ROOT_VAR, root.to_str().unwrap())]);
        std::thread::sleep(Duration::from_millis(30 + rng.below(250)));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_clean_after_reopen(&root, "kill during writes", iteration);
    }
    let store = Store::open(&root).unwrap();
    assert!(
        !store.list_images().unwrap().is_empty(),
        "the children did write"
    );
}

/// Fills the store with collectable content, slow enough to interrupt.
fn make_garbage(store: &Store, rng: &mut Rng) {
    for i in 0..8 {
        let image = tiny_image(store, &format!("g{}-{i}", rng.next()));
        if i % 3 == 0 {
            store.tag(&format!("g:{i}"), &image).unwrap();
            store.untag(&format!("g:{i}")).unwrap();
        }
        store
            .cache_put(&CacheEntry::new(
                format!("{:064x}", rng.next()),
                serde_json::json!({}),
                image.blobs(),
                image.chain_ids(),
            ))
            .unwrap();
        let staged = store.temp_path("snap");
        std::fs::create_dir_all(&staged).unwrap();
        for f in 0..100 {
            std::fs::write(staged.join(f.to_string()), b"x").unwrap();
        }
        store
            .commit_snapshot(&staged, &image.chain_ids()[0])
            .unwrap();
    }
}

#[test]
fn sigkill_during_prune_leaves_a_clean_store() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let keep = tiny_image(&store, "keep");
    store.tag("keep", &keep).unwrap();
    let mut rng = Rng::new();
    // Calibrate: how long does the collection itself take?
    make_garbage(&store, &mut rng);
    drop(store);
    let (mut child, start) = start_pruner(&root);
    assert!(child.wait().unwrap().success());
    let full = start.elapsed().as_micros() as u64;
    eprintln!("a full prune takes {full} µs");
    let mut interrupted = 0;
    // The kill lands at a random point below `bound`. A busy machine can make
    // the calibration run much slower than the later ones, so every kill that
    // came too late halves the bound: the kills still fall at random points,
    // and they cannot all miss the prune.
    let mut bound = full.max(2);
    for iteration in 0..ITERATIONS {
        {
            let store = Store::open(&root).unwrap();
            make_garbage(&store, &mut rng);
        }
        let (mut child, _) = start_pruner(&root);
        std::thread::sleep(Duration::from_micros(rng.below(bound)));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        } else {
            bound = (bound / 2).max(2);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_clean_after_reopen(&root, "kill during prune", iteration);
        let store = Store::open(&root).unwrap();
        assert_eq!(
            store.resolve("keep").unwrap().digest(),
            keep.digest(),
            "#{iteration}"
        );
    }
    // A count, not a time: at least one kill must have landed in a prune
    // (each is sent after the pruner said it started collecting).
    assert!(
        interrupted >= 1,
        "no prune was interrupted in {ITERATIONS} tries (full run {full} µs)"
    );
}

/// Snapshots are not fsynced (issue 9): those published before a reboot
/// are dropped by the first open after it, and extracted again from their
/// blobs; those of the current boot stay.
#[test]
fn r9_snapshots_of_an_earlier_boot_are_dropped_and_extracted_again() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let image = crate::extract::put_test_image(
        &store,
        &[vec![
            crate::extract::dir("etc/"),
            crate::extract::file("hello", b"boot"),
        ]],
    );
    store.tag("boot", &image).unwrap();
    let snapshots = hoist_store::snapshot::ensure_snapshots(&store, &image).unwrap();
    assert!(snapshots[0].join("hello").is_file());
    let unsynced = root.join("hoist/unsynced");
    let boots: Vec<_> = std::fs::read_dir(&unsynced)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(boots.len(), 1, "one record directory, this boot's");
    let chain = image.chain_ids()[0].hex().to_owned();
    assert!(boots[0].join(&chain).is_file(), "the snapshot is recorded");
    drop(store);

    // Same boot: a reopen keeps it.
    let store = Store::open(&root).unwrap();
    assert!(snapshots[0].is_dir());
    drop(store);

    // "Reboot": the record now belongs to another boot.
    std::fs::rename(
        &boots[0],
        unsynced.join("00000000-0000-4000-8000-000000000000"),
    )
    .unwrap();
    let store = Store::open(&root).unwrap();
    assert!(!snapshots[0].exists(), "dropped after the reboot");
    assert_eq!(
        std::fs::read_dir(&unsynced).unwrap().count(),
        0,
        "records gone"
    );
    crate::common::assert_valid(&store);
    let again = hoist_store::snapshot::ensure_snapshots(&store, &image).unwrap();
    assert_eq!(again, snapshots);
    assert_eq!(std::fs::read(again[0].join("hello")).unwrap(), b"boot");
}
