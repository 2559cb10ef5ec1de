//! The build context: .dockerignore walks, tar contexts, stat index and
//! content checksums.

// Test helpers outside #[test] fns panic on setup failure by design.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hoist_builder::context::{BuildContext, ChecksumOptions, DigestCache, StatIndex};

fn testdata(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/contexts")
        .join(case)
}

fn paths(index: &StatIndex) -> Vec<String> {
    index.entries.iter().map(|e| e.path.clone()).collect()
}

#[test]
fn ignore_basic_fixture_walk() {
    let dir = testdata("ignore-basic");
    let want: Vec<String> = fs::read_to_string(dir.join("expected-files.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let ctx = BuildContext::from_dir(&dir, None).unwrap();
    assert_eq!(paths(&ctx.stat_index().unwrap()), want);
}

#[test]
fn ignore_custom_dockerfile_takes_precedence() {
    let dir = testdata("ignore-custom-dockerfile");
    let ctx = BuildContext::from_dir(&dir, Some(&dir.join("app.Dockerfile"))).unwrap();
    let got = paths(&ctx.stat_index().unwrap());
    assert!(got.contains(&"a.txt".to_owned()), "{got:?}");
    assert!(!got.contains(&"b.txt".to_owned()), "{got:?}");
    let ctx = BuildContext::from_dir(&dir, None).unwrap();
    let got = paths(&ctx.stat_index().unwrap());
    assert!(!got.contains(&"a.txt".to_owned()), "{got:?}");
    assert!(got.contains(&"b.txt".to_owned()), "{got:?}");
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Wildcard exceptions force a full descent into excluded directories, and
/// an excluded directory appears only when something inside is re-included.
#[test]
fn ignore_walk_table() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "*\n!**/keep\n",
            &["a/b/keep", "a/c/drop", "top"],
            &["a", "a/b", "a/b/keep"],
        ),
        (
            "a\n!a/b/keep\n",
            &["a/b/keep", "a/c/drop"],
            &["a", "a/b", "a/b/keep"],
        ),
        ("**/*.o\n", &["x.o", "d/y.o", "d/y.c"], &["d", "d/y.c"]),
        (
            "d/*\n!d/*.c\n",
            &["d/y.o", "d/y.c", "d/e/f.c"],
            &["d", "d/y.c"],
        ),
        ("/d\n", &["d/x", "e/d/x"], &["e", "e/d", "e/d/x"]),
        ("./d/../e\n", &["d/x", "e/x"], &["d", "d/x"]),
    ];
    for (ignore, files, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        for f in *files {
            write(tmp.path(), f, "x");
        }
        write(tmp.path(), ".dockerignore", ignore);
        let ctx = BuildContext::from_dir(tmp.path(), None).unwrap();
        let mut got = paths(&ctx.stat_index().unwrap());
        got.retain(|p| p != ".dockerignore");
        assert_eq!(got, *want, "ignore {ignore:?} files {files:?}");
    }
}

