//! Issues 8 and 9: a COPY that misses because some of its files changed
//! takes the unchanged ones from its earlier build, and its result is the
//! same, byte for byte, as a copy from scratch.

use std::path::Path;

use filetime::{FileTime, set_file_mtime};

use crate::common::Hoist;

/// Files and directories of the context get this mtime, below the
/// SOURCE_DATE_EPOCH of the builds, so that the layers carry them as they
/// are (later ones would be clamped and compare equal whatever they were).
const OLD: i64 = 1_000_000_000;
const EPOCH: &str = "1500000000";

const DOCKERFILE: &str = "FROM busybox
COPY --chown=1000:1000 sub /owned
COPY . /app
RUN cat /app/a /owned/x > /sum
";

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Gives every entry of the context the mtime `OLD`, except `keep`.
fn age(dir: &Path, keep: &[&str]) {
    for entry in walkdir::WalkDir::new(dir).contents_first(true) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(dir).unwrap();
        if keep.iter().any(|k| Path::new(k) == rel) {
            continue;
        }
        set_file_mtime(entry.path(), FileTime::from_unix_time(OLD, 0)).unwrap();
    }
}

/// Builds `ctx` as `tag` with SOURCE_DATE_EPOCH; returns the image ID and
/// the plain progress log.
fn build(hoist: &Hoist, ctx: &Path, tag: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["build", "--progress=plain", "-t", tag];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = hoist
        .command(&args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "hoist {args:?} failed:\n{log}");
    let id = hoist.inspect(tag)["Id"].as_str().unwrap().to_owned();
    (id, log)
}

fn reused_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(": reused ")).collect()
}

#[test]
fn r8_changed_copy_reuses_unchanged_files_and_matches_a_copy_from_scratch() {
    let hoist = Hoist::with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let dir = ctx.path();
    write(dir, "Dockerfile", DOCKERFILE);
    write(dir, "a", "file a\n");
    write(dir, "b", "file b\n");
    write(dir, "d/c", "file c\n");
    write(dir, "d/e", "file e\n");
    write(dir, "sub/x", "file x\n");
    write(dir, "sub/y", "file y\n");
    // A file of /app sorting after its subdirectories' files: the files
    // of one directory are not one run of a plain path sort.
    write(dir, "z", "file z\n");
    age(dir, &[]);
    let (first, log) = build(&hoist, dir, "reuse:1", &[]);
    assert_eq!(reused_lines(&log), Vec::<&str>::new(), "{log}");

    type Change = fn(&Path);
    let rounds: [(&str, Change, &[&str]); 6] = [
        (
            // Same size and mtime, other content; and a file whose mtime
            // alone changed, which the reused copy must not keep.
            "change a file, touch another",
            |dir| {
                write(dir, "b", "file B\n");
                age(dir, &["d/c"]);
                set_file_mtime(dir.join("d/c"), FileTime::from_unix_time(OLD + 7, 0)).unwrap();
            },
            &["#3 COPY . /app: reused 6 unchanged files of an earlier build"],
        ),
        (
            // d/c gets its old mtime back: copied again too.
            "add a file",
            |dir| {
                write(dir, "d/new", "a new file\n");
                age(dir, &[]);
            },
            &["#3 COPY . /app: reused 7 unchanged files of an earlier build"],
        ),
        (
            "delete a file",
            |dir| {
                std::fs::remove_file(dir.join("b")).unwrap();
                age(dir, &[]);
            },
            &["#3 COPY . /app: reused 8 unchanged files of an earlier build"],
        ),
        (
            "chmod a file",
            |dir| {
                use std::os::unix::fs::PermissionsExt;
                let path = dir.join("a");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).unwrap();
            },
            &["#3 COPY . /app: reused 7 unchanged files of an earlier build"],
        ),
        (
            // The --chown COPY reuses its other file; COPY . /app then has
            // another parent and copies everything.
            "change a file under --chown",
            |dir| {
                write(dir, "sub/x", "file X\n");
                age(dir, &[]);
            },
            &["#2 COPY --chown=1000:1000 sub /owned: reused 1 unchanged file of an earlier build"],
        ),
        (
            // Without the earlier snapshot the step is copied from scratch.
            "change a file after the snapshots were removed",
            |dir| {
                write(dir, "d/e", "file E\n");
                age(dir, &[]);
            },
            &[],
        ),
    ];
    let mut ids = vec![first];
    for (round, (what, change, expected)) in rounds.into_iter().enumerate() {
        change(dir);
        if round == 5 {
            let snapshots = hoist.root().join("hoist/snapshots");
            std::fs::remove_dir_all(&snapshots).unwrap();
            std::fs::create_dir(&snapshots).unwrap();
        }
        let tag = format!("reuse:{}", round + 2);
        let (incremental, log) = build(&hoist, dir, &tag, &[]);
        assert_eq!(reused_lines(&log), expected, "{what}:\n{log}");
        let scratch_tag = format!("scratch:{}", round + 2);
        let (scratch, log) = build(&hoist, dir, &scratch_tag, &["--no-cache"]);
        assert_eq!(reused_lines(&log), Vec::<&str>::new(), "{what}:\n{log}");
        assert_eq!(
            incremental,
            scratch,
            "{what}: the incremental build differs from the one from scratch:\n{:#}\n{:#}",
            hoist.inspect(&tag)["RootFS"],
            hoist.inspect(&scratch_tag)["RootFS"]
        );
        assert!(
            !ids.contains(&incremental),
            "{what}: the image did not change"
        );
        ids.push(incremental);
    }
    hoist.ok(&["fsck"]);
    hoist.assert_valid_for_other_tools("reuse:7");
    let sum = hoist.exec("reuse:7", &["cat", "/sum", "/app/d/new", "/app/d/e"]);
    assert_eq!(sum, "file a\nfile X\na new file\nfile E\n");
}

