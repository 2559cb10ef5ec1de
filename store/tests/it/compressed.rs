//! Compressed variants of uncompressed layers (issue 9): made once per
//! layer and algorithm, kept while an image needs them, collected with it;
//! OCI archives of them accepted by skopeo and umoci.

use std::io::Read;
use std::path::Path;

use hoist_store::archive::{ArchiveFormat, SaveItem, SaveOptions, load, save_with};
use hoist_store::digest::DiffId;
use hoist_store::gc::GcOptions;
use hoist_store::{Compression, Image, Store};
use oci_spec::image::{Descriptor, MediaType};

use crate::common::{assert_valid, config, tar_of, temp_store, tool};

/// Stores `files` as an uncompressed layer, the way builds now store them:
/// the blob is the tar, so its digest is the diff ID.
fn put_plain_layer(store: &Store, files: &[(&str, &[u8])]) -> (Descriptor, DiffId) {
    let tar = tar_of(files);
    let (digest, size) = store.put_blob_bytes(&tar).unwrap();
    (
        Descriptor::new(MediaType::ImageLayer, size, digest.clone()),
        DiffId::new(&digest),
    )
}

fn plain_image(store: &Store, seed: &str) -> Image {
    let big: Vec<u8> = (0..3_000_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    let (a, a_id) = put_plain_layer(store, &[("hello", seed.as_bytes()), ("big", &big)]);
    let (b, b_id) = put_plain_layer(store, &[("etc/seed", seed.as_bytes())]);
    store
        .put_image(&config(&[a_id, b_id], seed), &[a, b])
        .unwrap()
}

fn blob_count(store: &Store) -> usize {
    std::fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

fn unpack(store: &Store, descriptor: &Descriptor) -> Vec<u8> {
    let reader = store.open_descriptor(descriptor).unwrap();
    let (mut plain, _) = hoist_store::extract::decompress(reader).unwrap();
    let mut out = Vec::new();
    plain.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn r9_compressed_layer_is_made_once_and_lives_with_its_image() {
    let (_dir, store) = temp_store();
    let image = plain_image(&store, "one");
    store.tag("app:v1", &image).unwrap();
    let layers = image.layers();
    let before = blob_count(&store);

    for compression in [Compression::default(), Compression::ZSTD_DEFAULT] {
        let first = store
            .compressed_layer(&layers[0].descriptor, &layers[0].diff_id, compression)
            .unwrap();
        assert_eq!(
            first.media_type(),
            &compression.media_type(),
            "{compression:?}"
        );
        assert!(
            first.size() < layers[0].descriptor.size() / 2,
            "{compression:?}: {} of {} bytes",
            first.size(),
            layers[0].descriptor.size()
        );
        let plain = unpack(&store, &first);
        assert_eq!(
            hoist_store::digest::sha256_bytes(&plain),
            layers[0].diff_id.digest(),
            "{compression:?}: the variant holds the layer"
        );
        let count = blob_count(&store);
        let second = store
            .compressed_layer(&layers[0].descriptor, &layers[0].diff_id, compression)
            .unwrap();
        assert_eq!(second, first, "{compression:?}: remembered, not remade");
        assert_eq!(blob_count(&store), count, "{compression:?}: no second blob");
    }
    assert_eq!(blob_count(&store), before + 2);

    // A layer already in the asked-for compression is its own variant, and
    // asking for it uncompressed gives back the diff.
    let gzip = store
        .compressed_layer(
            &layers[0].descriptor,
            &layers[0].diff_id,
            Compression::default(),
        )
        .unwrap();
    let same = store
        .compressed_layer(&gzip, &layers[0].diff_id, Compression::Gzip { level: 9 })
        .unwrap();
    assert_eq!(same, gzip);
    let plain = store
        .compressed_layer(&gzip, &layers[0].diff_id, Compression::Uncompressed)
        .unwrap();
    assert_eq!(plain.digest(), layers[0].descriptor.digest());
    assert_valid(&store);

    // GC keeps the variants while the image lives, even from another
    // process's point of view (no lease from this session).
    let root = store.root().to_owned();
    drop(store);
    let store = Store::open(&root).unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert!(report.blobs.is_empty(), "collected {:?}", report.blobs);
    assert_eq!(blob_count(&store), before + 2);
    assert!(
        root.join("hoist/compressed")
            .join(layers[0].diff_id.hex())
            .is_dir()
    );
    assert_valid(&store);

    // And collects them, records included, once it is gone.
    store.untag("app:v1").unwrap();
    drop(store);
    let store = Store::open(&root).unwrap();
    store.gc(&GcOptions::default()).unwrap();
    assert_eq!(blob_count(&store), 0, "every blob went with the image");
    assert_eq!(
        std::fs::read_dir(root.join("hoist/compressed"))
            .unwrap()
            .count(),
        0,
        "the variant records went too"
    );
    assert_valid(&store);
}

#[test]
fn r9_compressed_layer_checks_the_diff_id() {
    let (_dir, store) = temp_store();
    let (layer, _) = put_plain_layer(&store, &[("a", b"a")]);
    let (_, other) = put_plain_layer(&store, &[("b", b"b")]);
    let before = blob_count(&store);
    let err = store
        .compressed_layer(&layer, &other, Compression::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(other.as_str()), "{err}");
    assert_eq!(blob_count(&store), before, "nothing stored");
    assert!(
        !store
            .root()
            .join("hoist/compressed")
            .join(other.hex())
            .exists()
    );
}

#[test]
fn r9_compressed_layer_refuses_a_stored_layer_that_changed_on_disk() {
    // A layer stored uncompressed is checked by the store's own reader
    // (its digest is the diff ID), not hashed a second time: a blob whose
    // bytes changed on disk must still be refused, with nothing stored.
    let (_dir, store) = temp_store();
    let (layer, diff_id) = put_plain_layer(&store, &[("a", b"original")]);
    let path = store
        .root()
        .join("blobs/sha256")
        .join(layer.digest().digest());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(8).position(|w| w == b"original").unwrap();
    bytes[at] = b'O';
    std::fs::write(&path, &bytes).unwrap();
    let before = blob_count(&store);
    let err = store
        .compressed_layer(&layer, &diff_id, Compression::default())
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(layer.digest().digest()),
        "the error names the blob: {message}"
    );
    assert_eq!(blob_count(&store), before, "nothing stored");
    assert!(
        !store
            .root()
            .join("hoist/compressed")
            .join(diff_id.hex())
            .exists(),
        "no variant recorded"
    );
}

fn save_oci(store: &Store, image: &Image, compression: Compression, path: &Path) {
    let references = vec![hoist_store::Reference::parse_normalized("app:v1").unwrap()];
    let file = std::fs::File::create(path).unwrap();
    let item = SaveItem {
        image: image.clone(),
        references,
    };
    let options = SaveOptions {
        compression: Some(compression),
    };
    save_with(store, &[item], ArchiveFormat::Oci, &options, file).unwrap();
}

#[test]
fn r9_oci_archives_carry_compressed_layers_that_skopeo_and_umoci_read() {
    let (dir, store) = temp_store();
    let image = plain_image(&store, "two");
    store.tag("app:v1", &image).unwrap();
    let gz = dir.path().join("gz.tar");
    save_oci(&store, &image, Compression::default(), &gz);
    let again = dir.path().join("gz-again.tar");
    save_oci(&store, &image, Compression::default(), &again);
    assert!(
        std::fs::read(&gz).unwrap() == std::fs::read(&again).unwrap(),
        "saving is deterministic"
    );

    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:v1", gz.display()),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let media_types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        media_types, ["application/vnd.oci.image.layer.v1.tar+gzip"; 2],
        "{inspect}"
    );
    assert_eq!(
        manifest["config"]["digest"],
        image.id().to_string(),
        "the image ID does not depend on compression"
    );

    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    tool(
        "tar",
        &["-xf", gz.to_str().unwrap(), "-C", layout.to_str().unwrap()],
    );
    let bundle = dir.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/seed")).unwrap(),
        b"two"
    );
    assert_eq!(
        std::fs::metadata(bundle.join("rootfs/big")).unwrap().len(),
        12_000_000
    );

    // zstd: skopeo reads it, and hoist loads both back to the same image ID.
    let zst = dir.path().join("zstd.tar");
    save_oci(&store, &image, Compression::ZSTD_DEFAULT, &zst);
    let inspect = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:v1", zst.display()),
        ],
    );
    assert!(inspect.contains("tar+zstd"), "{inspect}");
    for archive in [&gz, &zst] {
        let other = Store::open(dir.path().join(format!(
            "other-{}",
            archive.file_name().unwrap().to_string_lossy()
        )))
        .unwrap();
        let loaded = load(&other, std::fs::File::open(archive).unwrap()).unwrap();
        assert_eq!(loaded[0].image.id(), image.id(), "{}", archive.display());
        assert_eq!(loaded[0].image.diff_ids(), image.diff_ids());
        assert_valid(&other);
    }
}
