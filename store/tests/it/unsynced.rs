//! Blobs committed without waiting for the disk (issue 9): what a machine
//! crash before their write-back costs, and how their records are cleared.
//! A crash is simulated by moving this boot's records under another boot
//! ID and damaging the blob as a crash could.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hoist_store::digest::DiffId;
use hoist_store::gc::GcOptions;
use hoist_store::{CacheEntry, Compression, Image, Store};
use oci_spec::image::{Descriptor, MediaType};

use crate::common::{assert_valid, config, tar_of, temp_store};

const EARLIER_BOOT: &str = "00000000-0000-4000-8000-000000000000";

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned()
}

/// Where this boot's record of blob `hex` lives.
fn record(root: &Path, hex: &str) -> PathBuf {
    root.join("hoist/unsynced")
        .join(boot_id())
        .join("blobs")
        .join(hex)
}

/// Stores an uncompressed layer of `files` unsynced, as a build does.
fn put_unsynced_layer(store: &Store, files: &[(&str, &[u8])]) -> Descriptor {
    let mut writer = store.blob_writer().unwrap();
    std::io::Write::write_all(&mut writer, &tar_of(files)).unwrap();
    let (digest, size) = writer.commit_unsynced(None).unwrap();
    Descriptor::new(MediaType::ImageLayer, size, digest)
}

/// An image of one unsynced layer, tagged `tag`, with a cache entry that
/// names the layer (keyed by `key`).
fn built_image(store: &Store, tag: &str, key: &str, seed: &str) -> Image {
    let layer = put_unsynced_layer(store, &[("built", seed.as_bytes())]);
    let diff_id = hoist_store::digest::DiffId::new(layer.digest());
    let image = store
        .put_image(&config(&[diff_id], seed), std::slice::from_ref(&layer))
        .unwrap();
    store.tag(tag, &image).unwrap();
    store
        .cache_put(&CacheEntry::new(
            key,
            serde_json::json!({"seed": seed}),
            vec![layer.digest().clone()],
            image.chain_ids(),
        ))
        .unwrap();
    image
}

/// Moves this boot's records to an earlier boot, as a reboot makes them.
fn reboot(root: &Path) {
    let unsynced = root.join("hoist/unsynced");
    std::fs::rename(unsynced.join(boot_id()), unsynced.join(EARLIER_BOOT)).unwrap();
}

/// A store with `crashed:latest`, an image of one unsynced layer, after a
/// reboot; returns its root and the layer blob's path.
fn rebooted_with_built_image(seed: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, store) = temp_store();
    let root = store.root().to_owned();
    let built = built_image(&store, "crashed:latest", &"f".repeat(64), seed);
    let blob = root
        .join("blobs/sha256")
        .join(built.manifest().layers()[0].digest().digest());
    drop(store);
    reboot(&root);
    (dir, root, blob)
}

/// Makes a record look an hour old.
fn age(record: &Path) {
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    filetime::set_file_mtime(record, filetime::FileTime::from_system_time(an_hour_ago)).unwrap();
}

fn records_left(root: &Path) -> usize {
    std::fs::read_dir(root.join("hoist/unsynced"))
        .unwrap()
        .count()
}

#[test]
fn r9_an_unsynced_blob_is_recorded_and_readable() {
    let (_dir, store) = temp_store();
    let layer = put_unsynced_layer(&store, &[("a", b"unsynced")]);
    let hex = layer.digest().digest();
    assert!(record(store.root(), hex).is_file(), "the blob is recorded");
    assert_eq!(
        store.read_blob_bytes(layer.digest()).unwrap(),
        tar_of(&[("a", b"unsynced")]),
        "readable at once"
    );
    assert_valid(&store);

    // A blob stored already (here, synced) is leased, not recorded.
    let synced = store
        .put_blob(&tar_of(&[("b", b"synced")])[..], None)
        .unwrap();
    let mut writer = store.blob_writer().unwrap();
    std::io::Write::write_all(&mut writer, &tar_of(&[("b", b"synced")])).unwrap();
    assert_eq!(writer.commit_unsynced(None).unwrap(), synced);
    assert!(!record(store.root(), synced.0.digest()).exists());
}

