//! Eight processes writing to one root never lose a tag or corrupt a file.

use hoist_store::{CacheEntry, Store};

use crate::common::{assert_valid, spawn_child, temp_store, tiny_image};

const PROCESSES: usize = 8;
const ROUNDS: usize = 12;
const ROOT_VAR: &str = "HOIST_IT_CONCURRENT_ROOT";

/// The child's work, started by the parent test.
#[test]
#[ignore = "a helper process, run by eight_processes_never_lose_a_tag"]
fn child_tagger() {
    let root = std::env::var(ROOT_VAR).expect("run by eight_processes_never_lose_a_tag");
    let id = std::env::var("HOIST_IT_CHILD_ID").expect("run by eight_processes_never_lose_a_tag");
    let store = Store::open(&root).unwrap();
    for round in 0..ROUNDS {
        let image = tiny_image(&store, &format!("{id}-{round}"));
        store.tag(&format!("p{id}:r{round}"), &image).unwrap();
        // Contended: every process retags the same name.
        store.tag("shared:latest", &image).unwrap();
        let key = format!("{:02x}{}", round, "0".repeat(60))
            + &format!("{:02x}", id.parse::<u8>().unwrap());
        store
            .cache_put(&CacheEntry::new(
                key,
                serde_json::json!({}),
                image.blobs(),
                image.chain_ids(),
            ))
            .unwrap();
    }
}

#[test]
fn eight_processes_never_lose_a_tag() {
    let (_dir, store) = temp_store();
    let root = store.root().to_str().unwrap().to_owned();
    let children: Vec<_> = (0..PROCESSES)
        .map(|id| {
            spawn_child(
                "concurrency::child_tagger",
                &[(ROOT_VAR, &root), ("HOIST_IT_CHILD_ID", &id.to_string())],
            )
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child failed");
    }
    for id in 0..PROCESSES {
        for round in 0..ROUNDS {
            let name = format!("p{id}:r{round}");
            store
                .resolve(&name)
                .unwrap_or_else(|e| panic!("tag {name} lost: {e}"));
        }
    }
    assert!(store.resolve("shared").is_ok());
    let tagged: usize = store
        .list_images()
        .unwrap()
        .iter()
        .map(|r| r.names.len())
        .sum();
    assert_eq!(tagged, PROCESSES * ROUNDS + 1);
    assert_eq!(store.cache_list().unwrap().len(), PROCESSES * ROUNDS);
    assert_valid(&store);
    let sessions = std::fs::read_dir(store.root().join("hoist/tmp"))
        .unwrap()
        .count();
    assert_eq!(sessions, 1, "finished children leave no session behind");
}
