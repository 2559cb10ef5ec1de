//! Issue 8: the build cache explains itself, and reuses exactly what
//! BuildKit would.

use std::path::Path;

use crate::common::{Hoist, dockerfile_context, wait_until};

/// The `not cached:` lines of a plain progress log, in order.
fn explanations(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(": not cached: "))
        .collect()
}

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

const APP: &str = "FROM busybox
ARG VERSION=1.0
ENV MODE=fast
WORKDIR /app
COPY . /app
RUN echo build $VERSION $MODE > /v
RUN cat /v
";

#[test]
fn r8_explain_names_the_first_difference() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(APP);
    write(ctx.path(), "src/main.rs", "fn main() {}\n");
    write(ctx.path(), "src/lib.rs", "\n");
    write(ctx.path(), "Cargo.lock", "# lock\n");
    write(ctx.path(), ".dockerignore", "Dockerfile\n.dockerignore\n");

    let log = hoist.build(ctx.path(), &["--explain"]);
    assert_eq!(
        explanations(&log),
        [
            "#2 WORKDIR /app: not cached: no earlier build of this step",
            "#3 COPY . /app: not cached: no earlier build of this step",
            "#4 RUN echo build $VERSION $MODE > /v: not cached: no earlier build of this step",
            "#5 RUN cat /v: not cached: no earlier build of this step",
        ],
        "{log}"
    );
    // Without --explain, a step that never ran is not worth a line.
    let other = dockerfile_context("FROM busybox\nRUN echo other\n");
    let log = hoist.build(other.path(), &[]);
    assert_eq!(explanations(&log), Vec::<&str>::new(), "{log}");

    // Two files changed: COPY names them, and the rest follow their parent.
    // The count is of files: the context's directories (`.`, `src`) are
    // not files.
    write(ctx.path(), "src/main.rs", "fn main() { run() }\n");
    write(ctx.path(), "Cargo.lock", "# lock 2\n");
    let log = hoist.build(ctx.path(), &[]);
    assert_eq!(
        explanations(&log),
        [
            "#3 COPY . /app: not cached: 2 of 3 files changed (Cargo.lock, src/main.rs)",
            "#4 RUN echo build $VERSION $MODE > /v: not cached: parent step #3 was rebuilt",
            "#5 RUN cat /v: not cached: parent step #4 was rebuilt",
        ],
        "{log}"
    );

    // A build arg the RUN sees.
    let log = hoist.build(ctx.path(), &["--build-arg", "VERSION=1.1"]);
    assert_eq!(
        explanations(&log),
        [
            "#4 RUN echo build $VERSION $MODE > /v: not cached: build arg VERSION changed (1.0 -> 1.1)",
            "#5 RUN cat /v: not cached: parent step #4 was rebuilt",
        ],
        "{log}"
    );
    assert_eq!(log.matches("CACHED").count(), 2, "WORKDIR and COPY:\n{log}");

    // An ENV the RUN sees.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        APP.replace("MODE=fast", "MODE=slow"),
    )
    .unwrap();
    let log = hoist.build(ctx.path(), &["--build-arg", "VERSION=1.1"]);
    assert_eq!(
        explanations(&log),
        [
            "#4 RUN echo build $VERSION $MODE > /v: not cached: env MODE changed (fast -> slow)",
            "#5 RUN cat /v: not cached: parent step #4 was rebuilt",
        ],
        "{log}"
    );

    // The base image moved: the first step says so.
    let rebase = dockerfile_context("FROM busybox\nRUN touch /rebased\n");
    hoist.build(rebase.path(), &["-t", "busybox:latest"]);
    let log = hoist.build(ctx.path(), &["--build-arg", "VERSION=1.1"]);
    let lines = explanations(&log);
    assert_eq!(lines.len(), 4, "{log}");
    assert!(
        lines[0].starts_with(
            "#2 WORKDIR /app: not cached: the base image changed (busybox now sha256:"
        ) && lines[0].ends_with("…)"),
        "{log}"
    );
    assert_eq!(
        lines[1], "#3 COPY . /app: not cached: parent step #2 was rebuilt",
        "{log}"
    );
}

/// A build arg invalidates only the steps that can see it: one the stage
/// does not declare leaves every step cached.
#[test]
fn r8_a_build_arg_out_of_scope_keeps_the_cache() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "ARG GLOBAL=1\nFROM busybox\nRUN echo one\nARG LATE=a\nRUN echo two $LATE\n",
    );
    hoist.build(ctx.path(), &[]);
    let log = hoist.build(
        ctx.path(),
        &["--build-arg", "GLOBAL=2", "--build-arg", "UNUSED=x"],
    );
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");
    assert_eq!(explanations(&log), Vec::<&str>::new(), "{log}");
    let log = hoist.build(ctx.path(), &["--build-arg", "LATE=b"]);
    assert_eq!(log.matches("CACHED").count(), 1, "{log}");
    assert_eq!(
        explanations(&log),
        ["#3 RUN echo two $LATE: not cached: build arg LATE changed (a -> b)"],
        "{log}"
    );
}

