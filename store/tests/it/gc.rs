//! Garbage collection, leases and the cache.

use hoist_store::gc::GcOptions;
use hoist_store::{CacheEntry, Store};

use crate::common::{assert_valid, put_layer, temp_store, tiny_image};

fn key(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

#[test]
fn gc_keeps_tagged_cached_and_leased_and_drops_the_rest() {
    let (dir, store) = temp_store();
    let tagged = tiny_image(&store, "tagged");
    store.tag("keep", &tagged).unwrap();
    let cached = tiny_image(&store, "cached");
    store
        .cache_put(&CacheEntry::new(
            key(1),
            serde_json::json!({"image": cached.digest().to_string()}),
            cached.blobs(),
            cached.chain_ids(),
        ))
        .unwrap();
    let garbage = tiny_image(&store, "garbage");
    // Snapshots: one per chain ID of the tagged image, one stray.
    for chain in tagged.chain_ids().iter().chain(garbage.chain_ids().iter()) {
        let staged = store.temp_path("snap");
        std::fs::create_dir_all(staged.join("etc")).unwrap();
        std::fs::write(staged.join("etc/file"), b"data").unwrap();
        store.commit_snapshot(&staged, chain).unwrap();
    }
    assert_valid(&store);

    // This session leased everything it wrote: a collection from another
    // session must keep it all while this one lives.
    let other = Store::open(store.root()).unwrap();
    let report = other.gc(&GcOptions::default()).unwrap();
    assert!(
        report.blobs.is_empty() && report.snapshots.is_empty(),
        "{report:#?}"
    );
    drop(other);

    // Once the writing session ends, only roots survive.
    let root = store.root().to_owned();
    drop(store);
    let store = Store::open(&root).unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(
        report.blobs.len(),
        3,
        "garbage's manifest, config, layer: {report:#?}"
    );
    for blob in garbage.blobs() {
        assert!(!store.has_blob(&blob), "{blob} collected");
    }
    for blob in tagged.blobs().iter().chain(cached.blobs().iter()) {
        assert!(store.has_blob(blob), "{blob} kept");
    }
    assert_eq!(report.snapshots, garbage.chain_ids());
    assert!(store.snapshot_path(&tagged.chain_ids()[0]).is_dir());
    assert!(report.reclaimed > 0);
    assert_valid(&store);

    // --all drops the cache and what only it held.
    let report = store
        .gc(&GcOptions {
            all_cache: true,
            ..GcOptions::default()
        })
        .unwrap();
    assert_eq!(report.cache_entries, vec![key(1)]);
    for blob in cached.blobs() {
        assert!(
            !store.has_blob(&blob),
            "{blob} collected with its cache entry"
        );
    }
    assert!(store.resolve("keep").is_ok());
    assert_valid(&store);
    drop(dir);
}

#[test]
fn keep_storage_drops_least_recently_used_entries_first() {
    let (_dir, root_store) = temp_store();
    let root = root_store.root().to_owned();
    let mut sizes = Vec::new();
    for n in 0..4u8 {
        let data = vec![n; 10_000];
        let (layer, _) = put_layer(&root_store, &[("big", &data)]);
        sizes.push(layer.size());
        let entry = CacheEntry::new(
            key(n),
            serde_json::json!({"n": n}),
            vec![layer.digest().clone()],
            vec![],
        );
        root_store.cache_put(&entry).unwrap();
        // Distinct mtimes: entry n was used at time n.
        let path = root.join(format!("hoist/cache/{}.json", key(n)));
        filetime::set_file_mtime(
            &path,
            filetime::FileTime::from_unix_time(1_000_000 + i64::from(n), 0),
        )
        .unwrap();
    }
    // Use entry 0 now: it becomes the most recently used.
    assert!(root_store.cache_get(&key(0)).unwrap().is_some());
    drop(root_store);
    let store = Store::open(&root).unwrap();
    let limit = sizes[0] + sizes[3];
    let report = store
        .gc(&GcOptions {
            keep_storage: Some(limit),
            ..GcOptions::default()
        })
        .unwrap();
    assert_eq!(
        report.cache_entries,
        vec![key(1), key(2)],
        "LRU first: {report:#?}"
    );
    let left: Vec<String> = store
        .cache_list()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(left, vec![key(3), key(0)]);
    assert_valid(&store);
}

#[test]
fn cache_round_trip_and_misses() {
    let (_dir, store) = temp_store();
    assert!(store.cache_get(&key(9)).unwrap().is_none());
    assert!(store.cache_get("../../x").is_err());
    let image = tiny_image(&store, "c");
    let entry = CacheEntry::new(
        key(9),
        serde_json::json!({"a": [1, 2]}),
        image.blobs(),
        image.chain_ids(),
    );
    store.cache_put(&entry).unwrap();
    assert_valid(&store);
    let got = store.cache_get(&key(9)).unwrap().unwrap();
    assert_eq!(got.payload, entry.payload);
    assert_eq!(got.blobs, entry.blobs);
    assert_eq!(got.chain_ids, entry.chain_ids);
    assert!(got.last_used > std::time::SystemTime::UNIX_EPOCH);
    store.cache_touch(&key(9)).unwrap();
    assert!(store.cache_remove(&key(9)).unwrap());
    assert!(store.cache_get(&key(9)).unwrap().is_none());
}

#[test]
fn prune_removes_untagged_images_when_asked() {
    let (_dir, store) = temp_store();
    let one = tiny_image(&store, "one");
    let two = tiny_image(&store, "two");
    store.tag("app", &one).unwrap();
    store.tag("app", &two).unwrap(); // one becomes <none>
    let root = store.root().to_owned();
    drop(store);
    let store = Store::open(&root).unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert!(
        report.images.is_empty() && store.has_blob(one.digest()),
        "<none> kept by default"
    );
    let report = store
        .gc(&GcOptions {
            dangling_images: true,
            ..GcOptions::default()
        })
        .unwrap();
    assert_eq!(report.images, vec![one.digest().clone()]);
    assert!(!store.has_blob(one.digest()));
    assert_eq!(store.list_images().unwrap().len(), 1);
    assert_valid(&store);
}

#[test]
fn r7_gc_removes_source_records_of_collected_images_and_blobs() {
    let (_dir, store) = temp_store();
    let sources = store.root().join("hoist/sources");
    let kept = tiny_image(&store, "kept");
    store.tag("kept", &kept).unwrap();
    let gone = tiny_image(&store, "gone");
    store.tag("gone", &gone).unwrap();
    for image in [&kept, &gone] {
        store
            .add_repo_digest(
                image.digest(),
                &format!("127.0.0.1:5000/app@{}", image.digest()),
            )
            .unwrap();
        store
            .add_blob_sources(&image.blobs()[1..], "127.0.0.1:5000/app")
            .unwrap();
    }
    let records = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&sources)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let record_of = |digest: &hoist_store::digest::Digest| format!("{}.json", digest.digest());
    let mut expected: Vec<String> = kept
        .blobs()
        .iter()
        .chain(gone.blobs().iter())
        .map(record_of)
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(records(), expected, "one record per image and per blob");

    store.untag("gone").unwrap();
    let root = store.root().to_owned();
    drop(store);
    let store = Store::open(&root).unwrap();
    store.gc(&GcOptions::default()).unwrap();
    // The collected image's records went with its blobs; the live image
    // keeps its digests and its mount sources.
    let mut expected: Vec<String> = kept.blobs().iter().map(record_of).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(records(), expected);
    assert_eq!(
        store.repo_digests(kept.digest()),
        vec![format!("127.0.0.1:5000/app@{}", kept.digest())]
    );
    assert_eq!(
        store.blob_sources(kept.manifest().config().digest()),
        vec!["127.0.0.1:5000/app".to_owned()]
    );
    assert!(store.repo_digests(gone.digest()).is_empty());
    assert_valid(&store);
}

