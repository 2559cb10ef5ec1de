//! `hoist build` end to end.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    Hoist, context, context_copy, dockerfile_context, running_with_arg, wait_until,
};

#[test]
fn hello_builds_runs_and_is_readable_by_other_tools() {
    let hoist = Hoist::with_busybox();
    let log = hoist.build(&context("hello"), &["-t", "hello:latest"]);
    assert!(log.contains("[2/4] WORKDIR /app"), "{log}");
    assert!(log.contains("RUN echo \"built by"), "{log}");
    assert!(
        log.contains("naming to docker.io/library/hello:latest"),
        "{log}"
    );
    let out = hoist.exec("hello:latest", &[]);
    assert_eq!(out, "hello from hoist\nbuilt by root on Linux\n");
    hoist.assert_valid_for_other_tools("hello:latest");
}

#[test]
fn a_second_build_is_all_cached_and_a_changed_file_reruns_its_copy() {
    let hoist = Hoist::with_busybox();
    let ctx = context_copy("hello");
    hoist.build(ctx.path(), &["-t", "hello:1"]);
    let first = hoist.inspect("hello:1");
    let log = hoist.build(ctx.path(), &["-t", "hello:2"]);
    assert_eq!(
        log.matches("CACHED").count(),
        3,
        "WORKDIR, COPY and RUN:\n{log}"
    );
    // Nothing ran, so nothing changed: the same image, as with BuildKit.
    assert_eq!(hoist.inspect("hello:2")["Id"], first["Id"]);

    std::fs::write(ctx.path().join("greeting.txt"), "changed\n").unwrap();
    let log = hoist.build(ctx.path(), &["-t", "hello:3"]);
    assert_eq!(
        log.matches("CACHED").count(),
        1,
        "only WORKDIR is reused:\n{log}"
    );
    assert_eq!(
        hoist.exec("hello:3", &["cat", "/app/greeting.txt"]),
        "changed\n"
    );
}

#[test]
fn every_config_instruction_lands_in_the_image_config() {
    let hoist = Hoist::with_busybox();
    hoist.build(
        &context("build-config"),
        &["-t", "config:test", "--build-arg", "VERSION=2.5"],
    );
    let image = hoist.inspect("config:test");
    let config = &image["Config"];
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"APP_HOME=/app"), "{env:?}");
    assert!(env.contains(&"GREETING=hello world"), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("VERSION=")),
        "ARGs are not ENV: {env:?}"
    );
    assert_eq!(config["Labels"]["org.example.version"], "2.5");
    assert_eq!(config["Labels"]["org.example.name"], "config test");
    assert_eq!(config["WorkingDir"], "/app");
    assert_eq!(config["User"], "1000:1000");
    assert_eq!(config["StopSignal"], "SIGINT");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/run.sh"])
    );
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    assert_eq!(config["Shell"], serde_json::json!(["/bin/sh", "-eu", "-c"]));
    assert_eq!(config["OnBuild"], serde_json::json!(["RUN echo child"]));
    let ports = config["ExposedPorts"].as_object().unwrap();
    let mut ports: Vec<&String> = ports.keys().collect();
    ports.sort();
    assert_eq!(ports, ["8080/tcp", "9000/udp", "9001/udp"]);
    assert!(config["Volumes"].as_object().unwrap().contains_key("/data"));
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/run.sh", "health"])
    );
    assert_eq!(config["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(config["Healthcheck"]["Retries"], 3);
    assert_eq!(image["Author"], "hoist tests");

    // Files, modes and owners, seen from inside the image.
    let out = hoist.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        "config:test",
        "-c",
        "cat /app/greeting.txt /data/version /app/exec.txt /app/src/a.txt /app/src/b.txt; \
         stat -c '%a %u:%g %n' /usr/local/bin/run.sh /home/owned.txt /app/src/a.txt; id -u",
    ]);
    assert_eq!(
        out,
        "hello world\nv=2.5\nexec-form\nalpha\nbeta\n\
         755 0:0 /usr/local/bin/run.sh\n644 1000:1000 /home/owned.txt\n644 0:0 /app/src/a.txt\n1000\n"
    );
    let history = hoist.ok(&["history", "--no-trunc", "config:test"]);
    assert!(
        history.contains("RUN |1 VERSION=2.5 /bin/sh -c echo \"$GREETING\""),
        "{history}"
    );
    assert!(
        history.contains("COPY --chmod=0755 run.sh /usr/local/bin/run.sh # buildkit"),
        "{history}"
    );
    assert!(
        history.contains("ENV APP_HOME=/app GREETING=hello world"),
        "{history}"
    );
}

