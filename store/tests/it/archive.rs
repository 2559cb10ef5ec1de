//! Archives: save/load round trips, archives from skopeo, hoist's archives
//! checked by skopeo and umoci, streaming from a pipe, corruption, import.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hoist_store::Store;
use hoist_store::archive::{ArchiveFormat, SaveItem, load, save};

use crate::common::tool;
use crate::extract::{dir, file, hardlink, put_test_image, symlink};

fn test_image(store: &Store) -> hoist_store::Image {
    put_test_image(
        store,
        &[
            vec![
                dir("etc/"),
                file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
                file("bin", b""),
            ],
            vec![
                dir("app/"),
                file("app/data", &vec![42; 100_000]),
                hardlink("app/data2", "app/data"),
                symlink("app/link", "data"),
                file("etc/.wh.passwd", b""),
            ],
        ],
    )
}

fn save_to(store: &Store, name: &str, format: ArchiveFormat, path: &Path) {
    let image = store.resolve(name).unwrap();
    let references = vec![
        hoist_store::Reference::parse_normalized(name)
            .unwrap()
            .with_default_tag(),
    ];
    let file = std::fs::File::create(path).unwrap();
    save(store, &[SaveItem { image, references }], format, file).unwrap();
}

fn load_file(store: &Store, path: &Path) -> Vec<hoist_store::archive::LoadedImage> {
    load(store, std::fs::File::open(path).unwrap()).unwrap()
}

/// Loads through a pipe from `cat`, so the reader can never seek.
fn load_piped(store: &Store, path: &Path) -> Vec<hoist_store::archive::LoadedImage> {
    let mut child = Command::new("cat")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let loaded = load(store, child.stdout.take().unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    loaded
}

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    Env { _tmp: tmp, dir }
}

#[test]
fn load_save_load_keeps_digests() {
    let env = env();
    let a = Store::open(env.dir.join("a")).unwrap();
    let image = test_image(&a);
    a.tag("example.com/team/app:v1", &image).unwrap();
    for format in [ArchiveFormat::Docker, ArchiveFormat::Oci] {
        let first = env.dir.join(format!("first-{format:?}.tar"));
        save_to(&a, "example.com/team/app:v1", format, &first);

        let b = Store::open(env.dir.join(format!("b-{format:?}"))).unwrap();
        let loaded = load_piped(&b, &first);
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded[0].tags[0].familiar_string(),
            "example.com/team/app:v1"
        );
        assert_eq!(
            loaded[0].image.id(),
            image.id(),
            "{format:?}: the image ID is kept"
        );
        assert_eq!(loaded[0].image.diff_ids(), image.diff_ids());
        if format == ArchiveFormat::Oci {
            assert_eq!(
                loaded[0].image.digest(),
                image.digest(),
                "OCI keeps the manifest"
            );
        }

        let second = env.dir.join(format!("second-{format:?}.tar"));
        save_to(&b, "example.com/team/app:v1", format, &second);
        assert_eq!(
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap(),
            "{format:?}: saving is deterministic"
        );
        let c = Store::open(env.dir.join(format!("c-{format:?}"))).unwrap();
        let again = load_file(&c, &second);
        assert_eq!(
            again[0].image.digest(),
            loaded[0].image.digest(),
            "{format:?}"
        );
        assert_eq!(again[0].image.id(), loaded[0].image.id(), "{format:?}");

        // The loaded image extracts and its layers match their diff_ids.
        let snaps = hoist_store::snapshot::ensure_snapshots(&c, &again[0].image).unwrap();
        assert!(snaps[1].join("app/data").is_file());
    }
}

#[test]
fn hoist_archives_pass_skopeo_and_umoci() {
    let env = env();
    let store = Store::open(env.dir.join("store")).unwrap();
    let image = test_image(&store);
    store.tag("app:latest", &image).unwrap();
    let docker = env.dir.join("docker.tar");
    let oci = env.dir.join("oci.tar");
    save_to(&store, "app:latest", ArchiveFormat::Docker, &docker);
    save_to(&store, "app:latest", ArchiveFormat::Oci, &oci);

    let inspect = tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", docker.display())],
    );
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2, "{inspect}");
    assert_eq!(inspect["RepoTags"], serde_json::json!([]), "{inspect}");
    let inspect = tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}:latest", oci.display())],
    );
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], image.digest().to_string(), "{inspect}");

    // umoci reads the OCI layout and applies the layers (with the whiteout).
    let layout = env.dir.join("layout");
    std::fs::create_dir(&layout).unwrap();
    tool(
        "tar",
        &["-xf", oci.to_str().unwrap(), "-C", layout.to_str().unwrap()],
    );
    let bundle = env.dir.join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:latest", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("app/data")).unwrap().len(),
        100_000
    );
    assert!(!rootfs.join("etc/passwd").exists(), "whiteout applied");

    // skopeo copies hoist's docker archive into an OCI layout too.
    let copied = env.dir.join("copied");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", docker.display()),
            &format!("oci:{}:x", copied.display()),
        ],
    );
}

