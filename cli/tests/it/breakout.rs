//! A RUN must not reach the host, the builder or another build (issue 11).
//! Each attack runs in a real build on the busybox base; afterwards the
//! store must pass `hoist fsck` and build again.

use crate::common::{Hoist, dockerfile_context};

/// Builds `dockerfile` (which must succeed: each attack reports what it
/// got), returns the image's `/out` file, then checks the store.
fn build_and_read(hoist: &Hoist, dockerfile: &str, extra: &[&str]) -> String {
    let ctx = dockerfile_context(dockerfile);
    let mut args = vec!["-t", "probe:latest"];
    args.extend_from_slice(extra);
    hoist.build(ctx.path(), &args);
    let out = hoist.exec("probe:latest", &["cat", "/out"]);
    assert_store_sound(hoist);
    out
}

/// `hoist fsck` passes and a fresh build still works.
fn assert_store_sound(hoist: &Hoist) {
    hoist.ok(&["fsck"]);
    let ctx = dockerfile_context("FROM busybox\nRUN echo again > /again\n");
    hoist.build(ctx.path(), &["--no-cache", "-t", "again:latest"]);
}

/// `unshare -r`/`-U` (user namespaces: the first step of many kernel
/// exploits) and `mount` are refused by Docker's seccomp profile.
#[test]
fn r11_unshare_and_mount_are_refused_in_run() {
    let hoist = Hoist::with_busybox();
    let out = build_and_read(
        &hoist,
        "FROM busybox\n\
         RUN (grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; \
              unshare -r true 2>/dev/null && echo unshare-r-ok || echo unshare-r-refused; \
              unshare -U true 2>/dev/null && echo unshare-U-ok || echo unshare-U-refused; \
              mount -t tmpfs none /mnt 2>/dev/null && echo mount-ok || echo mount-refused) > /out\n",
        &[],
    );
    assert_eq!(
        out,
        "NoNewPrivs:\t0\nSeccomp:\t2\nunshare-r-refused\nunshare-U-refused\nmount-refused\n"
    );
}

/// A static i386 program (`testdata/elf/i386-unshare`) in a RUN: Docker's
/// profile covers that ABI too, so it runs, and its unshare gets EPERM
/// (exit 1) instead of the whole program being killed (exit 159).
#[cfg(target_arch = "x86_64")]
#[test]
fn r11_i386_program_in_run_gets_eperm_for_unshare() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox
COPY i386-unshare /
RUN (/i386-unshare; echo rc=$?) > /out
",
    );
    crate::common::copy_i386_fixture(ctx.path());
    hoist.build(ctx.path(), &["-t", "probe:latest"]);
    assert_eq!(hoist.exec("probe:latest", &["cat", "/out"]), "i386\nrc=1\n");
    assert_store_sound(&hoist);
}

