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
