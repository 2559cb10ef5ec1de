//! Issue 9's promises that can be counted rather than timed: how many
//! bytes a build reads after its RUN.

use std::process::{Command, Stdio};

use crate::common::{Hoist, dockerfile_context};

/// The size of the file the RUN writes: big enough that a second read
/// stands out from everything else a build reads.
const BIG_MIB: u64 = 64;

/// `rchar` (bytes returned by `read` and friends) of one `hoist build`
/// and every process it started. A shell runs the build and prints its own
/// `/proc/self/io` after reaping it: the kernel adds a reaped child's I/O
/// counters (and those of the children it reaped) to its parent's, so the
/// shell's count is the build's plus the few bytes the shell reads itself,
/// and nothing else the test process does can leak into it.
fn build_rchar(hoist: &Hoist, tag: &str, dockerfile: &str) -> u64 {
    let ctx = dockerfile_context(dockerfile);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#""$@" >/dev/null || exit 1; cat /proc/$$/io"#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_hoist"))
        .args(["build", "--progress=plain", "--network=none", "-t", tag])
        .arg(ctx.path())
        .env("HOIST_ROOT", hoist.root())
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "hoist build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let io = String::from_utf8(out.stdout).unwrap();
    io.lines()
        .find_map(|line| line.strip_prefix("rchar:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rchar in /proc/PID/io:\n{io}"))
}

/// A file written by RUN is read once after the RUN (to write the layer,
/// whose hash is the diff ID), however many names it has: the snapshot
/// is the upperdir itself, and a hardlink is a link entry in the tar.
/// Counted as the difference between two builds whose RUNs read exactly
/// the same bytes (`dd` from /dev/zero) but only one of which keeps them.
#[test]
fn r9_run_output_is_read_once_after_the_run() {
    let hoist = Hoist::with_busybox();
    let dd = format!("dd if=/dev/zero bs=1048576 count={BIG_MIB} 2>/dev/null");
    let kept = build_rchar(
        &hoist,
        "kept",
        &format!("FROM busybox\nRUN {dd} of=/big && ln /big /big.link && echo kept\n"),
    );
    let dropped = build_rchar(
        &hoist,
        "dropped",
        &format!("FROM busybox\nRUN {dd} of=/dev/null && touch /big && echo dropped\n"),
    );
    let size = BIG_MIB << 20;
    let extra = kept.saturating_sub(dropped);
    // The lower bound shows the count sees the one read the layer needs.
    assert!(
        extra >= size && extra * 10 <= size * 11,
        "after a RUN that wrote {size} bytes (and a hardlink to them), the build read \
         {extra} bytes more than one that wrote none ({kept} vs {dropped}): expected one \
         read of the file, between {size} and {} bytes",
        size * 11 / 10
    );
    // And the image holds the file under both names, as one inode.
    let out = hoist.exec("kept", &["sh", "-c", "stat -c '%s %h' /big /big.link"]);
    assert_eq!(
        out,
        format!("{size} 2\n{size} 2\n"),
        "the built image's /big"
    );
}

/// Every file under the store's `blobs/`, `index.json` and the builder's
/// records, with its inode and modification time: what a rewrite (a new
/// file renamed over the old one, or written in place) changes.
fn written_state(root: &std::path::Path) -> Vec<(String, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    let mut dirs = vec![
        root.join("blobs"),
        root.join("hoist/cache-recent"),
        root.join("hoist/context-index"),
        root.join("hoist/context-checksum"),
    ];
    files.push(root.join("index.json"));
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // a record kind this build did not write
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut state: Vec<_> = files
        .iter()
        .map(|path| {
            let meta = std::fs::symlink_metadata(path).unwrap();
            (
                path.strip_prefix(root).unwrap().display().to_string(),
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
            )
        })
        .collect();
    state.sort();
    state
}

/// A rebuild that changes nothing writes nothing that lasts: no blob
/// (the config and manifest it makes again are stored already, and a
/// stored blob is neither rewritten nor synced), no index.json (the tag
/// names the same manifest), no builder record. Only the cache entries'
/// times move, which is how the cache keeps its least-recently-used order.
#[test]
fn r9_noop_rebuild_rewrites_nothing() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context(
        "FROM busybox\nCOPY Dockerfile /app/\nRUN echo built > /built\nENV A=1\n",
    );
    hoist.build(ctx.path(), &["-t", "noop:1"]);
    let before = written_state(hoist.root());
    assert!(
        before
            .iter()
            .filter(|(p, ..)| p.starts_with("blobs/"))
            .count()
            >= 4,
        "the first build stored its blobs: {before:?}"
    );
    let second = hoist.build(ctx.path(), &["-t", "noop:1"]);
    assert!(
        second.contains("CACHED"),
        "the rebuild is a no-op:\n{second}"
    );
    let after = written_state(hoist.root());
    assert_eq!(
        before, after,
        "a no-op rebuild rewrote files (path, inode, mtime)"
    );
    // A new tag for the same image is a change, and is written.
    hoist.build(ctx.path(), &["-t", "noop:2"]);
    let index = written_state(hoist.root())
        .into_iter()
        .find(|(p, ..)| p == "index.json");
    assert_ne!(
        before.iter().find(|(p, ..)| p == "index.json"),
        index.as_ref(),
        "tagging the image anew rewrites index.json"
    );
    assert!(hoist.ok(&["images"]).contains("noop"), "both tags listed");
}

/// A no-op rebuild takes the COPY's remembered source checksum (a walk of
/// stats: no file's digest is looked up), and a change after it still
/// rebuilds the COPY, named file by file.
#[test]
fn r9_noop_rebuild_takes_the_remembered_source_checksum() {
    let hoist = Hoist::with_busybox();
    let ctx = dockerfile_context("FROM busybox\nCOPY . /app\nRUN ls -l /app/src > /listing\n");
    for name in ["a", "b"] {
        let path = ctx.path().join("src").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, name).unwrap();
    }
    // Past the racy window: a walk covering a file changed in the last
    // second is never remembered.
    let past_racy_window = || std::thread::sleep(std::time::Duration::from_millis(1100));
    past_racy_window();
    let unchanged =
        "#2 COPY . /app: sources unchanged since an earlier build (5 entries statted, none read)";
    let log = hoist.build(ctx.path(), &["--explain", "-t", "memo:1"]);
    assert!(!log.contains(unchanged), "a first build computes:\n{log}");
    let log = hoist.build(ctx.path(), &["--explain", "-t", "memo:1"]);
    assert!(log.contains(unchanged), "{log}");
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");

    let src = ctx.path().join("src/a");
    std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    past_racy_window();
    let log = hoist.build(ctx.path(), &["--explain", "-t", "memo:1"]);
    assert!(!log.contains(unchanged), "{log}");
    assert!(
        log.contains("#2 COPY . /app: not cached: 1 of 3 files changed (src/a)"),
        "{log}"
    );
    let listing = hoist.exec("memo:1", &["cat", "/listing"]);
    assert!(listing.contains("-rwxr-xr-x"), "{listing}");
    let log = hoist.build(ctx.path(), &["--explain", "-t", "memo:1"]);
    assert!(log.contains(unchanged), "{log}");
}
