//! `--cache-to type=registry` and `--cache-from type=registry` (issue 8)
//! against a real `docker-registry`: BuildKit's envelope, round trips
//! between stores, lazy layers, and imports that fail softly.

use std::path::Path;

use serde_json::Value;

use super::harness::{TestRegistry, skopeo};
use crate::common::{Hoist, dockerfile_context};

/// Two stages: `deps` writes random content (so a rerun can never match
/// the first build's layer), the final stage copies from it.
const DOCKERFILE: &str = "FROM busybox AS deps
RUN echo deps > /d && cat /proc/sys/kernel/random/uuid > /other
FROM busybox
COPY a.txt /a
RUN cat /a > /b
COPY --from=deps /d /d
";

fn raw_manifest(reference: &str) -> Value {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    serde_json::from_str(&raw).unwrap()
}

fn has_blob(hoist: &Hoist, digest: &str) -> bool {
    hoist
        .root()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .is_file()
}

/// The cached layers of a cache manifest, as (uncompressed, compressed)
/// digests.
fn cached_layers(manifest: &Value) -> Vec<(String, String)> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            l["mediaType"]
                .as_str()
                .unwrap()
                .starts_with("application/vnd.oci.image.layer.")
        })
        .map(|l| {
            (
                l["annotations"]["containerd.io/uncompressed"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                l["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn diff_ids(hoist: &Hoist, image: &str) -> Vec<String> {
    hoist.inspect(image)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn r8_cache_round_trips_between_two_stores_through_a_registry() {
    let registry = TestRegistry::anonymous();
    let host = registry.host();
    let (min, max) = (format!("{host}/ci/app:min"), format!("{host}/ci/app:max"));
    let ctx = dockerfile_context(DOCKERFILE);
    std::fs::write(ctx.path().join("a.txt"), "a\n").unwrap();
    let first = Hoist::with_busybox();
    let log = first.build(
        ctx.path(),
        &[
            "-t",
            "shared:1",
            "--cache-to",
            &format!("type=registry,ref={min},mode=min"),
            "--cache-to",
            &format!("type=registry,ref={max},mode=max"),
        ],
    );
    assert!(log.contains("3 cache records"), "min\n{log}");
    assert!(log.contains("4 cache records"), "max: and deps' RUN\n{log}");

    // BuildKit HEAD's default envelope (image-manifest=true): an OCI image
    // manifest, the cache config as its config, gzip layers that name
    // their uncompressed digest, and hoist's records last.
    let manifest = raw_manifest(&max);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.buildkit.cacheconfig.v0"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.last().unwrap()["mediaType"],
        "application/vnd.hoist.cache.steps.v1+json"
    );
    let cached = cached_layers(&manifest);
    assert_eq!(
        cached.len(),
        4,
        "COPY, RUN, COPY --from and deps' RUN: {manifest}"
    );
    for layer in &layers[..cached.len()] {
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{layer}"
        );
    }
    let final_layers = diff_ids(&first, "shared:1");
    let (deps_plain, deps_gzip) = cached
        .iter()
        .find(|(plain, _)| !final_layers.contains(plain))
        .cloned()
        .expect("the deps stage's layer is in the max cache only");
    assert_eq!(
        cached_layers(&raw_manifest(&min)).len(),
        3,
        "min: the final image's layers only"
    );

    // A fresh store takes every step from the cache and downloads only
    // what the final image needs: the deps layer stays in the registry.
    let second = Hoist::with_busybox();
    let log = second.build(
        ctx.path(),
        &[
            "-t",
            "shared:2",
            "--cache-from",
            &format!("type=registry,ref={max}"),
        ],
    );
    assert!(log.contains("4 cache records"), "{log}");
    assert_eq!(log.matches("CACHED").count(), 4, "{log}");
    assert_eq!(second.exec("shared:2", &["cat", "/b", "/d"]), "a\ndeps\n");
    assert_eq!(diff_ids(&second, "shared:2"), final_layers);
    assert!(
        !has_blob(&second, &deps_plain),
        "deps' layer was downloaded"
    );
    assert!(!has_blob(&second, &deps_gzip), "deps' layer was downloaded");
    second.assert_fsck_clean();

    // The steps whose layers came are now local: a rebuild without
    // --cache-from takes COPY and RUN from the store. deps' RUN, whose
    // layer never came, runs again (its content is random), and so does
    // the COPY --from that reads it.
    let log = second.build(ctx.path(), &["-t", "shared:3"]);
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");

    // A later RUN that is not cached mounts the imported layers, which
    // are downloaded then.
    let third = Hoist::with_busybox();
    let longer = dockerfile_context(&format!("{DOCKERFILE}RUN cat /a /b /d > /e\n"));
    std::fs::write(longer.path().join("a.txt"), "a\n").unwrap();
    let log = third.build(longer.path(), &["-t", "longer:1", "--cache-from", &max]);
    assert_eq!(log.matches("CACHED").count(), 4, "{log}");
    assert_eq!(third.exec("longer:1", &["cat", "/e"]), "a\na\ndeps\n");
    assert!(!has_blob(&third, &deps_plain), "deps' layer was downloaded");
    third.assert_fsck_clean();

    // mode=min: the deps stage is not in it, so it runs, and so does
    // the COPY --from that reads it.
    let fourth = Hoist::with_busybox();
    let log = fourth.build(
        ctx.path(),
        &[
            "-t",
            "shared:4",
            "--cache-from",
            &format!("type=registry,ref={min}"),
        ],
    );
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");
}

/// Re-exporting a cache imported from the same repository pushes nothing
/// the registry has and downloads nothing to do it.
#[test]
fn r8_reexporting_an_imported_registry_cache_downloads_nothing() {
    let registry = TestRegistry::anonymous();
    let cache = format!("{}/ci/app:cache", registry.host());
    let ctx = dockerfile_context(DOCKERFILE);
    std::fs::write(ctx.path().join("a.txt"), "a\n").unwrap();
    let first = Hoist::with_busybox();
    let to = format!("type=registry,ref={cache},mode=max");
    first.build(ctx.path(), &["-t", "one", "--cache-to", &to]);
    let before = raw_manifest(&cache);
    let deps_plain = cached_layers(&before)
        .into_iter()
        .map(|(plain, _)| plain)
        .find(|plain| !diff_ids(&first, "one").contains(plain))
        .unwrap();

    let second = Hoist::with_busybox();
    let log = second.build(
        ctx.path(),
        &["-t", "two", "--cache-from", &cache, "--cache-to", &to],
    );
    assert!(log.contains("4 cache records"), "{log}");
    assert!(
        !has_blob(&second, &deps_plain),
        "exporting the deps layer must not download it"
    );
    assert_eq!(
        cached_layers(&raw_manifest(&cache)),
        cached_layers(&before),
        "the same layers, the same compressed blobs"
    );
}

#[test]
fn r8_a_missing_or_foreign_cache_is_a_warning_not_a_failure() {
    let registry = TestRegistry::anonymous();
    let host = registry.host();
    let hoist = Hoist::with_busybox();
    // A runnable image is not a cache.
    let image = format!("{host}/lib/busybox:1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:busybox:latest", hoist.root().display()),
        &format!("docker://{image}"),
    ]);
    let ctx = dockerfile_context("FROM busybox\nRUN echo hi > /hi\n");
    let missing = format!("type=registry,ref={host}/ci/none:here");
    let nowhere = Path::new("/nonexistent/hoist-cache");
    let local = format!("type=local,src={}", nowhere.display());
    let log = hoist.build(
        ctx.path(),
        &[
            "-t",
            "warned",
            "--cache-from",
            &missing,
            "--cache-from",
            &image,
            "--cache-from",
            &local,
        ],
    );
    assert_eq!(
        log.matches("WARNING: failed to import cache").count(),
        3,
        "{log}"
    );
    assert!(log.contains("not a BuildKit cache config"), "{log}");
    assert!(!log.contains("CACHED"), "{log}");
    assert_eq!(hoist.exec("warned", &["cat", "/hi"]), "hi\n");
    hoist.assert_fsck_clean();

    // An export that fails fails the build, unless ignore-error=true.
    let unreachable = "type=registry,ref=127.0.0.1:1/ci/app:cache";
    let err = hoist.fails(&[
        "build",
        "--progress=plain",
        "--cache-to",
        unreachable,
        ctx.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains("exporting the build cache to 127.0.0.1:1"),
        "{err}"
    );
    let log = hoist.build(
        ctx.path(),
        &["--cache-to", &format!("{unreachable},ignore-error=true")],
    );
    assert!(log.contains("WARNING: failed to export cache"), "{log}");
}

/// An exported cache holds digests, never a step's input values: a build
/// arg a RUN sees and an `ADD` URL's credentials stay out of every file of
/// a `type=local` export and every blob pushed to a registry. The records
/// still round-trip, and a miss against one is explained without values.
#[test]
fn r8_exported_caches_hold_no_build_arg_or_url_credentials() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::cache::files_containing;
    use crate::registry::http::{Server, respond};

    let token = String::from_utf8(std::fs::read("/proc/sys/kernel/random/uuid").unwrap())
        .unwrap()
        .trim()
        .replace('-', "");
    assert_eq!(token.len(), 32);
    // The file is served only to the credentials in the URL.
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("ci:{token}")
        )
    );
    let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let server = {
        let (served, refused) = (served.clone(), refused.clone());
        Server::start(move |request, mut stream| {
            if request.header("authorization") == Some(expected.as_str()) {
                served.fetch_add(1, Ordering::SeqCst);
                let _ = respond(&mut stream, 200, &[], b"payload\n");
            } else {
                refused.fetch_add(1, Ordering::SeqCst);
                let _ = respond(&mut stream, 401, &[], b"");
            }
        })
    };
    let ctx = dockerfile_context(&format!(
        "FROM busybox
ARG TOKEN LEVEL=1
ADD http://ci:${{TOKEN}}@{}/file.txt /file.txt
RUN test ${{#TOKEN}} = 32 && cat /file.txt > /seen && echo $LEVEL > /level
",
        server.host()
    ));
    let registry = TestRegistry::anonymous();
    let reference = format!("{}/ci/secret:cache", registry.host());
    let out = tempfile::tempdir().unwrap();
    let local = out.path().join("cache");
    let arg = format!("TOKEN={token}");
    let first = Hoist::with_busybox();
    let log = first.build(
        ctx.path(),
        &[
            "--build-arg",
            &arg,
            "-t",
            "secret:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max", local.display()),
            "--cache-to",
            &format!("type=registry,ref={reference},mode=max"),
        ],
    );
    assert_eq!(log.matches("2 cache records").count(), 2, "{log}");
    assert_eq!(first.exec("secret:1", &["cat", "/seen"]), "payload\n");
    assert_eq!(served.load(Ordering::SeqCst), 1, "{log}");
    assert_eq!(refused.load(Ordering::SeqCst), 0, "{log}");

    // The check finds the token where it is: the local store keeps the
    // inputs whole, for explaining misses.
    assert!(!files_containing(first.root(), token.as_bytes()).is_empty());
    for dir in [local.clone(), registry.storage()] {
        assert_eq!(
            files_containing(&dir, token.as_bytes()),
            Vec::<String>::new(),
            "the token leaked into {}",
            dir.display()
        );
    }
    // Nor is the URL there, in any form.
    let url_path = format!("{}/file.txt", server.host());
    for dir in [local.clone(), registry.storage()] {
        assert_eq!(
            files_containing(&dir, url_path.as_bytes()),
            Vec::<String>::new()
        );
    }

    // Both round-trip: a fresh store takes both steps from either.
    for from in [
        format!("type=local,src={}", local.display()),
        format!("type=registry,ref={reference}"),
    ] {
        let fresh = Hoist::with_busybox();
        let log = fresh.build(
            ctx.path(),
            &["--build-arg", &arg, "-t", "secret:2", "--cache-from", &from],
        );
        assert_eq!(log.matches("CACHED").count(), 2, "{from}\n{log}");
        assert_eq!(fresh.exec("secret:2", &["cat", "/seen"]), "payload\n");
        fresh.assert_fsck_clean();

        // A miss against an imported record names no value.
        let out = fresh.run(&[
            "build",
            "--progress=plain",
            "--build-arg",
            &arg,
            "--build-arg",
            "LEVEL=2",
            "--explain",
            "--dry-run",
            ctx.path().to_str().unwrap(),
        ]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(
            log.contains(
                "not cached: an input changed since the imported cache's build \
                 (it keeps digests, not values)"
            ),
            "{from}\n{log}"
        );
    }
}

/// `mounts=true` through a registry: the cache mount's contents travel as
/// a blob of their own media type, and a fresh store's RUN starts warm;
/// without it, cold.
#[test]
fn r8_cache_mount_contents_travel_through_a_registry_with_mounts_true() {
    let registry = TestRegistry::anonymous();
    let (with, without) = (
        format!("{}/ci/warm:with", registry.host()),
        format!("{}/ci/warm:without", registry.host()),
    );
    let first = Hoist::with_busybox();
    let fill = dockerfile_context(
        "FROM busybox\nRUN --mount=type=cache,id=warm,target=/c sh -c 'echo filled > /c/state'\n",
    );
    first.build(
        fill.path(),
        &[
            "--cache-to",
            &format!("type=registry,ref={with},mounts=true"),
            "--cache-to",
            &format!("type=registry,ref={without}"),
        ],
    );
    let mount_layers = |reference: &str| {
        raw_manifest(reference)["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["mediaType"] == "application/vnd.hoist.cache.mount.v1.tar")
            .count()
    };
    assert_eq!(mount_layers(&with), 1);
    assert_eq!(mount_layers(&without), 0);
    let read = dockerfile_context(
        "FROM busybox\nRUN --mount=type=cache,id=warm,target=/c sh -c 'cat /c/state > /seen 2>/dev/null || echo cold > /seen'\n",
    );
    for (reference, seen) in [(&without, "cold\n"), (&with, "filled\n")] {
        let fresh = Hoist::with_busybox();
        let from = format!("type=registry,ref={reference}");
        fresh.build(read.path(), &["-t", "warm:1", "--cache-from", &from]);
        assert_eq!(fresh.exec("warm:1", &["cat", "/seen"]), seen, "{reference}");
        fresh.assert_fsck_clean();
    }
}

/// `compression=zstd` through a registry: zstd layers that name their
/// uncompressed digest, and a fresh store takes every step from them and
/// gets the same image.
#[test]
fn r8_cache_round_trips_through_a_registry_with_zstd() {
    let registry = TestRegistry::anonymous();
    let cache = format!("{}/ci/app:zstd", registry.host());
    let ctx = dockerfile_context(DOCKERFILE);
    std::fs::write(ctx.path().join("a.txt"), "a\n").unwrap();
    let first = Hoist::with_busybox();
    let log = first.build(
        ctx.path(),
        &[
            "-t",
            "zstd:1",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max,compression=zstd"),
        ],
    );
    assert!(log.contains("4 cache records"), "{log}");
    let manifest = raw_manifest(&cache);
    let cached = cached_layers(&manifest);
    assert_eq!(cached.len(), 4, "{manifest}");
    for layer in manifest["layers"].as_array().unwrap() {
        let media_type = layer["mediaType"].as_str().unwrap();
        if media_type.starts_with("application/vnd.oci.image.layer.") {
            assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
            // The blob in the registry is a zstd stream.
            let digest = layer["digest"].as_str().unwrap();
            let blob = std::fs::read(registry.blob_data_path(digest)).unwrap();
            assert_eq!(&blob[..4], [0x28, 0xb5, 0x2f, 0xfd], "{digest}");
        }
    }

    let second = Hoist::with_busybox();
    let log = second.build(
        ctx.path(),
        &[
            "-t",
            "zstd:2",
            "--cache-from",
            &format!("type=registry,ref={cache}"),
        ],
    );
    assert_eq!(log.matches("CACHED").count(), 4, "{log}");
    assert_eq!(diff_ids(&second, "zstd:2"), diff_ids(&first, "zstd:1"));
    assert_eq!(second.exec("zstd:2", &["cat", "/b", "/d"]), "a\ndeps\n");
    second.assert_fsck_clean();
}