#[test]
fn deletions_and_metadata_changes_become_whiteouts_and_copy_ups() {
    let hoist = Hoist::with_busybox();
    hoist.build(&context("build-whiteouts"), &["-t", "wh:test"]);
    let out = hoist.exec(
        "wh:test",
        &[
            "sh",
            "-c",
            "ls -a /opt; ls -a /opt/old; stat -c '%a %u:%g' /opt/chmod-me /opt/chown-me; \
                       test -e /bin/vi && echo vi-present || echo vi-gone; cat /opt/keep/f",
        ],
    );
    assert_eq!(
        out,
        ".\n..\nchmod-me\nchown-me\nkeep\nold\n.\n..\nfresh\n600 0:0\n644 1000:1000\nvi-gone\ny\n"
    );
    // The same answer through an independent unpacker.
    let bundle = tempfile::tempdir().unwrap();
    let status = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:wh:test", hoist.root().display()))
        .arg(bundle.path().join("b"))
        .status()
        .unwrap();
    assert!(status.success());
    let rootfs = bundle.path().join("b/rootfs");
    assert!(!rootfs.join("opt/remove-me").exists());
    assert!(!rootfs.join("opt/old/sub").exists());
    assert!(rootfs.join("opt/old/fresh").exists());
    assert!(!rootfs.join("bin/vi").exists());
    assert!(rootfs.join("bin/ls").exists());
}

