//! The real sandbox in real namespaces. These tests need root, overlayfs,
//! static busybox and setpriv; they fail (never skip) without them.

// Helpers outside #[test] functions panic on failure too: that is the point.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hoist_sandbox::{
    CollectIo, EtcFiles, IdMapping, Mount, MountKind, NamespaceSandbox, Network, Rootfs, RunSpec,
    Sandbox, SandboxError, User,
};
use tempfile::TempDir;

const BUSYBOX: &str = "/usr/bin/busybox";

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "sandbox tests must run as root"
    );
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap();
    assert!(
        fs.contains("\toverlay\n"),
        "sandbox tests need overlayfs in /proc/filesystems"
    );
}

/// A minimal busybox root: bin/busybox, one symlink per applet, passwd and
/// group, and the empty /proc, /dev and /sys that real images carry. Built once per user (the rootless tests need one they own) and
/// shared read-only as a lowerdir; parallel test processes race to an
/// atomic rename.
fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let uid = rustix::process::geteuid().as_raw();
        let base = if uid == 0 {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!("hoist-busybox-rootfs-v2-{uid}"));
        if path.join("etc/group").exists() {
            return path;
        }
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("busybox-")
            .tempdir_in(&base)
            .unwrap();
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["bin", "etc", "tmp", "root", "proc", "dev", "sys"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("static busybox is required");
        let list = Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .expect("busybox --list");
        assert!(list.status.success(), "busybox --list failed");
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
            }
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        // Written last: its presence marks a complete root.
        std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        let built = dir.keep();
        if std::fs::rename(&built, &path).is_err() {
            // Another test process won the race; its root is complete.
            std::fs::remove_dir_all(&built).unwrap();
        }
        path
    })
}

/// An overlay rootfs on the busybox base with a fresh upper/work pair.
struct Layer {
    dir: TempDir,
}

impl Drop for Layer {
    fn drop(&mut self) {
        // As a rootless user the workdir cannot be removed as overlayfs left it.
        let _ = hoist_sandbox::remove_workdir(&self.dir.path().join("work"));
    }
}

impl Layer {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("upper")).unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Self { dir }
    }
    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    fn rootfs(&self) -> Rootfs {
        Rootfs::Overlay {
            lowerdirs: vec![busybox_rootfs().to_owned()],
            upperdir: self.upper(),
            workdir: self.dir.path().join("work"),
        }
    }
}

pub(crate) fn sandbox() -> (NamespaceSandbox, TempDir) {
    require_root();
    let state = tempfile::tempdir().unwrap();
    (NamespaceSandbox::new(state.path()).unwrap(), state)
}

pub(crate) fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Runs `args` on a throwaway root; returns (exit code, stdout, stderr).
pub(crate) fn run(spec: &RunSpec) -> (i32, String, String) {
    let (sb, _state) = sandbox();
    let mut io = CollectIo::new();
    let status = sb
        .run(spec, &mut io)
        .unwrap_or_else(|e| panic!("run {:?}: {e}", spec.args));
    (
        status.code().unwrap_or(-1),
        io.stdout_str(),
        io.stderr_str(),
    )
}

pub(crate) fn ephemeral(args: Vec<String>) -> RunSpec {
    RunSpec::new(
        Rootfs::Ephemeral {
            lowerdirs: vec![busybox_rootfs().to_owned()],
            read_only: false,
        },
        args,
    )
}

#[test]
fn echo_output_is_captured() {
    let (code, out, err) = run(&ephemeral(vec!["echo".into(), "hi".into()]));
    assert_eq!((code, out.as_str(), err.as_str()), (0, "hi\n", ""));
    let (_, _, err) = run(&ephemeral(sh("echo oops >&2")));
    assert_eq!(err, "oops\n", "stderr is separate");
}

#[test]
fn exit_codes_propagate() {
    for code in [0, 1, 3, 42, 255] {
        let (got, _, _) = run(&ephemeral(sh(&format!("exit {code}"))));
        assert_eq!(got, code, "case exit {code}");
    }
}

#[test]
fn missing_program_is_an_error() {
    let (sb, _state) = sandbox();
    let err = sb
        .run(
            &ephemeral(vec!["no-such-cmd".into()]),
            &mut CollectIo::new(),
        )
        .unwrap_err();
    assert!(matches!(err, SandboxError::NotFound { .. }), "got {err}");
    assert_eq!(
        err.to_string(),
        "exec: \"no-such-cmd\": executable file not found in $PATH"
    );
}