#[test]
fn checksum_is_stable_and_names_changed_files() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "src/main.rs", "fn main() {}");
    write(tmp.path(), "src/lib.rs", "pub fn x() {}");
    write(tmp.path(), "Cargo.lock", "# lock");
    write(tmp.path(), "README.md", "readme");
    std::os::unix::fs::symlink("main.rs", tmp.path().join("src/link")).unwrap();
    let sources = vec!["src".to_owned(), "Cargo.lock".to_owned()];
    let opts = ChecksumOptions::default();
    let ctx = BuildContext::from_dir(tmp.path(), None).unwrap();
    let first = ctx.checksum(&sources, &opts).unwrap();
    assert_eq!(
        ctx.checksum(&sources, &opts).unwrap(),
        first,
        "same tree, same digest"
    );
    let keys: Vec<&str> = first.files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        keys,
        ["src", "src/lib.rs", "src/link", "src/main.rs", "Cargo.lock"]
    );

    // mtime only: same digest.
    let later = SystemTime::now() + Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(tmp.path().join("src/main.rs"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(
        ctx.checksum(&sources, &opts).unwrap().digest,
        first.digest,
        "touching mtime"
    );

    // A file outside the sources: same digest.
    write(tmp.path(), "README.md", "changed");
    assert_eq!(
        ctx.checksum(&sources, &opts).unwrap().digest,
        first.digest,
        "unrelated file"
    );

    // One byte in two files: different, and both are named.
    write(tmp.path(), "src/main.rs", "fn main() {;");
    write(tmp.path(), "Cargo.lock", "# lokc");
    let second = ctx.checksum(&sources, &opts).unwrap();
    assert_ne!(second.digest, first.digest);
    assert_eq!(second.changed_files(&first), ["Cargo.lock", "src/main.rs"]);

    // A mode change counts, and so does a new link target.
    let mut perms = fs::metadata(tmp.path().join("src/lib.rs"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(tmp.path().join("src/lib.rs"), perms).unwrap();
    fs::remove_file(tmp.path().join("src/link")).unwrap();
    std::os::unix::fs::symlink("lib.rs", tmp.path().join("src/link")).unwrap();
    let third = ctx.checksum(&sources, &opts).unwrap();
    assert_eq!(third.changed_files(&second), ["src/lib.rs", "src/link"]);
}

#[test]
fn checksum_honours_ignore_exclude_and_wildcards() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.txt", "a");
    write(tmp.path(), "b.txt", "b");
    write(tmp.path(), "c.md", "c");
    write(tmp.path(), ".dockerignore", "b.txt\n");
    let ctx = BuildContext::from_dir(tmp.path(), None).unwrap();
    let sum = ctx
        .checksum(&["*.txt".to_owned()], &ChecksumOptions::default())
        .unwrap();
    let keys: Vec<&str> = sum.files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(keys, ["a.txt"]);
    // An ignored file changing does not change the digest.
    write(tmp.path(), "b.txt", "bb");
    assert_eq!(
        ctx.checksum(&["*.txt".to_owned()], &ChecksumOptions::default())
            .unwrap(),
        sum
    );
    // --exclude narrows a directory source.
    let opts = ChecksumOptions {
        exclude: vec!["*.md".into()],
        ..Default::default()
    };
    let sum = ctx.checksum(&[".".to_owned()], &opts).unwrap();
    let keys: Vec<&str> = sum.files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(keys, ["", ".dockerignore", "a.txt"]);
    // A missing literal source is BuildKit's error.
    let err = ctx
        .checksum(&["nope".to_owned()], &ChecksumOptions::default())
        .unwrap_err();
    assert_eq!(err.to_string(), "\"/nope\": not found");
}

#[test]
fn checksum_cache_reuses_digests() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..50 {
        write(tmp.path(), &format!("d/f{i}"), &format!("content {i}"));
    }
    let ctx = BuildContext::from_dir(tmp.path(), None).unwrap();
    let cache = DigestCache::default();
    let opts = ChecksumOptions {
        cache: Some(&cache),
        ..Default::default()
    };
    let first = ctx.checksum(&["d".to_owned()], &opts).unwrap();
    assert_eq!(cache.len(), 50);
    let again = ctx.checksum(&["d".to_owned()], &opts).unwrap();
    assert_eq!(again, first);
    // Same size, new content: the stat changes (mtime/ctime), so it is re-read.
    std::thread::sleep(Duration::from_millis(10));
    write(tmp.path(), "d/f7", "content X");
    let changed = ctx.checksum(&["d".to_owned()], &opts).unwrap();
    assert_eq!(changed.changed_files(&first), ["d/f7"]);
    // The cache round-trips through its saved form.
    let mut saved = Vec::new();
    cache.save(&mut saved, |_| true).unwrap();
    let back = DigestCache::default();
    back.load(saved.as_slice()).unwrap();
    assert_eq!(back.len(), 50);
}

#[test]
fn stat_index_detects_changes() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a", "1");
    write(tmp.path(), "b", "2");
    let ctx = BuildContext::from_dir(tmp.path(), None).unwrap();
    let before = ctx.stat_index().unwrap();
    assert!(ctx.stat_index().unwrap().changed_since(&before).is_empty());
    std::thread::sleep(Duration::from_millis(10));
    write(tmp.path(), "a", "3");
    fs::remove_file(tmp.path().join("b")).unwrap();
    write(tmp.path(), "c", "4");
    let after = ctx.stat_index().unwrap();
    assert_eq!(after.changed_since(&before), ["a", "b", "c"]);
    let json = serde_json::to_string(&after).unwrap();
    assert_eq!(serde_json::from_str::<StatIndex>(&json).unwrap(), after);
}

