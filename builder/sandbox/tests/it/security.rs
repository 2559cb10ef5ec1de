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
/// makes on x86_64 (the allow-list of three ABIs, and clone3's ENOSYS;
/// libseccomp makes one), no no_new_privs (as BuildKit's RUN), and
/// /proc/keys, /proc/timer_list, /sys/firmware masked.
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

/// A static i386 program of a few instructions, as a minimal ELF: it
/// writes "i386\n", calls unshare(CLONE_NEWUSER) through `int 0x80` and
/// exits with the errno it got (0 if the call succeeded).
fn i386_unshare_program() -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    const HEADERS: u32 = 52 + 32;
    let msg = b"i386\n";
    let mut code: Vec<u8> = Vec::new();
    let msg_at = BASE + HEADERS + 45;
    code.extend([0xb8, 4, 0, 0, 0]); // mov eax, 4 (write)
    code.extend([0xbb, 1, 0, 0, 0]); // mov ebx, 1
    code.push(0xb9); // mov ecx, msg
    code.extend(msg_at.to_le_bytes());
    code.extend([0xba, msg.len() as u8, 0, 0, 0]); // mov edx, len
    code.extend([0xcd, 0x80]); // int 0x80
    code.extend([0xb8, 0x36, 0x01, 0, 0]); // mov eax, 310 (unshare)
    code.extend([0xbb, 0, 0, 0, 0x10]); // mov ebx, CLONE_NEWUSER
    code.extend([0xcd, 0x80]); // int 0x80
    code.extend([0xf7, 0xd8]); // neg eax
    code.extend([0x89, 0xc3]); // mov ebx, eax
    code.extend([0xb8, 1, 0, 0, 0]); // mov eax, 1 (exit)
    code.extend([0xcd, 0x80]); // int 0x80
    assert_eq!(code.len(), 45);
    code.extend(msg);
    let size = HEADERS + code.len() as u32;
    let mut elf: Vec<u8> = Vec::new();
    elf.extend([0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(3u16.to_le_bytes()); // EM_386
    elf.extend(1u32.to_le_bytes()); // EV_CURRENT
    elf.extend((BASE + HEADERS).to_le_bytes()); // entry
    elf.extend(52u32.to_le_bytes()); // phoff
    elf.extend(0u32.to_le_bytes()); // shoff
    elf.extend(0u32.to_le_bytes()); // flags
    elf.extend(52u16.to_le_bytes()); // ehsize
    elf.extend(32u16.to_le_bytes()); // phentsize
    elf.extend(1u16.to_le_bytes()); // phnum
    elf.extend([0, 0, 0, 0, 0, 0]); // shentsize, shnum, shstrndx
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(0u32.to_le_bytes()); // offset
    elf.extend(BASE.to_le_bytes()); // vaddr
    elf.extend(BASE.to_le_bytes()); // paddr
    elf.extend(size.to_le_bytes()); // filesz
    elf.extend(size.to_le_bytes()); // memsz
    elf.extend(5u32.to_le_bytes()); // PF_R | PF_X
    elf.extend(0x1000u32.to_le_bytes()); // align
    assert_eq!(elf.len() as u32, HEADERS);
    elf.extend(code);
    elf
}

/// `testdata/elf/i386-unshare` is this program (the cli's RUN tests use
/// the file); `UPDATE_GOLDEN=1` rewrites it.
#[test]
fn r11_i386_fixture_is_the_generated_program() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/elf/i386-unshare");
    let program = i386_unshare_program();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &program).unwrap();
    }
    let fixture = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        fixture == program,
        "{} differs from the generator",
        path.display()
    );
}

/// Docker's profile covers the i386 ABI too (its `archMap`): a 32-bit
/// program runs under the default filter, its write is allowed, and its
/// unshare gets EPERM, where a native-only filter killed it with SIGSYS
/// (exit 159). Without the kernel's IA32 emulation the exec fails, and so
/// does this test.
#[cfg(target_arch = "x86_64")]
#[test]
fn r11_i386_program_runs_and_its_unshare_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("i386-unshare");
    std::fs::write(&program, i386_unshare_program()).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let with = |security: Security| {
        let mut spec = ephemeral(sh("/i386-unshare; echo rc=$?"));
        spec.mounts.push(Mount {
            target: "/i386-unshare".into(),
            kind: MountKind::Bind {
                source: program.clone(),
                read_only: true,
            },
        });
        spec.security = security;
        run(&spec)
    };
    let (code, out, err) = with(Security::default());
    assert_eq!((code, out.as_str()), (0, "i386\nrc=1\n"), "EPERM; {err}");
    let unconfined = Security {
        seccomp: None,
        ..Security::default()
    };
    let (code, out, err) = with(unconfined);
    assert_eq!(
        (code, out.as_str()),
        (0, "i386\nrc=0\n"),
        "the program's unshare works without a filter; {err}"
    );
}