/// A RUN that reads the context through a bind mount reruns when the files
/// it sees change, and only then.
#[test]
fn r8_a_bind_mount_from_the_context_is_in_the_key() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\nRUN --mount=type=bind,source=conf,target=/conf cat /conf/a > /out\n",
    );
    write(ctx.path(), "conf/a", "one\n");
    write(ctx.path(), "other", "x\n");
    hoist.build(ctx.path(), &["-t", "bind:1"]);
    write(ctx.path(), "other", "y\n");
    let log = hoist.build(ctx.path(), &["-t", "bind:2"]);
    assert_eq!(log.matches("CACHED").count(), 1, "{log}");
    write(ctx.path(), "conf/a", "two\n");
    let log = hoist.build(ctx.path(), &["-t", "bind:3"]);
    assert_eq!(log.matches("CACHED").count(), 0, "{log}");
    assert_eq!(
        explanations(&log),
        [
            "#2 RUN --mount=type=bind,source=conf,target=/conf cat /conf/a > /out: not cached: the files of a bind mount changed"
        ],
        "{log}"
    );
    assert_eq!(hoist.exec("bind:3", &["cat", "/out"]), "two\n");
}

/// `--no-cache-filter` rebuilds the named stages and reuses the others.
#[test]
fn r8_no_cache_filter_rebuilds_only_the_named_stages() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox AS deps\nRUN echo deps > /d\nFROM deps AS app\nRUN echo app > /a\n",
    );
    hoist.build(ctx.path(), &[]);
    let log = hoist.build(ctx.path(), &["--no-cache-filter", "app"]);
    assert_eq!(log.matches("CACHED").count(), 1, "deps only:\n{log}");
    assert!(
        log.contains("#4 [app 2/2] RUN echo app > /a\n#4 DONE"),
        "{log}"
    );
    let log = hoist.build(ctx.path(), &["--no-cache-filter", "deps,app"]);
    assert_eq!(log.matches("CACHED").count(), 0, "{log}");
}