fn tar_with(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(1_600_000_000);
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                header.set_size(0);
                header.set_link_name(data).unwrap();
                // set_path refuses "..", so write the raw name.
                raw_path(&mut header, path);
                header.set_cksum();
                builder.append(&header, std::io::empty()).unwrap();
            }
            _ => {
                header.set_size(data.len() as u64);
                raw_path(&mut header, path);
                header.set_cksum();
                builder.append(&header, data.as_bytes()).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn raw_path(header: &mut tar::Header, path: &str) {
    let name = &mut header.as_old_mut().name;
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
}

#[test]
fn tar_context_is_unpacked_inside_its_directory() {
    let outside = tempfile::tempdir().unwrap();
    let escape = outside.path().join("pwned");
    let data = tar_with(&[
        ("Dockerfile", tar::EntryType::Regular, "FROM scratch\n"),
        ("src/a.txt", tar::EntryType::Regular, "a"),
        (
            "../../../../../../../../tmp/evil",
            tar::EntryType::Regular,
            "x",
        ),
        (
            "abs",
            tar::EntryType::Symlink,
            outside.path().to_str().unwrap(),
        ),
        ("abs/pwned", tar::EntryType::Regular, "through the link"),
        ("hard", tar::EntryType::Link, "../../../../etc/hostname"),
    ]);
    let parent = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data).unwrap();
    let gz = gz.finish().unwrap();
    // The hardlink target does not exist inside: the whole unpack fails
    // rather than linking a host file.
    let err = BuildContext::from_tar(gz.as_slice(), parent.path(), None).unwrap_err();
    assert!(
        err.to_string().contains("unpacking the build context"),
        "{err}"
    );
    assert!(!escape.exists(), "wrote through an absolute symlink");
    assert!(!Path::new("/tmp/evil").exists(), "wrote outside via ..");

    let data = tar_with(&[
        ("Dockerfile", tar::EntryType::Regular, "FROM scratch\n"),
        ("src/a.txt", tar::EntryType::Regular, "a"),
        ("../../escape.txt", tar::EntryType::Regular, "x"),
        (
            "abs",
            tar::EntryType::Symlink,
            outside.path().to_str().unwrap(),
        ),
        ("abs/pwned", tar::EntryType::Regular, "through the link"),
    ]);
    let ctx = BuildContext::from_tar(data.as_slice(), parent.path(), None).unwrap();
    assert!(!escape.exists(), "wrote through an absolute symlink");
    assert_eq!(
        fs::read_to_string(ctx.dir().join("src/a.txt")).unwrap(),
        "a"
    );
    assert_eq!(
        fs::read_to_string(ctx.dir().join("escape.txt")).unwrap(),
        "x"
    );
    let inside = ctx
        .dir()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("pwned");
    assert_eq!(fs::read_to_string(inside).unwrap(), "through the link");
    let dir = ctx.dir().to_owned();
    drop(ctx);
    assert!(!dir.exists(), "the unpacked context is removed with it");
}

/// Not a correctness test: measures checksum throughput over a copy of
/// /usr/share. Run with `cargo test -p hoist-builder --release -- --ignored
/// checksum_throughput --nocapture`.
#[test]
#[ignore = "benchmark"]
fn checksum_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("share");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg("/usr/share")
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let ctx = BuildContext::from_dir(&copy, None).unwrap();
    let start = Instant::now();
    let sum = ctx
        .checksum(&[".".to_owned()], &ChecksumOptions::default())
        .unwrap();
    let cold = start.elapsed();
    let index = ctx.stat_index().unwrap();
    let bytes: u64 = index
        .entries
        .iter()
        .filter(|e| e.mode & 0o170000 == 0o100000)
        .map(|e| e.size)
        .sum();
    let files = sum.files.len();
    let cache = DigestCache::default();
    let opts = ChecksumOptions {
        cache: Some(&cache),
        ..Default::default()
    };
    ctx.checksum(&[".".to_owned()], &opts).unwrap();
    let start = Instant::now();
    let warm_sum = ctx.checksum(&[".".to_owned()], &opts).unwrap();
    let warm = start.elapsed();
    assert_eq!(warm_sum.digest, sum.digest);
    println!(
        "checksum of {files} entries, {:.1} MB: {:.2}s = {:.0} files/s, {:.1} MB/s; with a warm stat cache {:.2}s = {:.0} files/s",
        bytes as f64 / 1e6,
        cold.as_secs_f64(),
        files as f64 / cold.as_secs_f64(),
        bytes as f64 / 1e6 / cold.as_secs_f64(),
        warm.as_secs_f64(),
        files as f64 / warm.as_secs_f64(),
    );
}