#[test]
fn users_and_groups_resolve_from_the_image_files() {
    let hoist = Hoist::with_busybox();
    hoist.build(&context("build-users"), &["-t", "users:test"]);
    let out = hoist.exec(
        "users:test",
        &[
            "sh",
            "-c",
            "cat /tmp/id-alice /tmp/id-alice-app /tmp/id-1234 /tmp/id-root; \
                       stat -c '%u:%g' /owned-by-alice /owned-by-1234",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    // Exactly what BuildKit HEAD gives: supplementary groups are the ones
    // listing the user (none when USER names a group), and the primary one
    // (the kernel sorts them).
    assert_eq!(
        lines[..4],
        [
            "uid=1001(alice) gid=2000(staff2) groups=1000(app),2000(staff2)",
            "uid=1001(alice) gid=1000(app) groups=1000(app)",
            "uid=1234 gid=0(root) groups=0(root)",
            "uid=0(root) gid=0(root) groups=0(root)",
        ],
        "{out}"
    );
    assert_eq!(lines[4], "1001:2000");
    // Docker: a UID without a GID uses the UID as the GID for --chown.
    assert_eq!(lines[5], "1234:1234");
}

#[test]
fn dockerignore_patterns_and_exceptions_apply() {
    let hoist = Hoist::with_busybox();
    hoist.build(&context("build-ignore"), &["-t", "ignore:test"]);
    let out = hoist.exec(
        "ignore:test",
        &["sh", "-c", "cd /ctx && find . -type f | sort"],
    );
    assert_eq!(
        out,
        "./.dockerignore\n./Dockerfile\n./app.txt\n./src/keep/code.c\n./src/keep/important.tmp\n"
    );
}

#[test]
fn add_extracts_local_archives_and_copies_other_files() {
    let hoist = Hoist::with_busybox();
    let ctx = context_copy("build-add");
    let files = ctx.path().join("files");
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("pkg/sub")).unwrap();
    std::fs::write(src.path().join("pkg/a.txt"), "a\n").unwrap();
    std::fs::write(src.path().join("pkg/sub/b.txt"), "b\n").unwrap();
    for (name, flag) in [("archive.tar.gz", "-czf"), ("archive.tar", "-cf")] {
        let status = Command::new("tar")
            .arg(flag)
            .arg(files.join(name))
            .arg("-C")
            .arg(src.path())
            .arg("pkg")
            .status()
            .unwrap();
        assert!(status.success());
    }
    hoist.build(ctx.path(), &["-t", "add:test"]);
    let out = hoist.exec(
        "add:test",
        &[
            "sh",
            "-c",
            "cat /extracted/pkg/a.txt /extracted/pkg/sub/b.txt /extracted-plain/pkg/a.txt \
                       /plain/plain.txt /raw/not-really.tar.gz",
        ],
    );
    assert_eq!(out, "a\nb\na\nplain\nthis is text, not gzip\n");
}

#[test]
fn multistage_builds_only_needed_stages() {
    let hoist = Hoist::with_busybox();
    let log = hoist.build(&context("build-multistage"), &["-t", "multi:test"]);
    assert!(
        !log.contains("RUN false"),
        "the unused stage must not run:\n{log}"
    );
    let out = hoist.exec(
        "multi:test",
        &["/bin/busybox", "cat", "/artifact.txt", "/from-index.txt"],
    );
    assert_eq!(out, "built\nbase\n");
    // --target stops at a stage, and build args reach it.
    hoist.build(
        &context("build-multistage"),
        &[
            "-t",
            "multi:build",
            "--target",
            "build",
            "--build-arg",
            "MESSAGE=custom",
        ],
    );
    assert_eq!(
        hoist.exec("multi:build", &["cat", "/artifact.txt"]),
        "custom\n"
    );
    // Targeting the broken stage fails with its command and exit code.
    let err = hoist.fails(&[
        "build",
        "--progress=plain",
        "--target",
        "unused",
        context("build-multistage").to_str().unwrap(),
    ]);
    assert!(err.contains("RUN false"), "{err}");
    assert!(err.contains("exit code: 1"), "{err}");
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let hoist = Hoist::with_busybox();
    hoist.build(&context("build-onbuild"), &["-t", "onbuild-parent:test"]);
    let ctx = context("build-onbuild");
    let child = ctx.join("Dockerfile.child");
    hoist.build(
        &ctx,
        &["-t", "onbuild-child:test", "-f", child.to_str().unwrap()],
    );
    assert_eq!(
        hoist.exec("onbuild-child:test", &["cat", "/seen.txt"]),
        "triggered\n"
    );
    let image = hoist.inspect("onbuild-child:test");
    assert!(
        image["Config"]["OnBuild"].is_null() || image["Config"]["OnBuild"] == serde_json::json!([])
    );
}

#[test]
fn the_escape_directive_changes_continuations() {
    let hoist = Hoist::with_busybox();
    hoist.build(&context("build-escape"), &["-t", "esc:test"]);
    let out = hoist.exec(
        "esc:test",
        &["cat", "/escaped.txt", "/literal.txt", "/copied/file.txt"],
    );
    assert_eq!(out, "one two\nback\\slash\nesc\n");
}

#[test]
fn run_steps_see_only_stdio_file_descriptors() {
    let hoist = Hoist::with_busybox();
    hoist.build(&context("build-fds"), &["-t", "fds:test"]);
    // `ls` itself holds fd 3 open on the directory it lists.
    assert_eq!(
        hoist.exec("fds:test", &["cat", "/fds.txt", "/nofds.txt"]),
        "0\n1\n2\n3\nok\n"
    );
}

#[test]
fn source_date_epoch_makes_builds_reproducible_across_roots() {
    let ids: Vec<(String, String)> = (0..2)
        .map(|_| {
            // The base must be the same image too: import it at a fixed time.
            let hoist = Hoist::new();
            let out = hoist
                .command(&[
                    "import",
                    crate::common::busybox_tar().to_str().unwrap(),
                    "busybox",
                ])
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // A fresh copy: different paths and mtimes for the same content.
            let ctx = context_copy("build-repro");
            let out = hoist
                .command(&[
                    "build",
                    "-q",
                    "-t",
                    "repro:test",
                    ctx.path().to_str().unwrap(),
                ])
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
            let digest = hoist.inspect("repro:test")["RepoDigests"][0]
                .as_str()
                .unwrap()
                .to_owned();
            // Compressed on the way out (issue 9), still byte for byte.
            let archive = ctx.path().join("repro-oci.tar");
            hoist.ok(&[
                "save",
                "--format",
                "oci",
                "-o",
                archive.to_str().unwrap(),
                "repro:test",
            ]);
            let archive = std::fs::read(&archive).unwrap();
            (id, format!("{digest} {}", sha256_hex(&archive)))
        })
        .collect();
    assert_eq!(
        ids[0], ids[1],
        "same inputs, same image and manifest digests, same OCI archive"
    );
    assert!(ids[0].0.starts_with("sha256:"));
}

#[test]
fn a_failing_run_reports_step_command_code_output_and_line() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\nRUN echo before\nRUN echo some output; echo oops >&2; exit 3\n",
    );
    let err = hoist.fails(&["build", "--progress=plain", ctx.path().to_str().unwrap()]);
    assert!(err.contains("Dockerfile:3:1"), "{err}");
    assert!(err.contains("[3/3] RUN echo some output"), "{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(err.contains("oops"), "the output's tail: {err}");
    assert!(
        err.contains("    3 | RUN echo some output"),
        "the line with a caret: {err}"
    );
}

