//! Registry tests against a real `docker-registry` on 127.0.0.1 (issue 7).

// Parts of the harness serve other test modules (token auth, fault proxy).
#[allow(dead_code)]
pub mod harness;

mod auth;
mod build;
mod cache;
#[allow(dead_code)]
pub mod fault_proxy;
pub mod http;
mod pod;
mod pull_push;
#[allow(dead_code)]
pub mod token_server;

use crate::common::Hoist;
use harness::{RegistryOptions, TestRegistry, skopeo};

/// Pushes the store's `busybox:latest` to `dest` (`docker://...`) with
/// skopeo, the independent tool.
fn skopeo_push_busybox(hoist: &Hoist, dest: &str, extra: &[&str]) {
    let src = format!("oci:{}:busybox:latest", hoist.root().display());
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[&src, dest]);
    skopeo(&args);
}

/// Finishes the OCI layout in `layout` (whose `blobs/sha256` holds the
/// blobs of `manifests`): an index over `manifests`, named `multi` in
/// `index.json`, then copies it with every platform to `dest` (a skopeo
/// destination) with skopeo. Returns the index's digest.
fn copy_index_with_skopeo(
    layout: &std::path::Path,
    manifests: Vec<serde_json::Value>,
    dest: &str,
) -> String {
    use serde_json::json;
    use sha2::Digest;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let hex = format!("{:x}", sha2::Sha256::digest(&index));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &index).unwrap();
    let index_digest = format!("sha256:{hex}");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(layout.join("index.json"), top.to_string()).unwrap();
    skopeo(&[
        "copy",
        "--multi-arch=all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        dest,
    ]);
    index_digest
}

#[test]
fn r7_harness_anonymous_registry_serves_pushes() {
    let registry = TestRegistry::anonymous();
    assert_eq!(registry.get_status("/v2/"), 200);
    let hoist = Hoist::with_busybox();
    let dest = format!("docker://{}/lib/busybox:1", registry.host());
    skopeo_push_busybox(&hoist, &dest, &[]);
    let out = skopeo(&["inspect", "--tls-verify=false", &dest]);
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(registry.get_status("/v2/lib/busybox/tags/list"), 200);
}

#[test]
fn r7_harness_htpasswd_registry_requires_credentials() {
    let registry = TestRegistry::start(RegistryOptions::htpasswd("alice", "s3cret"));
    assert_eq!(registry.get_status("/v2/"), 401);
    let hoist = Hoist::with_busybox();
    let dest = format!("docker://{}/busybox:latest", registry.host());
    let src = format!("oci:{}:busybox:latest", hoist.root().display());
    let anonymous = std::process::Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", &src, &dest])
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success(),
        "an anonymous push must be refused"
    );
    skopeo_push_busybox(&hoist, &dest, &["--dest-creds", "alice:s3cret"]);
}

#[test]
fn r7_harness_mirror_serves_the_upstream_images() {
    let upstream = TestRegistry::anonymous();
    let hoist = Hoist::with_busybox();
    skopeo_push_busybox(
        &hoist,
        &format!("docker://{}/library/busybox:latest", upstream.host()),
        &[],
    );
    let mirror = TestRegistry::start(RegistryOptions::mirror_of(&upstream));
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/library/busybox:latest", mirror.host()),
    ]);
    assert!(out.contains("\"Digest\""), "{out}");
}
