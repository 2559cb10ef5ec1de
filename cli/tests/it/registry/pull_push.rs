//! hoist's own pull and push against a real registry, checked with skopeo
//! (issue 7).

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fault_proxy::{Fault, FaultProxy, Logged, Target};
use super::harness::{RegistryOptions, TestRegistry, skopeo};
use crate::common::Hoist;

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Pushes the store's `busybox:latest` to `host/repo` with skopeo; returns
/// the manifest digest the registry names it by.
fn skopeo_push(hoist: &Hoist, host: &str, repo: &str) -> String {
    let dest = format!("docker://{host}/{repo}");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:busybox:latest", hoist.root().display()),
        &dest,
    ]);
    remote_digest(&dest)
}

/// The manifest (or index) bytes a registry holds for `dest`.
fn remote_raw(dest: &str) -> String {
    skopeo(&["inspect", "--raw", "--tls-verify=false", dest])
}

/// The digest of the manifest (or index) a registry holds for `dest`.
fn remote_digest(dest: &str) -> String {
    format!("sha256:{}", sha256_hex(remote_raw(dest).as_bytes()))
}

fn remote_inspect(dest: &str) -> Value {
    serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", dest])).unwrap()
}

#[test]
fn r7_pull_round_trip_keeps_the_registry_digest() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let digest = skopeo_push(&source, &registry.host(), "lib/busybox:1.36");
    let reference = format!("{}/lib/busybox:1.36", registry.host());

    let hoist = Hoist::new();
    let out = hoist.ok(&["pull", &reference]);
    let layer = remote_inspect(&format!("docker://{reference}"))["Layers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let short = &layer["sha256:".len().."sha256:".len() + 12];
    assert_eq!(
        out,
        format!(
            "1.36: Pulling from lib/busybox\n{short}: Pulling fs layer\n{short}: Pull complete\n\
             Digest: {digest}\nStatus: Downloaded newer image for {reference}\n{reference}\n"
        )
    );
    hoist.assert_fsck_clean();
    // The manifest is stored byte for byte: same digest as the registry's.
    let inspected = hoist.inspect(&reference);
    assert_eq!(
        inspected["RepoDigests"],
        json!([format!("{}/lib/busybox@{digest}", registry.host())])
    );
    let images = hoist.ok(&["images", "--digests"]);
    assert!(images.contains(&digest), "{images}");
    hoist.assert_valid_for_other_tools(&reference);
    assert_eq!(
        hoist.exec(&reference, &["echo", "pulled"]),
        "pulled\n",
        "the pulled image runs"
    );

    // A second pull downloads nothing.
    let again = hoist.ok(&["pull", &reference]);
    assert!(
        again.contains(&format!("{short}: Already exists")),
        "{again}"
    );
    assert!(
        again.contains(&format!("Status: Image is up to date for {reference}")),
        "{again}"
    );

    // A single-platform image for another platform than asked for.
    let other = Hoist::new();
    let err = other.fails(&["pull", "--platform", "linux/s390x", &reference]);
    assert!(
        err.contains("does not match the specified platform: wanted linux/s390x, actual: linux/"),
        "{err}"
    );
    assert!(!other.ok(&["images"]).contains("busybox"), "{err}");

    // By digest: untagged but listed, and the same image.
    let pinned = format!("{}/lib/busybox@{digest}", registry.host());
    let quiet = Hoist::new().ok(&["pull", "-q", &pinned]);
    assert_eq!(quiet, format!("{pinned}\n"));
}

#[test]
fn r7_push_round_trip_and_a_no_op_re_push() {
    let registry = TestRegistry::anonymous();
    let hoist = Hoist::with_busybox();
    let reference = format!("{}/app:v1", registry.host());
    hoist.ok(&["tag", "busybox:latest", &reference]);
    let out = hoist.ok(&["push", &reference]);
    let remote = format!("docker://{reference}");
    let digest = remote_digest(&remote);
    let size = remote_raw(&remote).len();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("The push refers to repository [{}/app]", registry.host())
    );
    assert!(lines[1].ends_with(": Pushed"), "{out}");
    assert_eq!(lines[2], format!("v1: digest: {digest} size: {size}"));
    assert_eq!(lines.len(), 3, "{out}");
    // The registry holds exactly the local manifest.
    assert_eq!(
        hoist.inspect(&reference)["RepoDigests"],
        json!([format!("{}/app@{digest}", registry.host())]),
        "a push records the digest the registry names the image by"
    );
    let inspected = remote_inspect(&remote);
    assert_eq!(inspected["Digest"], json!(digest));
    // The store may keep layers uncompressed; the registry gets gzip.
    let raw: Value = serde_json::from_str(&remote_raw(&remote)).unwrap();
    assert_eq!(
        raw["layers"][0]["mediaType"],
        json!("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{raw}"
    );
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        1,
        "{inspected}"
    );
    // Another tool can copy it out whole (every blob verified).
    copy_out_with_skopeo(&remote);

    // Nothing changed: only HEADs, every layer already there, same digest.
    let again = hoist.ok(&["push", &reference]);
    let lines: Vec<&str> = again.lines().collect();
    assert!(lines[1].ends_with(": Layer already exists"), "{again}");
    assert_eq!(lines[2], format!("v1: digest: {digest} size: {size}"));
}

