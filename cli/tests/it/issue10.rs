//! Issue 10: Docker fidelity of the parser as the CLI shows it, and the CLI
//! a new user meets.

use crate::common::{Hoist, dockerfile_context};
use crate::registry::http::{Server, respond};

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
    let want = "Dockerfile:4: NoEmptyContinuation: Empty continuation line";

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

/// Serves `body` over HTTP on 127.0.0.1 to every request, until dropped.
fn serve(body: Vec<u8>) -> Server {
    Server::start(move |_, mut stream| {
        respond(&mut stream, 200, &[], &body).unwrap();
    })
}

/// A gzipped tar holding `top/file` ("payload").
fn archive() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("top")).unwrap();
    std::fs::write(dir.path().join("top/file"), "payload").unwrap();
    let out = std::process::Command::new("tar")
        .arg("-czf")
        .arg("-")
        .arg("-C")
        .arg(dir.path())
        .arg("top")
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// `ADD --unpack=true URL` unpacks the archive; without it the download is
/// kept as a file; `--unpack=false` keeps a local archive packed.
#[test]
fn r10_add_unpack_builds() {
    let hoist = Hoist::with_busybox();
    let tgz = archive();
    let server = serve(tgz.clone());
    let base = format!("http://{}", server.host());
    let ctx = dockerfile_context(&format!(
        "FROM busybox\n\
         ADD --unpack=true {base}/dl/a.tar.gz /remote-unpacked/\n\
         ADD {base}/dl/a.tar.gz /remote-kept/\n\
         ADD --unpack=false local.tar.gz /local-kept/\n\
         ADD local.tar.gz /local-unpacked/\n"
    ));
    std::fs::write(ctx.path().join("local.tar.gz"), &tgz).unwrap();
    hoist.build(ctx.path(), &["-t", "unpack:test"]);
    let listing = hoist.exec(
        "unpack:test",
        &[
            "sh",
            "-c",
            "cat /remote-unpacked/top/file; echo; ls /remote-kept; ls /local-kept; cat /local-unpacked/top/file",
        ],
    );
    assert_eq!(listing, "payload\na.tar.gz\nlocal.tar.gz\npayload");
}

/// `RUN --device` parses (BuildKit knows the flag) and the build fails at
/// that step with a clear "not supported".
#[test]
fn r10_run_device_is_not_supported_at_build_time() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nRUN --device=nvidia.com/gpu=all nvidia-smi\n");
    let file = ctx.path().join("Dockerfile");
    // Not a parse error: `hoist debug ast` accepts it.
    hoist.ok(&["debug", "ast", "-f", file.to_str().unwrap()]);
    let err = hoist.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(
        err.contains(
            "RUN --device is not supported: hoist gives RUN steps no host devices (asked for nvidia.com/gpu=all)"
        ),
        "{err}"
    );
    assert!(err.contains("2 | RUN --device"), "{err}");
}

/// `COPY --chown=UID:NAME` with a group the image lacks builds, with the
/// UID as the GID (BuildKit HEAD's `readUser`).
#[test]
fn r10_copy_chown_uid_unknown_group() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\nCOPY --chown=4242:nosuchgroup Dockerfile /a\n\
         COPY --chown=app:nosuchgroup Dockerfile /b\n",
    );
    hoist.build(ctx.path(), &["-t", "chown:test"]);
    let owners = hoist.exec("chown:test", &["stat", "-c", "%u:%g", "/a", "/b"]);
    assert_eq!(owners, "4242:4242\n1000:1000\n");
}

/// Relative `--root`, context, `-f`, `-o` and `--iidfile` work: each is
/// made absolute at the edge (a relative root used to break RUN's overlay).
#[test]
fn r10_relative_path_options() {
    let hoist = Hoist::new();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("ctx")).unwrap();
    std::fs::write(
        work.path().join("ctx/build.Dockerfile"),
        "FROM busybox\nRUN echo ran > /ran\n",
    )
    .unwrap();
    let tar = crate::common::busybox_tar().to_str().unwrap().to_owned();
    let run = |args: &[&str]| {
        let out = hoist
            .command(args)
            .env_remove("HOIST_ROOT")
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hoist {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["--root", "store", "import", &tar, "busybox:latest"]);
    run(&[
        "--root",
        "store",
        "build",
        "-q",
        "-t",
        "rel:test",
        "-f",
        "ctx/build.Dockerfile",
        "-o",
        "type=local,dest=out",
        "--iidfile",
        "iid",
        "ctx",
    ]);
    assert_eq!(
        std::fs::read_to_string(work.path().join("out/ran")).unwrap(),
        "ran\n"
    );
    let iid = std::fs::read_to_string(work.path().join("iid")).unwrap();
    assert!(iid.starts_with("sha256:"), "{iid}");
    let out = run(&[
        "--root", "./store", "run", "--rm", "rel:test", "cat", "/ran",
    ]);
    assert_eq!(out, "ran\n");
}