#[test]
fn a_missing_interpreter_is_not_a_missing_program() {
    let layer = Layer::new();
    std::fs::write(layer.upper().join("script"), "#!/no/such/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        layer.upper().join("script"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let (sb, _state) = sandbox();
    let err = sb
        .run(
            &RunSpec::new(layer.rootfs(), vec!["/script".into()]),
            &mut CollectIo::new(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "exec: \"/script\": No such file or directory (os error 2)"
    );
}

#[test]
fn argv0_is_looked_up_in_the_spec_path() {
    let mut spec = ephemeral(vec!["busybox".into(), "true".into()]);
    spec.env = vec!["PATH=/nonexistent:/bin".into()];
    assert_eq!(run(&spec).0, 0);
    spec.env = vec!["PATH=/nonexistent".into()];
    let (sb, _state) = sandbox();
    let err = sb.run(&spec, &mut CollectIo::new()).unwrap_err();
    assert!(matches!(err, SandboxError::NotFound { .. }), "got {err}");
}

#[test]
fn env_and_stdin_reach_the_process() {
    let mut spec = ephemeral(sh("echo $FOO; cat"));
    spec.env.push("FOO=bar baz".into());
    let (sb, _state) = sandbox();
    let mut io = CollectIo {
        stdin: Some(b"from stdin\n".to_vec()),
        ..CollectIo::new()
    };
    let status = sb.run(&spec, &mut io).unwrap();
    assert!(status.success());
    assert_eq!(io.stdout_str(), "bar baz\nfrom stdin\n");
}

#[test]
fn writes_land_in_upperdir_but_etc_mounts_do_not() {
    let layer = Layer::new();
    let mut spec = RunSpec::new(
        layer.rootfs(),
        sh(
            "echo data > /newfile && mkdir -p /a/b && cat /etc/hosts /etc/hostname && \
         grep -c nameserver /etc/resolv.conf >/dev/null; echo x >> /etc/hosts || echo ro",
        ),
    );
    spec.hostname = "box".into();
    spec.etc = EtcFiles::generated("box", Network::Host);
    let (code, out, _) = run(&spec);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("localhost box"), "generated hosts: {out}");
    assert!(out.contains("box\n"), "generated hostname: {out}");
    assert!(
        out.ends_with("ro\n"),
        "/etc/hosts is read-only as in BuildKit: {out}"
    );
    let upper = layer.upper();
    assert_eq!(
        std::fs::read_to_string(upper.join("newfile")).unwrap(),
        "data\n"
    );
    assert!(upper.join("a/b").is_dir());
    for stub in ["etc/hosts", "etc/resolv.conf", "etc/hostname"] {
        assert!(
            !upper.join(stub).exists(),
            "{stub} mount stub must not be in the upperdir"
        );
    }
    let etc = upper.join("etc");
    assert!(
        !etc.exists() || std::fs::read_dir(&etc).unwrap().next().is_none(),
        "etc holds no stubs"
    );
}

#[test]
fn a_dangling_resolv_conf_link_is_left_alone() {
    let layer = Layer::new();
    std::fs::create_dir(layer.upper().join("etc")).unwrap();
    std::os::unix::fs::symlink(
        "../run/resolve/stub.conf",
        layer.upper().join("etc/resolv.conf"),
    )
    .unwrap();
    let (code, out, err) = run(&RunSpec::new(
        layer.rootfs(),
        sh("readlink /etc/resolv.conf; grep -c localhost /etc/hosts"),
    ));
    assert_eq!(
        (code, out.as_str()),
        (0, "../run/resolve/stub.conf\n2\n"),
        "{err}"
    );
    assert!(
        !layer.upper().join("run").exists(),
        "nothing created behind the link"
    );
}

#[test]
fn deleting_a_lower_file_leaves_a_whiteout() {
    let layer = Layer::new();
    let (code, _, err) = run(&RunSpec::new(
        layer.rootfs(),
        sh("rm /etc/group && rm -r /root"),
    ));
    assert_eq!(code, 0, "{err}");
    for gone in ["etc/group", "root"] {
        let meta = std::fs::symlink_metadata(layer.upper().join(gone)).unwrap();
        assert!(
            meta.file_type().is_char_device() && meta.rdev() == 0,
            "{gone} is a 0/0 whiteout"
        );
    }
    assert!(
        busybox_rootfs().join("etc/group").exists(),
        "the lowerdir is untouched"
    );
}

#[test]
fn the_command_is_pid_1_and_sees_only_its_processes() {
    let (code, out, err) = run(&ephemeral(sh(
        "echo $$; ls /proc | grep -E '^[0-9]+$' | wc -l; ps -o pid,comm",
    )));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "the shell is PID 1");
    let count: usize = lines[1].trim().parse().unwrap();
    assert!(count <= 4, "only sh, ls, grep, wc exist: {out}");
    assert!(
        !out.contains("cargo") && !out.contains("systemd"),
        "no host processes: {out}"
    );
}

