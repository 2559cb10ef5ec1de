//! The opt-in comparison with `docker build` (BuildKit): the same testdata
//! projects built by both, compared by merged filesystem and by config.
//!
//! Needs a running dockerd and a BuildKit-capable client, so it is ignored
//! by a plain `cargo nextest run`; `scripts/test` starts a dockerd and runs
//! it. By hand:
//!   dockerd --iptables=false --bridge=none &
//!   cargo nextest run -p hoist --run-ignored only -E 'test(/docker::/)'
//! `HOIST_TEST_DOCKER_CLI` picks the client (default `/usr/bin/docker`,
//! Debian's, which builds with `DOCKER_BUILDKIT=1` and no buildx).
//! Every difference is listed in the failure message.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{Hoist, context};

fn docker() -> Command {
    let cli = std::env::var("HOIST_TEST_DOCKER_CLI").unwrap_or_else(|_| "/usr/bin/docker".into());
    let mut cmd = Command::new(cli);
    cmd.env("DOCKER_BUILDKIT", "1");
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One entry of a flattened root filesystem, without its mtime.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let meta = entry.path().symlink_metadata().unwrap();
        let kind = if meta.is_symlink() {
            format!("-> {}", std::fs::read_link(entry.path()).unwrap().display())
        } else if meta.is_file() {
            let mut hasher = Sha256::new();
            hasher.update(std::fs::read(entry.path()).unwrap());
            format!("file {:x}", hasher.finalize())
        } else if meta.is_dir() {
            "dir".to_owned()
        } else {
            format!("special rdev={}", meta.rdev())
        };
        entries.insert(
            format!("/{rel}"),
            format!(
                "{:o} {}:{} {kind}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            ),
        );
    }
    entries
}

/// The merged filesystem of an image in an OCI layout, unpacked by umoci.
fn unpack(layout: &Path, tag: &str, dest: &Path) -> BTreeMap<String, String> {
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest));
    describe(&dest.join("rootfs"))
}

const CONFIG_KEYS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

fn config_of(inspect: &Value) -> BTreeMap<&'static str, Value> {
    CONFIG_KEYS
        .iter()
        .map(|k| {
            let v = inspect["Config"][*k].clone();
            // Docker writes empty lists and maps as null; so do we.
            let v = match &v {
                Value::Array(a) if a.is_empty() => Value::Null,
                Value::Object(o) if o.is_empty() => Value::Null,
                Value::String(s) if s.is_empty() => Value::Null,
                _ => v,
            };
            (*k, v)
        })
        .collect()
}

/// Files whose content differs between Debian's docker.io BuildKit and
/// BuildKit HEAD, which hoist follows: `id` output, since HEAD puts the
/// primary group among the supplementary ones (ensureAdditionalGids). The
/// values, observed under BuildKit HEAD, are asserted by
/// `users_and_groups_resolve_from_the_image_files`.
/// Their mode and owner are still compared.
const CONTENT_DIFFERS_BY_VERSION: &[(&str, &str)] = &[("build-users", "/tmp/id-")];