#[test]
fn r9_a_blob_cut_short_by_a_crash_goes_with_what_needs_it() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 3] = [
        ("truncated", |blob| {
            let file = std::fs::OpenOptions::new().write(true).open(blob).unwrap();
            file.set_len(0).unwrap();
        }),
        ("zeros of the same length", |blob| {
            let len = std::fs::metadata(blob).unwrap().len();
            std::fs::write(blob, vec![0u8; len as usize]).unwrap();
        }),
        ("missing", |blob| std::fs::remove_file(blob).unwrap()),
    ];
    for (damage_name, damage) in cases {
        let (_dir, store) = temp_store();
        let root = store.root().to_owned();
        let (safe_layer, safe_diff) =
            crate::common::put_layer(&store, &[("safe", damage_name.as_bytes())]);
        let safe = store
            .put_image(&config(&[safe_diff], "safe"), &[safe_layer])
            .unwrap();
        store.tag("safe:1", &safe).unwrap();
        let built = built_image(&store, "crashed:latest", &"c".repeat(64), damage_name);
        let kept = built_image(&store, "kept:latest", &"d".repeat(64), "kept");
        let lost_layer = built.manifest().layers()[0].clone();
        drop(store);

        reboot(&root);
        // Only the first image's layer was cut short; the other's record
        // stays, for its blob to be checked.
        damage(&root.join("blobs/sha256").join(lost_layer.digest().digest()));

        let store = Store::open(&root).unwrap();
        assert_eq!(
            store.lost_in_crash(),
            ["crashed:latest"],
            "{damage_name}: the lost image is reported"
        );
        assert!(!store.has_blob(lost_layer.digest()), "{damage_name}");
        assert!(store.resolve("crashed:latest").is_err(), "{damage_name}");
        assert!(
            store.cache_get(&"c".repeat(64)).unwrap().is_none(),
            "{damage_name}: the cache entry is gone"
        );
        assert!(
            !store
                .root()
                .join("hoist/cache")
                .join(format!("{}.json", "c".repeat(64)))
                .exists(),
            "{damage_name}: the cache entry's file is gone"
        );
        assert_eq!(
            store.resolve("kept:latest").unwrap().digest(),
            kept.digest()
        );
        assert!(
            store.cache_get(&"d".repeat(64)).unwrap().is_some(),
            "{damage_name}"
        );
        assert_eq!(store.resolve("safe:1").unwrap().digest(), safe.digest());
        assert_eq!(records_left(&root), 0, "{damage_name}: records cleared");
        assert_valid(&store);
        drop(store);

        // The next open has nothing left to report.
        let store = Store::open(&root).unwrap();
        assert!(store.lost_in_crash().is_empty(), "{damage_name}");
        assert_valid(&store);
    }
}

#[test]
fn r9_an_intact_blob_survives_a_reboot_and_its_record_goes() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let built = built_image(&store, "built:latest", &"e".repeat(64), "intact");
    let layer = built.manifest().layers()[0].clone();
    drop(store);

    reboot(&root);
    let store = Store::open(&root).unwrap();
    assert!(store.lost_in_crash().is_empty());
    assert!(store.has_blob(layer.digest()));
    assert_eq!(
        store.resolve("built:latest").unwrap().digest(),
        built.digest()
    );
    assert!(store.cache_get(&"e".repeat(64)).unwrap().is_some());
    assert_eq!(records_left(&root), 0, "records cleared");
    assert_valid(&store);
}

#[test]
fn r9_settled_blob_records_are_cleared_on_open() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let old = put_unsynced_layer(&store, &[("old", b"1")]);
    let young = put_unsynced_layer(&store, &[("young", b"2")]);
    age(&record(&root, old.digest().digest()));
    // Settling is an open's, and takes no account of leases.
    drop(store);

    let store = Store::open(&root).unwrap();
    assert!(
        !record(&root, old.digest().digest()).exists(),
        "an old record is settled"
    );
    assert!(
        record(&root, young.digest().digest()).exists(),
        "a young record stays"
    );
    assert!(store.has_blob(old.digest()) && store.has_blob(young.digest()));
}