/// `hoist images --format` and `hoist inspect --format` take docker's Go
/// template subset and `json`.
#[test]
fn r10_images_and_inspect_format() {
    let hoist = Hoist::with_busybox();
    hoist.ok(&["tag", "busybox:latest", "bb:one"]);
    let id = hoist.inspect("busybox:latest")["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let out = hoist.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [format!("bb:one {short}"), format!("busybox:latest {short}")]
    );
    let out = hoist.ok(&[
        "images",
        "--format",
        "table {{.Repository}}\\t{{.ID}}",
        "busybox",
    ]);
    assert_eq!(
        out,
        format!("REPOSITORY   IMAGE ID\nbusybox      {short}\n")
    );
    let out = hoist.ok(&["images", "--format", "json", "busybox"]);
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(row["Repository"], "busybox");
    // Variables, printf, comparisons and else-if, as Go's text/template.
    let out = hoist.ok(&[
        "images",
        "--format",
        "{{$r := .Repository}}{{if eq .Tag \"one\"}}{{printf \"%-8s|\" $r}}\
         {{else if eq $r \"busybox\"}}{{printf \"%.3s\" .ID | upper}}{{end}}",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    let mut want = ["bb      |".to_owned(), short[..3].to_uppercase()];
    want.sort_unstable();
    assert_eq!(lines, want);
    let out = hoist.ok(&[
        "inspect",
        "-f",
        "{{range $i, $t := .RepoTags}}{{if $i}},{{end}}{{len $t}}{{end}}",
        "busybox:latest",
    ]);
    assert!(out == "6,14\n" || out == "14,6\n", "{out}");

    let out = hoist.ok(&[
        "inspect",
        "--format",
        "{{.Id}} {{index .RepoTags 0}}",
        "busybox:latest",
    ]);
    assert!(
        out == format!("{id} bb:one\n") || out == format!("{id} busybox:latest\n"),
        "{out}"
    );
    // An imported image has no Env: JSON null, as docker shows it.
    let out = hoist.ok(&["inspect", "-f", "{{json .Config.Env}}", "busybox:latest"]);
    assert_eq!(out, "null\n");
    let out = hoist.ok(&["inspect", "-f", "{{json .Config}}", "busybox:latest"]);
    let config: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(config["User"], "", "{out}");
    let out = hoist.ok(&[
        "inspect",
        "-f",
        "{{.Os}}/{{.Architecture}}",
        "busybox:latest",
    ]);
    assert_eq!(out, format!("linux/{}\n", go_arch()));
    let out = hoist.ok(&["inspect", "-f", "json", "busybox:latest"]);
    assert!(out.starts_with("[\n"), "{out}");

    let out = hoist.ok(&[
        "inspect",
        "-f",
        "{{range .RepoTags}}{{.}} {{end}}",
        "busybox:latest",
    ]);
    let mut tags: Vec<&str> = out.split_whitespace().collect();
    tags.sort_unstable();
    assert_eq!(tags, ["bb:one", "busybox:latest"]);

    let err = hoist.fails(&["images", "--format", "{{template \"x\"}}"]);
    assert!(err.contains("{{template}} is not supported"), "{err}");
    let err = hoist.fails(&["images", "--format", "{{.Nope}}"]);
    assert!(err.contains("can't evaluate field Nope"), "{err}");
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Completions for bash, zsh and fish, and man pages, from the same clap
/// definitions; bash accepts the script.
#[test]
fn r10_completion_and_man() {
    let hoist = Hoist::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = hoist.ok(&["completion", shell]);
        assert!(script.contains("build"), "{shell}: no verbs");
        assert!(script.contains("iidfile"), "{shell}: no build flags");
    }
    let script = hoist.ok(&["completion", "bash"]);
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let err = hoist.fails(&["completion", "tcsh"]);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");

    let page = hoist.ok(&["man"]);
    assert!(page.contains(".TH hoist 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    hoist.ok(&["man", dir.path().to_str().unwrap()]);
    let build = std::fs::read_to_string(dir.path().join("hoist-build.1")).unwrap();
    assert!(build.contains("iidfile"), "{build}");
    assert!(dir.path().join("hoist-images.1").is_file());
}

/// `hoist version` and `hoist info` report what a bug report needs.
#[test]
fn r10_version_and_info() {
    let hoist = Hoist::with_busybox();
    let out = hoist.ok(&["version"]);
    assert!(
        out.contains(&format!(" Version:     {}\n", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains(" Rust:        rustc "), "{out}");
    assert!(
        out.contains(&format!(" OS/Arch:     linux/{}\n", go_arch())),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&hoist.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));

    let info: serde_json::Value =
        serde_json::from_str(&hoist.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["StoreRoot"], hoist.root().to_str().unwrap());
    assert_eq!(info["Images"], 1);
    assert!(info["StorageUsed"].as_u64().unwrap() > 0, "{info}");
    assert_eq!(info["Rootless"], false, "the tests run as root");
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap();
    assert_eq!(info["Overlay"], filesystems.contains("\toverlay\n"));
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    assert_eq!(info["CgroupVersion"], cgroup);
    let text = hoist.ok(&["info"]);
    assert!(
        text.contains(&format!(" Root:              {}\n", hoist.root().display())),
        "{text}"
    );
    assert!(text.contains(" Images:            1\n"), "{text}");
    assert_eq!(
        hoist.ok(&["info", "--format", "{{.Images}} {{.Rootless}}"]),
        "1 false\n"
    );
}

/// `hoist import -c ... -m ...`, as `docker import` takes them; a bad
/// change stores nothing.
#[test]
fn r10_import_change_and_message() {
    let hoist = Hoist::new();
    let tar = crate::common::busybox_tar().to_str().unwrap().to_owned();
    hoist.ok(&[
        "import",
        "-c",
        "ENV PATH=/usr/local/bin:/bin",
        "--change",
        "CMD [\"sh\", \"-c\", \"echo $PATH\"]",
        "-c",
        "WORKDIR /srv",
        "-m",
        "base from busybox",
        &tar,
        "changed:test",
    ]);
    let image = hoist.inspect("changed:test");
    assert_eq!(
        image["Config"]["Env"],
        serde_json::json!(["PATH=/usr/local/bin:/bin"])
    );
    assert_eq!(
        image["Config"]["Cmd"],
        serde_json::json!(["sh", "-c", "echo $PATH"])
    );
    assert_eq!(image["Config"]["WorkingDir"], "/srv");
    let history = hoist.ok(&["history", "--format", "json", "changed:test"]);
    assert!(history.contains("base from busybox"), "{history}");
    assert_eq!(
        hoist.exec("changed:test", &[]),
        "/usr/local/bin:/bin\n",
        "CMD and ENV from --change apply to hoist run"
    );

    let err = hoist.fails(&["import", "-c", "RUN echo hi", &tar, "bad:test"]);
    assert!(err.contains("RUN is not a valid change command"), "{err}");
    let err = hoist.fails(&["inspect", "bad:test"]);
    assert!(err.contains("No such image"), "{err}");
}

/// BuildKit hands a Latin-1 RUN's bytes to the shell as they are: the
/// layer holds 0xE9 itself, not U+FFFD's three bytes. The build's
/// messages and the image's history show U+FFFD, as Go's JSON encoder
/// writes invalid UTF-8.
#[test]
fn r10_latin1_run_bytes_reach_the_shell_unchanged() {
    let hoist = Hoist::with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        b"FROM busybox\nENV X=caf\xe9\nRUN printf 'caf\xe9' > /out && printf \"$X\" > /env\n",
    )
    .unwrap();
    let err = hoist.build(ctx.path(), &["-t", "latin1run:test"]);
    assert!(err.contains("RUN printf 'caf\u{FFFD}' > /out"), "{err}");
    // `debug ast` quotes the byte as Go's %q does, as BuildKit's dump.
    let file = ctx.path().join("Dockerfile");
    let ast = hoist.ok(&["debug", "ast", "--raw", "-f", file.to_str().unwrap()]);
    assert!(
        ast.contains("(run \"printf 'caf\\xe9' > /out && printf \\\"$X\\\" > /env\")"),
        "{ast}"
    );
    assert!(!err.contains('\u{10FFE9}'), "{err}");

    let saved = ctx.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    let archive = saved.join("image.tar");
    hoist.ok(&["save", "latin1run:test", "-o", archive.to_str().unwrap()]);
    let tar = |args: &[&str]| {
        let out = std::process::Command::new("tar")
            .args(args)
            .current_dir(&saved)
            .output()
            .unwrap();
        assert!(out.status.success(), "tar {args:?}: {out:?}");
        out.stdout
    };
    tar(&["-xf", "image.tar"]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.join("manifest.json")).unwrap()).unwrap();
    let top = manifest[0]["Layers"].as_array().unwrap().last().unwrap();
    assert_eq!(tar(&["-xOf", top.as_str().unwrap(), "out"]), b"caf\xe9");
    assert_eq!(tar(&["-xOf", top.as_str().unwrap(), "env"]), b"caf\xe9");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(saved.join(manifest[0]["Config"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["history"].as_array().unwrap().last().unwrap()["created_by"],
        "RUN /bin/sh -c printf 'caf\u{FFFD}' > /out && printf \"$X\" > /env # buildkit"
    );
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("X=caf\u{FFFD}")),
        "{config}"
    );

    // A failing RUN names its command with U+FFFD too.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        b"FROM busybox\nRUN printf 'caf\xe9'; exit 3\n",
    )
    .unwrap();
    let err = hoist.fails(&["build", ctx.path().to_str().unwrap()]);
    assert!(err.contains("printf 'caf\u{FFFD}'; exit 3"), "{err}");
    assert!(!err.contains('\u{10FFE9}'), "{err}");
}

/// The build's check warnings, each from its line number on
/// (`3: UndefinedVar: ...`).
fn check_warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .map(|l| l.split_once("Dockerfile:").map_or(l, |(_, rest)| rest))
        .collect()
}

/// BuildKit's checks of FROM that need the build's arguments print in
/// `hoist build` as BuildKit HEAD words them (compared under bkref).
#[test]
fn r10_from_checks_print_in_build() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "ARG VERSION=1\nARG IMAGE\nFROM busybox:${VERSIN} AS a\n\
         FROM --platform=$TARGETPLATFORM busybox AS b\n\
         FROM --platform=linux/amd64 busybox AS c\nFROM ${IMAGE}\nRUN true\n",
    );
    let err = hoist.build(ctx.path(), &["--build-arg", "IMAGE=busybox"]);
    let warnings = check_warnings(&err);
    assert_eq!(
        warnings,
        [
            "3: UndefinedArgInFrom: FROM argument 'VERSIN' is not declared (did you mean VERSION?)",
            "3: InvalidDefaultArgInFrom: Default value for ARG busybox:${VERSIN} results in empty \
             or invalid base image name",
            "4: RedundantTargetPlatform: Setting platform to predefined $TARGETPLATFORM in FROM is \
             redundant as this is the default behavior",
            "5: FromPlatformFlagConstDisallowed: FROM --platform flag should not use constant \
             value \"linux/amd64\"",
            "6: InvalidDefaultArgInFrom: Default value for ARG ${IMAGE} results in empty or \
             invalid base image name",
        ],
        "{err}"
    );
}