/// Every file under `dir`, decompressed when it is a gzip or zstd stream,
/// that contains `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        let tool = match bytes.get(..4) {
            Some([0x1f, 0x8b, _, _]) => Some("gzip"),
            Some([0x28, 0xb5, 0x2f, 0xfd]) => Some("zstd"),
            _ => None,
        };
        let plain = match tool {
            Some(tool) => {
                let out = std::process::Command::new(tool)
                    .args(["-dc", entry.path().to_str().unwrap()])
                    .output()
                    .unwrap_or_else(|e| panic!("{tool} is needed to check layers: {e}"));
                assert!(
                    out.status.success(),
                    "{tool} -dc {}",
                    entry.path().display()
                );
                out.stdout
            }
            None => Vec::new(),
        };
        if [bytes, plain]
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
        {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

/// Secrets reach the RUN as a file (mode, uid, gid as asked) or a variable,
/// and nothing else: not the store, not an export, not the log.
#[test]
fn r8_secrets_never_reach_the_store_or_an_export() {
    let hoist = Hoist::with_busybox();
    let token: String = std::fs::read("/proc/sys/kernel/random/uuid")
        .map(|b| String::from_utf8(b).unwrap().trim().replace('-', ""))
        .unwrap();
    assert_eq!(token.len(), 32);
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("tok");
    std::fs::write(&secret_file, &token).unwrap();
    let ctx = dockerfile_context(
        "FROM busybox
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len
RUN --mount=type=secret,id=tok,env=TOK,target=/s,mode=0440,uid=7,gid=8 sh -c 'echo ${#TOK} > /envlen; stat -c \"%a %u %g\" /s > /meta'
RUN --mount=type=secret,id=absent ls /run/secrets > /absent 2>&1 || echo none > /absent
",
    );
    let src = format!("id=tok,src={}", secret_file.display());
    let log = hoist.build(ctx.path(), &["-t", "secret:1", "--secret", &src]);
    assert!(!log.contains(&token), "{log}");
    assert_eq!(hoist.exec("secret:1", &["cat", "/len"]).trim(), "32");
    assert_eq!(hoist.exec("secret:1", &["cat", "/envlen"]), "32\n");
    assert_eq!(hoist.exec("secret:1", &["cat", "/meta"]), "440 7 8\n");
    assert_eq!(hoist.exec("secret:1", &["cat", "/absent"]), "none\n");
    assert_eq!(
        hoist.exec("secret:1", &["sh", "-c", "ls -a /run 2>&1 || true"]),
        hoist.exec("busybox", &["sh", "-c", "ls -a /run 2>&1 || true"]),
        "no mount point is left in the image"
    );

    // From a variable, and into every export.
    let out_dir = tempfile::tempdir().unwrap();
    let oci = out_dir.path().join("oci.tar");
    let mut cmd = hoist.command(&[
        "build",
        "--progress=plain",
        "--no-cache",
        "--secret",
        "id=tok,env=HOIST_TEST_TOKEN",
        "-t",
        "secret:2",
        "-o",
        &format!("type=oci,dest={}", oci.display()),
        ctx.path().to_str().unwrap(),
    ]);
    let out = cmd.env("HOIST_TEST_TOKEN", &token).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(&token), "{stderr}");
    assert_eq!(hoist.exec("secret:2", &["cat", "/envlen"]), "32\n");
    let saved = out_dir.path().join("saved.tar");
    hoist.ok(&[
        "save",
        "secret:1",
        "secret:2",
        "-o",
        saved.to_str().unwrap(),
    ]);
    for dir in [hoist.root(), out_dir.path()] {
        assert_eq!(
            files_containing(dir, token.as_bytes()),
            Vec::<String>::new(),
            "the secret leaked"
        );
    }
    // The check itself finds the token where it is.
    assert_eq!(
        files_containing(secret_dir.path(), token.as_bytes()).len(),
        1
    );

    // A required secret that was not given stops the build by name.
    let ctx =
        dockerfile_context("FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n");
    let out = hoist.run(&["build", "--progress=plain", ctx.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr
            .contains("secret nope: not found (pass it with --secret id=nope,src=FILE or env=VAR)"),
        "{stderr}"
    );
}

/// `--ssh default=SOCKET`: the RUN finds the agent's socket at
/// `SSH_AUTH_SOCK`; without `--ssh`, a required agent stops the build.
#[test]
fn r8_ssh_mount_forwards_the_agent_socket() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let ctx = dockerfile_context(
        "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /sock\n",
    );
    let ssh = format!("default={}", socket.display());
    hoist.build(ctx.path(), &["-t", "ssh:1", "--ssh", &ssh]);
    assert_eq!(
        hoist.exec("ssh:1", &["cat", "/sock"]),
        "/run/buildkit/ssh_agent.0\n"
    );
    let ctx = dockerfile_context("FROM busybox\nRUN --mount=type=ssh,required=true true\n");
    let out = hoist.run(&["build", "--progress=plain", ctx.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("ssh agent default: not found"), "{stderr}");
}

/// `hoist builder prune --filter until=24h` drops cache entries and cache
/// mounts unused for a day, and nothing newer; `hoist system df` counts
/// both.
#[test]
fn r8_builder_prune_until_collects_old_cache_and_cache_mounts() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\nRUN --mount=type=cache,target=/c echo x > /c/x\nRUN echo two > /two\n",
    );
    hoist.build(ctx.path(), &["-t", "pruned:1"]);
    let df = hoist.ok(&["system", "df"]);
    let mounts_row = df.lines().find(|l| l.starts_with("Cache Mounts")).unwrap();
    assert_eq!(
        mounts_row.split_whitespace().nth(2),
        Some("1"),
        "one cache mount:\n{df}"
    );

    let out = hoist.ok(&["builder", "prune", "-f", "--filter", "until=24h"]);
    assert!(!out.contains("Deleted"), "nothing is a day old:\n{out}");
    let log = hoist.build(ctx.path(), &["-t", "pruned:1"]);
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");

    // Age everything by two days, as if unused since.
    for dir in ["hoist/cache", "hoist/mounts"] {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find {}/{dir} -mindepth 1 -maxdepth 1 -exec touch -d '2 days ago' {{}} +",
                hoist.root().display()
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let out = hoist.ok(&["builder", "prune", "-f", "--filter", "until=24h"]);
    assert!(out.contains("Deleted build cache objects:"), "{out}");
    assert!(out.contains("Deleted cache mounts: 1"), "{out}");
    assert_eq!(
        hoist.exec("pruned:1", &["cat", "/two"]),
        "two\n",
        "images stay"
    );
    let log = hoist.build(ctx.path(), &["-t", "pruned:2"]);
    assert_eq!(log.matches("CACHED").count(), 0, "{log}");

    let records = |dir: &str| std::fs::read_dir(hoist.root().join(dir)).unwrap().count();
    assert!(records("hoist/cache-recent") > 0);
    hoist.ok(&["builder", "prune", "-f", "--all"]);
    assert_eq!(records("hoist/cache"), 0);
    assert_eq!(
        records("hoist/cache-recent"),
        0,
        "explanation records go too"
    );
    assert_eq!(records("hoist/mounts"), 0);

    let err = hoist.run(&["builder", "prune", "-f", "--filter", "until=1d"]);
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr)
            .contains("invalid filter \"until=1d\": \"1d\" is not a duration"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}

/// Two `hoist` processes: one builds, its RUN holding a cache mount; the
/// other runs `builder prune --all`. The held mount and its lock files
/// survive; an unheld one goes with its lock files; once the RUN is done,
/// the next prune takes the rest.
#[test]
fn r8_prune_takes_an_unheld_cache_mount_with_its_locks_and_leaves_a_held_one() {
    use sha2::Digest as _;
    let hoist = Hoist::with_busybox();
    let hex = |id: &str| format!("{:x}", sha2::Sha256::digest(id.as_bytes()));
    let (held, loose) = (hex("held"), hex("loose"));
    let mounts = hoist.root().join("hoist/mounts");
    let locks = hoist.root().join("hoist/mount-locks");
    let lock_files = || {
        let mut names: Vec<String> = std::fs::read_dir(&locks)
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let ctx = dockerfile_context(
        "FROM busybox\nRUN --mount=type=cache,id=loose,target=/c echo y > /c/f\n",
    );
    hoist.build(ctx.path(), &[]);
    assert_eq!(lock_files(), [loose.clone(), format!("{loose}.use")]);

    // The RUN says it started through the mount, and waits for a file the
    // test puts there.
    let ctx = dockerfile_context(
        "FROM busybox
RUN --mount=type=cache,id=held,target=/c sh -c 'echo x > /c/f; touch /c/started; \
    while [ ! -e /c/go ]; do sleep 0.05; done; rm /c/go'
",
    );
    /// Kills the build if the test fails before letting it finish.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut build = Running(
        hoist
            .command(&["build", "--progress=plain", ctx.path().to_str().unwrap()])
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let started = mounts.join(&held).join("started");
    wait_until("the RUN holding the cache mount", || started.exists());

    let out = hoist.ok(&["builder", "prune", "-f", "--all"]);
    assert!(out.contains("Deleted cache mounts: 1"), "{out}");
    assert!(!mounts.join(&loose).exists(), "the unheld mount goes");
    assert!(
        mounts.join(&held).join("f").is_file(),
        "the held mount stays"
    );
    assert_eq!(
        lock_files(),
        [held.clone(), format!("{held}.use")],
        "the unheld mount's lock files go with it"
    );

    std::fs::write(mounts.join(&held).join("go"), "").unwrap();
    let status = build.0.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(log.path()).unwrap()
    );
    let out = hoist.ok(&["builder", "prune", "-f", "--all"]);
    assert!(out.contains("Deleted cache mounts: 1"), "{out}");
    assert_eq!(lock_files(), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(&mounts).unwrap().count(), 0);
}