/// Issue 9: every record the builder keeps beside the cache, the context
/// digest indexes and remembered checksums (one per context path, which CI
/// changes per job) among them, goes once unwritten for `until`, and all
/// of them with `--all`.
#[test]
fn r9_prune_removes_every_kind_of_cache_record_by_age() {
    use hoist_store::CacheRecord;
    let (_dir, store) = temp_store();
    let kinds = [
        CacheRecord::ContextIndex,
        CacheRecord::ContextChecksum,
        CacheRecord::Recent,
        CacheRecord::Files,
    ];
    let (old, new) = (key(1), key(2));
    for kind in kinds {
        for key in [&old, &new] {
            store
                .cache_record_write(kind, key, |out| out.write_all(b"record\n"))
                .unwrap();
        }
    }
    // Age the old records by two days, as if unwritten since.
    let two_days_ago = filetime::FileTime::from_system_time(
        std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86400),
    );
    let mut aged = 0;
    for entry in files_under(store.root().join("hoist")) {
        if entry
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with(&old))
        {
            filetime::set_file_mtime(&entry, two_days_ago).unwrap();
            aged += 1;
        }
    }
    assert_eq!(aged, kinds.len());
    let exists = |kind, key: &str| store.cache_record_reader(kind, key).unwrap().is_some();

    let until = GcOptions {
        cache_unused_for: Some(std::time::Duration::from_secs(86400)),
        ..GcOptions::default()
    };
    store.gc(&until).unwrap();
    for kind in kinds {
        assert!(!exists(kind, &old), "{kind:?}: an old record stayed");
        assert!(exists(kind, &new), "{kind:?}: a new record went");
    }
    store
        .gc(&GcOptions {
            all_cache: true,
            ..GcOptions::default()
        })
        .unwrap();
    for kind in kinds {
        assert!(!exists(kind, &new), "{kind:?}: a record survived --all");
    }
    assert_valid(&store);
}

/// Every file below `dir`.
fn files_under(dir: std::path::PathBuf) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
