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
