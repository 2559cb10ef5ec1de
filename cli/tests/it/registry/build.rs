//! Builds that meet registries (issue 7): `FROM` and `COPY --from` an image
//! only the registry has, `--pull`, `--push` and `--output type=registry`.

use serde_json::{Value, json};

use super::harness::{TestRegistry, skopeo};
use crate::common::{Hoist, dockerfile_context};

/// Pushes the store's `busybox:latest` to `host/repo` with skopeo.
fn skopeo_push(hoist: &Hoist, image: &str, dest: &str) {
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:{image}", hoist.root().display()),
        &format!("docker://{dest}"),
    ]);
}

fn remote_inspect(reference: &str) -> Value {
    serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .unwrap()
}

#[test]
fn r7_from_an_image_only_the_registry_has() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let base = format!("{}/lib/base:1", registry.host());
    skopeo_push(&source, "busybox:latest", &base);

    let hoist = Hoist::new();
    let context = dockerfile_context(&format!(
        "FROM {base}\nRUN echo built > /built\nCOPY --from={base} /bin/busybox /copied\n"
    ));
    let log = hoist.build(context.path(), &["-t", "app:1"]);
    assert_eq!(
        log.matches(&format!("[internal] pull {base}")).count(),
        1,
        "pulled once, for FROM and COPY --from:\n{log}"
    );
    assert_eq!(hoist.exec("app:1", &["cat", "/built"]), "built\n");
    hoist.exec("app:1", &["test", "-x", "/copied"]);
    assert!(
        hoist.ok(&["images"]).contains("lib/base"),
        "the base is tagged"
    );
    let fsck = hoist.ok(&["fsck"]);
    assert!(fsck.contains(" 0 problems"), "{fsck}");
}

#[test]
fn r7_build_pull_checks_the_digest_and_pulls_only_a_change() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let base = format!("{}/lib/base:1", registry.host());
    skopeo_push(&source, "busybox:latest", &base);

    let hoist = Hoist::new();
    let context = dockerfile_context(&format!("FROM {base}\nRUN cat /marker || true\n"));
    let first = hoist.build(context.path(), &["--pull", "-t", "app:1"]);
    assert!(first.contains("[internal] pull"), "{first}");
    let unchanged = hoist.build(context.path(), &["--pull", "-t", "app:1"]);
    assert!(
        !unchanged.contains("[internal] pull"),
        "an unchanged digest is not pulled again:\n{unchanged}"
    );

    // The registry's image changes: --pull fetches it, a plain build not.
    let changed = dockerfile_context("FROM busybox\nRUN echo v2 > /marker\n");
    source.build(changed.path(), &["-t", "busybox:v2"]);
    skopeo_push(&source, "busybox:v2", &base);
    let plain = hoist.build(context.path(), &["-t", "app:1"]);
    assert!(!plain.contains("[internal] pull"), "{plain}");
    let pulled = hoist.build(context.path(), &["--pull", "-t", "app:2"]);
    assert!(pulled.contains("[internal] pull"), "{pulled}");
    assert_eq!(hoist.exec("app:2", &["cat", "/marker"]), "v2\n");
}

#[test]
fn r7_build_push_and_output_type_registry() {
    let registry = TestRegistry::anonymous();
    let hoist = Hoist::with_busybox();
    let context = dockerfile_context("FROM busybox\nRUN echo pushed > /pushed\n");
    let tagged = format!("{}/team/app:1", registry.host());
    hoist.build(context.path(), &["--push", "-t", &tagged]);
    let remote = remote_inspect(&tagged);
    let local = hoist.inspect(&tagged);
    assert_eq!(
        local["RepoDigests"],
        json!([format!(
            "{}/team/app@{}",
            registry.host(),
            remote["Digest"].as_str().unwrap()
        )]),
    );
    assert_eq!(remote["Layers"].as_array().unwrap().len(), 2, "{remote}");

    // Another store pulls and runs what the build pushed.
    let other = Hoist::new();
    other.ok(&["pull", "-q", &tagged]);
    assert_eq!(other.exec(&tagged, &["cat", "/pushed"]), "pushed\n");

    let named = format!("{}/team/named:2", registry.host());
    hoist.build(
        context.path(),
        &["--output", &format!("type=registry,name={named}")],
    );
    assert_eq!(
        remote_inspect(&named)["Digest"],
        remote["Digest"],
        "same image, same manifest"
    );

    let err = hoist.fails(&["build", "--push", context.path().to_str().unwrap()]);
    assert!(
        err.contains("tag is needed when pushing to registry"),
        "{err}"
    );
}
