//! `hoist run`.

use crate::common::{Hoist, context};

#[test]
fn run_applies_env_workdir_user_and_exit_codes() {
    let hoist = Hoist::with_busybox();
    hoist.build(&context("hello"), &["-t", "hello:latest"]);
    let out = hoist.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "hello:latest",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u):$(id -g)",
    ]);
    assert_eq!(out, "bar /tmp 1000:1000\n");
    let status = hoist
        .run(&["run", "--rm", "hello:latest", "sh", "-c", "exit 7"])
        .status;
    assert_eq!(status.code(), Some(7));
    let out = hoist.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "hello:latest",
        "sh",
        "-c",
        "ls /sys/class/net",
    ]);
    assert_eq!(out, "lo\n");
}

#[test]
fn run_bind_mounts_volumes() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "from host\n").unwrap();
    let volume = format!("{}:/mnt/host:ro", dir.path().display());
    let out = hoist.ok(&[
        "run",
        "--rm",
        "-v",
        &volume,
        "busybox",
        "cat",
        "/mnt/host/in.txt",
    ]);
    assert_eq!(out, "from host\n");
    let status = hoist
        .run(&[
            "run",
            "--rm",
            "-v",
            &volume,
            "busybox",
            "touch",
            "/mnt/host/x",
        ])
        .status;
    assert!(!status.success(), "a read-only volume must refuse writes");
}

/// A nested runtime (hoist in a pod) mounts a procfs of its own in a user
/// namespace, which the kernel allows only while no part of the visible
/// /proc is covered: Docker's masked paths forbid it, and
/// `--security-opt systempaths=unconfined` lifts them.
#[test]
fn r7_run_systempaths_unconfined_lets_a_nested_runtime_mount_proc() {
    let hoist = Hoist::with_busybox();
    let nested = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--security-opt", "seccomp=unconfined"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "busybox",
            "sh",
            "-c",
            "awk '$5 ~ \"^/proc/\" { n++ } END { print n + 0 }' /proc/self/mountinfo; \
             unshare -r -m -p -f --mount-proc true 2>/dev/null && echo proc-ok || echo proc-refused",
        ]);
        hoist.ok(&args)
    };
    let (covered, mounted) = nested(&[])
        .split_once('\n')
        .map(|(n, rest)| (n.parse::<u32>().unwrap(), rest.to_owned()))
        .unwrap();
    assert!(
        covered > 0,
        "Docker's masked and read-only paths by default"
    );
    assert_eq!(mounted, "proc-refused\n");
    assert_eq!(
        nested(&["--security-opt", "systempaths=unconfined"]),
        "0\nproc-ok\n"
    );
}

/// A store inside a container's own overlay root (the pod case): overlayfs
/// cannot stack a RUN's upper directory on an overlay, and the error says
/// what to do instead of a bare EINVAL.
#[test]
fn r7_a_store_on_overlayfs_names_the_fix() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (lower, upper, work, merged) = (path("lower"), path("upper"), path("work"), path("merged"));
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ))
        .arg(&merged)
        .status()
        .expect("running mount");
    assert!(status.success(), "mounting the outer overlay");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(merged.clone());
    let store = merged.join("store");
    let in_overlay = |args: &[&str]| {
        let mut cmd = hoist.command(args);
        // `auto` would fall back to the native snapshotter (see
        // `native::r7_auto_falls_back_to_native_on_an_overlay_store`).
        cmd.env("HOIST_ROOT", &store)
            .env("HOIST_SNAPSHOTTER", "overlayfs");
        cmd.output().unwrap()
    };
    let tar = crate::common::busybox_tar().to_str().unwrap();
    assert!(
        in_overlay(&["import", tar, "busybox:latest"])
            .status
            .success()
    );
    let ctx = crate::common::dockerfile_context("FROM busybox\nRUN echo hi > /hi\n");
    let out = in_overlay(&["build", "--progress=plain", ctx.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("mount overlay on ")
            && stderr.contains("Invalid argument")
            && stderr.contains("put it on a volume"),
        "{stderr}"
    );
}
