//! Seccomp, no_new_privs and capabilities, probed from inside real runs
//! (issue 11). Each probe is a raw syscall made by this test binary itself,
//! run in a sandbox whose root is a read-only view of the host's (so its
//! shared libraries resolve), and reports the errno it got.

// The probe makes raw syscalls: this crate is the one allowed `unsafe`.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

use std::collections::BTreeMap;
use std::sync::Arc;

use hoist_sandbox::{
    CollectIo, Mount, MountKind, Rootfs, RunSpec, Sandbox, SeccompProfile, Security,
};

use crate::sandbox::{ephemeral, run, sandbox, sh};

/// Runs the probes in `which` inside a sandbox with `security`; returns
/// probe name -> result (`ok` or an errno name).
fn probe(security: Security, which: &[&str]) -> BTreeMap<String, String> {
    let exe = std::env::current_exe().unwrap();
    let mut spec = RunSpec::new(
        Rootfs::read_only("/"),
        vec![
            "/probe".into(),
            "--exact".into(),
            "security::syscall_probe".into(),
            "--ignored".into(),
            "--nocapture".into(),
            "--test-threads=1".into(),
        ],
    );
    spec.mounts.push(Mount {
        target: "/probe".into(),
        kind: MountKind::Bind {
            source: exe,
            read_only: true,
        },
    });
    spec.env
        .push(format!("HOIST_PROBES={}", which.join(",")).into());
    spec.env
        .push(format!("HOIST_BUILDER_PID={}", std::process::id()).into());
    spec.security = security;
    let (sb, _state) = sandbox();
    let mut io = CollectIo::new();
    let status = sb.run(&spec, &mut io).unwrap();
    assert!(
        status.success(),
        "probe failed: {}\n{}",
        io.stdout_str(),
        io.stderr_str()
    );
    let got: BTreeMap<String, String> = io
        .stdout_str()
        .lines()
        // libtest's "test ... " may precede the first report on its line.
        .filter_map(|l| l.split_once("PROBE ").map(|(_, r)| r))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(got.len(), which.len(), "every probe reported: {got:?}");
    got
}

fn errno_name(e: i32) -> String {
    match e {
        0 => "ok".into(),
        libc::EPERM => "EPERM".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::ESRCH => "ESRCH".into(),
        libc::EACCES => "EACCES".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::EBADF => "EBADF".into(),
        libc::ENOENT => "ENOENT".into(),
        e => format!("errno{e}"),
    }
}

/// Not a test of its own: the syscalls, made inside the sandbox by
/// `probe`. Arguments are chosen so that a call that passes the filter
/// fails harmlessly or does nothing outside the run's namespaces.
#[test]
#[ignore = "run inside the sandbox by the security tests"]
fn syscall_probe() {
    let which = std::env::var("HOIST_PROBES").expect("run by probe()");
    for name in which.split(',') {
        // Each probe in a forked child: single-threaded (unshare of a user
        // namespace needs that) and unable to change this process.
        // SAFETY: the child only makes the raw syscall and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: a forked child, as probe_one requires.
            let errno = unsafe { probe_one(name) };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(errno) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked, into a local.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(libc::WIFEXITED(status), "probe {name} died: {status:#x}");
        println!("PROBE {name} {}", errno_name(libc::WEXITSTATUS(status)));
    }
}

/// One probe's syscall; 0 or the errno it failed with.
///
/// # Safety
/// Raw syscalls with null or small-integer arguments; none writes through
/// a pointer we pass. Only for a forked child.
unsafe fn probe_one(name: &str) -> i32 {
    {
        // SAFETY: see the function's contract.
        let r = unsafe {
            match name {
                "unshare_user" => libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER),
                "unshare_mount" => libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS),
                "clone_newuser" => libc::syscall(
                    libc::SYS_clone,
                    (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                ),
                "clone3" => libc::syscall(libc::SYS_clone3, 0usize, 0usize),
                "mount" => libc::syscall(
                    libc::SYS_mount,
                    c"none".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0usize,
                    0usize,
                ),
                "keyctl" => libc::syscall(
                    libc::SYS_keyctl,
                    0usize, /* GET_KEYRING_ID */
                    -1i64,
                    0usize,
                ),
                "add_key" => {
                    libc::syscall(libc::SYS_add_key, 0usize, 0usize, 0usize, 0usize, 0usize)
                }
                "bpf" => libc::syscall(libc::SYS_bpf, 0usize, 0usize, 0usize),
                "open_by_handle_at" => {
                    libc::syscall(libc::SYS_open_by_handle_at, -1i32, 0usize, 0usize)
                }
                "socket_vsock" => {
                    libc::syscall(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0)
                }
                "socket_inet" => {
                    libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_DGRAM, 0)
                }
                "personality_exec" => libc::syscall(libc::SYS_personality, 0x0400000usize),
                "kexec_load" => libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, 0usize, 0usize),
                "ptrace_builder" => {
                    let pid: libc::pid_t = std::env::var("HOIST_BUILDER_PID")
                        .ok()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(-1);
                    libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, pid, 0usize, 0usize)
                }
                other => panic!("unknown probe {other}"),
            }
        };
        if r >= 0 {
            0
        } else {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(255)
        }
    }
}