/// Two cases where the earlier snapshot holds the right bytes but not what
/// a copy from scratch makes: files that were hard links of each other in
/// the earlier build and are separate files now (one inode linked at two
/// paths would become a hard link in the layer), and a file that gained an
/// extended attribute or another value for it (which the step's key does
/// not cover).
#[test]
fn r8_reused_copy_splits_old_hard_links_and_copies_changed_xattrs() {
    let hoist = Hoist::with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let dir = ctx.path();
    write(dir, "Dockerfile", "FROM busybox\nCOPY . /app\n");
    write(dir, "a", "same content\n");
    std::fs::hard_link(dir.join("a"), dir.join("b")).unwrap();
    write(dir, "c", "file c\n");
    age(dir, &[]);
    build(&hoist, dir, "links:1", &[]);

    type Change = fn(&Path);
    let rounds: [(&str, Change, &[&str]); 4] = [
        (
            // a stays linked to the earlier inode; b is copied.
            "split a hard link and change another file",
            |dir| {
                std::fs::remove_file(dir.join("b")).unwrap();
                write(dir, "b", "same content\n");
                write(dir, "c", "file C\n");
                age(dir, &[]);
            },
            &["#2 COPY . /app: reused 2 unchanged files of an earlier build"],
        ),
        (
            "give a file an xattr and change another file",
            |dir| {
                rustix::fs::setxattr(
                    dir.join("a"),
                    "user.hoist",
                    b"1",
                    rustix::fs::XattrFlags::empty(),
                )
                .unwrap();
                write(dir, "c", "file c again\n");
                age(dir, &[]);
            },
            &["#2 COPY . /app: reused 2 unchanged files of an earlier build"],
        ),
        (
            // The same xattr on both sides: a is taken again.
            "keep the xattr and change another file",
            |dir| {
                write(dir, "c", "file c once more\n");
                age(dir, &[]);
            },
            &["#2 COPY . /app: reused 3 unchanged files of an earlier build"],
        ),
        (
            // Same name, same content, another value: copied.
            "change the xattr's value and another file",
            |dir| {
                rustix::fs::setxattr(
                    dir.join("a"),
                    "user.hoist",
                    b"2",
                    rustix::fs::XattrFlags::empty(),
                )
                .unwrap();
                write(dir, "c", "file c for the last time\n");
                age(dir, &[]);
            },
            &["#2 COPY . /app: reused 2 unchanged files of an earlier build"],
        ),
    ];
    for (round, (what, change, expected)) in rounds.into_iter().enumerate() {
        change(dir);
        let tag = format!("links:{}", round + 2);
        let (incremental, log) = build(&hoist, dir, &tag, &[]);
        assert_eq!(reused_lines(&log), expected, "{what}:\n{log}");
        let scratch_tag = format!("links-scratch:{}", round + 2);
        let (scratch, _) = build(&hoist, dir, &scratch_tag, &["--no-cache"]);
        assert_eq!(
            incremental,
            scratch,
            "{what}: the incremental build differs from the one from scratch:\n{:#}\n{:#}",
            hoist.inspect(&tag)["RootFS"],
            hoist.inspect(&scratch_tag)["RootFS"]
        );
    }
    hoist.ok(&["fsck"]);
}
