//! How `hoist build` takes its inputs and reports its result: a Dockerfile
//! on stdin, a tar context on stdin, `--iidfile`, `--label`, several `-t`.

use std::io::Write;
use std::process::Stdio;

use crate::common::{Hoist, context};

fn build_with_stdin(hoist: &Hoist, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = hoist
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_dockerfile_on_stdin_builds_with_a_directory_context() {
    let hoist = Hoist::with_busybox();
    let dockerfile = b"FROM busybox\nCOPY greeting.txt /g.txt\n";
    let out = build_with_stdin(
        &hoist,
        &[
            "build",
            "-q",
            "-f",
            "-",
            "-t",
            "stdin:df",
            context("hello").to_str().unwrap(),
        ],
        dockerfile,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        hoist.exec("stdin:df", &["cat", "/g.txt"]),
        "hello from hoist\n"
    );
}

#[test]
fn a_tar_context_on_stdin_builds() {
    // Never nearly full, so that the build leaves young trash alone.
    let hoist = Hoist::with_busybox_on_tmpfs(8 << 10);
    let tar = std::process::Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(context("hello"))
        .arg(".")
        .output()
        .unwrap();
    assert!(tar.status.success());
    let out = build_with_stdin(
        &hoist,
        &["build", "-q", "-t", "stdin:ctx", "-"],
        &tar.stdout,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap();
    assert!(
        id.trim().starts_with("sha256:"),
        "-q prints the image ID: {id:?}"
    );
    assert_eq!(
        hoist.exec("stdin:ctx", &["cat", "/app/greeting.txt"]),
        "hello from hoist\n"
    );
    // Moved to the trash with one rename, not deleted as the build ends.
    let trashed = std::fs::read_dir(hoist.root().join("hoist/trash"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with("-stdin-context")
        })
        .count();
    assert_eq!(trashed, 1, "the stdin context is in the trash");
}

#[test]
fn iidfile_labels_and_every_tag() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let iidfile = dir.path().join("iid");
    hoist.build(
        &context("hello"),
        &[
            "-t",
            "one:a",
            "-t",
            "two:b",
            "--label",
            "org.example.built-by=hoist",
            "--iidfile",
            iidfile.to_str().unwrap(),
        ],
    );
    let id = std::fs::read_to_string(&iidfile).unwrap();
    let one = hoist.inspect("one:a");
    assert_eq!(one["Id"], id.as_str());
    assert_eq!(hoist.inspect("two:b")["Id"], id.as_str());
    assert_eq!(one["Config"]["Labels"]["org.example.built-by"], "hoist");
}

#[test]
fn bad_flags_are_clear_errors() {
    let hoist = Hoist::with_busybox();
    let ctx = context("hello");
    let ctx = ctx.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["build", "--platform", "linux/arm64", ctx],
            "platform linux/arm64 is not supported",
        ),
        (vec!["build", "--label", "novalue", ctx], "invalid label"),
        (vec!["build", "-t", "Bad:Tag", ctx], "invalid tag"),
        (
            vec!["build", "--output", "type=zip,dest=x", ctx],
            "unsupported type",
        ),
        (vec!["build", "--target", "nope", ctx], "nope"),
        (vec!["build", "/does/not/exist"], "not found"),
    ] {
        let err = hoist.fails(&args);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}