/// `--security-opt seccomp=unconfined` turns the filter off; a profile
/// that cannot be read is an error naming it.
#[test]
fn r11_security_opt_seccomp_unconfined() {
    let hoist = Hoist::with_busybox();
    let out = build_and_read(
        &hoist,
        "FROM busybox\n\
         RUN (grep '^Seccomp:' /proc/self/status; \
              unshare -U true && echo unshare-U-ok) > /out\n",
        &["--security-opt", "seccomp=unconfined"],
    );
    assert_eq!(out, "Seccomp:\t0\nunshare-U-ok\n");
    let ctx = dockerfile_context("FROM busybox\n");
    let err = hoist.fails(&[
        "build",
        "--security-opt",
        "seccomp=/nonexistent/profile.json",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(err.contains("/nonexistent/profile.json"), "{err}");
}

/// CVE-2024-23653: `RUN --security=insecure` without the entitlement is
/// refused with BuildKit's error; with `--allow security.insecure` it gets
/// every capability and no filter.
#[test]
fn r11_cve_2024_23653_insecure_needs_the_entitlement() {
    let hoist = Hoist::with_busybox();
    let dockerfile = "FROM busybox\n\
                      RUN --security=insecure (grep -E '^(CapEff|Seccomp):' /proc/self/status; \
                          mount -t tmpfs none /mnt && echo mount-ok) > /out\n";
    let ctx = dockerfile_context(dockerfile);
    let out = hoist.run(&[
        "build",
        "--progress=plain",
        "-t",
        "probe:latest",
        ctx.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("security.insecure is not allowed"),
        "{stderr}"
    );
    assert_store_sound(&hoist);
    let out = build_and_read(&hoist, dockerfile, &["--allow", "security.insecure"]);
    assert!(out.contains("Seccomp:\t0\n"), "{out}");
    assert!(!out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.ends_with("mount-ok\n"), "{out}");
}

/// CVE-2019-5736: the runtime binary cannot be reached through
/// `/proc/*/exe` (no process of the builder is in the run's PID namespace),
/// the run's own executable cannot be overwritten, and hoist's binary is
/// unchanged afterwards.
#[test]
fn r11_cve_2019_5736_proc_self_exe_reaches_no_runtime() {
    let exe = std::fs::read(env!("CARGO_BIN_EXE_hoist")).unwrap();
    let hoist = Hoist::with_busybox();
    let out = build_and_read(
        &hoist,
        "FROM busybox\n\
         RUN (for p in /proc/[0-9]*; do readlink $p/exe; done | sort -u; \
              (echo x > /proc/self/exe) 2>/dev/null && echo overwritten || echo refused; \
              (echo x > /proc/1/exe) 2>/dev/null && echo overwritten || echo refused) > /out\n",
        &[],
    );
    assert_eq!(out, "/bin/busybox\nrefused\nrefused\n");
    assert!(
        std::fs::read(env!("CARGO_BIN_EXE_hoist")).unwrap() == exe,
        "hoist's binary is unchanged"
    );
}

/// CVE-2024-21626: no descriptor of the builder leaks into a RUN, so
/// `WORKDIR /proc/self/fd/N` names nothing and the step fails cleanly.
#[test]
fn r11_cve_2024_21626_workdir_proc_self_fd_leaks_nothing() {
    let hoist = Hoist::with_busybox();
    let out = build_and_read(
        &hoist,
        "FROM busybox\nRUN ls /proc/self/fd | sort -n | tr '\\n' ' ' > /out\n",
        &[],
    );
    // ls's own directory descriptor is the 3.
    assert_eq!(out, "0 1 2 3 ");
    for n in [3, 4, 5, 7, 8] {
        let ctx = dockerfile_context(&format!(
            "FROM busybox\nWORKDIR /proc/self/fd/{n}\nRUN cd .. && ls -a > /tmp/leak\n"
        ));
        let stderr = hoist.fails(&["build", ctx.path().to_str().unwrap()]);
        assert!(
            stderr.contains(&format!("chdir to /proc/self/fd/{n}")),
            "fd {n}: {stderr}"
        );
    }
    assert_store_sound(&hoist);
}

/// `/proc/1/root`, `/proc/self/cwd` and the mount table lead nowhere
/// outside: PID 1 is the run itself, every process's root is the run's,
/// and no mount propagates to or from the host.
#[test]
fn r11_proc_root_cwd_and_mountinfo_stay_inside() {
    let hoist = Hoist::with_busybox();
    let out = build_and_read(
        &hoist,
        "FROM busybox\n\
         RUN (cat /proc/1/cmdline | tr '\\0' ' '; echo; \
              for p in /proc/[0-9]*; do readlink $p/root; done | sort -u; \
              cmp /proc/1/root/etc/passwd /etc/passwd && echo same-passwd; \
              ls /proc/self/cwd/../../../.. | tr '\\n' ' '; echo; \
              grep -c 'shared:\\|master:' /proc/self/mountinfo || true) > /out\n",
        &[],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("/bin/sh -c"), "{out}");
    assert_eq!(lines[1], "/", "{out}");
    assert_eq!(lines[2], "same-passwd", "{out}");
    assert!(
        lines[3].contains("bin") && lines[3].contains("etc") && !lines[3].contains("work"),
        "{out}"
    );
    assert_eq!(lines[4], "0", "no shared or slave mounts: {out}");
}

/// Device nodes: a block device or /dev/kmsg made with mknod (root keeps
/// CAP_MKNOD, as in Docker) cannot be opened: runc's device rules. (This
/// test machine refuses block-device reads to the builder too; /dev/kmsg
/// is what shows the rules.)
#[test]
fn r11_device_nodes_made_in_run_cannot_be_read() {
    let hoist = Hoist::with_busybox();
    let disk = std::fs::metadata("/").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.dev()
    });
    let (major, minor) = disk.map(|d| (libc_major(d), libc_minor(d))).unwrap();
    let out = build_and_read(
        &hoist,
        &format!(
            "FROM busybox\n\
             RUN (mknod /tmp/disk b {major} {minor} && \
                  (head -c 1 /tmp/disk >/dev/null 2>&1 && echo disk-read || echo disk-refused); \
                  mknod /dev/kmsg c 1 11 && \
                  ((exec 3< /dev/kmsg) 2>/dev/null && echo kmsg-opened || echo kmsg-refused); \
                  rm /tmp/disk; \
                  head -c 1 /dev/zero | wc -c) > /out\n"
        ),
        &[],
    );
    assert_eq!(out, "disk-refused\nkmsg-refused\n1\n");
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// A RUN that fills memory past `--memory` fails with "out of memory",
/// and the store stays sound.
#[test]
fn r11_memory_fill_fails_clearly_with_memory() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\nRUN a=$(head -c 256m /dev/zero | tr '\\0' x); echo survived\n",
    );
    let stderr = hoist.fails(&[
        "build",
        "--memory",
        "32m",
        "--memory-swap",
        "32m",
        ctx.path().to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("out of memory: the run exceeded its memory limit of 33554432 bytes"),
        "{stderr}"
    );
    assert_store_sound(&hoist);
}

/// A fork bomb ends at the pids limit, and the store stays sound.
#[test]
fn r11_fork_bomb_is_stopped_by_the_pids_limit() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\nRUN i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done\n",
    );
    let stderr = hoist.fails(&["build", "--pids-limit", "64", ctx.path().to_str().unwrap()]);
    assert!(stderr.contains("can't fork"), "{stderr}");
    assert_store_sound(&hoist);
}