#[test]
fn skopeo_archives_load() {
    let env = env();
    let store = Store::open(env.dir.join("store")).unwrap();
    let image = test_image(&store);
    store.tag("app:latest", &image).unwrap();
    // Let skopeo read hoist's store (an OCI layout) and write both formats.
    let layout = format!("oci:{}:app:latest", store.root().display());
    let docker = env.dir.join("skopeo-docker.tar");
    let oci = env.dir.join("skopeo-oci.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &layout,
            &format!("docker-archive:{}:skopeo/app:v2", docker.display()),
        ],
    );
    tool(
        "skopeo",
        &[
            "copy",
            &layout,
            &format!("oci-archive:{}:skopeo/app:v3", oci.display()),
        ],
    );
    for (path, tag) in [(&docker, "skopeo/app:v2"), (&oci, "skopeo/app:v3")] {
        let fresh = Store::open(
            env.dir
                .join(format!("fresh-{tag}").replace([':', '/'], "-")),
        )
        .unwrap();
        let loaded = load_piped(&fresh, path);
        assert_eq!(loaded.len(), 1, "{tag}");
        assert_eq!(loaded[0].tags[0].familiar_string(), tag);
        assert_eq!(loaded[0].image.diff_ids(), image.diff_ids(), "{tag}");
        assert_eq!(
            fresh.resolve(tag).unwrap().digest(),
            loaded[0].image.digest()
        );
        hoist_store::snapshot::ensure_snapshots(&fresh, &loaded[0].image).unwrap();
    }
}

#[test]
fn corrupt_archives_are_refused() {
    let env = env();
    let store = Store::open(env.dir.join("store")).unwrap();
    let image = test_image(&store);
    store.tag("app:latest", &image).unwrap();
    for format in [ArchiveFormat::Docker, ArchiveFormat::Oci] {
        let path = env.dir.join(format!("{format:?}.tar"));
        save_to(&store, "app:latest", format, &path);
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a byte in the middle of the largest blob (a layer).
        let (pos, size) = {
            let mut archive = tar::Archive::new(bytes.as_slice());
            archive
                .entries()
                .unwrap()
                .map(|e| e.unwrap())
                .map(|e| (e.raw_file_position(), e.size()))
                .max_by_key(|(_, size)| *size)
                .unwrap()
        };
        bytes[(pos + size / 2) as usize] ^= 1;
        let fresh = Store::open(env.dir.join(format!("fresh-{format:?}"))).unwrap();
        let err = load(&fresh, bytes.as_slice()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("corrupt") || msg.contains("does not match"),
            "{format:?}: {msg}"
        );
        assert!(
            fresh.resolve("app:latest").is_err(),
            "{format:?}: nothing tagged"
        );
    }
}

#[test]
fn import_makes_a_one_layer_image() {
    let env = env();
    let tarball = env.dir.join("rootfs.tar");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/base/make-busybox-rootfs.sh");
    tool(script.to_str().unwrap(), &[tarball.to_str().unwrap()]);
    let store = Store::open(env.dir.join("store")).unwrap();
    let opts = hoist_store::import::ImportOptions {
        source: "rootfs.tar".into(),
        ..Default::default()
    };
    let (image, tag) = hoist_store::import::import(
        &store,
        std::fs::File::open(&tarball).unwrap(),
        Some("busybox:test"),
        &opts,
    )
    .unwrap();
    assert_eq!(tag.unwrap().familiar_string(), "busybox:test");
    assert_eq!(image.manifest().layers().len(), 1);
    assert_eq!(
        image.manifest().layers()[0].media_type().to_string(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let raw = std::fs::read(&tarball).unwrap();
    assert_eq!(
        image.diff_ids()[0].digest(),
        hoist_store::digest::sha256_bytes(&raw)
    );
    assert_eq!(image.config().architecture().to_string(), "amd64");
    let snaps = hoist_store::snapshot::ensure_snapshots(&store, &image).unwrap();
    let root = &snaps[0];
    assert!(root.join("bin/busybox").is_file());
    assert!(
        root.join("bin/sh")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000"), "{passwd}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(root.join("tmp").metadata().unwrap().mode() & 0o7777, 0o1777);
    assert_eq!(root.join("home/app").metadata().unwrap().uid(), 1000);
    // skopeo reads the imported image straight from the store.
    tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci:{}:busybox:test", store.root().display()),
        ],
    );
}

/// What `docker save` wrote before Docker 25: `<id>/layer.tar` per layer,
/// a repeated layer as a symlink to the first, `<id>/json` and `VERSION`
/// files, and the config as `<hex>.json`. It also arrives gzipped.
#[test]
fn legacy_docker_archives_load() {
    let env = env();
    let layer = crate::extract::tar_of(&[file("hello", b"hi\n")]);
    let diff_id = hoist_store::digest::sha256_bytes(&layer).to_string();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_hex = hoist_store::digest::sha256_bytes(&config)
        .digest()
        .to_owned();
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["legacy:1"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]);
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, path, data).unwrap();
    };
    add("aaa/VERSION", b"1.0");
    add("aaa/json", b"{}");
    add("aaa/layer.tar", &layer);
    add(&format!("{config_hex}.json"), &config);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add("repositories", br#"{"legacy":{"1":"bbb"}}"#);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    tar.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
        .unwrap();
    let archive = crate::extract::gzip(&tar.into_inner().unwrap(), 6);

    let store = Store::open(env.dir.join("store")).unwrap();
    let loaded = load(&store, archive.as_slice()).unwrap();
    assert_eq!(loaded[0].tags[0].familiar_string(), "legacy:1");
    let image = store.resolve("legacy:1").unwrap();
    assert_eq!(
        image.id().digest(),
        config_hex,
        "the image ID is the config digest"
    );
    assert_eq!(image.manifest().layers().len(), 2);
    let snaps = hoist_store::snapshot::ensure_snapshots(&store, &image).unwrap();
    assert_eq!(std::fs::read(snaps[1].join("hello")).unwrap(), b"hi\n");
}