/// A store whose `busybox:latest` has its layer stored uncompressed, as
/// built and loaded images have (an import keeps the gzip it was given).
fn uncompressed_busybox() -> Hoist {
    let source = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("busybox.tar");
    source.ok(&["save", "-o", archive.to_str().unwrap(), "busybox:latest"]);
    let hoist = Hoist::new();
    hoist.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(hoist.root().join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = std::fs::read_to_string(
        hoist
            .root()
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..]),
    )
    .unwrap();
    assert!(
        manifest.contains("application/vnd.oci.image.layer.v1.tar\""),
        "{manifest}"
    );
    hoist
}

/// Pushes a store's busybox (one uncompressed layer) through a fault
/// proxy with `fault` on the first upload PATCH. Returns the pushing store,
/// the layer's diff ID, the pushed (gzip) layer's digest and size, and the
/// proxy's log.
fn push_through_proxy(fault: Option<Fault>) -> (Hoist, String, String, u64, Vec<Logged>) {
    let registry = TestRegistry::anonymous();
    let proxy = FaultProxy::start(&registry.host());
    if let Some(fault) = fault {
        proxy.inject(Target::UploadPatch, fault, 1);
    }
    let hoist = uncompressed_busybox();
    let reference = format!("{}/stream/app:1", proxy.host());
    hoist.ok(&["tag", "busybox:latest", &reference]);
    let out = hoist.ok(&["push", &reference]);
    let diff_id = hoist.inspect(&reference)["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // The layer is named by its diff ID, as `docker push` names it.
    let short = &diff_id["sha256:".len().."sha256:".len() + 12];
    assert!(out.contains(&format!("{short}: Pushed\n")), "{out}");
    let remote = format!("docker://{}/stream/app:1", registry.host());
    let raw: Value = serde_json::from_str(&remote_raw(&remote)).unwrap();
    let layer = raw["layers"][0]["digest"].as_str().unwrap().to_owned();
    let size = raw["layers"][0]["size"].as_u64().unwrap();
    // Another tool copies it out whole, every blob verified.
    copy_out_with_skopeo(&remote);
    // The store kept exactly what it sent, as the layer's gzip variant.
    let record: Value = serde_json::from_slice(
        &std::fs::read(
            hoist
                .root()
                .join("hoist/compressed")
                .join(&diff_id["sha256:".len()..])
                .join("gzip"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["digest"], json!(layer), "{record}");
    assert_eq!(record["size"], json!(size), "{record}");
    hoist.assert_fsck_clean();
    (hoist, diff_id, layer, size, proxy.log())
}

#[test]
fn r7_first_push_streams_the_compression_into_the_upload() {
    let (hoist, _, layer, size, log) = push_through_proxy(None);
    // One upload for the layer: a PATCH whose body has no length up front
    // (it is compressed as it is sent), then a PUT naming the digest, known
    // only at the end, with no body.
    let patches: Vec<&Logged> = log.iter().filter(|l| l.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{log:#?}");
    assert!(patches[0].chunked, "{log:#?}");
    assert_eq!(patches[0].body_len as u64, size, "{log:#?}");
    assert_eq!(patches[0].status, 202, "{log:#?}");
    let closing: Vec<&Logged> = log
        .iter()
        .filter(|l| l.method == "PUT" && l.digest.as_deref() == Some(layer.as_str()))
        .collect();
    assert_eq!(closing.len(), 1, "{log:#?}");
    assert_eq!(closing[0].body_len, 0, "{log:#?}");
    assert_eq!(closing[0].status, 201, "{log:#?}");
    // The layer was never looked for before: its digest did not exist yet.
    assert!(
        !log.iter()
            .any(|l| l.method == "HEAD" && l.path.ends_with(&layer)),
        "{log:#?}"
    );
    // Saving it reuses the stored variant: the same blob, no new one.
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("app.tar");
    let blobs_before = std::fs::read_dir(hoist.root().join("blobs/sha256"))
        .unwrap()
        .count();
    hoist.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        archive.to_str().unwrap(),
        "busybox:latest",
    ]);
    let blobs_after = std::fs::read_dir(hoist.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs_before, blobs_after, "save compressed the layer again");
}

#[test]
fn r7_a_failed_streamed_upload_starts_over_from_the_stored_variant() {
    let (_, _, layer, size, log) = push_through_proxy(Some(Fault::ServerError));
    let patches: Vec<&Logged> = log.iter().filter(|l| l.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{log:#?}");
    assert_eq!(patches[0].status, 500, "{log:#?}");
    // Then the stored variant went up whole, in one PUT of known length.
    let puts: Vec<&Logged> = log
        .iter()
        .filter(|l| l.method == "PUT" && l.digest.as_deref() == Some(layer.as_str()))
        .collect();
    assert_eq!(puts.len(), 1, "{log:#?}");
    assert_eq!(puts[0].body_len as u64, size, "{log:#?}");
    assert!(!puts[0].chunked, "{log:#?}");
    assert_eq!(puts[0].status, 201, "{log:#?}");
}

/// Modification times of the store's `hoist/sources` records, by name.
fn source_records(hoist: &Hoist) -> Vec<(String, std::time::SystemTime)> {
    let mut records: Vec<_> = std::fs::read_dir(hoist.root().join("hoist/sources"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let modified = entry.metadata().unwrap().modified().unwrap();
            (entry.file_name().to_string_lossy().into_owned(), modified)
        })
        .collect();
    records.sort();
    records
}

#[test]
fn r7_noop_repush_is_one_manifest_head() {
    let registry = TestRegistry::anonymous();
    let proxy = FaultProxy::start(&registry.host());
    let hoist = uncompressed_busybox();
    let reference = format!("{}/noop/app:1", proxy.host());
    hoist.ok(&["tag", "busybox:latest", &reference]);
    let first = hoist.ok(&["push", &reference]);
    let digest_line = first.lines().last().unwrap().to_owned();
    let records = source_records(&hoist);
    let before = proxy.log().len();

    // Unchanged: the tag already names this manifest, so its blobs are
    // there. One HEAD of the manifest after the ping; nothing written to
    // the registry or to the store's records.
    let again = hoist.ok(&["push", &reference]);
    let log = proxy.log();
    let requests: Vec<(&str, &str)> = log[before..]
        .iter()
        .map(|l| (l.method.as_str(), l.path.as_str()))
        .collect();
    assert_eq!(
        requests,
        [("GET", "/v2/"), ("HEAD", "/v2/noop/app/manifests/1")],
        "{log:#?}"
    );
    let lines: Vec<&str> = again.lines().collect();
    assert!(lines[1].ends_with(": Layer already exists"), "{again}");
    assert_eq!(lines.last().unwrap(), &digest_line, "{again}");
    assert_eq!(lines.len(), 3, "{again}");
    assert_eq!(
        source_records(&hoist),
        records,
        "a no-op push rewrote a record"
    );

    // The tag moved to another manifest (skopeo's Docker schema2 form of
    // the same image): the push checks each blob and puts the manifest back.
    let remote = format!("docker://{}/noop/app:1", registry.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci:{}:busybox:latest", hoist.root().display()),
        &remote,
    ]);
    let moved = remote_digest(&remote);
    let before = proxy.log().len();
    let back = hoist.ok(&["push", &reference]);
    assert_eq!(back.lines().last().unwrap(), digest_line, "{back}");
    let log = proxy.log();
    let again = &log[before..];
    assert!(
        again
            .iter()
            .any(|l| l.method == "HEAD" && l.path.contains("/blobs/")),
        "{again:#?}"
    );
    assert!(
        again
            .iter()
            .any(|l| l.method == "PUT" && l.path == "/v2/noop/app/manifests/1" && l.status == 201),
        "{again:#?}"
    );
    assert_ne!(remote_digest(&remote), moved, "the tag was put back");
    hoist.assert_fsck_clean();
}

#[test]
fn r7_pull_refuses_a_corrupt_blob_and_stores_nothing() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    skopeo_push(&source, &registry.host(), "bad:latest");
    let reference = format!("{}/bad:latest", registry.host());
    let layer = remote_inspect(&format!("docker://{reference}"))["Layers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // Same size, different bytes: only the digest can tell.
    let data = registry.blob_data_path(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let hoist = Hoist::new();
    let err = hoist.fails(&["pull", &reference]);
    assert!(err.contains(&format!("blob {layer} is corrupt")), "{err}");
    let hex = layer.strip_prefix("sha256:").unwrap();
    assert!(
        !hoist.root().join("blobs/sha256").join(hex).exists(),
        "the corrupt layer must not be stored"
    );
    assert!(!hoist.ok(&["images"]).contains("bad"), "no image is tagged");
    hoist.assert_fsck_clean();
}

#[test]
fn r7_cross_repository_mount_on_push() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    skopeo_push(&source, &registry.host(), "base/busybox:1");
    let hoist = Hoist::new();
    let pulled = format!("{}/base/busybox:1", registry.host());
    hoist.ok(&["pull", "-q", &pulled]);
    let target = format!("{}/team/app:1", registry.host());
    hoist.ok(&["tag", &pulled, &target]);
    let out = hoist.ok(&["push", &target]);
    assert!(out.contains(": Mounted from base/busybox\n"), "{out}");
    assert_eq!(
        remote_digest(&format!("docker://{target}")),
        remote_digest(&format!("docker://{pulled}"))
    );
}

/// A layer the store compressed for an earlier push is known by its
/// compressed digest: a push of another image sharing it HEADs it and
/// mounts it from the repository it went to (or skips it where it already
/// is), and never uploads it again.
#[test]
fn r7_a_pushed_base_layer_is_mounted_or_skipped_never_uploaded_again() {
    let registry = TestRegistry::anonymous();
    let proxy = FaultProxy::start(&registry.host());
    let hoist = uncompressed_busybox();
    let base = format!("{}/base/a:1", proxy.host());
    hoist.ok(&["tag", "busybox:latest", &base]);
    hoist.ok(&["push", &base]);
    let raw: Value = serde_json::from_str(&remote_raw(&format!(
        "docker://{}/base/a:1",
        registry.host()
    )))
    .unwrap();
    let base_layer = raw["layers"][0]["digest"].as_str().unwrap().to_owned();

    // B: the same base layer (stored uncompressed) and one of its own.
    let context = crate::common::dockerfile_context("FROM busybox\nCOPY Dockerfile /b\n");
    let app = format!("{}/team/b:1", proxy.host());
    hoist.build(context.path(), &["-t", &app]);
    let before = proxy.log().len();
    let out = hoist.ok(&["push", &app]);
    assert!(out.contains(": Mounted from base/a\n"), "{out}");
    let log = proxy.log();
    let pushed = &log[before..];
    let head_of = |pushed: &[Logged], digest: &str, status: u16| {
        pushed.iter().any(|l| {
            l.method == "HEAD"
                && l.path.ends_with(&format!("/blobs/{digest}"))
                && l.status == status
        })
    };
    assert!(head_of(pushed, &base_layer, 404), "{pushed:#?}");
    let mounts: Vec<&Logged> = pushed
        .iter()
        .filter(|l| l.mount.as_deref() == Some(base_layer.as_str()))
        .collect();
    assert_eq!(mounts.len(), 1, "{pushed:#?}");
    assert_eq!(mounts[0].method, "POST", "{pushed:#?}");
    assert_eq!(mounts[0].status, 201, "{pushed:#?}");
    assert!(
        !pushed
            .iter()
            .any(|l| l.digest.as_deref() == Some(base_layer.as_str())),
        "the base layer was uploaded again: {pushed:#?}"
    );
    // Only B's own layer went up, streamed as it was compressed.
    assert_eq!(
        pushed.iter().filter(|l| l.method == "PATCH").count(),
        1,
        "{pushed:#?}"
    );
    let remote_b = format!("docker://{}/team/b:1", registry.host());
    copy_out_with_skopeo(&remote_b);
    let raw_b: Value = serde_json::from_str(&remote_raw(&remote_b)).unwrap();
    assert_eq!(raw_b["layers"][0]["digest"], json!(base_layer), "{raw_b}");
    let own_layer = raw_b["layers"][1]["digest"].as_str().unwrap().to_owned();

    // B again, into the repository that holds the base layer: its HEAD
    // finds it there, B's own layer is mounted from team/b, and no blob
    // goes up at all.
    let next = format!("{}/base/a:2", proxy.host());
    hoist.ok(&["tag", &app, &next]);
    let before = proxy.log().len();
    let out = hoist.ok(&["push", &next]);
    assert!(out.contains(": Layer already exists\n"), "{out}");
    assert!(out.contains(": Mounted from team/b\n"), "{out}");
    let log = proxy.log();
    let pushed = &log[before..];
    assert!(head_of(pushed, &base_layer, 200), "{pushed:#?}");
    assert!(
        pushed
            .iter()
            .any(|l| l.mount.as_deref() == Some(own_layer.as_str()) && l.status == 201),
        "{pushed:#?}"
    );
    assert!(
        !pushed
            .iter()
            .any(|l| l.method == "PATCH" || l.digest.is_some()),
        "a blob was uploaded: {pushed:#?}"
    );
    assert_eq!(
        remote_digest(&format!("docker://{}/base/a:2", registry.host())),
        remote_digest(&remote_b)
    );
    hoist.assert_fsck_clean();
}

#[test]
fn r7_basic_auth_from_docker_config() {
    let registry = TestRegistry::start(RegistryOptions::htpasswd("alice", "s3cret-pw"));
    let hoist = Hoist::with_busybox();
    let reference = format!("{}/private/app:1", registry.host());
    hoist.ok(&["tag", "busybox:latest", &reference]);
    let empty = tempfile::tempdir().unwrap();
    let run = |config: &Path, args: &[&str]| {
        hoist
            .command(args)
            .env("DOCKER_CONFIG", config)
            .output()
            .unwrap()
    };
    let refused = run(empty.path(), &["push", &reference]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("unauthorized"), "{stderr}");

    let config = tempfile::tempdir().unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pw");
    std::fs::write(
        config.path().join("config.json"),
        json!({"auths": {registry.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let pushed = run(config.path(), &["push", &reference]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&pushed.stdout),
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert!(pushed.status.success(), "{all}");
    assert!(!all.contains("s3cret"), "the password never shows: {all}");

    let puller = Hoist::new();
    let pulled = puller
        .command(&["pull", &reference])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    puller.assert_fsck_clean();
}

/// Writes an OCI layout holding an index over the busybox image of
/// `hoist` for amd64 and arm64/v8 (same layer, different configs) and
/// copies it to `dest` with skopeo. Returns the index digest.
fn push_multi_arch(hoist: &Hoist, dest: &str) -> String {
    let root = hoist.root();
    let blob = |digest: &str| std::fs::read(root.join("blobs/sha256").join(&digest[7..])).unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "busybox:latest")
        .unwrap()
        .clone();
    let manifest: Value = serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layout = tempfile::tempdir().unwrap();
    let blobs = layout.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    for layer in manifest["layers"].as_array().unwrap() {
        put(&blob(layer["digest"].as_str().unwrap()));
    }
    let mut entries = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let mut config = config.clone();
        config["architecture"] = json!(arch);
        if let Some(variant) = variant {
            config["variant"] = json!(variant);
        }
        let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
        let mut manifest = manifest.clone();
        manifest["config"]["digest"] = json!(config_digest);
        manifest["config"]["size"] = json!(config_size);
        let (digest, size) = put(&serde_json::to_vec(&manifest).unwrap());
        let mut platform = json!({"os": "linux", "architecture": arch});
        if let Some(variant) = variant {
            platform["variant"] = json!(variant);
        }
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size, "platform": platform,
        }));
    }
    super::copy_index_with_skopeo(layout.path(), entries, dest)
}

#[test]
fn r7_pull_multi_arch_index() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let reference = format!("{}/multi/busybox:latest", registry.host());
    let remote = format!("docker://{reference}");
    push_multi_arch(&source, &remote);
    let index_digest = remote_digest(&remote);

    // The host's platform by default (the tests run on amd64 or arm64).
    let hoist = Hoist::new();
    let out = hoist.ok(&["pull", &reference]);
    assert!(out.contains(&format!("Digest: {index_digest}\n")), "{out}");
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no image for this test on {other}"),
    };
    assert_eq!(hoist.inspect(&reference)["Architecture"], json!(host_arch));
    assert_eq!(
        hoist.inspect(&reference)["RepoDigests"],
        json!([format!("{}/multi/busybox@{index_digest}", registry.host())]),
        "RepoDigests name the index, as Docker's do"
    );
    hoist.assert_fsck_clean();

    // Variants: arm64 is arm64/v8.
    for platform in ["linux/arm64", "linux/arm64/v8"] {
        let other = Hoist::new();
        other.ok(&["pull", "-q", "--platform", platform, &reference]);
        let inspected = other.inspect(&reference);
        assert_eq!(inspected["Architecture"], json!("arm64"), "{platform}");
        assert_eq!(inspected["Variant"], json!("v8"), "{platform}");
    }

    let none = Hoist::new();
    let err = none.fails(&["pull", "--platform", "linux/s390x", &reference]);
    assert!(
        err.contains(
            "no matching manifest for linux/s390x in the manifest list entries \
             (available: linux/amd64, linux/arm64/v8)"
        ),
        "{err}"
    );
    assert!(!none.ok(&["images"]).contains("multi"));
}

/// The index a multi-platform image was pulled through is kept byte for
/// byte while the image lives (its digest is the image's repository
/// digest), and goes with the image.
#[test]
fn r7_prune_keeps_a_pulled_index_byte_for_byte_while_its_image_lives() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let reference = format!("{}/multi/busybox:latest", registry.host());
    let remote = format!("docker://{reference}");
    push_multi_arch(&source, &remote);
    let raw = remote_raw(&remote);
    let index_digest = format!("sha256:{}", sha256_hex(raw.as_bytes()));

    let hoist = Hoist::new();
    hoist.ok(&["pull", "-q", &reference]);
    hoist.ok(&["prune", "-f"]);
    let stored = hoist
        .root()
        .join("blobs/sha256")
        .join(&index_digest["sha256:".len()..]);
    assert_eq!(
        std::fs::read_to_string(&stored).expect("the pulled index is kept"),
        raw,
        "the registry's bytes"
    );
    assert_eq!(
        hoist.inspect(&reference)["RepoDigests"],
        json!([format!("{}/multi/busybox@{index_digest}", registry.host())])
    );
    let images = hoist.ok(&["images", "--digests"]);
    assert!(images.contains(&index_digest), "{images}");
    hoist.assert_fsck_clean();

    // The host's manifest goes back to the registry with the index's
    // entry's digest.
    let index: Value = serde_json::from_str(&raw).unwrap();
    let arch = hoist.inspect(&reference)["Architecture"].clone();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap();
    let again = format!("{}/multi/busybox:again", registry.host());
    hoist.ok(&["tag", &reference, &again]);
    hoist.ok(&["push", "-q", &again]);
    assert_eq!(
        json!(remote_digest(&format!("docker://{again}"))),
        entry["digest"]
    );

    // Untagged, the image and its index go.
    hoist.ok(&["rmi", &reference, &again]);
    hoist.ok(&["prune", "-f"]);
    assert!(!stored.exists(), "the index went with its image");
    hoist.assert_fsck_clean();
}

