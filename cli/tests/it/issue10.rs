//! Issue 10: Docker fidelity of the parser as the CLI shows it, and the CLI
//! a new user meets.

use crate::common::{Hoist, dockerfile_context};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `hoist debug ast --json` gives JSON for ARG, ENV, WORKDIR, MAINTAINER
/// and the rest (it used to fail on the first list- or string-valued one).
#[test]
fn r10_debug_ast_json_every_instruction() {
    let hoist = Hoist::new();
    let ctx = dockerfile_context(
        "ARG V=1\nFROM busybox AS b\nENV A=1\nLABEL l=v\nWORKDIR /w\nMAINTAINER me\nUSER 1\n\
         EXPOSE 80\nVOLUME /v\nSTOPSIGNAL TERM\nSHELL [\"sh\", \"-c\"]\nCMD [\"x\"]\n\
         ENTRYPOINT y\nHEALTHCHECK NONE\nONBUILD RUN z\nRUN a\nCOPY a /b\nADD c /d\n",
    );
    let file = ctx.path().join("Dockerfile");
    let out = hoist.ok(&["debug", "ast", "--json", "-f", file.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<&str> = json["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instruction"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "arg",
            "from",
            "env",
            "label",
            "workdir",
            "maintainer",
            "user",
            "expose",
            "volume",
            "stopsignal",
            "shell",
            "cmd",
            "entrypoint",
            "healthcheck",
            "onbuild",
            "run",
            "copy",
            "add"
        ]
    );
    assert_eq!(json["instructions"][4]["instruction"]["value"], "/w");
}

/// Parser warnings reach the user of `hoist build` and `hoist debug ast`,
/// in BuildKit's words, on the instruction's last line.
#[test]
fn r10_parser_warnings_are_printed() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nRUN echo \\\n\n  hi\n");
    let file = ctx.path().join("Dockerfile");
    let want = "Dockerfile:4: NoEmptyContinuation: Empty continuation line found in: RUN echo   hi";

    let out = hoist
        .command(&["debug", "ast", "-f", "Dockerfile"])
        .current_dir(ctx.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(want), "{}", stderr_of(&out));

    let err = hoist.build(ctx.path(), &["-f", file.to_str().unwrap()]);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.ends_with(want)),
        "{err}"
    );
    assert_eq!(err.matches("NoEmptyContinuation").count(), 1, "{err}");
}

/// BuildKit reads a Dockerfile byte-wise: a Latin-1 or GBK comment does not
/// stop the build, and the warning names the line of the first bad byte.
#[test]
fn r10_non_utf8_dockerfile_builds() {
    let hoist = Hoist::with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let mut dockerfile = b"FROM busybox\n# caf\xe9 (Latin-1)\n".to_vec();
    // "中文" in GBK.
    dockerfile.extend_from_slice(b"# \xd6\xd0\xce\xc4 (GBK)\nRUN echo ok > /ok\n");
    std::fs::write(ctx.path().join("Dockerfile"), &dockerfile).unwrap();
    let err = hoist.build(ctx.path(), &["-t", "latin1:test"]);
    assert!(
        err.contains("warning: ")
            && err.contains("Dockerfile:2: the Dockerfile is not valid UTF-8"),
        "{err}"
    );
    assert_eq!(hoist.exec("latin1:test", &["cat", "/ok"]), "ok\n");

    let file = ctx.path().join("Dockerfile");
    let ast = hoist.ok(&["debug", "ast", "-f", file.to_str().unwrap()]);
    assert_eq!(ast, "(from \"busybox\")\n(run \"echo ok > /ok\")\n");
}

/// A parent with `ONBUILD echo hi` builds (with a warning); a child built
/// FROM it fails at its FROM line, naming the trigger, as BuildKit does.
#[test]
fn r10_onbuild_unknown_trigger_fails_in_the_child() {
    let hoist = Hoist::with_busybox();
    let parent = dockerfile_context("FROM busybox\nONBUILD echo hi\nRUN true\n");
    let err = hoist.build(parent.path(), &["-t", "parent:test"]);
    assert!(
        err.contains("warning: ")
            && err.contains(":2: ONBUILD trigger kept as written, but a build FROM this image will fail: unknown instruction \"echo\""),
        "{err}"
    );
    assert_eq!(
        hoist.inspect("parent:test")["Config"]["OnBuild"],
        serde_json::json!(["echo hi"])
    );

    let child = dockerfile_context("FROM parent:test\nRUN true\n");
    let err = hoist.fails(&["build", child.path().to_str().unwrap()]);
    assert!(
        err.contains("invalid ONBUILD trigger: unknown instruction \"echo\""),
        "{err}"
    );
    assert!(err.contains("1 | FROM parent:test"), "{err}");
}