/// `CopyIgnoredFile`: a COPY or ADD source that .dockerignore excludes is
/// reported before the build fails on it, in BuildKit HEAD's words
/// (compared under bkref).
#[test]
fn r10_copy_of_an_ignored_file_is_reported() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nCOPY keep.txt secret.txt /\nADD logs /logs\n");
    std::fs::write(ctx.path().join(".dockerignore"), "secret.txt\nlogs\n").unwrap();
    std::fs::write(ctx.path().join("keep.txt"), "k").unwrap();
    std::fs::write(ctx.path().join("secret.txt"), "s").unwrap();
    let err = hoist.fails(&["build", ctx.path().to_str().unwrap()]);
    for want in [
        "Dockerfile:2: CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded \
         by .dockerignore",
        "Dockerfile:3: CopyIgnoredFile: Attempting to Add file \"logs\" that is excluded by \
         .dockerignore",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("warning: ") && l.ends_with(want)),
            "{err}"
        );
    }
}

/// `UndefinedVar`: an instruction BuildKit expands that uses a variable
/// neither set nor declared is reported with a "did you mean", in BuildKit
/// HEAD's words (compared under bkref); RUN, which the shell expands, and
/// a declared ARG are not.
#[test]
fn r10_undefined_var_is_reported() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\nARG DECLARED\nENV FOO=bar\nWORKDIR /$FO\n\
         LABEL a=$NOPE b=${DECLARED}\nRUN echo $NOTCHECKED\n",
    );
    let err = hoist.build(ctx.path(), &[]);
    let warnings = check_warnings(&err);
    assert_eq!(
        warnings,
        [
            "4: UndefinedVar: Usage of undefined variable '$FO' (did you mean $FOO?)",
            "5: UndefinedVar: Usage of undefined variable '$NOPE'",
        ],
        "{err}"
    );
    let ctx = dockerfile_context("# check=skip=UndefinedVar\nFROM busybox\nLABEL a=$NOPE\n");
    let err = hoist.build(ctx.path(), &[]);
    assert!(!err.contains("UndefinedVar"), "{err}");
}