type Mutation = fn(&Path);

/// Issue 8's hit/miss table: each case builds, changes one input, builds
/// again and counts the steps taken from the cache.
#[test]
fn r8_hit_miss_table() {
    // One store for every case: a case's commands are its own, so that no
    // case hits what another built.
    let hoist = Hoist::with_busybox();
    let cases: &[(&str, &str, Mutation, usize)] = &[
        (
            "file content",
            "FROM busybox\nCOPY a.txt /a\nRUN cat /a\n",
            |d| write(d, "a.txt", "changed\n"),
            0,
        ),
        (
            "file mode",
            "FROM busybox\nCOPY a.txt /a\nRUN cat /a\n",
            |d| chmod(&d.join("a.txt"), 0o600),
            0,
        ),
        (
            "mtime only",
            "FROM busybox\nCOPY a.txt /a\nRUN cat /a\n",
            |d| touch(&d.join("a.txt"), "2001-01-01"),
            2,
        ),
        (
            "owner after --chown",
            "FROM busybox\nCOPY --chown=1:1 a.txt /a\nRUN cat /a\n",
            |d| edit_dockerfile(d, "--chown=1:1", "--chown=2:2"),
            0,
        ),
        (
            "a new file matched by a wildcard",
            "FROM busybox\nCOPY *.txt /d/\nRUN ls /d\n",
            |d| write(d, "b.txt", "new\n"),
            0,
        ),
        (
            "a new file excluded by .dockerignore",
            "FROM busybox\nCOPY . /d/\nRUN ls /d\n",
            |d| write(d, "ignored.log", "noise\n"),
            2,
        ),
        (
            "a file outside the sources",
            "FROM busybox\nCOPY a.txt /a\nRUN cat /a\n",
            |d| write(d, "other.txt", "noise\n"),
            2,
        ),
        (
            "build arg in scope",
            "FROM busybox\nARG V=1\nCOPY a.txt /a\nRUN echo $V\n",
            |d| edit_dockerfile(d, "ARG V=1", "ARG V=2"),
            1,
        ),
        (
            "build arg declared after the step",
            "FROM busybox\nRUN echo one\nARG V=1\nRUN echo $V\n",
            |d| edit_dockerfile(d, "ARG V=1", "ARG V=2"),
            1,
        ),
        (
            "env the step sees",
            "FROM busybox\nENV E=1\nRUN echo $E\n",
            |d| edit_dockerfile(d, "ENV E=1", "ENV E=2"),
            0,
        ),
        (
            "a config-only instruction",
            "FROM busybox\nLABEL l=1\nRUN echo hi\nCMD [\"a\"]\n",
            |d| edit_dockerfile(d, "CMD [\"a\"]", "CMD [\"b\"]"),
            1,
        ),
        (
            "the RUN command",
            "FROM busybox\nRUN echo a\nRUN echo b\n",
            |d| edit_dockerfile(d, "echo b", "echo c"),
            1,
        ),
        (
            "WORKDIR",
            "FROM busybox\nWORKDIR /a\nRUN pwd\n",
            |d| edit_dockerfile(d, "WORKDIR /a", "WORKDIR /b"),
            0,
        ),
        (
            "USER",
            "FROM busybox\nRUN echo a\nUSER 1000\nRUN id -u\n",
            |d| edit_dockerfile(d, "USER 1000", "USER 1001"),
            1,
        ),
        (
            "a heredoc",
            "FROM busybox\nCOPY <<EOF /h\none\nEOF\nRUN cat /h\n",
            |d| edit_dockerfile(d, "one", "two"),
            0,
        ),
        (
            "a RUN --mount flag",
            "FROM busybox\nRUN --mount=type=tmpfs,target=/t echo mnt\n",
            |d| edit_dockerfile(d, "target=/t", "target=/u"),
            0,
        ),
        (
            "the network mode",
            "FROM busybox\nRUN --network=none echo net\n",
            |d| edit_dockerfile(d, "--network=none", "--network=default"),
            0,
        ),
    ];
    for (case, dockerfile, mutate, cached) in cases {
        let ctx = dockerfile_context(dockerfile);
        write(ctx.path(), "a.txt", "a\n");
        write(ctx.path(), ".dockerignore", "*.log\n");
        let first = hoist.build(ctx.path(), &["-t", "table:1"]);
        let again = hoist.build(ctx.path(), &["-t", "table:1"]);
        // Vertex lines (`#2 [2/3] RUN ...`) other than FROM's.
        let steps = first
            .lines()
            .filter(|l| l.contains("] ") && l.split(' ').nth(1).is_some_and(|w| w.starts_with('[')))
            .count()
            - 1;
        assert_eq!(
            again.matches("CACHED").count(),
            steps,
            "case {case:?}: an unchanged rebuild is all cached\n{first}\n{again}"
        );
        mutate(ctx.path());
        let log = hoist.build(ctx.path(), &["-t", "table:2"]);
        assert_eq!(
            log.matches("CACHED").count(),
            *cached,
            "case {case:?}:\n{log}"
        );
        // CVE-2024-24557: an image differs when its config does, even if
        // every filesystem step was reused.
        if *case == "a config-only instruction" {
            assert_ne!(
                hoist.inspect("table:1")["Id"],
                hoist.inspect("table:2")["Id"],
                "case {case:?}"
            );
            assert_eq!(hoist.inspect("table:2")["Config"]["Cmd"][0], "b");
        }
    }
}

