//! The native snapshotter (issue 7's pod case, issue 11): RUN without
//! overlayfs gives the same layers as RUN over overlayfs.

use std::process::Command;

use crate::common::{Hoist, busybox_tar, dockerfile_context};

/// Adds, modifies in place, chmods, deletes from the base, replaces a
/// directory with a file and a file with a directory, hard-links and
/// symlinks, over several RUNs; then WORKDIR and COPY, which take the same
/// root.
const DOCKERFILE: &str = "FROM busybox
RUN mkdir -p /d/sub && echo a > /d/sub/f && echo f > /f2 && mkdir /keep && echo k > /keep/k
RUN echo appended >> /etc/group && chmod 600 /etc/passwd && rm /etc/hostname-gone /etc/shadow 2>/dev/null; rm -f /etc/passwd- ; rm /bin/true
RUN rm -rf /d && echo now-a-file > /d && rm /f2 && mkdir /f2 && echo in > /f2/x
RUN ln /keep/k /keep/k2 && ln -s /keep/k /link && echo new > /added && touch -d @1 /keep/k
WORKDIR /w/x
COPY Dockerfile /keep/
";

fn build_id(snapshotter: &str) -> (Hoist, String) {
    let hoist = Hoist::new();
    let import = hoist
        .command(&["import", busybox_tar().to_str().unwrap(), "busybox"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(import.status.success(), "{import:?}");
    let ctx = dockerfile_context(DOCKERFILE);
    let out = hoist
        .command(&["build", "-q", "-t", "n:test", ctx.path().to_str().unwrap()])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("HOIST_SNAPSHOTTER", snapshotter)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{snapshotter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (hoist, id)
}

#[test]
fn r7_native_snapshotter_gives_the_overlayfs_image_id() {
    let (_, overlay) = build_id("overlayfs");
    let (hoist, native) = build_id("native");
    assert_eq!(native, overlay, "native and overlayfs builds differ");
    assert_eq!(
        hoist.exec(
            "n:test",
            &["cat", "/etc/group", "/d", "/f2/x", "/keep/k2", "/link"]
        ),
        {
            let group = hoist.exec("busybox", &["cat", "/etc/group"]);
            format!("{group}appended\nnow-a-file\nin\nk\nk\n")
        }
    );
    // The base snapshot's /etc/group is untouched by the in-place append:
    // the root was copied, not hard-linked.
    let snapshots = hoist.root().join("hoist/snapshots");
    let (mut seen, mut appended) = (0, 0);
    for entry in std::fs::read_dir(&snapshots).unwrap() {
        let group = entry.unwrap().path().join("etc/group");
        if let Ok(text) = std::fs::read_to_string(&group) {
            seen += 1;
            appended += usize::from(text.contains("appended"));
        }
    }
    assert_eq!(
        seen, 2,
        "the base and the appending RUN each have /etc/group"
    );
    assert_eq!(appended, 1, "only the RUN's layer has the append");
    let base = hoist.exec("busybox", &["cat", "/etc/group"]);
    assert!(!base.contains("appended"), "the base image changed: {base}");
}

#[test]
fn r7_auto_falls_back_to_native_on_an_overlay_store() {
    let hoist = Hoist::with_busybox();
    // An overlayfs whose upper layer holds the store: overlayfs cannot take
    // its upperdir from it.
    let dirs = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|d| dirs.path().join(d));
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success(), "mounting the test overlay failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(merged.clone());
    let store = merged.join("store");
    let copy = Command::new("cp")
        .arg("-a")
        .arg(hoist.root())
        .arg(&store)
        .status()
        .unwrap();
    assert!(copy.success());
    // An image whose layer has a whiteout, made elsewhere and loaded:
    // extracting it cannot make overlay's 0/0 device on this store.
    let elsewhere = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nRUN rm /bin/false\n");
    elsewhere.build(ctx.path(), &["-t", "wh"]);
    let saved = ctx.path().join("wh.tar");
    elsewhere.ok(&["save", "-o", saved.to_str().unwrap(), "wh"]);
    let load = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .env("HOIST_ROOT", &store)
        .args(["load", "-i", saved.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(load.status.success(), "{load:?}");
    let ctx = dockerfile_context(
        "FROM wh\nRUN test ! -e /bin/false && echo hi > /hi && rm /bin/true\n\
         COPY Dockerfile /etc/\n\
         RUN test ! -e /bin/true && test -e /hi && echo ok > /checked\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .env("HOIST_ROOT", &store)
        .env_remove("HOIST_SNAPSHOTTER")
        .args(["build", "-t", "o:test", ctx.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr
            .matches("auto snapshotter: overlayfs is not available for ")
            .count(),
        1,
        "one warning naming why: {stderr}"
    );
    assert!(
        stderr.contains("falling back to native: mount overlay on ")
            && stderr.contains("Invalid argument"),
        "{stderr}"
    );
    let run = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .env("HOIST_ROOT", &store)
        .env_remove("HOIST_SNAPSHOTTER")
        .args([
            "run",
            "--rm",
            "o:test",
            "sh",
            "-c",
            "cat /hi /checked; head -1 /etc/Dockerfile; \
             test -e /bin/true || test -e /bin/false || test -e /bin/.wh.true || echo clean",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "hi\nok\nFROM wh\nclean\n",
        "{run:?}"
    );
    // The RUN's deletion is an OCI whiteout to other tools too (the store's
    // filesystem refuses overlay's 0/0 device, so the layer was written
    // from the `.wh.` form).
    let bundle = tempfile::tempdir().unwrap();
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:o:test", store.display()))
        .arg(bundle.path().join("b"))
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {out:?}");
    let rootfs = bundle.path().join("b/rootfs");
    assert!(rootfs.join("hi").is_file() && rootfs.join("checked").is_file());
    assert!(!rootfs.join("bin/true").exists(), "the whiteout was lost");
    assert!(
        !rootfs.join("bin/false").exists(),
        "the loaded whiteout was lost"
    );
    assert!(
        !rootfs.join("bin/.wh.true").exists(),
        "a whiteout became a file"
    );
}