fn compare(name: &str, extra: &[&str]) {
    let hoist = Hoist::with_busybox();
    let work = tempfile::tempdir().unwrap();
    // Docker gets hoist's busybox, so both start from the same base.
    let base = work.path().join("busybox.tar");
    hoist.ok(&["save", "busybox:latest", "-o", base.to_str().unwrap()]);
    run(docker().arg("load").arg("-i").arg(&base));

    let ctx = context(name);
    let tag = format!("hoist-compare-{name}:test");
    let mut args = vec!["build", "--network", "none", "-t", tag.as_str()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    hoist.ok(&args);
    run(docker().args(&args));

    // Docker's image, through skopeo into an OCI layout for umoci.
    let saved = work.path().join("docker.tar");
    run(docker().arg("save").arg("-o").arg(&saved).arg(&tag));
    let layout = work.path().join("docker-oci");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", saved.display()))
        .arg(format!("oci:{}:{tag}", layout.display())));
    let theirs = unpack(&layout, &tag, &work.path().join("docker-bundle"));
    let ours = unpack(hoist.root(), &tag, &work.path().join("hoist-bundle"));

    let mut differences = Vec::new();
    let content_differs = |path: &str| {
        CONTENT_DIFFERS_BY_VERSION
            .iter()
            .any(|(ctx, prefix)| *ctx == name && path.starts_with(prefix))
    };
    // "MODE UID:GID file DIGEST" without the digest.
    let without_digest = |desc: &str| desc.rsplit_once(' ').map_or(desc, |(d, _)| d).to_owned();
    for (path, desc) in &theirs {
        match ours.get(path) {
            None => differences.push(format!("only in docker: {path} {desc}")),
            Some(mine) if content_differs(path) && without_digest(mine) == without_digest(desc) => {
            }
            Some(mine) if mine != desc => {
                differences.push(format!("{path}: docker {desc}, hoist {mine}"));
            }
            Some(_) => {}
        }
    }
    for (path, desc) in &ours {
        if !theirs.contains_key(path) {
            differences.push(format!("only in hoist: {path} {desc}"));
        }
    }
    let docker_inspect: Value =
        serde_json::from_str(&run(docker().args(["image", "inspect", &tag]))).unwrap();
    let ours_config = config_of(&hoist.inspect(&tag));
    let theirs_config = config_of(&docker_inspect[0]);
    for key in CONFIG_KEYS {
        if ours_config[key] != theirs_config[key] {
            differences.push(format!(
                "config {key}: docker {}, hoist {}",
                theirs_config[key], ours_config[key]
            ));
        }
    }
    let history = |out: String| -> Vec<String> { out.lines().map(str::to_owned).collect() };
    let theirs_history = history(run(docker().args([
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        &tag,
    ])));
    let ours_history: Vec<String> = hoist
        .ok(&["history", "--no-trunc", "--format", "json", &tag])
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            entry["CreatedBy"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    let theirs_history = comparable_history(&theirs_history);
    let ours_history = comparable_history(&ours_history);
    if theirs_history != ours_history {
        differences.push(format!(
            "history: docker {theirs_history:#?}\nhoist {ours_history:#?}"
        ));
    }
    let _ = run(docker().args(["rmi", "-f", &tag]));
    assert!(
        differences.is_empty(),
        "{name}: hoist and docker build differ:\n{}",
        differences.join("\n")
    );
}

/// History lines with the differences between BuildKit versions taken
/// out: BuildKit before v0.13 (Debian's docker.io) leaves COPY's flags out,
/// writes EXPOSE as a Go map, and HEALTHCHECK as a Go pointer dump; hoist
/// writes what current BuildKit writes.
fn comparable_history(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.starts_with("HEALTHCHECK"))
        .map(|line| {
            if line.starts_with("COPY ") || line.starts_with("ADD ") {
                return line
                    .split(' ')
                    .filter(|w| {
                        !(w.starts_with("--chown=")
                            || w.starts_with("--chmod=")
                            || *w == "--parents")
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            if let Some(map) = line.strip_prefix("EXPOSE map[") {
                let ports: Vec<&str> = map
                    .trim_end_matches(']')
                    .split(' ')
                    .map(|p| p.trim_end_matches(":{}"))
                    .collect();
                return format!("EXPOSE [{}]", ports.join(" "));
            }
            line.clone()
        })
        .collect()
}

macro_rules! compare_tests {
    ($($test:ident => $context:literal $(, $extra:literal)*;)*) => {$(
        #[test]
        #[ignore = "opt-in: needs a running dockerd (see the module docs)"]
        fn $test() {
            compare($context, &[$($extra),*]);
        }
    )*};
}

compare_tests! {
    docker_hello => "hello";
    docker_config => "build-config";
    docker_whiteouts => "build-whiteouts";
    docker_users => "build-users";
    docker_ignore => "build-ignore";
    docker_multistage => "build-multistage";
    docker_escape => "build-escape";
    docker_fds => "build-fds";
}

#[test]
#[ignore = "opt-in: needs a running dockerd (see the module docs)"]
fn docker_loads_and_runs_what_hoist_saves() {
    let hoist = Hoist::with_busybox();
    hoist.ok(&[
        "build",
        "-q",
        "-t",
        "hoist-saved:test",
        context("hello").to_str().unwrap(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("hello.tar");
    hoist.ok(&["save", "hoist-saved:test", "-o", archive.to_str().unwrap()]);
    let loaded = run(docker().arg("load").arg("-i").arg(&archive));
    assert!(
        loaded.contains("Loaded image: hoist-saved:test"),
        "{loaded}"
    );
    let out = run(docker().args(["run", "--rm", "--network", "none", "hoist-saved:test"]));
    assert_eq!(out, "hello from hoist\nbuilt by root on Linux\n");
    let _ = run(docker().args(["rmi", "-f", "hoist-saved:test"]));
}

#[test]
#[ignore = "opt-in: needs a running dockerd (see the module docs)"]
fn r7_docker_pulls_and_runs_what_hoist_pushes() {
    // dockerd treats 127.0.0.0/8 as an insecure registry: plain HTTP works.
    let registry = crate::registry::harness::TestRegistry::anonymous();
    let hoist = Hoist::with_busybox();
    let reference = format!("{}/hoist-pushed:test", registry.host());
    let context = crate::common::dockerfile_context(crate::common::MULTI_MEMBER_DOCKERFILE);
    hoist.ok(&[
        "build",
        "-q",
        "--push",
        "-t",
        &reference,
        context.path().to_str().unwrap(),
    ]);
    let pulled = run(docker().args(["pull", &reference]));
    let digest = hoist.inspect(&reference)["RepoDigests"][0]
        .as_str()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    let out = run(docker().args(["run", "--rm", "--network", "none", &reference]));
    assert_eq!(out, crate::common::MULTI_MEMBER_SUMS_OK);
    let _ = run(docker().args(["rmi", "-f", &reference]));
}