#[test]
fn parse_errors_show_the_line_and_a_suggestion() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nRUNN echo\n");
    let err = hoist.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(
        err.contains("Dockerfile:2:1: unknown instruction \"RUNN\" (did you mean \"RUN\"?)"),
        "{err}"
    );
    assert!(err.contains("^^^^"), "{err}");
}

#[test]
fn a_missing_base_image_says_how_to_get_one() {
    let hoist = Hoist::new();
    // A registry that cannot be reached (nothing listens on port 9).
    let ctx = dockerfile_context("FROM 127.0.0.1:9/alpine:3.20\nRUN true\n");
    let err = hoist.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(
        err.contains("failed to resolve source metadata for 127.0.0.1:9/alpine:3.20"),
        "{err}"
    );
    assert!(err.contains("hoist load"), "{err}");
    assert!(err.contains("hoist import"), "{err}");
}

#[test]
fn outputs_write_archives_and_root_filesystems() {
    let hoist = Hoist::with_busybox();
    let out = tempfile::tempdir().unwrap();
    let docker = out.path().join("image-docker.tar");
    let oci = out.path().join("image-oci.tar");
    let local = out.path().join("rootfs");
    let tar = out.path().join("rootfs.tar");
    hoist.build(
        &context("hello"),
        &[
            "-t",
            "out:test",
            "--output",
            &format!("type=docker,dest={}", docker.display()),
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            "--output",
            &format!("type=local,dest={}", local.display()),
            "--output",
            &format!("type=tar,dest={}", tar.display()),
        ],
    );
    // The store keeps layers uncompressed; the OCI export compresses them
    // (issue 9), and the image ID stays the config's digest.
    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci-archive:{}", oci.display()),
        ])
        .output()
        .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layers = raw["layers"].as_array().unwrap();
    assert!(!layers.is_empty(), "{raw}");
    for layer in layers {
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{raw}"
        );
    }
    assert_eq!(
        raw["config"]["digest"],
        hoist.inspect("out:test")["Id"],
        "{raw}"
    );
    for spec in [
        format!("docker-archive:{}", docker.display()),
        format!("oci-archive:{}", oci.display()),
    ] {
        let status = Command::new("skopeo")
            .args(["inspect", &spec])
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(local.join("app/greeting.txt")).unwrap(),
        "hello from hoist\n"
    );
    assert!(local.join("bin/busybox").is_file());
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "app/built.txt"),
        "{listing}"
    );
}