/// ONBUILD triggers of the base run as steps of the child; a changed
/// trigger reruns them.
#[test]
fn r8_onbuild_triggers_are_in_the_key() {
    let hoist = Hoist::with_busybox();
    let base = dockerfile_context("FROM busybox\nONBUILD RUN echo one > /t\n");
    hoist.build(base.path(), &["-t", "onbase:latest"]);
    let child = dockerfile_context("FROM onbase\nRUN cat /t\n");
    hoist.build(child.path(), &["-t", "onchild:1"]);
    let log = hoist.build(child.path(), &["-t", "onchild:1"]);
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");
    std::fs::write(
        base.path().join("Dockerfile"),
        "FROM busybox\nONBUILD RUN echo two > /t\n",
    )
    .unwrap();
    hoist.build(base.path(), &["-t", "onbase:latest"]);
    let log = hoist.build(child.path(), &["-t", "onchild:2"]);
    assert_eq!(log.matches("CACHED").count(), 0, "{log}");
    assert_eq!(hoist.exec("onchild:2", &["cat", "/t"]), "two\n");
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn touch(path: &Path, date: &str) {
    let status = std::process::Command::new("touch")
        .args(["-d", date])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn edit_dockerfile(dir: &Path, from: &str, to: &str) {
    let path = dir.join("Dockerfile");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} in {text:?}");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// `--dry-run` predicts, line for line, what the build then does, and
/// writes nothing.
#[test]
fn r8_dry_run_predicts_what_the_build_does() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox AS deps
COPY dep.txt /dep
RUN cat /dep > /d
FROM busybox AS app
COPY app.txt /app
RUN cat /app
COPY --from=deps /d /d
RUN cat /d
",
    );
    write(ctx.path(), "dep.txt", "one\n");
    write(ctx.path(), "app.txt", "app\n");
    hoist.build(ctx.path(), &["-t", "dry:1"]);
    let log = hoist.build(ctx.path(), &["--dry-run", "-t", "dry:2"]);
    assert!(log.contains("6 of 6 steps cached, 0 would run"), "{log}");

    write(ctx.path(), "dep.txt", "two\n");
    let cache_entries = || {
        std::fs::read_dir(hoist.root().join("hoist/cache"))
            .unwrap()
            .count()
    };
    let entries = cache_entries();
    let predicted = hoist.build(ctx.path(), &["--dry-run", "-t", "dry:2"]);
    assert!(
        predicted.contains("2 of 6 steps cached, 4 would run"),
        "{predicted}"
    );
    assert!(
        !predicted.lines().any(|l| l.ends_with(" two")),
        "RUN cat /d does not run:\n{predicted}"
    );
    assert_eq!(cache_entries(), entries, "a dry run stores nothing");
    let images = hoist.ok(&["images"]);
    // (A row's first two columns: "2 seconds ago" is no tag.)
    assert!(
        !images
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["dry", "2"])),
        "{images}"
    );
    let out = hoist.run(&["inspect", "dry:2"]);
    assert!(!out.status.success(), "a dry run tags nothing");

    let built = hoist.build(ctx.path(), &["-t", "dry:2"]);
    assert_eq!(
        explanations(&predicted),
        [
            "#2 COPY dep.txt /dep: not cached: 1 of 1 file changed (dep.txt)",
            "#3 RUN cat /dep > /d: not cached: parent step #2 was rebuilt",
            "#7 COPY --from=deps /d /d: not cached: the stage or image it copies from changed",
            "#8 RUN cat /d: not cached: parent step #7 was rebuilt",
        ],
        "{predicted}"
    );
    assert_eq!(explanations(&built), explanations(&predicted), "{built}");
    assert!(built.lines().any(|l| l.ends_with(" two")), "{built}");
    assert_eq!(
        built.matches("CACHED").count(),
        predicted.matches("CACHED").count()
    );
}