#[test]
fn r7_pull_resumes_broken_blobs_and_retries_throttling() {
    use super::fault_proxy::{Fault, FaultProxy, Target};
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let digest = skopeo_push(&source, &registry.host(), "lib/busybox:1");
    let proxy = FaultProxy::start(&registry.host());
    proxy.inject(
        Target::Manifest,
        Fault::TooManyRequests { retry_after: 1 },
        1,
    );
    proxy.inject(Target::Manifest, Fault::ServerError, 1);
    proxy.inject(Target::BlobGet, Fault::Drop, 1);
    proxy.inject(Target::BlobGet, Fault::Truncate, 1);
    let hoist = Hoist::new();
    let reference = format!("{}/lib/busybox:1", proxy.host());
    let out = hoist.ok(&["pull", &reference]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    hoist.assert_fsck_clean();
    let log = proxy.log();
    let statuses: Vec<u16> = log
        .iter()
        .filter(|l| l.path.contains("/manifests/"))
        .map(|l| l.status)
        .collect();
    assert_eq!(statuses[..3], [429, 500, 200], "{log:?}");
    // Both broken blobs were resumed where they broke off, not restarted.
    let resumed = log
        .iter()
        .filter(|l| {
            l.range
                .as_deref()
                .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-")
        })
        .count();
    assert_eq!(resumed, 2, "{log:?}");
    assert_eq!(hoist.exec(&reference, &["echo", "ok"]), "ok\n");
}

#[test]
fn r7_docker_io_pulls_go_through_a_configured_mirror() {
    let upstream = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let digest = skopeo_push(&source, &upstream.host(), "library/busybox:latest");
    let mirror = TestRegistry::start(RegistryOptions::mirror_of(&upstream));
    let config = tempfile::tempdir().unwrap();
    let config_file = config.path().join("config.json");
    std::fs::write(
        &config_file,
        json!({"registries": {"docker.io": {"mirrors": [mirror.url()]}}}).to_string(),
    )
    .unwrap();

    // Docker Hub itself is never asked: the mirror answers.
    let hoist = Hoist::new();
    let pulled = hoist
        .command(&["pull", "busybox"])
        .env("HOIST_CONFIG", &config_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&pulled.stdout);
    assert!(
        pulled.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert!(
        stdout.contains("latest: Pulling from library/busybox\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("docker.io/library/busybox:latest\n"),
        "{stdout}"
    );
    assert_eq!(
        hoist.inspect("busybox")["RepoDigests"],
        json!([format!("busybox@{digest}")])
    );
    let cached = walkdir::WalkDir::new(mirror.storage())
        .into_iter()
        .filter_map(Result::ok)
        .any(|e| e.file_name() == "data");
    assert!(cached, "the mirror cached what it served");
    hoist.assert_fsck_clean();
}

#[test]
fn r7_push_all_tags() {
    let registry = TestRegistry::anonymous();
    let hoist = Hoist::with_busybox();
    let repo = format!("{}/many", registry.host());
    for tag in ["a", "b"] {
        hoist.ok(&["tag", "busybox:latest", &format!("{repo}:{tag}")]);
    }
    let refused = hoist.fails(&["push", "--all-tags", &format!("{repo}:a")]);
    assert!(
        refused.contains("tag can't be used with --all-tags/-a"),
        "{refused}"
    );
    let out = hoist.ok(&["push", "--all-tags", &repo]);
    assert!(out.contains("\na: digest: sha256:"), "{out}");
    assert!(out.contains("\nb: digest: sha256:"), "{out}");
    let tags: Value = serde_json::from_str(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repo}"),
    ]))
    .unwrap();
    let mut tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["a", "b"]);
}