#[test]
fn ctrl_c_during_a_run_leaves_no_process_mount_or_temp_dir() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nRUN echo started; sleep 987\n");
    let mut child = hoist
        .command(&["build", "--progress=plain", ctx.path().to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    // Wait for the sandbox's process to appear.
    wait_until("the RUN to start", || running_with_arg(b"987"));
    rustix_kill(child.id(), 2);
    // No wall-clock bound: a build that ignored the signal would run the
    // RUN's 987 s and succeed, which fails below (or nextest's timeout).
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        !running_with_arg(b"987"),
        "the sandboxed process outlived the build"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = hoist.root().to_str().unwrap();
    assert!(
        !mounts.contains(root),
        "leftover mounts under {root}:\n{mounts}"
    );
    crate::common::assert_no_temp_leftovers(&hoist);
}

/// A COPY mounts its merged overlay in hoist's own namespace; SIGKILL gives
/// hoist no chance to unmount it, so the namespace must be hoist's alone.
#[test]
fn r4_sigkill_during_a_copy_leaves_no_mount() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nCOPY big /big\n");
    // Sparse, but copied as 512 MiB of data: the COPY stays mounted for a
    // good part of a second.
    let big = std::fs::File::create(ctx.path().join("big")).unwrap();
    big.set_len(512 << 20).unwrap();
    let mut child = hoist
        .command(&["build", "--progress=plain", ctx.path().to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root = hoist.root().to_str().unwrap().to_owned();
    let own_mountinfo = format!("/proc/{}/mountinfo", child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let mounts = std::fs::read_to_string(&own_mountinfo).unwrap_or_default();
        let under_root = crate::common::mounts_under(&mounts, &root);
        if !under_root.is_empty() {
            break under_root;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the build ended ({status}) before its COPY mount was seen");
        }
        assert!(Instant::now() < deadline, "the COPY never mounted");
        std::thread::sleep(Duration::from_millis(1));
    };
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        crate::common::mounts_under(&host, &root),
        Vec::<String>::new(),
        "hoist's mounts {seen:?} are visible in the host's mount namespace"
    );
    rustix_kill(child.id(), 9);
    child.wait().unwrap();
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        crate::common::mounts_under(&host, &root),
        Vec::<String>::new(),
        "mounts left under {root} after SIGKILL"
    );
}

/// SIGKILL of the builder in the middle of a RUN: the sandbox dies with it
/// (PR_SET_PDEATHSIG) and takes its mounts along.
#[test]
fn r4_sigkill_during_a_run_leaves_no_mount_or_process() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nRUN echo started; sleep 986\n");
    let mut child = hoist
        .command(&["build", "--progress=plain", ctx.path().to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the RUN to start", || running_with_arg(b"986"));
    rustix_kill(child.id(), 9);
    child.wait().unwrap();
    // The kernel kills it asynchronously: wait for it (the guard catches
    // a process that outlives the build for good).
    wait_until(
        "the sandboxed process to die with the SIGKILLed build",
        || !running_with_arg(b"986"),
    );
    let root = hoist.root().to_str().unwrap();
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        crate::common::mounts_under(&host, root),
        Vec::<String>::new(),
        "mounts left under {root} after SIGKILL"
    );
}