#[test]
fn hostname_is_set() {
    let mut spec = ephemeral(vec!["hostname".into()]);
    spec.hostname = "hoist-test".into();
    assert_eq!(run(&spec).1, "hoist-test\n");
    let (_, out, _) = run(&ephemeral(vec!["hostname".into()]));
    assert_eq!(out, "buildkitsandbox\n", "BuildKit's default");
}

#[test]
fn network_none_has_only_loopback_up() {
    let mut spec = ephemeral(sh("ls /sys/class/net; ip -o link show lo"));
    spec.network = Network::None;
    let (code, out, err) = run(&spec);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("lo"), "only lo: {out}");
    let lo = lines.next().unwrap_or_default();
    assert!(lo.contains("UP"), "lo is up: {out}");
    assert!(!out.contains("eth") && !out.contains("ens"), "{out}");
}

#[test]
fn only_fds_0_1_2_are_open() {
    let _leak = std::fs::File::open("/etc/hostname").unwrap();
    let script = "ls /proc/$$/fd; for n in 3 4 5 6 7 8 9 10 11 12 20; do \
                  (cd /proc/self/fd/$n 2>/dev/null) && echo leaked $n; done; \
                  cd /proc/self/fd/3 || echo cd-failed";
    let (_, out, _) = run(&ephemeral(sh(script)));
    let fds: Vec<&str> = out
        .lines()
        .take_while(|l| l.parse::<u32>().is_ok())
        .collect();
    assert_eq!(fds, ["0", "1", "2"], "{out}");
    assert!(!out.contains("leaked"), "{out}");
    assert!(out.contains("cd-failed"), "{out}");
}

