//! Rootless `hoist` (issue 4): the same builds as an ordinary user, who
//! gets a user namespace from /etc/subuid and /etc/subgid, must give the
//! same layers as root, owners included; `hoist run` works too, and signals
//! reach the re-executed copy.
//!
//! The tests run as root and drop to a dedicated user (made, with its
//! ranges, by `scripts/test`'s set-up) through `setpriv`; a missing user,
//! tool or range fails the test, it never skips.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Hoist, busybox_tar, context, require_root, running_with_arg};

const TEST_USER: &str = "hoist-rootless";
const EPOCH: &str = "1700000000";

/// An unprivileged user with subordinate ID ranges.
struct User {
    uid: u32,
    gid: u32,
    /// The first subordinate uid: container uid N (N >= 1) is `subuid + N - 1`.
    subuid: u32,
}

/// The dedicated test user, made by scripts/test.
fn rootless_user() -> User {
    require_root();
    for tool in ["setpriv", "newuidmap", "newgidmap"] {
        assert!(
            which(tool).is_some(),
            "{tool} is required for the rootless tests (packages util-linux and uidmap)"
        );
    }
    // scripts/test makes the user and its ranges: tests do not change the
    // host (issue 11).
    let name = TEST_USER;
    let setup = "run scripts/test (its set-up makes the rootless test user and ranges)";
    let uid = id(name, "-u").unwrap_or_else(|| panic!("user {name} does not exist: {setup}"));
    let gid = id(name, "-g").unwrap_or_else(|| panic!("user {name} has no group: {setup}"));
    let subuid = sub_range("/etc/subuid", name, uid)
        .unwrap_or_else(|| panic!("{name} has no range in /etc/subuid: {setup}"));
    assert!(
        sub_range("/etc/subgid", name, uid).is_some(),
        "{name} has no range in /etc/subgid: {setup}"
    );
    User { uid, gid, subuid }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn id(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    out.status.success().then_some(())?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// The start of `user`'s range in a subuid/subgid file.
fn sub_range(file: &str, user: &str, uid: u32) -> Option<u32> {
    let content = std::fs::read_to_string(file).unwrap_or_default();
    content.lines().find_map(|line| {
        let mut f = line.split(':');
        let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
        let owner_matches = owner == user || owner == uid.to_string();
        let count: u32 = count.trim().parse().ok()?;
        (owner_matches && count >= 65536)
            .then(|| start.parse().ok())
            .flatten()
    })
}

/// A directory the rootless user owns, holding a copy of the hoist binary,
/// the busybox tarball, the build contexts, a home and a store root.
struct Workspace {
    user: User,
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(user: User, contexts: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hoist-rootless-")
            .tempdir()
            .unwrap();
        let path = dir.path();
        std::fs::copy(env!("CARGO_BIN_EXE_hoist"), path.join("hoist")).unwrap();
        std::fs::copy(busybox_tar(), path.join("busybox.tar")).unwrap();
        std::fs::create_dir(path.join("home")).unwrap();
        for name in contexts {
            let status = Command::new("cp")
                .arg("-a")
                .arg(context(name))
                .arg(path.join(name))
                .status()
                .unwrap();
            assert!(status.success(), "copying context {name}");
        }
        let ws = Self { user, dir };
        ws.give(ws.path());
        ws
    }

    /// Makes `path` and everything below it the rootless user's.
    fn give(&self, path: &Path) {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.user.uid, self.user.gid))
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chown of {}", path.display());
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    /// `hoist args…` as the rootless user, with its own store root.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.user.uid))
            .arg(format!("--regid={}", self.user.gid))
            .args(["--clear-groups", "--"])
            .arg(self.path().join("hoist"))
            .args(args)
            .current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .env("HOIST_ROOT", self.store())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env_remove("XDG_DATA_HOME")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rootless hoist {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn inspect(&self, image: &str) -> Value {
        let value: Value = serde_json::from_str(&self.ok(&["inspect", image])).unwrap();
        value[0].clone()
    }
}

/// Root's side of the comparison: the same import and builds.
fn root_ok(hoist: &Hoist, args: &[&str]) -> String {
    let out = hoist
        .command(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hoist {args:?} as root failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rootless_builds_give_the_same_layers_as_root() {
    let contexts = ["build-whiteouts", "build-users"];
    let ws = Workspace::new(rootless_user(), &contexts);
    let root = Hoist::new();
    // The import's history names its source: give both the same message.
    let message = "busybox-static";
    let tar = busybox_tar().to_str().unwrap();
    root_ok(&root, &["import", "-m", message, tar, "busybox"]);
    ws.ok(&["import", "-m", message, "busybox.tar", "busybox"]);

    let probe = "cat /tmp/id-* 2>/dev/null; ls -a /opt 2>/dev/null; \
                 stat -c '%n %a %u:%g' /opt/chmod-me /opt/chown-me /owned-by-alice \
                 /owned-by-1234 2>/dev/null; test -e /bin/vi || echo vi-gone";
    for name in contexts {
        let tag = format!("{name}:test");
        let dir = context(name);
        let root_id = root_ok(&root, &["build", "-q", "-t", &tag, dir.to_str().unwrap()]);
        let user_id = ws.ok(&["build", "-q", "-t", &tag, name]);
        let (user_image, root_image) = (ws.inspect(&tag), root.inspect(&tag));
        assert_eq!(
            user_image["RootFS"]["Layers"], root_image["RootFS"]["Layers"],
            "{name}: rootless layers differ from root's"
        );
        assert_eq!(
            user_id, root_id,
            "{name}: rootless image ID differs:\n{user_image:#}\nroot:\n{root_image:#}"
        );
        let as_root = root.exec(&tag, &["sh", "-c", probe]);
        let rootless = ws.ok(&["run", "--rm", &tag, "sh", "-c", probe]);
        assert_eq!(rootless, as_root, "{name}: `hoist run` sees another image");
    }

    // Owners inside are subordinate IDs outside: alice (1001) of
    // build-users is subuid + 1000 on the host, not the user.
    let owned = find(&ws.store().join("hoist/snapshots"), "owned-by-alice")
        .expect("a snapshot holding /owned-by-alice");
    let meta = std::fs::symlink_metadata(&owned).unwrap();
    assert_eq!(
        meta.uid(),
        ws.user.subuid + 1000,
        "{} is not owned through the subuid range",
        owned.display()
    );
    let store = std::fs::metadata(ws.store()).unwrap();
    assert_eq!(
        store.uid(),
        ws.user.uid,
        "the store root belongs to the user"
    );

    // Exit codes pass through the re-executed copy.
    let out = ws.run(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // Without HOIST_ROOT the store is the user's own.
    let out = ws
        .command(&["images"])
        .env_remove("HOIST_ROOT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let default = ws.path().join("home/.local/share/hoist");
    let meta = std::fs::metadata(&default)
        .unwrap_or_else(|e| panic!("default rootless store {}: {e}", default.display()));
    assert_eq!(meta.uid(), ws.user.uid);
}

/// SIGTERM to the rootless parent reaches the copy, which cancels its RUN
/// and cleans up; SIGKILL to the parent kills the copy and its sandbox.
#[test]
fn rootless_signals_reach_the_build() {
    let ws = Workspace::new(rootless_user(), &[]);
    ws.ok(&["import", "busybox.tar", "busybox"]);
    for (signal, arg) in [(15, "984"), (9, "983")] {
        let ctx = ws.path().join(format!("ctx-{arg}"));
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\nRUN echo started; sleep {arg}\n"),
        )
        .unwrap();
        let mut child = ws
            .command(&["build", "--progress=plain", ctx.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !running_with_arg(arg.as_bytes()) {
            assert!(Instant::now() < deadline, "the RUN never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert!(!status.success(), "signal {signal}: the build succeeded");
        let deadline = Instant::now() + Duration::from_secs(10);
        while running_with_arg(arg.as_bytes())
            || running_with_arg(ctx.as_os_str().as_encoded_bytes())
        {
            assert!(
                Instant::now() < deadline,
                "signal {signal}: the copy or its sandbox outlived the build"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if signal == 15 {
            // A clean cancel: the copy removed its temp dirs.
            let tmp = ws.store().join("hoist/tmp");
            let left: Vec<_> = std::fs::read_dir(&tmp)
                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "leftovers in {}: {left:?}", tmp.display());
        }
    }
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            return Some(path);
        }
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && let Some(found) = find(&path, name)
        {
            return Some(found);
        }
    }
    None
}

/// A user with no subordinate ranges gets a single-ID mapping: files the
/// image owns by other IDs are kept by the namespace's root instead (as
/// podman's ignore_chown_errors), and the build still works.
#[test]
fn rootless_without_subordinate_ids_falls_back_to_one_id() {
    require_root();
    // A uid with no passwd entry has no line in /etc/subuid either.
    let uid = 54321;
    assert!(
        sub_range("/etc/subuid", &uid.to_string(), uid).is_none(),
        "uid {uid} unexpectedly has a subordinate range"
    );
    let user = User {
        uid,
        gid: uid,
        subuid: 0,
    };
    let ws = Workspace::new(user, &["hello"]);
    ws.ok(&["import", "busybox.tar", "busybox:latest"]);
    ws.ok(&["build", "-q", "-t", "hello:single", "hello"]);
    assert_eq!(
        ws.ok(&["run", "--rm", "hello:single"]),
        "hello from hoist\nbuilt by root on Linux\n"
    );
}

/// Issue 10, rootless: `hoist info` says so, and a relative `--root` works
/// through the re-executed copy and RUN's overlay.
#[test]
fn r10_rootless_info_and_relative_root() {
    let ws = Workspace::new(rootless_user(), &["hello"]);
    let info: Value = serde_json::from_str(&ws.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(info["Rootless"], true, "{info}");
    assert_eq!(info["StoreRoot"], ws.store().to_str().unwrap(), "{info}");
    // The test user has a subordinate range: root of the namespace is the
    // user, and more IDs follow.
    let map = info["UidMap"].as_array().unwrap();
    assert!(map.len() >= 2, "{info}");
    assert_eq!(map[0], format!("0 {} 1", ws.user.uid), "{info}");

    let mut import = ws.command(&[
        "--root",
        "rel-store",
        "import",
        "busybox.tar",
        "busybox:latest",
    ]);
    let out = import.env_remove("HOIST_ROOT").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut build = ws.command(&[
        "--root",
        "rel-store",
        "build",
        "-q",
        "-t",
        "hello:rel",
        "hello",
    ]);
    let out = build.env_remove("HOIST_ROOT").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ws.path().join("rel-store").is_dir());
}

/// Issue 11, rootless: runs get the same seccomp profile and masks, user
/// namespaces and mounts are refused, no runtime binary is reachable, and
/// the store stays sound.
#[test]
fn r11_rootless_runs_refuse_the_same_breakouts() {
    let ws = Workspace::new(rootless_user(), &[]);
    let ctx = ws.path().join("probe");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN (grep '^Seccomp:' /proc/self/status; \
              unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-refused; \
              mount -t tmpfs none /mnt 2>/dev/null && echo mount-ok || echo mount-refused; \
              wc -c < /proc/keys; \
              for p in /proc/[0-9]*; do readlink $p/exe; done | sort -u) > /out\n",
    )
    .unwrap();
    ws.give(&ctx);
    ws.ok(&["import", "busybox.tar", "busybox:latest"]);
    ws.ok(&["build", "-q", "-t", "probe:latest", "probe"]);
    assert_eq!(
        ws.ok(&["run", "--rm", "probe:latest", "cat", "/out"]),
        "Seccomp:\t2\nunshare-refused\nmount-refused\n0\n/bin/busybox\n"
    );
    ws.ok(&["fsck"]);
}

/// Issue 11, rootless: a static i386 program in a RUN runs under the same
/// profile, and its unshare gets EPERM.
#[cfg(target_arch = "x86_64")]
#[test]
fn r11_rootless_i386_program_in_run_gets_eperm_for_unshare() {
    let ws = Workspace::new(rootless_user(), &[]);
    let ctx = ws.path().join("i386");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY i386-unshare /\nRUN (/i386-unshare; echo rc=$?) > /out\n",
    )
    .unwrap();
    crate::common::copy_i386_fixture(&ctx);
    ws.give(&ctx);
    ws.ok(&["import", "busybox.tar", "busybox:latest"]);
    ws.ok(&["build", "-q", "-t", "probe:latest", "i386"]);
    assert_eq!(
        ws.ok(&["run", "--rm", "probe:latest", "cat", "/out"]),
        "i386\nrc=1\n"
    );
}

/// Issue 10: without a subordinate range `hoist info` shows the single-ID
/// map, the first thing to check when a rootless step cannot chown.
#[test]
fn r10_rootless_info_without_subordinate_ids() {
    require_root();
    let uid = 54322;
    assert!(
        sub_range("/etc/subuid", &uid.to_string(), uid).is_none(),
        "uid {uid} unexpectedly has a subordinate range"
    );
    let ws = Workspace::new(
        User {
            uid,
            gid: uid,
            subuid: 0,
        },
        &[],
    );
    let info: Value = serde_json::from_str(&ws.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(
        info["UidMap"],
        serde_json::json!([format!("0 {uid} 1")]),
        "{info}"
    );
    let text = ws.ok(&["info"]);
    assert!(
        text.contains(&format!("0 {uid} 1 (a single ID: no subordinate range)")),
        "{text}"
    );
}

/// Issue 10: a rootless build that asks for a resource limit, where no
/// cgroup is delegated to the user (a v1 host, or a v2 host where the
/// user's cgroup belongs to root, as it does for this test's user), fails
/// with an error that says why and how to get one; the store is intact.
#[test]
fn r10_rootless_limits_without_a_delegated_cgroup_fail_clearly() {
    let ws = Workspace::new(rootless_user(), &[]);
    let ctx = ws.path().join("limits");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo mark\"\"er-ran\n",
    )
    .unwrap();
    ws.give(&ctx);
    ws.ok(&["import", "busybox.tar", "busybox:latest"]);
    let out = ws.run(&["build", "--memory", "64m", "-t", "limits:latest", "limits"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let unified = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup") && l.contains(" - cgroup2 "));
    let why = if unified {
        "need a cgroup v2 subtree delegated to the user, as systemd gives one: run \
         `systemd-run --user --scope -p Delegate=yes hoist ...`"
    } else {
        "resource limits on a cgroup v1 host need a root builder (cgroup v1 is not delegated \
         to rootless builders; cgroup v2 is)"
    };
    assert!(stderr.contains(why), "{stderr}");
    assert!(
        !stderr.contains("marker-ran"),
        "the RUN must not run: {stderr}"
    );
    ws.ok(&["fsck"]);
}

/// CVE-2024-23652, rootless: the mount stub cleanup runs as the user, who
/// owns the host directory the hostile RUN's symlinks point at (so a
/// cleanup that followed them could delete there); nothing in it changes.
#[test]
fn r11_rootless_cve_2024_23652_stub_cleanup_stays_in_the_root() {
    let ws = Workspace::new(rootless_user(), &[]);
    let victim = ws.path().join("victim");
    std::fs::create_dir_all(victim.join("sub")).unwrap();
    std::fs::write(victim.join("hosts"), "").unwrap();
    let ctx = ws.path().join("probe");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox\n\
             RUN --mount=type=tmpfs,target=/newdir/sub \
                 mv /newdir /moved && ln -s {v} /newdir\n\
             RUN --mount=type=tmpfs,target=/etc2/hosts \
                 mv /etc2 /moved2 && ln -s {v} /etc2\n",
            v = victim.display()
        ),
    )
    .unwrap();
    for path in [&ctx, &victim] {
        ws.give(path);
    }
    ws.ok(&["import", "busybox.tar", "busybox:latest"]);
    ws.ok(&["build", "-q", "-t", "probe:latest", "probe"]);
    assert!(
        victim.join("sub").is_dir(),
        "the user's victim/sub was removed"
    );
    assert!(
        victim.join("hosts").is_file(),
        "the user's victim/hosts was removed"
    );
    ws.ok(&["fsck"]);
}

/// A rootless workspace with busybox imported and the hostile kit (see
/// `hostile.rs`) owned by the user, so that its victim directory is one
/// the user may write: only hoist's confinement protects it.
fn hostile_workspace() -> (Workspace, crate::hostile::Kit) {
    let ws = Workspace::new(rootless_user(), &[]);
    let kit = crate::hostile::Kit::new(&ws.path().join("kit"));
    ws.give(&ws.path().join("kit"));
    ws.ok(&["import", "busybox.tar", "busybox:latest"]);
    (ws, kit)
}

/// Build-input attacks (see `hostile.rs`), rootless: the victim directory
/// belongs to the user, so only hoist's confinement protects it.
#[test]
fn r11_rootless_build_input_attacks_fail() {
    let (ws, kit) = hostile_workspace();
    crate::hostile::run_cases(&kit, &ws.store(), &|args| ws.run(args));
}

/// CVE-2018-15664, a symlink swap during COPY (see
/// `hostile::copy_symlink_swap`), rootless, with a victim the user owns.
#[test]
fn r11_rootless_cve_2018_15664_copy_symlink_swap() {
    let (ws, kit) = hostile_workspace();
    crate::hostile::copy_symlink_swap(&kit, &ws.store(), &|args| ws.run(args));
}

/// CVE-2018-15664 under ADD and `COPY --from` (see
/// `hostile::add_and_copy_from_symlink_swap`), rootless, with a victim the
/// user owns.
#[test]
fn r11_rootless_cve_2018_15664_add_and_copy_from_symlink_swap() {
    let (ws, kit) = hostile_workspace();
    crate::hostile::add_and_copy_from_symlink_swap(&kit, &ws.store(), &|args| ws.run(args));
}

/// CVE-2024-23651 (see `hostile::cache_mount_race`), rootless, with a
/// victim the user owns.
#[test]
fn r11_rootless_cve_2024_23651_cache_mount_race() {
    let (ws, kit) = hostile_workspace();
    crate::hostile::cache_mount_race(&kit, &ws.store(), &|args| ws.run(args), &|args| {
        ws.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
}

/// Rootless, a bind mount of the context hides what .dockerignore
/// excludes too: the whiteouts of its overlay are made without privilege.
#[test]
fn r8_rootless_bind_mount_of_the_context_honours_dockerignore() {
    let ws = Workspace::new(rootless_user(), &["run-bind-ignore"]);
    ws.ok(&["import", "busybox.tar", "busybox"]);
    ws.ok(&["build", "-q", "-t", "bind:rootless", "run-bind-ignore"]);
    let seen = "./.dockerignore\n./Dockerfile\n./kept.txt\n./sub\n./sub/keep.log\n";
    for file in ["/ro", "/rw"] {
        let listing = ws.ok(&["run", "--rm", "bind:rootless", "cat", file]);
        assert_eq!(listing, format!(".\n{seen}"), "{file}");
    }
}

/// Rootless, a COPY that misses because one file changed links the others
/// from its earlier snapshot (inside the user namespace), and gives the
/// image a copy from scratch gives.
#[test]
fn r8_rootless_changed_copy_reuses_unchanged_files() {
    let ws = Workspace::new(rootless_user(), &[]);
    ws.ok(&["import", "busybox.tar", "busybox"]);
    let ctx = ws.path().join("reuse");
    for (rel, content) in [
        (
            "Dockerfile",
            "FROM busybox\nCOPY . /app\nRUN cat /app/b > /b\n",
        ),
        ("a", "file a\n"),
        ("b", "file b\n"),
        ("d/c", "file c\n"),
    ] {
        let path = ctx.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    ws.give(&ctx);
    let build = |tag: &str, extra: &[&str]| {
        let mut args = vec!["build", "--progress=plain", "-t", tag];
        args.extend_from_slice(extra);
        args.push("reuse");
        let out = ws.run(&args);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "rootless hoist {args:?} failed:\n{log}"
        );
        let reused: Vec<String> = log
            .lines()
            .filter(|l| l.contains(": reused "))
            .map(str::to_owned)
            .collect();
        (ws.inspect(tag)["Id"].as_str().unwrap().to_owned(), reused)
    };
    build("reuse:1", &[]);
    std::fs::write(ctx.join("b"), "file B\n").unwrap();
    let (incremental, reused) = build("reuse:2", &[]);
    assert_eq!(
        reused,
        ["#2 COPY . /app: reused 3 unchanged files of an earlier build"]
    );
    let (scratch, reused) = build("reuse:3", &["--no-cache"]);
    assert_eq!(reused, Vec::<String>::new());
    assert_eq!(incremental, scratch);
    assert_eq!(ws.ok(&["run", "--rm", "reuse:2", "cat", "/b"]), "file B\n");
}

/// `--jobs` rootless (issue 8): as an unprivileged user, two independent
/// stages run at the same time, each in its own rootless sandbox: their
/// RUNs can only finish once both have started (a rendezvous through a
/// shared cache mount, as in the root test; with `--jobs 1` the first
/// RUN gives up with exit 9), and the final stage gets both results.
#[test]
fn r8_rootless_independent_stages_run_at_the_same_time() {
    use crate::parallel::meeting_stages;
    let ws = Workspace::new(rootless_user(), &[]);
    ws.ok(&["import", "busybox.tar", "busybox"]);
    let dir = ws.path().join("meet");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), meeting_stages()).unwrap();
    ws.give(&dir);
    let out = ws.run(&[
        "build",
        "--progress=plain",
        "--jobs",
        "2",
        "-t",
        "met",
        "meet",
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rootless build failed:\n{log}");
    assert!(log.contains("a met b") && log.contains("b met a"), "{log}");
    assert_eq!(ws.ok(&["run", "--rm", "met", "cat", "/a", "/b"]), "a\nb\n");
}