/// `bind,rw`: the RUN may write to a bind mount; the writes are discarded,
/// never reaching the context or the image.
#[test]
fn r8_bind_rw_writes_are_discarded() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox
RUN --mount=type=bind,source=conf,target=/conf,rw sh -c 'echo w > /conf/new && echo changed > /conf/a && cat /conf/a > /seen && ls /conf > /list'
RUN --mount=type=bind,source=f.txt,target=/f,rw sh -c 'echo more >> /f && cat /f > /fseen'
",
    );
    write(ctx.path(), "conf/a", "one\n");
    write(ctx.path(), "f.txt", "file\n");
    hoist.build(ctx.path(), &["-t", "bindrw:1"]);
    assert_eq!(hoist.exec("bindrw:1", &["cat", "/seen"]), "changed\n");
    assert_eq!(hoist.exec("bindrw:1", &["cat", "/list"]), "a\nnew\n");
    assert_eq!(hoist.exec("bindrw:1", &["cat", "/fseen"]), "file\nmore\n");
    assert_eq!(
        hoist
            .exec("bindrw:1", &["sh", "-c", "ls /conf /f 2>&1 | wc -l"])
            .trim(),
        "2",
        "only ls's two errors: no mount point left in the image"
    );
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("conf/a")).unwrap(),
        "one\n"
    );
    assert!(!ctx.path().join("conf/new").exists());
    assert_eq!(
        std::fs::read_to_string(ctx.path().join("f.txt")).unwrap(),
        "file\n"
    );
}

/// `--cache-to type=local` in one store, `--cache-from` in a fresh one:
/// the second build takes every step from the imported cache. `mode=min`
/// keeps the final image's steps only; `mode=max` intermediate stages too.
#[test]
fn r8_cache_round_trips_between_two_stores_through_a_directory() {
    let first = Hoist::with_busybox();
    // The deps RUN writes a random file, so when it runs again its layer
    // differs even within the same second as the first build's.
    let ctx = dockerfile_context(
        "FROM busybox AS deps
RUN echo deps > /d && cat /proc/sys/kernel/random/uuid > /other
FROM busybox
COPY a.txt /a
RUN cat /a > /b
COPY --from=deps /d /d
",
    );
    write(ctx.path(), "a.txt", "a\n");
    let out = tempfile::tempdir().unwrap();
    let (min, max) = (out.path().join("min"), out.path().join("max"));
    let to_min = format!("type=local,dest={},mode=min", min.display());
    let to_max = format!("type=local,dest={},mode=max", max.display());
    let log = first.build(
        ctx.path(),
        &[
            "-t",
            "shared:1",
            "--cache-to",
            &to_min,
            "--cache-to",
            &to_max,
        ],
    );
    assert!(
        log.contains("3 cache records"),
        "min: COPY, RUN, COPY --from\n{log}"
    );
    assert!(
        log.contains("4 cache records"),
        "max: and the deps stage's RUN\n{log}"
    );

    // BuildKit's envelope.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(max.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(max.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.buildkit.cacheconfig.v0"
    );
    assert_eq!(
        manifest["layers"].as_array().unwrap().last().unwrap()["mediaType"],
        "application/vnd.hoist.cache.steps.v1+json"
    );

    let from_max = format!("type=local,src={}", max.display());
    let second = Hoist::with_busybox();
    let log = second.build(ctx.path(), &["-t", "shared:2", "--cache-from", &from_max]);
    assert_eq!(log.matches("CACHED").count(), 4, "{log}");
    assert_eq!(second.exec("shared:2", &["cat", "/b", "/d"]), "a\ndeps\n");
    assert_eq!(
        second.inspect("shared:2")["RootFS"],
        first.inspect("shared:1")["RootFS"]
    );
    // The import is lazy: the deps stage's layer, which nothing read, was
    // never copied in.
    let final_layers = first.inspect("shared:1")["RootFS"]["Layers"].clone();
    let deps_layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar")
        .map(|l| l["digest"].as_str().unwrap())
        .find(|d| !final_layers.as_array().unwrap().iter().any(|f| f == d))
        .expect("the deps layer is in the max export");
    assert!(
        !second
            .root()
            .join("blobs/sha256")
            .join(&deps_layer["sha256:".len()..])
            .exists(),
        "the deps layer was copied"
    );

    let from_min = format!("type=local,src={}", min.display());
    let third = Hoist::with_busybox();
    let log = third.build(ctx.path(), &["-t", "shared:3", "--cache-from", &from_min]);
    assert_eq!(
        log.matches("CACHED").count(),
        2,
        "the deps stage runs, so COPY --from and only it follows:\n{log}"
    );
}

/// `--cache-to ...,mounts=true` carries `type=cache` mount contents to a
/// fresh store, so its first build starts warm (buildkit#1474).
#[test]
fn r8_cache_mount_contents_travel_with_mounts_true() {
    let first = Hoist::with_busybox();
    let fill = dockerfile_context(
        "FROM busybox\nRUN --mount=type=cache,id=warm,target=/c sh -c 'echo filled > /c/state'\n",
    );
    let out = tempfile::tempdir().unwrap();
    let (with, without) = (out.path().join("with"), out.path().join("without"));
    first.build(
        fill.path(),
        &[
            "--cache-to",
            &format!("type=local,dest={},mounts=true", with.display()),
            "--cache-to",
            &format!("type=local,dest={}", without.display()),
        ],
    );
    let read = dockerfile_context(
        "FROM busybox\nRUN --mount=type=cache,id=warm,target=/c sh -c 'cat /c/state > /seen 2>/dev/null || echo cold > /seen'\n",
    );
    for (dir, seen) in [(&without, "cold\n"), (&with, "filled\n")] {
        let fresh = Hoist::with_busybox();
        let from = format!("type=local,src={}", dir.display());
        fresh.build(read.path(), &["-t", "warm:1", "--cache-from", &from]);
        assert_eq!(
            fresh.exec("warm:1", &["cat", "/seen"]),
            seen,
            "{}",
            dir.display()
        );
    }
}