/// A host directory a hostile RUN aims symlinks at: it holds what a mount
/// stub cleanup would delete (an empty directory and an empty file) and
/// has a known mtime, so any removal or touch through a symlink shows.
struct Victim {
    dir: tempfile::TempDir,
}

impl Victim {
    const MTIME: i64 = 1_000_000_000;

    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hoist-victim-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("hosts"), "").unwrap();
        let t = filetime::FileTime::from_unix_time(Self::MTIME, 0);
        filetime::set_file_times(dir.path(), t, t).unwrap();
        Self { dir }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn assert_untouched(&self, what: &str) {
        let p = self.dir.path();
        assert!(
            p.join("sub").is_dir(),
            "{what}: the host's {p:?}/sub was removed"
        );
        assert!(
            p.join("hosts").is_file(),
            "{what}: the host's {p:?}/hosts was removed"
        );
        let mtime = std::fs::metadata(p).unwrap();
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&mtime).unix_seconds(),
            Self::MTIME,
            "{what}: the host's {p:?} was modified"
        );
    }
}

/// CVE-2024-23652: a RUN moves away the directory its mount target's stub
/// was made in and leaves a symlink to a host directory in its place. The
/// cleanup of mount stubs after the run must stay inside the rootfs: it
/// neither deletes the host directory's empty entries nor touches it.
#[test]
fn r11_cve_2024_23652_stub_cleanup_stays_in_the_root() {
    let hoist = Hoist::with_busybox();
    let victim = Victim::new();
    let out = build_and_read(
        &hoist,
        &format!(
            "FROM busybox\n\
             RUN --mount=type=tmpfs,target=/newdir/sub \
                 mv /newdir /moved && ln -s {v} /newdir && echo moved > /out\n\
             RUN --mount=type=tmpfs,target=/etc2/hosts \
                 mv /etc2 /moved2 && ln -s {v} /etc2 && echo moved >> /out\n",
            v = victim.path()
        ),
        &[],
    );
    assert_eq!(out, "moved\nmoved\n");
    victim.assert_untouched("stub cleanup");
}

/// Build-input attacks (see `hostile.rs`), as root.
#[test]
fn r11_build_input_attacks_fail() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let kit = crate::hostile::Kit::new(dir.path());
    crate::hostile::run_cases(&kit, hoist.root(), &|args| hoist.run(args));
    assert_store_sound(&hoist);
}

/// CVE-2018-15664, a symlink swap during COPY (see
/// `hostile::copy_symlink_swap`), as root.
#[test]
fn r11_cve_2018_15664_copy_symlink_swap() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let kit = crate::hostile::Kit::new(dir.path());
    crate::hostile::copy_symlink_swap(&kit, hoist.root(), &|args| hoist.run(args));
    assert_store_sound(&hoist);
}

/// CVE-2018-15664 under ADD (a file, a directory, an archive) and
/// `COPY --from` a stage holding the swapped links (see
/// `hostile::add_and_copy_from_symlink_swap`), as root.
#[test]
fn r11_cve_2018_15664_add_and_copy_from_symlink_swap() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let kit = crate::hostile::Kit::new(dir.path());
    crate::hostile::add_and_copy_from_symlink_swap(&kit, hoist.root(), &|args| hoist.run(args));
    assert_store_sound(&hoist);
}

/// CVE-2024-23651 (see `hostile::cache_mount_race`), as root.
#[test]
fn r11_cve_2024_23651_cache_mount_race() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let kit = crate::hostile::Kit::new(dir.path());
    crate::hostile::cache_mount_race(&kit, hoist.root(), &|args| hoist.run(args), &|args| {
        hoist.command(args).spawn().unwrap()
    });
    assert_store_sound(&hoist);
}

/// `ADD` of a URL whose server redirects to a local file (`file://`, the
/// victim's secret) must not read the builder's filesystem: the build
/// fails naming the URL, and the secret appears nowhere.
#[test]
fn r11_add_url_redirecting_to_a_local_file_reads_nothing() {
    let hoist = Hoist::with_busybox();
    let dir = tempfile::tempdir().unwrap();
    let kit = crate::hostile::Kit::new(dir.path());
    let location = format!("file://{}/secret", kit.victim.display());
    let server = crate::registry::http::Server::start(move |_, mut stream| {
        let headers = [("Location", location.as_str())];
        crate::registry::http::respond(&mut stream, 307, &headers, b"").unwrap();
    });
    let ctx = dockerfile_context(&format!(
        "FROM busybox\nADD http://{}/dl/secret /s\n",
        server.host()
    ));
    let out = hoist.run(&["build", "-t", "probe:latest", ctx.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the build followed the redirect:\n{stderr}"
    );
    assert!(
        stderr.contains("/dl/secret"),
        "the error names the URL:\n{stderr}"
    );
    assert!(!stderr.contains(crate::hostile::SECRET), "{stderr}");
    assert_store_sound(&hoist);
}
