//! Issue 10's real-world suite: a Debian base made with debootstrap, an
//! `apt-get install` through `type=cache` mounts, and the result run. It
//! needs Debian's mirror (deb.debian.org, or `HOIST_TEST_DEBIAN_MIRROR`);
//! without the network it fails, loudly, like any other missing tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{Hoist, dockerfile_context};

fn mirror() -> String {
    std::env::var("HOIST_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned())
}

/// `debootstrap --variant=minbase bookworm` as a root filesystem tarball,
/// made once per target directory (written beside and renamed into place,
/// as the busybox base is).
fn bookworm_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-bookworm-minbase.tar");
        if tar.is_file() {
            return tar;
        }
        let debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect(
                "debootstrap is not installed: apt-get install debootstrap (scripts/test does)",
            );
        let dir = tempfile::Builder::new()
            .prefix("hoist-debootstrap-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let root = dir.path().join("root");
        let out = Command::new(debootstrap)
            .args(["--variant=minbase", "bookworm"])
            .arg(&root)
            .arg(mirror())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "debootstrap of bookworm from {} failed (this test needs the network):\n{}\n{}",
            mirror(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let partial = tar.with_extension(format!("partial.{}", std::process::id()));
        let status = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "-cf"])
            .arg(&partial)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success(), "tar of the debootstrap root failed");
        std::fs::rename(&partial, &tar).unwrap();
        tar
    })
}

#[test]
fn r10_debootstrap_apt_cache_mount_build() {
    let hoist = Hoist::new();
    hoist.ok(&[
        "import",
        bookworm_tar().to_str().unwrap(),
        "debian:bookworm",
    ]);
    let ctx = dockerfile_context(&format!(
        "FROM debian:bookworm\n\
         RUN echo 'deb {mirror} bookworm main' > /etc/apt/sources.list \\\n\
          && echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache\n\
         RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n\
             --mount=type=cache,target=/var/lib/apt,sharing=locked \\\n\
             apt-get update && apt-get install -y --no-install-recommends hello\n\
         RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n\
             ls /var/cache/apt/archives | grep '^hello_' > /cached-debs\n\
         CMD [\"hello\"]\n",
        mirror = mirror()
    ));
    hoist.build(ctx.path(), &["-t", "hello-apt:test"]);
    assert_eq!(hoist.exec("hello-apt:test", &[]), "Hello, world!\n");
    // hello's .deb stayed in the cache mount, not in the image (whose
    // /var/cache/apt/archives holds debootstrap's own packages).
    let cached = hoist.exec("hello-apt:test", &["cat", "/cached-debs"]);
    assert!(
        cached.starts_with("hello_") && cached.trim_end().ends_with(".deb"),
        "{cached}"
    );
    let in_image = hoist.exec(
        "hello-apt:test",
        &[
            "sh",
            "-c",
            "ls /var/cache/apt/archives/ | grep -c ^hello_ || true",
        ],
    );
    assert_eq!(in_image, "0\n", "hello's package leaked into the image");
}
