//! Images, tags and lookups, checked with skopeo and umoci.

use hoist_store::StoreError;

use crate::common::{assert_valid, run_tool, temp_store, tiny_image};

#[test]
fn tag_and_resolve_every_way_docker_does() {
    let (_dir, store) = temp_store();
    let image = tiny_image(&store, "one");
    store.tag("busybox", &image).unwrap();
    assert_valid(&store);
    store.tag("localhost:5000/team/app:v1", &image).unwrap();
    assert_valid(&store);
    let id = image.id().to_string();
    let hex = image.id().digest().to_owned();
    let digest = image.digest().to_string();
    let queries = [
        "busybox".to_owned(),
        "busybox:latest".to_owned(),
        "docker.io/library/busybox".to_owned(),
        "library/busybox:latest".to_owned(),
        "localhost:5000/team/app:v1".to_owned(),
        id.clone(),
        hex.clone(),
        hex[..12].to_owned(),
        format!("sha256:{}", &hex[..12]),
        digest.clone(),
        format!("busybox@{digest}"),
    ];
    for query in &queries {
        let found = store
            .resolve(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(found.digest(), image.digest(), "resolve {query}");
    }
    for (query, message) in [
        ("nope", "no such image: nope:latest"),
        ("busybox:1", "no such image: busybox:1"),
        ("abcdef0123", "no such image: abcdef0123:latest"),
    ] {
        let err = store.resolve(query).expect_err(query);
        assert_eq!(err.to_string(), message, "resolve {query}");
    }
    let err = store.tag(&format!("busybox@{digest}"), &image).unwrap_err();
    assert!(matches!(err, StoreError::TagWithDigest(_)), "{err}");
    let err = store.tag("Busybox", &image).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid reference format: repository name (library/Busybox) must be lowercase"
    );
}

#[test]
fn retagging_leaves_the_old_image_untagged_and_untag_removes() {
    let (_dir, store) = temp_store();
    let one = tiny_image(&store, "one");
    let two = tiny_image(&store, "two");
    store.tag("app:dev", &one).unwrap();
    store.tag("app:dev", &two).unwrap();
    assert_valid(&store);
    let records = store.list_images().unwrap();
    assert_eq!(records.len(), 2, "{records:#?}");
    let old = records
        .iter()
        .find(|r| r.image.digest() == one.digest())
        .unwrap();
    assert!(old.names.is_empty(), "the replaced image is <none>");
    let new = records
        .iter()
        .find(|r| r.image.digest() == two.digest())
        .unwrap();
    assert_eq!(new.names[0].to_string(), "docker.io/library/app:dev");

    store.tag("app:other", &two).unwrap();
    let (digest, still_tagged) = store.untag("app:dev").unwrap();
    assert_eq!(&digest, two.digest());
    assert!(still_tagged);
    let (_, still_tagged) = store.untag("app:other").unwrap();
    assert!(!still_tagged);
    assert_valid(&store);
    assert!(store.untag("app:other").unwrap_err().is_not_found());
}

#[test]
fn equal_configs_get_equal_ids() {
    let (_dir, store) = temp_store();
    // Labels are a HashMap: the serialised order must not depend on it.
    let ids: Vec<_> = (0..5)
        .map(|_| tiny_image(&store, "same").id().clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

#[test]
fn skopeo_and_umoci_read_what_hoist_stores() {
    let (dir, store) = temp_store();
    let image = tiny_image(&store, "tools");
    store.tag("busybox", &image).unwrap();
    store.tag("localhost:5000/team/app:v1", &image).unwrap();
    assert_valid(&store);
    let root = store.root().to_str().unwrap().to_owned();
    for name in ["busybox:latest", "localhost:5000/team/app:v1"] {
        let out = run_tool("skopeo", &["inspect", &format!("oci:{root}:{name}")], None);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            json["Digest"],
            image.digest().to_string(),
            "skopeo inspect {name}"
        );
        assert_eq!(json["Labels"]["test"], "tools", "skopeo inspect {name}");
        let raw = run_tool(
            "skopeo",
            &[
                "inspect",
                "--config",
                "--raw",
                &format!("oci:{root}:{name}"),
            ],
            None,
        );
        assert!(raw.contains("/hello"), "skopeo config for {name}: {raw}");
    }
    for (i, name) in ["busybox:latest", "localhost:5000/team/app:v1"]
        .iter()
        .enumerate()
    {
        let bundle = dir.path().join(format!("bundle{i}"));
        run_tool(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{root}:{name}"),
                bundle.to_str().unwrap(),
            ],
            None,
        );
        let hello = std::fs::read(bundle.join("rootfs/hello")).unwrap();
        assert_eq!(hello, b"tools", "umoci unpack {name}");
    }
    // umoci's own listing sees the familiar names.
    let tags = run_tool("umoci", &["ls", "--layout", &root], None);
    assert!(
        tags.lines().any(|l| l == "busybox:latest"),
        "umoci ls: {tags}"
    );
}