/// `ADD <url>` without `--checksum` is keyed by what the URL serves, as
/// BuildKit's: unchanged content is a hit, changed content a miss, and
/// each build downloads the URL once (for the key; the copy reuses it).
#[test]
fn r8_add_url_without_checksum_is_keyed_by_content_and_downloaded_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let body = Arc::new(Mutex::new(b"version 1\n".to_vec()));
    let requests = Arc::new(AtomicUsize::new(0));
    let server = {
        let (body, requests) = (body.clone(), requests.clone());
        crate::registry::http::Server::start(move |_request, mut stream| {
            requests.fetch_add(1, Ordering::SeqCst);
            let content = body.lock().unwrap().clone();
            let _ = crate::registry::http::respond(&mut stream, 200, &[], &content);
        })
    };
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(&format!(
        "FROM busybox\nADD http://{}/file.txt /file.txt\nRUN cat /file.txt > /copy\n",
        server.host()
    ));
    let log = hoist.build(ctx.path(), &["-t", "add:1"]);
    assert_eq!(log.matches("CACHED").count(), 0, "{log}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one download\n{log}");
    assert_eq!(hoist.exec("add:1", &["cat", "/copy"]), "version 1\n");

    let log = hoist.build(ctx.path(), &["-t", "add:2"]);
    assert_eq!(log.matches("CACHED").count(), 2, "same content\n{log}");
    assert_eq!(requests.load(Ordering::SeqCst), 2, "one download\n{log}");

    *body.lock().unwrap() = b"version 2\n".to_vec();
    let log = hoist.build(ctx.path(), &["-t", "add:3"]);
    assert_eq!(log.matches("CACHED").count(), 0, "new content\n{log}");
    assert_eq!(requests.load(Ordering::SeqCst), 3, "one download\n{log}");
    assert_eq!(hoist.exec("add:3", &["cat", "/copy"]), "version 2\n");
}

/// `ADD <url>` revalidates as BuildKit's HTTP source does: once the store
/// holds a download with an ETag, a `HEAD` with `If-None-Match` asks
/// whether it still holds (no `GET` when it does, even when the step must
/// run again: the stored content is copied, with its `Last-Modified`
/// mtime); a changed ETag gets a conditional `GET`. `--dry-run` sends no
/// request at all and says what it predicted from.
#[test]
fn r8_add_url_revalidates_with_etag_and_dry_run_downloads_nothing() {
    use std::sync::{Arc, Mutex};

    use crate::registry::http::{Server, respond};

    const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
    let served = Arc::new(Mutex::new((b"version 1\n".to_vec(), "\"v1\"")));
    // (method, status, If-None-Match) of every request, in order.
    let log = Arc::new(Mutex::new(Vec::<(String, u16, Option<String>)>::new()));
    let server = {
        let (served, log) = (served.clone(), log.clone());
        Server::start(move |request, mut stream| {
            let (body, etag) = served.lock().unwrap().clone();
            let asked = request.header("if-none-match").map(str::to_owned);
            let matches = asked
                .as_deref()
                .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
            let status = if matches { 304 } else { 200 };
            log.lock()
                .unwrap()
                .push((request.method.clone(), status, asked));
            let headers = [("ETag", etag), ("Last-Modified", LAST_MODIFIED)];
            let body: &[u8] = if status == 200 && request.method == "GET" {
                &body
            } else {
                b""
            };
            let _ = respond(&mut stream, status, &headers, body);
        })
    };
    let requests = || std::mem::take(&mut *log.lock().unwrap());
    let request = |method: &str, status: u16, asked: Option<&str>| {
        (method.to_owned(), status, asked.map(str::to_owned))
    };
    let hoist = Hoist::with_busybox();
    let dockerfile = |path: &str| {
        format!(
            "FROM busybox\nADD http://{}/{path} /file.txt\nRUN cat /file.txt > /copy\n",
            server.host()
        )
    };
    let ctx = dockerfile_context(&dockerfile("file.txt"));

    let out = hoist.build(ctx.path(), &["-t", "add:1"]);
    assert_eq!(requests(), [request("GET", 200, None)], "{out}");
    assert_eq!(hoist.exec("add:1", &["cat", "/copy"]), "version 1\n");

    // Unchanged: one HEAD answered 304, no GET.
    let out = hoist.build(ctx.path(), &["-t", "add:2"]);
    assert_eq!(out.matches("CACHED").count(), 2, "{out}");
    assert_eq!(requests(), [request("HEAD", 304, Some("\"v1\""))], "{out}");

    // The step runs again, from the stored content, with its mtime.
    let out = hoist.build(ctx.path(), &["-t", "add:3", "--no-cache"]);
    assert_eq!(requests(), [request("HEAD", 304, Some("\"v1\""))], "{out}");
    assert_eq!(hoist.exec("add:3", &["cat", "/copy"]), "version 1\n");
    assert_eq!(
        hoist.exec("add:3", &["stat", "-c", "%Y", "/file.txt"]),
        "1445412480\n",
        "Last-Modified of the stored download"
    );

    // Changed: the HEAD names another ETag, a conditional GET downloads.
    *served.lock().unwrap() = (b"version 2\n".to_vec(), "\"v2\"");
    let out = hoist.build(ctx.path(), &["-t", "add:4"]);
    assert_eq!(out.matches("CACHED").count(), 0, "{out}");
    assert_eq!(
        requests(),
        [
            request("HEAD", 200, Some("\"v1\"")),
            request("GET", 200, Some("\"v1\""))
        ],
        "{out}"
    );
    assert_eq!(hoist.exec("add:4", &["cat", "/copy"]), "version 2\n");
    assert!(
        out.contains(&format!(
            "not cached: the content of http://{}/file.txt changed",
            server.host()
        )),
        "{out}"
    );

    // --dry-run asks nothing: it predicts from the last download (v2,
    // although the server has moved on), and says so.
    *served.lock().unwrap() = (b"version 3\n".to_vec(), "\"v3\"");
    let out = hoist.build(ctx.path(), &["--dry-run", "--explain"]);
    assert_eq!(requests(), [], "{out}");
    assert!(
        out.contains(&format!(
            "ADD http://{}/file.txt /file.txt: http://{}/file.txt not downloaded (--dry-run): \
             predicted from its last download",
            server.host(),
            server.host()
        )),
        "{out}"
    );
    assert_eq!(out.matches("CACHED").count(), 2, "{out}");
    // A URL never downloaded is predicted to run.
    let other = dockerfile_context(&dockerfile("other.txt"));
    let out = hoist.build(other.path(), &["--dry-run", "--explain"]);
    assert_eq!(requests(), [], "{out}");
    assert!(
        out.contains("not cached: its URL was never downloaded, and --dry-run downloads nothing"),
        "{out}"
    );
    assert!(!out.contains("CACHED"), "{out}");
    hoist.assert_fsck_clean();
}