#[test]
fn r9_settling_waits_for_a_free_lock() {
    // Settling counts a record whose blob is missing as settled, so it must
    // not run beside a commit that may be about to rename that blob in:
    // with the lock held by anyone, an open leaves the records alone.
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let old = put_unsynced_layer(&store, &[("old", b"busy")]);
    let old = record(&root, old.digest().digest());
    age(&old);
    drop(store);

    let lock = std::fs::File::open(root.join("hoist/lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared).unwrap();
    drop(Store::open(&root).unwrap());
    assert!(old.is_file(), "not settled while the lock is held");
    drop(lock);
    drop(Store::open(&root).unwrap());
    assert!(!old.exists(), "settled once the lock is free");
}

#[test]
fn r9_a_blob_committed_again_is_recorded_afresh() {
    // Its record outlived the blob (GC or `fsck --repair` removed it, or
    // its commit was cut short before the rename): the blob committed
    // again is as dirty as a new one, and must not look old enough to
    // settle.
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let files: &[(&str, &[u8])] = &[("again", b"a")];
    let layer = put_unsynced_layer(&store, files);
    let hex = layer.digest().digest();
    age(&record(&root, hex));
    std::fs::remove_file(root.join("blobs/sha256").join(hex)).unwrap();
    put_unsynced_layer(&store, files);
    drop(store);

    let store = Store::open(&root).unwrap();
    assert!(record(&root, hex).is_file(), "the record is young again");
    assert!(store.has_blob(layer.digest()));
}

#[test]
fn r9_a_durable_write_of_an_unsynced_blob_syncs_it() {
    // Pulls, loads and imports are durable when they return, also when
    // they find their blob stored already by a build, unsynced.
    type Write = fn(&Store, &[u8]);
    let cases: [(&str, Write); 3] = [
        ("put_blob", |store, bytes| {
            store.put_blob(bytes, None).unwrap();
        }),
        ("put_blob_bytes", |store, bytes| {
            store.put_blob_bytes(bytes).unwrap();
        }),
        ("commit", |store, bytes| {
            let mut writer = store.blob_writer().unwrap();
            std::io::Write::write_all(&mut writer, bytes).unwrap();
            writer.commit(None).unwrap();
        }),
    ];
    for (name, write) in cases {
        let (_dir, store) = temp_store();
        let files: &[(&str, &[u8])] = &[("durable", name.as_bytes())];
        let layer = put_unsynced_layer(&store, files);
        let record = record(store.root(), layer.digest().digest());
        assert!(record.is_file(), "{name}");
        write(&store, &tar_of(files));
        assert!(!record.exists(), "{name}: synced, and its record gone");
        assert_valid(&store);
    }
}

#[test]
fn r9_a_recorded_blob_that_cannot_be_read_counts_as_lost() {
    // An I/O error while hashing (here ELOOP: the blob is a symlink to
    // itself) must not keep the store from opening.
    let (_dir, root, blob) = rebooted_with_built_image("unreadable");
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink(&blob, &blob).unwrap();
    let store = Store::open(&root).unwrap();
    assert!(store.unfinished_recovery().is_none());
    assert_eq!(store.lost_in_crash(), ["crashed:latest"]);
    assert!(!blob.is_symlink(), "the unreadable blob is removed");
    assert_eq!(records_left(&root), 0);
    assert_valid(&store);
}

#[test]
fn r9_a_recovery_that_fails_is_tried_again_by_the_next_open() {
    // A blob that cannot be removed (here a directory in its place) stands
    // for any failure to finish the recovery (a full disk): the store
    // opens all the same and says so, the records stay, and the next open
    // finishes the work.
    let (_dir, root, blob) = rebooted_with_built_image("stuck");
    std::fs::remove_file(&blob).unwrap();
    std::fs::create_dir(&blob).unwrap();
    let store = Store::open(&root).unwrap();
    assert!(store.unfinished_recovery().is_some());
    assert_eq!(records_left(&root), 1, "the records stay");
    drop(store);

    std::fs::remove_dir(&blob).unwrap();
    let store = Store::open(&root).unwrap();
    assert!(store.unfinished_recovery().is_none());
    assert_eq!(store.lost_in_crash(), ["crashed:latest"]);
    assert_eq!(records_left(&root), 0);
    assert_valid(&store);
}

#[test]
fn r9_gc_drops_the_record_of_a_blob_it_removes() {
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let layer = put_unsynced_layer(&store, &[("garbage", b"g")]);
    drop(store); // its lease goes with the session
    let store = Store::open(&root).unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert!(report.blobs.contains(layer.digest()), "{report:?}");
    assert!(!record(&root, layer.digest().digest()).exists());
}

#[test]
fn r7_a_compressed_variant_cut_short_by_a_crash_is_made_again() {
    // A push's compressed variant is a cache of its layer, committed
    // without waiting for the disk: a crash that cuts it short costs its
    // remaking, never the image.
    let (_dir, store) = temp_store();
    let root = store.root().to_owned();
    let (digest, size) = store
        .put_blob_bytes(&tar_of(&[("app", b"variant")]))
        .unwrap();
    let layer = Descriptor::new(MediaType::ImageLayer, size, digest.clone());
    let diff_id = DiffId::new(&digest);
    let image = store
        .put_image(
            &config(std::slice::from_ref(&diff_id), "variant"),
            std::slice::from_ref(&layer),
        )
        .unwrap();
    store.tag("app:v1", &image).unwrap();
    let variant = store
        .compressed_layer(&layer, &diff_id, Compression::default())
        .unwrap();
    assert!(
        record(&root, variant.digest().digest()).is_file(),
        "the variant is recorded as unsynced"
    );
    drop(store);

    reboot(&root);
    let blob = root.join("blobs/sha256").join(variant.digest().digest());
    let file = std::fs::OpenOptions::new().write(true).open(&blob).unwrap();
    file.set_len(0).unwrap();

    let store = Store::open(&root).unwrap();
    assert!(
        store.lost_in_crash().is_empty(),
        "no image needs the variant"
    );
    assert!(!store.has_blob(variant.digest()), "the cut blob is removed");
    assert!(store.resolve("app:v1").is_ok(), "the image stays");
    assert_valid(&store);
    let again = store
        .compressed_layer(&layer, &diff_id, Compression::default())
        .unwrap();
    assert_eq!(again, variant, "made again, byte for byte");
    assert!(store.has_blob(variant.digest()));
    assert_valid(&store);
}