/// A build deletes only trash a few minutes old, and leaves the young for
/// later, so that a burst of builds deletes nothing between them (issue 9).
/// The build is killed in its RUN: the deleting thread dies with it.
#[test]
fn r9_a_build_deletes_old_trash_and_keeps_young_trash() {
    // On a filesystem of its own with more than 4 GiB free, never nearly
    // full (see below); a tmpfs takes memory only for what is written.
    let hoist = Hoist::with_busybox_on_tmpfs(8 << 10);
    let trash = hoist.root().join("hoist/trash");
    let trashed = |ago: Duration, what: &str| {
        let at = std::time::SystemTime::now() - ago;
        let nanos = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = trash.join(format!("{nanos}-{what}"));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("d/f"), b"x").unwrap();
        dir
    };
    let old = trashed(Duration::from_secs(3600), "old");
    let young = trashed(Duration::from_secs(10), "young");
    let ctx = dockerfile_context("FROM busybox\nRUN sleep 983\n");
    let child = hoist
        .command(&["build", "--progress=plain", ctx.path().to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends, so that a failure leaves no build.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let build = KillOnDrop(child);
    wait_until("the RUN to start", || running_with_arg(b"983"));
    wait_until("the old trash to be deleted", || !old.exists());
    assert!(young.exists(), "young trash deleted by a build");
    drop(build);
    wait_until("the sandboxed process to die with the build", || {
        !running_with_arg(b"983")
    });
    assert!(young.exists(), "young trash deleted by a build");

    hoist.ok(&["prune", "--force"]);
    assert_eq!(
        std::fs::read_dir(&trash).unwrap().count(),
        0,
        "prune empties it"
    );
}

/// On a nearly full filesystem (under 4 GiB free, whatever its share of
/// the disk) a build does not wait for the trash to age: it empties all of
/// it before it starts, rather than fail with ENOSPC beside space it threw
/// away itself (issue 9).
#[test]
fn r9_a_build_on_a_nearly_full_disk_empties_young_trash() {
    let hoist = Hoist::with_busybox_on_tmpfs(64);
    // A young entry that leaves half of the disk free, far more than a
    // tenth, but under 4 GiB.
    let free = || {
        let fs = nix::sys::statvfs::statvfs(hoist.root()).unwrap();
        fs.blocks_available() * fs.fragment_size()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let young = hoist.root().join(format!("hoist/trash/{nanos}-young"));
    std::fs::create_dir_all(&young).unwrap();
    let fill = free() - (32 << 20);
    std::fs::write(young.join("f"), vec![7u8; usize::try_from(fill).unwrap()]).unwrap();
    let ctx = dockerfile_context("FROM busybox\nRUN echo hi > /hi\n");
    hoist.build(ctx.path(), &[]);
    assert!(!young.exists(), "young trash kept on a nearly full disk");
    hoist.assert_fsck_clean();
}

fn rustix_kill(pid: u32, signal: i32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn heredocs_run_as_scripts_and_copy_as_files() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\n\
         RUN <<EOF\n#!/bin/sh\necho \"script $0\" > /script.txt\nEOF\n\
         RUN <<EOF\necho plain > /plain.txt\necho second >> /plain.txt\nEOF\n\
         RUN cat <<A > /two.txt && cat <<B >> /two.txt\nfirst\nA\nsecond\nB\n\
         ENV NAME=world\n\
         COPY <<EOF /copied.txt\ncopied body, hello $NAME 'quoted'\nEOF\n\
         COPY <<\"EOF\" /literal.txt\nkept $NAME\nEOF\n\
         COPY <<-EOF /chomped.txt\n\tindented\n\tEOF\n",
    );
    hoist.build(ctx.path(), &["-t", "heredoc:test"]);
    let out = hoist.exec(
        "heredoc:test",
        &[
            "sh",
            "-c",
            "cat /script.txt /plain.txt /two.txt /copied.txt /literal.txt /chomped.txt; \
             ls /dev/pipes 2>&1 || true",
        ],
    );
    assert_eq!(
        out,
        "script /dev/pipes/EOF\nplain\nsecond\nfirst\nsecond\n\
         copied body, hello world 'quoted'\nkept $NAME\nindented\n\
         ls: /dev/pipes: No such file or directory\n"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex_string(&sha2::Sha256::digest(bytes))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