/// `RUN --mount=type=bind` of the context sees what BuildKit sends: the
/// context without what `.dockerignore` excludes (exceptions included),
/// read-only and `rw` alike, and from a subdirectory.
#[test]
fn r8_run_bind_mount_of_the_context_honours_dockerignore() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox
RUN --mount=type=bind,target=/ctx cd /ctx && find . | sort > /ro
RUN --mount=type=bind,target=/ctx,rw cd /ctx && find . | sort > /rw
RUN --mount=type=bind,source=sub,target=/sub cd /sub && find . | sort > /sub.txt
",
    );
    write(ctx.path(), "kept.txt", "k\n");
    write(ctx.path(), "secret.env", "s\n");
    write(ctx.path(), "node_modules/x/index.js", "x\n");
    write(ctx.path(), "sub/a.log", "a\n");
    write(ctx.path(), "sub/b.txt", "b\n");
    write(ctx.path(), "sub/keep.log", "k\n");
    write(
        ctx.path(),
        ".dockerignore",
        "*.env\nnode_modules\nsub/*.log\n!sub/keep.log\n",
    );
    hoist.build(ctx.path(), &["-t", "bind:1"]);
    let whole = "./.dockerignore\n./Dockerfile\n./kept.txt\n./sub\n./sub/b.txt\n./sub/keep.log\n";
    assert_eq!(hoist.exec("bind:1", &["cat", "/ro"]), format!(".\n{whole}"));
    assert_eq!(hoist.exec("bind:1", &["cat", "/rw"]), format!(".\n{whole}"));
    assert_eq!(
        hoist.exec("bind:1", &["cat", "/sub.txt"]),
        ".\n./b.txt\n./keep.log\n"
    );

    // An excluded source is not there to mount (BuildKit: not found).
    let excluded = dockerfile_context(
        "FROM busybox\nRUN --mount=type=bind,source=secret.env,target=/s cat /s\n",
    );
    write(excluded.path(), "secret.env", "s\n");
    write(excluded.path(), ".dockerignore", "*.env\n");
    let err = hoist.fails(&["build", excluded.path().to_str().unwrap()]);
    assert!(err.contains("\"/secret.env\": not found"), "{err}");
}

/// Issue 9: the extended attributes COPY copies are part of its sources'
/// checksum, on a file and on a directory: setting one (as `setcap` does)
/// is a miss, and the image carries the attribute.
#[test]
fn r9_an_xattr_on_a_copied_file_or_directory_is_a_miss() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nCOPY app /app\n");
    write(ctx.path(), "app/bin/tool", "tool\n");
    hoist.build(ctx.path(), &["-t", "xattrs:1"]);
    let out = tempfile::tempdir().unwrap();
    for (round, (what, path)) in [("a file", "bin/tool"), ("a directory", "bin")]
        .into_iter()
        .enumerate()
    {
        rustix::fs::setxattr(
            ctx.path().join("app").join(path),
            "user.hoist",
            what.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let rootfs = out.path().join(round.to_string());
        let local = format!("type=local,dest={}", rootfs.display());
        let log = hoist.build(ctx.path(), &["-t", "xattrs:1", "--output", &local]);
        assert_eq!(log.matches("CACHED").count(), 0, "{what}:\n{log}");
        let mut value = [0u8; 64];
        let len = rustix::fs::getxattr(rootfs.join("app").join(path), "user.hoist", &mut value)
            .unwrap_or_else(|err| panic!("{what}: no xattr in the image: {err}"));
        assert_eq!(&value[..len], what.as_bytes(), "{what}");
    }
}
