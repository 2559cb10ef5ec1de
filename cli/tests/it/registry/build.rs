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
    hoist.assert_fsck_clean();
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

/// The host's architecture and another one, as OCI names them.
fn host_and_foreign_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "arm64"),
        "aarch64" => ("arm64", "amd64"),
        other => panic!("no image for this test on {other}"),
    }
}

/// Pushes to `dest` (with skopeo) an index over two one-layer images, one
/// per architecture in `arches`, each with `/platform` saying which it is
/// (and `version`, when not empty).
fn push_per_arch_index(dest: &str, arches: &[&str], version: &str) {
    use sha2::Digest;
    let layout = tempfile::tempdir().unwrap();
    let blobs = layout.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = format!("{:x}", sha2::Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut entries = Vec::new();
    for arch in arches {
        let mut layer = tar::Builder::new(Vec::new());
        let content = if version.is_empty() {
            format!("{arch}\n")
        } else {
            format!("{arch} {version}\n")
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        layer
            .append_data(&mut header, "platform", content.as_bytes())
            .unwrap();
        let layer = layer.into_inner().unwrap();
        let (layer_digest, layer_size) = put(&layer);
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer_size}],
        });
        let (digest, size) = put(&serde_json::to_vec(&manifest).unwrap());
        entries.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    super::copy_index_with_skopeo(layout.path(), entries, &format!("docker://{dest}"));
}