/// Issue 8: the context's file digests persist in the store, so a second
/// build stats an unchanged file and never reads it; a changed file is
/// read again, even when its size and mtime were put back.
#[test]
fn r8_context_index_an_unchanged_file_is_never_read_again() {
    use hoist_builder::cache::{load_context_index, save_context_index};
    let tmp = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = hoist_store::Store::open(root.path()).unwrap();
    for i in 0..200 {
        write(
            tmp.path(),
            &format!("src/f{i:03}"),
            &format!("content {i:03}"),
        );
    }
    // Past the racy window: files changed in the last second are hashed
    // but not remembered.
    std::thread::sleep(Duration::from_millis(1100));
    let sources = ["src".to_owned()];
    let build = || {
        let ctx = BuildContext::from_dir(tmp.path(), None).unwrap();
        load_context_index(&store, &ctx);
        let sum = ctx.checksum(&sources, &ChecksumOptions::default()).unwrap();
        save_context_index(&store, &ctx).unwrap();
        (sum, ctx.digests().reads())
    };
    let (first, reads) = build();
    assert_eq!(reads, 200, "a first build reads every file");
    let (second, reads) = build();
    assert_eq!(reads, 0, "an unchanged file is never read again");
    assert_eq!(second, first);

    // Same size, mtime put back: the ctime still tells.
    rewrite_keeping_mtime(&tmp.path().join("src/f007"), "CONTENT 007");
    let (third, reads) = build();
    assert_eq!(reads, 1, "only the changed file is read");
    assert_eq!(third.changed_files(&first), ["src/f007"]);
    // Changed within the racy window, so not remembered: read again.
    let (fourth, reads) = build();
    assert_eq!((reads, &fourth), (1, &third));

    // Builds saving the same context's index at once each leave a whole
    // record that the next build reads.
    std::thread::sleep(Duration::from_millis(1100));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let store = hoist_store::Store::open(root.path()).unwrap();
                let ctx = BuildContext::from_dir(tmp.path(), None).unwrap();
                load_context_index(&store, &ctx);
                ctx.checksum(&sources, &ChecksumOptions::default()).unwrap();
                save_context_index(&store, &ctx).unwrap();
            });
        }
    });
    let (fifth, reads) = build();
    assert_eq!((reads, &fifth), (0, &third));
}

/// Writes `content` and puts the file's mtime back: only its ctime (and,
/// for another size, its size) tells.
fn rewrite_keeping_mtime(path: &Path, content: &str) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    fs::write(path, content).unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// The checksum of a fixed tree, as hoist computed it before the walk and
/// the hashing were split: an existing store's cache keys stay valid.
#[test]
fn checksum_of_a_known_tree_is_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.txt", "a\n");
    write(tmp.path(), "dir/b", "b");
    std::os::unix::fs::symlink("../a.txt", tmp.path().join("dir/link")).unwrap();
    set_mode(&tmp.path().join("a.txt"), 0o644);
    set_mode(&tmp.path().join("dir/b"), 0o600);
    set_mode(&tmp.path().join("dir"), 0o755);
    let ctx = BuildContext::from_dir(tmp.path(), None).unwrap();
    let sources = ["a.txt".to_owned(), "dir".to_owned()];
    let sum = ctx.checksum(&sources, &ChecksumOptions::default()).unwrap();
    assert_eq!(
        sum.digest.to_string(),
        "sha256:2624e7c9c23098169cb97969b830c175a115e4894c58f8fb059302177f1b5a3c"
    );
    assert_eq!(
        sum.files[3],
        (
            "dir/link".to_owned(),
            "sha256:0d5b43263644a8e6b602de5aeac079b930fd847a7492089a3d4c064ee590d4ee".to_owned()
        )
    );
}