#[test]
fn r7_pull_of_a_docker_schema2_image_keeps_its_manifest() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let reference = format!("{}/lib/v2s2:1", registry.host());
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:busybox:latest", source.root().display()),
        &format!("docker://{reference}"),
    ]);
    let remote = format!("docker://{reference}");
    let raw: Value = serde_json::from_str(&remote_raw(&remote)).unwrap();
    assert_eq!(
        raw["mediaType"],
        json!("application/vnd.docker.distribution.manifest.v2+json")
    );
    let hoist = Hoist::new();
    let out = hoist.ok(&["pull", &reference]);
    assert!(
        out.contains(&format!("Digest: {}", remote_digest(&remote))),
        "{out}"
    );
    hoist.assert_fsck_clean();
    assert_eq!(hoist.exec(&reference, &["echo", "v2s2"]), "v2s2\n");
    // The registry's digest stays the image's name there.
    assert_eq!(
        hoist.inspect(&reference)["RepoDigests"],
        json!([format!(
            "{}/lib/v2s2@{}",
            registry.host(),
            remote_digest(&remote)
        )])
    );
    assert!(
        hoist
            .ok(&["images", "--digests"])
            .contains(&remote_digest(&remote)),
        "images --digests shows the registry's digest"
    );
    // Other tools read it from the store's OCI layout: skopeo inspects and
    // copies it (every blob verified), umoci unpacks it.
    hoist.assert_valid_for_other_tools(&reference);
    let layout = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        &format!("oci:{}:{reference}", hoist.root().display()),
        &format!("oci:{}:copy", layout.path().display()),
    ]);
    // A pinned reference finds the pulled image without the registry.
    let pinned = format!("{}/lib/v2s2@{}", registry.host(), remote_digest(&remote));
    assert_eq!(
        hoist.inspect(&pinned)["Id"],
        hoist.inspect(&reference)["Id"]
    );
    // GC keeps the original manifest with the image.
    hoist.ok(&["system", "prune", "-f"]);
    hoist.assert_fsck_clean();
    // And back out: the registry gets the same manifest.
    let again = format!("{}/lib/v2s2-copy:1", registry.host());
    hoist.ok(&["tag", &reference, &again]);
    hoist.ok(&["push", &again]);
    assert_eq!(
        remote_digest(&format!("docker://{again}")),
        remote_digest(&remote)
    );
}