/// `# check=error=true`: a check that fires (`FromAsCasing`) is printed
/// and then fails the build before it starts, with BuildKit's message at
/// the warning's line, and nothing is tagged; without `error=true` it only
/// warns, and `skip=` of the rule silences it and lets the build pass.
#[test]
fn r10_check_error_true_fails_the_build_on_a_warning() {
    let hoist = Hoist::with_busybox();
    let want = "Dockerfile:2: FromAsCasing: 'as' and 'FROM' keywords' casing do not match";
    let warned = |err: &str| {
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.ends_with(want))
    };

    let ctx = dockerfile_context("# check=skip=JSONArgsRecommended\nFROM busybox as base\n");
    let err = hoist.build(ctx.path(), &["-t", "lint:warn"]);
    assert!(warned(&err), "{err}");
    assert!(!err.contains("lint violation"), "{err}");

    let ctx = dockerfile_context("# check=error=true\nFROM busybox as base\n");
    let path = ctx.path().to_str().unwrap();
    let err = hoist.fails(&["build", "--progress=plain", "-t", "lint:error", path]);
    assert!(warned(&err), "{err}");
    assert!(
        err.contains("Dockerfile:2:1: lint violation found for rules: FromAsCasing"),
        "{err}"
    );
    // `--quiet` prints no warning but fails all the same.
    let err = hoist.fails(&["build", "-q", "-t", "lint:error", path]);
    assert!(!warned(&err), "{err}");
    assert!(
        err.contains("lint violation found for rules: FromAsCasing"),
        "{err}"
    );
    let images = hoist.ok(&["images"]);
    assert!(
        images.contains("lint") && images.contains("warn"),
        "{images}"
    );
    assert!(!images.contains("error"), "{images}");

    let ctx = dockerfile_context("# check=skip=FromAsCasing;error=true\nFROM busybox as base\n");
    let err = hoist.build(ctx.path(), &["-t", "lint:skip"]);
    assert!(!err.contains("FromAsCasing"), "{err}");
    assert!(!err.contains("lint violation"), "{err}");

    // `UndefinedVar` needs the stage's environment: the build fails at
    // the instruction, after the warning.
    let ctx = dockerfile_context("# check=error=true\nFROM busybox\nLABEL a=$NOPE\n");
    let path = ctx.path().to_str().unwrap();
    let err = hoist.fails(&["build", "--progress=plain", "-t", "lint:undefined", path]);
    assert!(
        err.contains("Dockerfile:3: UndefinedVar: Usage of undefined variable '$NOPE'"),
        "{err}"
    );
    assert!(
        err.contains("Dockerfile:3:1: LABEL a=$NOPE: lint violation found for rules: UndefinedVar"),
        "{err}"
    );
    let images = hoist.ok(&["images"]);
    assert!(!images.contains("undefined"), "{images}");
    hoist.ok(&["fsck"]);
}