#[test]
fn user_groups_and_cwd_are_applied() {
    let layer = Layer::new();
    let mut spec = RunSpec::new(layer.rootfs(), sh("id -u; id -g; id -G; pwd; touch f"));
    spec.user = User {
        uid: 1000,
        gid: 1001,
        additional_gids: vec![10, 20],
    };
    spec.cwd = "/home/me/work".into();
    let (code, out, err) = run(&spec);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1000", "1001"], "{out}");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(groups.contains(&"10") && groups.contains(&"20"), "{out}");
    assert!(!groups.contains(&"0"), "root's group is dropped: {out}");
    assert_eq!(lines[3], "/home/me/work");
    let meta = std::fs::metadata(layer.upper().join("home/me/work/f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    let dir = std::fs::metadata(layer.upper().join("home/me")).unwrap();
    assert_eq!(
        (dir.uid(), dir.gid()),
        (1000, 1001),
        "the created cwd belongs to the user"
    );
}

#[test]
fn root_has_dockers_capabilities_only() {
    let (_, out, _) = run(&ephemeral(sh(
        "grep CapEff /proc/self/status; mount -t tmpfs x /mnt 2>&1 || echo denied",
    )));
    assert!(
        out.contains("CapEff:\t00000000a80425fb"),
        "Docker's default set: {out}"
    );
    assert!(out.contains("denied"), "no CAP_SYS_ADMIN: {out}");
}

#[test]
fn signals_start_at_their_defaults() {
    // The builder (Rust) ignores SIGPIPE; the command must not inherit that.
    let args = ["grep", "-E", "Sig(Ign|Blk)", "/proc/self/status"];
    let (_, out, _) = run(&ephemeral(args.map(String::from).to_vec()));
    assert_eq!(
        out,
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
}

#[test]
fn dev_proc_and_sys_are_minimal() {
    let (code, out, err) = run(&ephemeral(sh(
        "ls /dev; echo ---; readlink /dev/fd; readlink /dev/ptmx; echo x > /dev/null; head -c 4 /dev/zero | wc -c; \
         echo 1 > /proc/sys/kernel/hostname 2>/dev/null || echo proc-ro; touch /sys/x 2>/dev/null || echo sys-ro",
    )));
    assert_eq!(code, 0, "{err}");
    let (dev, rest) = out.split_once("---\n").unwrap();
    let dev: Vec<&str> = dev.split_whitespace().collect();
    for want in [
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ] {
        assert!(dev.contains(&want), "/dev/{want} missing: {dev:?}");
    }
    assert!(
        !dev.contains(&"sda") && !dev.contains(&"vda") && !dev.contains(&"kmsg"),
        "no host devices: {dev:?}"
    );
    assert!(rest.starts_with("/proc/self/fd\npts/ptmx\n4\n"), "{rest}");
    assert!(
        rest.contains("proc-ro") && rest.contains("sys-ro"),
        "{rest}"
    );
}

#[test]
fn read_only_rootfs_is_never_modified() {
    let (code, out, _) = run(&RunSpec::new(
        Rootfs::read_only(busybox_rootfs()),
        sh("touch /x 2>&1 || echo ro; cat /etc/hosts"),
    ));
    assert_eq!(code, 0);
    assert!(out.contains("ro\n") && out.contains("localhost"), "{out}");
    assert!(!busybox_rootfs().join("x").exists());
}

#[test]
fn extra_mounts_and_their_stubs() {
    let layer = Layer::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "shared\n").unwrap();
    let mut spec = RunSpec::new(
        layer.rootfs(),
        sh(
            "cat /mnt/src/in.txt; touch /mnt/src/y 2>/dev/null || echo bind-ro; \
         echo t > /cache/t && ls /cache; echo w > /rw/out",
        ),
    );
    let rw = tempfile::tempdir().unwrap();
    spec.mounts = vec![
        Mount {
            target: "/mnt/src".into(),
            kind: MountKind::Bind {
                source: host.path().into(),
                read_only: true,
            },
        },
        Mount {
            target: "/cache".into(),
            kind: MountKind::Tmpfs {
                size_bytes: Some(1 << 20),
                mode: 0o755,
            },
        },
        Mount {
            target: "/rw".into(),
            kind: MountKind::Bind {
                source: rw.path().into(),
                read_only: false,
            },
        },
    ];
    let (code, out, err) = run(&spec);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "shared\nbind-ro\nt\n");
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).unwrap(),
        "w\n"
    );
    for stub in ["mnt", "cache", "rw"] {
        assert!(
            !layer.upper().join(stub).exists(),
            "mount stub {stub} removed from the upperdir"
        );
    }
}

/// The cancelled run's sleep: a length no other test (or other program
/// on a shared machine) uses, so that a process found is the run's.
const CANCELLED_SLEEP: &str = "sleep 424240";

fn sandbox_pids_and_mounts(state: &Path) -> (Vec<String>, Vec<String>) {
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(CANCELLED_SLEEP) {
                procs.push(cmd);
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let s = state.to_string_lossy();
    let ours = mounts
        .lines()
        .filter(|l| l.contains(&*s) || l.contains("hoist-busybox-rootfs"))
        .map(String::from)
        .collect();
    (procs, mounts_or(ours))
}

fn mounts_or(v: Vec<String>) -> Vec<String> {
    v
}

#[test]
fn cancel_kills_the_run_and_leaves_nothing() {
    let (sb, state) = sandbox();
    let handle = sb.cancel_handle();
    // Cancels once both sleeps run, so that the cancel has processes to
    // kill; the deadline only guards against a run that never starts.
    let canceller = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let running = || processes_running(CANCELLED_SLEEP).len() >= 2;
        while !running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = running();
        handle.cancel();
        started
    });
    let script = format!("{CANCELLED_SLEEP} & {CANCELLED_SLEEP}");
    let r = sb.run(&ephemeral(sh(&script)), &mut CollectIo::new());
    let started = canceller.join().unwrap();
    assert!(started, "the run's command never started");
    // The run sleeps for days: that it returned at all, cancelled, shows
    // the cancel cut it short (no wall-clock bound on a noisy machine).
    assert!(matches!(r, Err(SandboxError::Cancelled)), "got {r:?}");
    let (procs, mounts) = sandbox_pids_and_mounts(state.path());
    assert!(procs.is_empty(), "leftover processes: {procs:?}");
    assert!(mounts.is_empty(), "leftover mounts: {mounts:?}");
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "temp dirs removed"
    );
    let again = sb.run(&ephemeral(vec!["true".into()]), &mut CollectIo::new());
    assert!(
        matches!(again, Err(SandboxError::Cancelled)),
        "cancel is final"
    );
}