const ALL: [&str; 14] = [
    "unshare_user",
    "unshare_mount",
    "clone_newuser",
    "clone3",
    "mount",
    "keyctl",
    "add_key",
    "bpf",
    "open_by_handle_at",
    "socket_vsock",
    "socket_inet",
    "personality_exec",
    "kexec_load",
    "ptrace_builder",
];

/// Docker's default profile, as `docker run` gives it: user namespaces
/// (the first step of many kernel exploits), mount, the keyring, bpf,
/// `open_by_handle_at` (the "shocker" breakout), vsock and kexec refused;
/// clone3 says ENOSYS so libcs fall back to clone.
#[test]
fn r11_default_seccomp_profile_refuses_what_dockers_refuses() {
    let got = probe(Security::default(), &ALL);
    let want: BTreeMap<String, String> = [
        ("unshare_user", "EPERM"),
        ("unshare_mount", "EPERM"),
        ("clone_newuser", "EPERM"),
        ("clone3", "ENOSYS"),
        ("mount", "EPERM"),
        ("keyctl", "EPERM"),
        ("add_key", "EPERM"),
        ("bpf", "EPERM"),
        ("open_by_handle_at", "EPERM"),
        ("socket_vsock", "EPERM"),
        ("socket_inet", "ok"),
        ("personality_exec", "EPERM"),
        ("kexec_load", "EPERM"),
        // ptrace is allowed (kernel >= 4.8), but the builder's pid names
        // nothing in the run's PID namespace.
        ("ptrace_builder", "ESRCH"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(got, want);
}

/// Without the filter (`--security-opt seccomp=unconfined`) a user
/// namespace can be made: the filter, not the capabilities, refuses it.
#[test]
fn r11_seccomp_unconfined_turns_the_filter_off() {
    let security = Security {
        seccomp: None,
        ..Security::default()
    };
    let got = probe(security, &["unshare_user", "keyctl", "mount"]);
    assert_eq!(got["unshare_user"], "ok", "{got:?}");
    assert_ne!(got["keyctl"], "EPERM", "{got:?}");
    assert_eq!(got["mount"], "EPERM", "still no CAP_SYS_ADMIN: {got:?}");
}

/// A custom Docker-format profile replaces the default one.
#[test]
fn r11_custom_seccomp_profile_is_applied() {
    let profile = SeccompProfile::from_json(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let security = Security {
        seccomp: Some(Arc::new(profile)),
        ..Security::default()
    };
    let got = probe(security, &["socket_inet", "unshare_user"]);
    assert_eq!(got["socket_inet"], "EACCES", "{got:?}");
    assert_eq!(got["unshare_user"], "ok", "{got:?}");
}

/// `RUN --security=insecure`: every capability, no filter, nothing masked.
#[test]
fn r11_insecure_gets_every_capability_and_no_filter() {
    let security = Security {
        insecure: true,
        ..Security::default()
    };
    let got = probe(security.clone(), &["unshare_mount", "mount", "clone3"]);
    assert_eq!(got["unshare_mount"], "ok", "{got:?}");
    assert_eq!(got["mount"], "ok", "{got:?}");
    // Every device may be opened: no device rules in insecure mode
    // (/dev/kmsg, c 1:11, is outside Docker's default set).
    let mut spec = ephemeral(sh("grep -E '^(CapEff|Seccomp):' /proc/self/status; \
         cat /proc/keys >/dev/null && echo keys-visible; \
         mknod /dev/k c 1 11 && (exec 3< /dev/k) && echo kmsg-opened"));
    spec.security = security;
    let (code, out, err) = run(&spec);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(!out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.ends_with("keys-visible\nkmsg-opened\n"), "{out}");
}

/// The default run: filter mode 2 with the two filters Docker's profile
/// makes here (allow-list, clone3's ENOSYS; libseccomp makes one), no
/// no_new_privs (as BuildKit's RUN), and /proc/keys, /proc/timer_list,
/// /sys/firmware masked.
#[test]
fn r11_default_run_shows_seccomp_and_masks_in_proc() {
    let (code, out, err) = run(&ephemeral(sh(
        "grep -E '^(NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; \
         wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; \
         ls -A /proc/acpi 2>/dev/null | wc -l",
    )));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "NoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t2\n0\n0\n0\n0\n"
    );
}

/// `--security-opt no-new-privileges`: the flag is set, and the filter is
/// loaded after it, as late as possible.
#[test]
fn r11_no_new_privileges_sets_the_flag_and_keeps_the_filter() {
    let mut spec = ephemeral(sh("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; \
         unshare -U true 2>/dev/null || echo refused"));
    spec.security.no_new_privs = true;
    let (code, out, err) = run(&spec);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "NoNewPrivs:\t1\nSeccomp:\t2\nrefused\n");
}