/// Issue 9: a checksum is remembered with the fingerprint of its walk, and
/// a walk with the same fingerprint takes it without reading the context's
/// digest index. Every change a COPY would see still changes the checksum,
/// and a walk covering a file changed within the racy window is not
/// remembered.
#[test]
fn r9_a_remembered_checksum_is_taken_only_for_an_unchanged_walk() {
    use hoist_builder::cache::{load_context_index, save_context_index};
    use hoist_builder::context_memo::{Request, Sources, context_sources};
    let tmp = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = hoist_store::Store::open(root.path()).unwrap();
    let dir = tmp.path();
    for i in 0..100 {
        write(dir, &format!("src/f{i:03}"), &format!("content {i:03}"));
    }
    write(dir, "src/skip.md", "skip");
    write(dir, "src/sub/g", "g");
    std::os::unix::fs::symlink("f001", dir.join("src/link")).unwrap();
    let past_racy_window = || std::thread::sleep(Duration::from_millis(1100));
    past_racy_window();
    let sources = ["src".to_owned()];
    // One build's checksum of `sources`: whether it was remembered, whether
    // the index stayed unread, and the digest, which must equal a
    // checksum computed from scratch.
    let build = |exclude: &[String]| {
        let ctx = BuildContext::from_dir(dir, None).unwrap();
        load_context_index(&store, &ctx);
        let request = Request {
            sources: &sources,
            exclude,
            include_owner: false,
        };
        let got = context_sources(&store, &ctx, request).unwrap();
        let remembered = matches!(got, Sources::Remembered { .. });
        let unread = ctx.digests().is_unread();
        let opts = ChecksumOptions {
            exclude: exclude.to_vec(),
            cache: Some(&DigestCache::default()),
            ..ChecksumOptions::default()
        };
        let fresh = ctx.checksum(&sources, &opts).unwrap();
        assert_eq!(
            got.digest(),
            &fresh.digest,
            "the checksum is the one computed in full"
        );
        // The per-file digests, which a miss may need, are those too.
        assert_eq!(got.full(&ctx), Some(&fresh));
        save_context_index(&store, &ctx).unwrap();
        (remembered, unread, fresh.digest)
    };
    let (remembered, unread, first) = build(&[]);
    assert_eq!(
        (remembered, unread),
        (false, false),
        "a first build computes"
    );
    let (remembered, unread, again) = build(&[]);
    assert_eq!(again, first);
    assert!(
        remembered,
        "an unchanged walk takes the remembered checksum"
    );
    assert!(unread, "and never reads the digest index");

    type Change = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "content changed, same size, mtime put back",
            Box::new(|dir: &Path| rewrite_keeping_mtime(&dir.join("src/f007"), "CONTENT 007")),
        ),
        (
            "chmod",
            Box::new(|dir: &Path| set_mode(&dir.join("src/f010"), 0o755)),
        ),
        (
            "file added",
            Box::new(|dir: &Path| write(dir, "src/new", "new")),
        ),
        (
            "file removed",
            Box::new(|dir: &Path| fs::remove_file(dir.join("src/f020")).unwrap()),
        ),
        (
            "rename",
            Box::new(|dir: &Path| fs::rename(dir.join("src/f030"), dir.join("src/g030")).unwrap()),
        ),
        (
            "symlink retargeted",
            Box::new(|dir: &Path| {
                fs::remove_file(dir.join("src/link")).unwrap();
                std::os::unix::fs::symlink("f002", dir.join("src/link")).unwrap();
            }),
        ),
        (
            "xattr set on a file",
            Box::new(|dir: &Path| xattr::set(dir.join("src/f040"), "user.x", b"1").unwrap()),
        ),
        (
            "xattr value changed",
            Box::new(|dir: &Path| xattr::set(dir.join("src/f040"), "user.x", b"2").unwrap()),
        ),
        (
            "xattr set on a directory",
            Box::new(|dir: &Path| xattr::set(dir.join("src/sub"), "user.x", b"1").unwrap()),
        ),
        (
            "xattr removed from a directory",
            Box::new(|dir: &Path| xattr::remove(dir.join("src/sub"), "user.x").unwrap()),
        ),
        (
            ".dockerignore added",
            Box::new(|dir: &Path| write(dir, ".dockerignore", "src/*.md\n")),
        ),
    ];
    let mut last = first;
    for (case, change) in cases {
        change(dir);
        past_racy_window();
        let (remembered, _, changed) = build(&[]);
        assert!(
            !remembered,
            "case {case:?}: the remembered checksum was taken"
        );
        assert_ne!(changed, last, "case {case:?}: the checksum did not change");
        let (remembered, unread, again) = build(&[]);
        assert!(remembered && unread, "case {case:?}: not remembered after");
        assert_eq!(again, changed, "case {case:?}");
        last = changed;
    }

    // Another --exclude is another request, never the remembered one.
    let exclude = ["f04*".to_owned()];
    let (remembered, _, excluded) = build(&exclude);
    assert!(!remembered, "--exclude took the checksum without it");
    assert_ne!(excluded, last, "--exclude changed nothing");
    assert!(build(&exclude).0, "--exclude's own checksum is remembered");
    assert!(build(&[]).0, "and the one without --exclude is still there");

    // Written within the racy window of the build that walks it: that
    // walk is not remembered, so that a second write in the same
    // timestamp tick could not go unseen.
    write(dir, "src/f050", "CONTENT 050");
    let (remembered, _, racy) = build(&[]);
    assert!(!remembered);
    assert_ne!(racy, last);
    let (remembered, _, _) = build(&[]);
    assert!(
        !remembered,
        "a walk covering a racily clean file was remembered"
    );
}