fn processes_running(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Starts `sandbox::sleeping_builder` in a process of its own and waits
/// until its sandbox runs.
fn start_sleeping_builder(mode: &str) -> (std::process::Child, TempDir) {
    require_root();
    let exe = std::env::current_exe().unwrap();
    // Its temp dirs live in ours: a SIGKILLed builder cannot remove them.
    let scratch = tempfile::tempdir().unwrap();
    let builder = Command::new(exe)
        .args([
            "--exact",
            "sandbox::sleeping_builder",
            "--ignored",
            "--nocapture",
        ])
        .env("HOIST_TEST_SLEEPER", mode)
        .env("TMPDIR", scratch.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_running(&format!("sleep 4242{mode}")).is_empty() {
        assert!(Instant::now() < deadline, "the sandbox never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    (builder, scratch)
}

fn assert_sandbox_gone(mode: &str) {
    let needle = format!("sleep 4242{mode}");
    // The kernel kills the sandbox asynchronously; the deadline only
    // guards against one that is never killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_running(&needle).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            processes_running(&needle)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_sandbox_dies_with_a_killed_builder() {
    let (mut builder, _scratch) = start_sleeping_builder("1");
    builder.kill().unwrap(); // SIGKILL: no handler, no cleanup code runs
    builder.wait().unwrap();
    assert_sandbox_gone("1");
}

#[test]
fn sigterm_cancels_the_run() {
    let (builder, _scratch) = start_sleeping_builder("2");
    let pid = rustix::process::Pid::from_raw(builder.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = builder.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "builder failed: {stdout}");
    // The run sleeps for hours: that it returned at all, cancelled, shows
    // the signal cut it short (no wall-clock bound on a noisy machine).
    assert!(stdout.contains("RESULT cancelled"), "{stdout}");
    assert_sandbox_gone("2");
}

/// Not a test of its own: a builder that the tests above kill mid-run.
#[test]
#[ignore = "run by the_sandbox_dies_with_a_killed_builder and sigterm_cancels_the_run"]
fn sleeping_builder() {
    let mode = std::env::var("HOIST_TEST_SLEEPER").expect("run by the tests above");
    let (sb, _state) = sandbox();
    if mode == "2" {
        hoist_sandbox::cancel_on_interrupt(sb.cancel_handle());
    }
    // `sleep 42421`, `sleep 42422`: a long sleep each test can tell apart.
    let script = format!("sleep 4242{mode} & sleep 4242{mode}");
    let r = sb.run(&ephemeral(sh(&script)), &mut CollectIo::new());
    let result = match r {
        Err(SandboxError::Cancelled) => "cancelled".to_owned(),
        other => format!("{other:?}"),
    };
    println!("RESULT {result}");
}

#[test]
fn builder_mounts_nothing_in_its_namespace() {
    let (sb, state) = sandbox();
    let before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let status = sb
        .run(&ephemeral(vec!["true".into()]), &mut CollectIo::new())
        .unwrap();
    assert!(status.success());
    let (_, mounts) = sandbox_pids_and_mounts(state.path());
    assert!(mounts.is_empty(), "{mounts:?}");
    let after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert!(
        after <= before + 2,
        "mount count grew from {before} to {after}"
    );
}

#[test]
fn the_builder_keeps_no_descriptors() {
    let (sb, _state) = sandbox();
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // Warm up lazily opened descriptors, then compare.
    sb.run(&ephemeral(vec!["true".into()]), &mut CollectIo::new())
        .unwrap();
    let before = count();
    for _ in 0..10 {
        sb.run(&ephemeral(sh("echo x; exit 1")), &mut CollectIo::new())
            .unwrap();
        let _ = sb.run(&ephemeral(vec!["missing".into()]), &mut CollectIo::new());
    }
    // Other tests run in parallel threads of this process: allow their few.
    assert!(
        count() <= before + 8,
        "descriptors grew from {before} to {}",
        count()
    );
}

#[test]
fn mount_overlay_helper_merges_and_unmounts() {
    require_root();
    let layer = Layer::new();
    let target = tempfile::tempdir().unwrap();
    let guard = hoist_sandbox::mount_overlay(
        &[busybox_rootfs().to_owned()],
        &layer.upper(),
        &layer.dir.path().join("work"),
        target.path(),
    )
    .unwrap();
    assert!(target.path().join("bin/busybox").exists(), "lower visible");
    std::fs::write(target.path().join("copied"), "c").unwrap();
    drop(guard);
    assert!(!target.path().join("bin").exists(), "unmounted on drop");
    assert!(
        layer.upper().join("copied").exists(),
        "writes reach the upperdir"
    );
}

#[test]
fn deep_layer_stacks_use_the_mount_api() {
    let (sb, _state) = sandbox();
    let base = tempfile::tempdir().unwrap();
    // 60 layers with long paths: more than one page of mount options.
    let mut lowers = Vec::new();
    for i in 0..60 {
        let d = base.path().join(format!("{i:0>64}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), "").unwrap();
        lowers.push(d);
    }
    lowers.push(busybox_rootfs().to_owned());
    let spec = RunSpec::new(
        Rootfs::Ephemeral {
            lowerdirs: lowers,
            read_only: false,
        },
        sh("ls / | grep -c '^f'"),
    );
    let mut io = CollectIo::new();
    let status = sb.run(&spec, &mut io).unwrap();
    assert!(status.success(), "{}", io.stderr_str());
    assert_eq!(io.stdout_str(), "60\n");
}

/// Runs `sandbox::rootless_child` in this same test binary as nobody.
fn run_rootless_child(mode: &str) -> String {
    require_root();
    // Made by root so that root removes it, subordinate-owned files included.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(exe)
        .args([
            "--exact",
            "sandbox::rootless_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOIST_TEST_IDMAP", mode)
        .env("TMPDIR", scratch.path())
        .output()
        .expect("setpriv is required for the rootless test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rootless child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn rootless_single_id_mapping() {
    let out = run_rootless_child("single");
    assert!(out.contains("ROOTLESS-OK uid=0"), "{out}");
}

#[test]
fn rootless_with_subordinate_ids() {
    // newuidmap reads the ranges from /etc/subuid and /etc/subgid;
    // scripts/test's set-up gives nobody one (tests do not change the host).
    for file in ["/etc/subuid", "/etc/subgid"] {
        let cur = std::fs::read_to_string(file).unwrap_or_default();
        assert!(
            cur.lines().any(|l| l == "nobody:200000:65536"),
            "{file} has no nobody:200000:65536 range: run scripts/test (its set-up adds it)"
        );
    }
    let out = run_rootless_child("auto");
    assert!(out.contains("ROOTLESS-OK uid=1000"), "{out}");
}

/// Not a test of its own: the body of the rootless tests, run as nobody.
#[test]
#[ignore = "run by rootless_* as an unprivileged user"]
fn rootless_child() {
    // The lowerdir belongs to the rootless user, as a rootless store's
    // snapshots do: files of unmapped owners cannot be copied up.
    let mode = std::env::var("HOIST_TEST_IDMAP").expect("run by rootless_*");
    let rootfs = busybox_rootfs().to_owned();
    assert!(
        !rustix::process::geteuid().is_root(),
        "must run unprivileged"
    );
    let layer = Layer::new();
    let state = tempfile::tempdir().unwrap();
    let sb = NamespaceSandbox::new(state.path()).unwrap();
    let rootfs = Rootfs::Overlay {
        lowerdirs: vec![rootfs],
        upperdir: layer.upper(),
        workdir: layer.dir.path().join("work"),
    };
    let mut spec = RunSpec::new(rootfs, Vec::new());
    if mode == "single" {
        spec.rootless = Some(IdMapping::SingleId);
        spec.args = sh("id -u; echo data > /new; rm /etc/group; cat /etc/hosts >/dev/null")
            .into_iter()
            .map(Into::into)
            .collect();
    } else {
        spec.rootless = Some(IdMapping::Auto);
        spec.user = User {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![1000, 10],
        };
        spec.cwd = "/tmp/w".into();
        spec.args = sh("id -u; id -G >&2; echo data > new")
            .into_iter()
            .map(Into::into)
            .collect();
    }
    let mut io = CollectIo::new();
    let status = sb
        .run(&spec, &mut io)
        .unwrap_or_else(|e| panic!("rootless run: {e}"));
    assert!(status.success(), "{}", io.stderr_str());
    let uid = io.stdout_str().trim().to_owned();
    let upper = layer.upper();
    assert!(!upper.join("etc/hosts").exists(), "no /etc/hosts stub");
    if mode == "single" {
        assert_eq!(
            std::fs::read_to_string(upper.join("new")).unwrap(),
            "data\n"
        );
        let wh = std::fs::symlink_metadata(upper.join("etc/group")).unwrap();
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "whiteout in rootless upper"
        );
    } else {
        assert_eq!(io.stderr_str(), "1000 10\n", "groups");
        let meta = std::fs::metadata(upper.join("tmp/w/new")).unwrap();
        // uid 1000 inside = subordinate id 200000 + 999 outside.
        assert_eq!(
            (meta.uid(), meta.gid()),
            (200_999, 200_999),
            "owner through the subuid range"
        );
    }
    // A throwaway root (tmpfs upper with user xattrs) in a new network
    // namespace (a fresh sysfs owned by the user namespace).
    let mut spec = ephemeral(sh("touch /x && ls /sys/class/net && hostname"));
    spec.rootless = Some(IdMapping::SingleId);
    spec.network = Network::None;
    let mut io = CollectIo::new();
    let status = sb
        .run(&spec, &mut io)
        .unwrap_or_else(|e| panic!("rootless ephemeral: {e}"));
    assert!(status.success(), "{}", io.stderr_str());
    assert_eq!(io.stdout_str(), "lo\nbuildkitsandbox\n");
    // Rootless runs get Docker's seccomp profile too (issue 11).
    let mut spec = ephemeral(sh("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; \
         unshare -U true 2>/dev/null && echo unshared || echo refused"));
    spec.rootless = Some(IdMapping::SingleId);
    let mut io = CollectIo::new();
    let status = sb
        .run(&spec, &mut io)
        .unwrap_or_else(|e| panic!("rootless seccomp: {e}"));
    assert!(status.success(), "{}", io.stderr_str());
    assert_eq!(io.stdout_str(), "NoNewPrivs:\t0\nSeccomp:\t2\nrefused\n");
    println!("ROOTLESS-OK uid={uid}");
}

/// Many runs in a row leave nothing behind: no process, no mount, no file
/// in the state dir, no cgroup. (Counts, not times: the machine is noisy;
/// the medians are printed for information, and bench/ measures speed.)
#[test]
fn many_runs_leave_nothing_behind() {
    let (sb, state) = sandbox();
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    // hoist run: a throwaway upper on the run's tmpfs.
    let spec = ephemeral(vec!["true".into()]);
    let mut times = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let status = sb.run(&spec, &mut CollectIo::new()).unwrap();
        times.push(start.elapsed());
        assert!(status.success());
    }
    println!("one run, ephemeral root: median {:?}", median(times));
    // RUN: an upperdir on disk, with /etc stubs created and removed.
    let mut times = Vec::new();
    for _ in 0..50 {
        let layer = Layer::new();
        let spec = RunSpec::new(layer.rootfs(), vec!["true".into()]);
        let start = Instant::now();
        let status = sb.run(&spec, &mut CollectIo::new()).unwrap();
        times.push(start.elapsed());
        assert!(status.success());
        for stub in ["etc/hosts", "etc/resolv.conf", "etc/hostname"] {
            let path = layer.upper().join(stub);
            assert!(!path.exists(), "no stub stays in the layer: {stub}");
        }
    }
    println!("one run, RUN layer: median {:?}", median(times));
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        mounts_before, mounts_after,
        "no mount leaked into the builder"
    );
    let state_left: Vec<_> = std::fs::read_dir(state.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        state_left.is_empty(),
        "nothing left in the state dir: {state_left:?}"
    );
    let own = format!("hoist-{}-", std::process::id());
    let cgroups: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/pids")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&own))
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        cgroups.is_empty(),
        "every run's cgroup is removed: {cgroups:?}"
    );
}

/// A command that is not UTF-8 (a Latin-1 Dockerfile's RUN) reaches the
/// process byte for byte.
#[test]
fn r10_argv_bytes_reach_the_process_unchanged() {
    use std::os::unix::ffi::OsStringExt;
    let mut spec = ephemeral(sh("true"));
    spec.args[2] = std::ffi::OsString::from_vec(b"printf 'caf\xe9' | od -An -tx1".to_vec());
    let (code, out, err) = run(&spec);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["63", "61", "66", "e9"]
    );
}