#[test]
fn r7_copy_from_a_stage_for_another_platform() {
    let (host, foreign) = host_and_foreign_arch();
    let registry = TestRegistry::anonymous();
    let multi = format!("{}/lib/multi:1", registry.host());
    push_per_arch_index(&multi, &[host, foreign], "");

    // The store's tag names the host's image...
    let hoist = Hoist::with_busybox();
    hoist.ok(&["pull", "-q", &multi]);
    assert_eq!(hoist.inspect(&multi)["Architecture"], json!(host));
    // ...and a stage for the other platform, only copied from, gets the
    // other image (nothing of it runs).
    let context = dockerfile_context(&format!(
        "FROM --platform=linux/{foreign} {multi} AS other\n\
         FROM busybox\n\
         COPY --from=other /platform /other-platform\n\
         RUN cat /other-platform > /seen\n"
    ));
    let log = hoist.build(context.path(), &["-t", "app:1"]);
    assert!(log.contains(&format!("[internal] pull {multi}")), "{log}");
    assert_eq!(
        hoist.exec("app:1", &["cat", "/seen"]),
        format!("{foreign}\n")
    );
    // The tag still names the host's image.
    assert_eq!(hoist.inspect(&multi)["Architecture"], json!(host));
    hoist.assert_fsck_clean();

    // A RUN in such a stage is refused, naming the platform.
    let context = dockerfile_context(&format!(
        "FROM --platform=linux/{foreign} {multi}\nRUN true\n"
    ));
    let err = hoist.fails(&[
        "build",
        "--progress=plain",
        context.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains(&format!(
            "the stage's platform is linux/{foreign}, but this host is linux/{host}"
        )) && err.contains("emulation"),
        "{err}"
    );
    assert!(
        err.contains("Dockerfile:2"),
        "the error names the RUN: {err}"
    );
}

/// A stage for another platform than its tag's image is resolved through
/// the index both were pulled through, which the store keeps: the second
/// build (after a prune) needs no registry.
#[test]
fn r7_an_image_for_another_platform_is_pulled_once() {
    let (host, foreign) = host_and_foreign_arch();
    let registry = TestRegistry::anonymous();
    let multi = format!("{}/lib/multi:1", registry.host());
    push_per_arch_index(&multi, &[host, foreign], "");

    let hoist = Hoist::with_busybox();
    hoist.ok(&["pull", "-q", &multi]);
    let build = |last: &str, tag: &str| {
        let context = dockerfile_context(&format!(
            "FROM --platform=linux/{foreign} {multi} AS other\n\
             FROM busybox\n\
             COPY --from=other /platform /other-platform\n\
             RUN {last}\n"
        ));
        hoist.build(context.path(), &["-t", tag])
    };
    let pulls = |log: &str| log.matches(&format!("[internal] pull {multi}")).count();
    let log = build("cat /other-platform > /seen", "app:1");
    assert!(pulls(&log) > 0, "{log}");
    // The other platform's image is the tag's, not dangling.
    hoist.ok(&["prune", "-f"]);

    // With the registry gone, a changed build still finds the image.
    drop(registry);
    let log = build("cat /other-platform > /seen-again", "app:2");
    assert_eq!(pulls(&log), 0, "{log}");
    assert_eq!(
        hoist.exec("app:2", &["cat", "/seen-again"]),
        format!("{foreign}\n")
    );
    assert_eq!(hoist.inspect(&multi)["Architecture"], json!(host));
    hoist.assert_fsck_clean();
}

/// `--pull` that finds a newer index for a stage of another platform than
/// its tag's image pulls the newer image and drops the older one, so that
/// a later build without `--pull` does not go back to it.
#[test]
fn r7_pull_replaces_an_out_of_date_image_for_another_platform() {
    let (host, foreign) = host_and_foreign_arch();
    let registry = TestRegistry::anonymous();
    let multi = format!("{}/lib/multi:1", registry.host());
    let base = format!("{}/lib/busybox:1", registry.host());
    skopeo_push(&Hoist::with_busybox(), "busybox:latest", &base);
    push_per_arch_index(&multi, &[host, foreign], "1");

    let hoist = Hoist::new();
    hoist.ok(&["pull", "-q", &multi]);
    let context = dockerfile_context(&format!(
        "FROM --platform=linux/{foreign} {multi} AS other\n\
         FROM {base}\n\
         COPY --from=other /platform /other-platform\n\
         RUN cat /other-platform > /seen\n"
    ));
    let pulls = std::cell::Cell::new(0);
    let seen = |tag: &str, extra: &[&str]| {
        let mut args = vec!["-t", tag];
        args.extend_from_slice(extra);
        let log = hoist.build(context.path(), &args);
        pulls.set(log.matches(&format!("[internal] pull {multi}")).count());
        hoist.exec(tag, &["cat", "/seen"])
    };
    assert_eq!(seen("app:1", &[]), format!("{foreign} 1\n"));
    // `--pull` with the index unchanged asks the registry and pulls nothing.
    assert_eq!(seen("app:1", &["--pull"]), format!("{foreign} 1\n"));
    assert_eq!(pulls.get(), 0);
    push_per_arch_index(&multi, &[host, foreign], "2");
    assert_eq!(
        seen("app:2", &[]),
        format!("{foreign} 1\n"),
        "without --pull, the store's image"
    );
    assert_eq!(pulls.get(), 0);
    assert_eq!(seen("app:3", &["--pull"]), format!("{foreign} 2\n"));
    assert!(pulls.get() > 0);
    assert_eq!(
        seen("app:4", &[]),
        format!("{foreign} 2\n"),
        "the image --pull replaced is not used again"
    );
    // The tag was not pulled again: it names the first index's image.
    assert_eq!(hoist.inspect(&multi)["Architecture"], json!(host));
    hoist.assert_fsck_clean();
}

/// Two stages FROM two images only the registry has: both are resolved
/// and pulled before the build (at the same time), each once, and their
/// pull steps are numbered in the Dockerfile's order, so two builds print
/// the same step numbers.
#[test]
fn r8_images_are_pulled_before_the_build_with_stable_step_numbers() {
    let registry = TestRegistry::anonymous();
    let source = Hoist::with_busybox();
    let one = format!("{}/lib/one:1", registry.host());
    let two = format!("{}/lib/two:1", registry.host());
    skopeo_push(&source, "busybox:latest", &one);
    let derived = dockerfile_context("FROM busybox\nRUN echo two > /two\n");
    source.build(derived.path(), &["-t", "two:1"]);
    skopeo_push(&source, "two:1", &two);

    let context = dockerfile_context(&format!(
        "FROM {one} AS a\nRUN echo a > /a\nFROM {two}\nCOPY --from=a /a /a\nRUN cat /a /two > /both\n"
    ));
    // The `#N name` lines of a build, in number order.
    let headers = |log: &str| {
        let mut lines: Vec<(usize, String)> = log
            .lines()
            .filter_map(|line| {
                let (number, name) = line.strip_prefix('#')?.split_once(' ')?;
                if !name.starts_with('[') {
                    return None;
                }
                Some((number.parse().ok()?, name.to_owned()))
            })
            .collect();
        lines.sort();
        lines.dedup();
        lines
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let hoist = Hoist::new();
        let log = hoist.build(context.path(), &["-t", "app:1"]);
        assert_eq!(hoist.exec("app:1", &["cat", "/both"]), "a\ntwo\n");
        runs.push(headers(&log));
    }
    let pulls: Vec<&(usize, String)> = runs[0]
        .iter()
        .filter(|(_, name)| name.starts_with("[internal] pull"))
        .collect();
    assert_eq!(
        pulls,
        [
            &(1, format!("[internal] pull {one}")),
            &(2, format!("[internal] pull {two}"))
        ],
        "one pull step each, first, in the Dockerfile's order \
         (interleaved pulls repeat their headers): {:?}",
        runs[0]
    );
    assert_eq!(runs[0], runs[1], "the same step numbers in both builds");
}