/// Records the largest `advanced` count per layer and the finished layers.
#[derive(Default)]
struct Recorded {
    done: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    finished: std::sync::Mutex<Vec<String>>,
}

impl hoist_store::registry::TransferProgress for Recorded {
    fn advanced(&self, layer: &oci_spec::image::Descriptor, done: u64) {
        let mut map = self.done.lock().unwrap();
        let seen = map.entry(layer.digest().to_string()).or_default();
        *seen = (*seen).max(done);
    }
    fn finished(&self, layer: &oci_spec::image::Descriptor) {
        self.finished
            .lock()
            .unwrap()
            .push(layer.digest().to_string());
    }
}

#[test]
fn r7_push_progress_counts_the_bytes_of_each_layer() {
    use hoist_store::registry::{Client, PushOptions, RegistrySettings, StaticCredentials};
    let hoist = uncompressed_busybox();
    let store = hoist_store::Store::open(hoist.root()).unwrap();
    let image = store.resolve("busybox:latest").unwrap();
    let layer = image.manifest().layers()[0].clone();
    let client = Client::new(
        std::sync::Arc::new(StaticCredentials::default()),
        RegistrySettings::default(),
    );
    // First compressed on the way (the bar counts the layer's own bytes, as
    // `docker push` does), then, to another registry, uploaded from the
    // stored variant (its bytes scaled to the layer's).
    let registries = [TestRegistry::anonymous(), TestRegistry::anonymous()];
    for (registry, path) in registries.iter().zip(["streamed", "stored"]) {
        let recorded = Recorded::default();
        let options = PushOptions::new(&recorded);
        let reference =
            hoist_store::Reference::parse_normalized(&format!("{}/progress:1", registry.host()))
                .unwrap();
        client.push(&store, &image, &reference, &options).unwrap();
        let key = layer.digest().to_string();
        assert_eq!(
            recorded.done.lock().unwrap().get(&key),
            Some(&layer.size()),
            "{path}: every byte of the layer is counted"
        );
        assert_eq!(*recorded.finished.lock().unwrap(), vec![key], "{path}");
    }
}

/// Copies `remote` into a fresh OCI layout with skopeo, which verifies
/// every blob it reads; panics if skopeo refuses any of them.
fn copy_out_with_skopeo(remote: &str) {
    let layout = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        remote,
        &format!("oci:{}:copy", layout.path().display()),
    ]);
}

/// Builds `tag` from [`crate::common::MULTI_MEMBER_DOCKERFILE`].
fn build_multi_member_image(hoist: &Hoist, tag: &str) {
    let context = crate::common::dockerfile_context(crate::common::MULTI_MEMBER_DOCKERFILE);
    hoist.build(context.path(), &["-t", tag]);
}

/// Checks the files of [`build_multi_member_image`] in an unpacked root.
fn assert_sums_match(rootfs: &Path) {
    let out = std::process::Command::new("md5sum")
        .args(["-c", "sums"])
        .current_dir(rootfs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "md5sum -c in {}: {}{}",
        rootfs.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies `source` into a fresh OCI layout with skopeo (which verifies
/// every blob) and unpacks it with umoci (which decompresses every layer
/// and checks its diff ID); returns the unpacked rootfs's bundle.
fn unpack_with_skopeo_and_umoci(source: &str, skopeo_flags: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let mut args = vec!["copy"];
    args.extend_from_slice(skopeo_flags);
    let dest = format!("oci:{}:copy", layout.display());
    args.extend_from_slice(&[source, &dest]);
    skopeo(&args);
    let out = std::process::Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:copy", layout.display()))
        .arg(dir.path().join("bundle"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack of {source}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn r7_multi_member_gzip_layers_are_read_by_skopeo_umoci_and_hoist() {
    let registry = TestRegistry::anonymous();
    let hoist = Hoist::with_busybox();
    build_multi_member_image(&hoist, "members:v1");
    let reference = format!("{}/members:v1", registry.host());
    hoist.ok(&["tag", "members:v1", &reference]);
    hoist.ok(&["push", &reference]);
    let remote = format!("docker://{reference}");
    let manifest: Value = serde_json::from_str(&remote_raw(&remote)).unwrap();
    let top = manifest["layers"].as_array().unwrap().last().unwrap();
    assert_eq!(
        top["mediaType"],
        json!("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{manifest}"
    );
    // Over 2 MiB compressed (the random file alone is 2 MiB): at least
    // three members.
    assert!(
        top["size"].as_u64().unwrap() > 2 << 20,
        "the layer is several members: {manifest}"
    );

    // The registry's copy, through skopeo and umoci.
    let unpacked = unpack_with_skopeo_and_umoci(&remote, &["--src-tls-verify=false"]);
    assert_sums_match(&unpacked.path().join("bundle/rootfs"));

    // Pulled back by hoist into an empty store: verified, extracted, run.
    let pulled = Hoist::new();
    pulled.ok(&["pull", "-q", &reference]);
    pulled.assert_fsck_clean();
    assert_eq!(
        pulled.exec(&reference, &[]),
        crate::common::MULTI_MEMBER_SUMS_OK
    );

    // `save --format oci` compresses the same way: skopeo and umoci read
    // the archive too, and hoist loads it back.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("members.tar");
    hoist.ok(&[
        "save",
        "--format",
        "oci",
        "members:v1",
        "-o",
        archive.to_str().unwrap(),
    ]);
    let unpacked =
        unpack_with_skopeo_and_umoci(&format!("oci-archive:{}:v1", archive.display()), &[]);
    assert_sums_match(&unpacked.path().join("bundle/rootfs"));
    let loaded = Hoist::new();
    loaded.ok(&["load", "-i", archive.to_str().unwrap()]);
    loaded.assert_fsck_clean();
    assert_eq!(
        loaded.exec("members:v1", &[]),
        crate::common::MULTI_MEMBER_SUMS_OK
    );
}
