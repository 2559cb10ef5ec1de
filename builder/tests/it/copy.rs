//! COPY and ADD into a destination root, as root (real chown).

// Test helpers outside #[test] fns panic on setup failure by design.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use hoist_builder::context::BuildContext;
use hoist_builder::copy::{Chmod, CopyJob, CopyOptions, CopySource, SourceView, copy};
use hoist_store::inroot::Root;

fn require_root() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "these tests chown files and must run as root"
    );
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The tree under `root` as one line per entry:
/// `f /path 644 uid:gid content`, `d /path 755 uid:gid`, `l /path -> target`.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let meta = entry.path().symlink_metadata().unwrap();
        let ft = meta.file_type();
        let own = format!("{}:{}", meta.uid(), meta.gid());
        let mode = meta.mode() & 0o7777;
        if ft.is_symlink() {
            out.push(format!(
                "l /{rel} -> {} {own}",
                fs::read_link(entry.path()).unwrap().display()
            ));
        } else if ft.is_dir() {
            out.push(format!("d /{rel} {mode:o} {own}"));
        } else {
            let content = fs::read_to_string(entry.path()).unwrap_or_else(|_| "<binary>".into());
            out.push(format!("f /{rel} {mode:o} {own} {content}"));
        }
    }
    out
}

/// A context with a few files, owned by a non-root user to prove the reset.
fn context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    let p = ctx.path();
    write(p, "a.txt", "A");
    write(p, "b.txt", "B");
    write(p, "c.md", "C");
    write(p, "dir/x", "X");
    write(p, "dir/sub/y", "Y");
    write(p, "dir/notes.md", "N");
    write(p, "deep/a/b/c.txt", "ABC");
    symlink("x", p.join("dir/lx")).unwrap();
    symlink("a.txt", p.join("link.txt")).unwrap();
    symlink("/etc", p.join("abs-etc")).unwrap();
    symlink("../../../../etc", p.join("rel-etc")).unwrap();
    for entry in walkdir::WalkDir::new(p) {
        let entry = entry.unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            entry.path(),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        if entry.file_type().is_dir() {
            chmod(entry.path(), 0o755);
        } else if entry.file_type().is_file() {
            chmod(entry.path(), 0o644);
        }
    }
    ctx
}

/// A destination image root with users and a couple of directories.
fn image() -> tempfile::TempDir {
    let img = tempfile::tempdir().unwrap();
    let p = img.path();
    write(
        p,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    );
    write(p, "etc/group", "root:x:0:\nstaff:x:50:app\napp:x:1000:\n");
    fs::create_dir_all(p.join("existing")).unwrap();
    fs::create_dir_all(p.join("work")).unwrap();
    img
}

fn paths(sources: &[&str]) -> Vec<CopySource> {
    sources
        .iter()
        .map(|s| CopySource::Path((*s).to_owned()))
        .collect()
}

struct Case {
    name: &'static str,
    sources: &'static [&'static str],
    dest: &'static str,
    opts: fn() -> CopyOptions,
    /// Lines of `tree()` that must be present (the image's own files are
    /// not listed).
    want: &'static [&'static str],
    /// Lines that must be absent (prefix match).
    absent: &'static [&'static str],
}

fn none() -> CopyOptions {
    CopyOptions::default()
}

const CASES: &[Case] = &[
    Case {
        name: "file into dir with slash",
        sources: &["a.txt"],
        dest: "/dst/",
        opts: none,
        want: &["d /dst 755 0:0", "f /dst/a.txt 644 0:0 A"],
        absent: &[],
    },
    Case {
        name: "file to a new file name",
        sources: &["a.txt"],
        dest: "/dst/renamed",
        opts: none,
        want: &["d /dst 755 0:0", "f /dst/renamed 644 0:0 A"],
        absent: &[],
    },
    Case {
        name: "file into an existing dir without slash",
        sources: &["a.txt"],
        dest: "/existing",
        opts: none,
        want: &["f /existing/a.txt 644 0:0 A"],
        absent: &[],
    },
    Case {
        name: "directory copies its contents, symlinks stay symlinks",
        sources: &["dir"],
        dest: "/dst",
        opts: none,
        want: &[
            "d /dst 755 0:0",
            "l /dst/lx -> x 0:0",
            "f /dst/notes.md 644 0:0 N",
            "d /dst/sub 755 0:0",
            "f /dst/sub/y 644 0:0 Y",
            "f /dst/x 644 0:0 X",
        ],
        absent: &["d /dst/dir"],
    },
    Case {
        name: "directory contents into the image root",
        sources: &["dir"],
        dest: "/",
        opts: none,
        want: &["f /x 644 0:0 X", "f /sub/y 644 0:0 Y", "l /lx -> x 0:0"],
        absent: &["d /dir"],
    },
    Case {
        name: "wildcard",
        sources: &["*.txt"],
        dest: "/dst/",
        opts: none,
        want: &[
            "f /dst/a.txt 644 0:0 A",
            "f /dst/b.txt 644 0:0 B",
            "f /dst/link.txt 644 0:0 A",
        ],
        absent: &["f /dst/c.md"],
    },
    Case {
        name: "wildcard in a middle component",
        sources: &["deep/*/b/*.txt"],
        dest: "/dst/",
        opts: none,
        want: &["f /dst/c.txt 644 0:0 ABC"],
        absent: &[],
    },
    Case {
        name: "wildcard matching nothing is not an error (BuildKit)",
        sources: &["*.none", "a.txt"],
        dest: "/dst/",
        opts: none,
        want: &["f /dst/a.txt 644 0:0 A"],
        absent: &[],
    },
    Case {
        name: "relative destination uses WORKDIR",
        sources: &["a.txt"],
        dest: "rel/",
        opts: none,
        want: &["f /work/rel/a.txt 644 0:0 A"],
        absent: &[],
    },
    Case {
        name: "dot destination is WORKDIR",
        sources: &["a.txt"],
        dest: ".",
        opts: none,
        want: &["f /work/a.txt 644 0:0 A"],
        absent: &[],
    },
    Case {
        name: "named symlink source is followed",
        sources: &["link.txt"],
        dest: "/dst/",
        opts: none,
        want: &["f /dst/link.txt 644 0:0 A"],
        absent: &["l /dst/link.txt"],
    },
    Case {
        name: "chown by name, parents get the owner too",
        sources: &["dir"],
        dest: "/new/dst",
        opts: || CopyOptions {
            chown: Some("app:staff".into()),
            ..Default::default()
        },
        want: &[
            "d /new 755 1000:50",
            "d /new/dst 755 1000:50",
            "f /new/dst/x 644 1000:50 X",
            "l /new/dst/lx -> x 1000:50",
        ],
        absent: &[],
    },
    Case {
        name: "chown numeric uid only means uid:uid",
        sources: &["a.txt"],
        dest: "/dst/",
        opts: || CopyOptions {
            chown: Some("4242".into()),
            ..Default::default()
        },
        want: &["f /dst/a.txt 644 4242:4242 A"],
        absent: &[],
    },
    Case {
        name: "chown name only takes the passwd group",
        sources: &["a.txt"],
        dest: "/dst/",
        opts: || CopyOptions {
            chown: Some("app".into()),
            ..Default::default()
        },
        want: &["f /dst/a.txt 644 1000:1000 A"],
        absent: &[],
    },
    Case {
        name: "from another stage keeps ownership",
        sources: &["a.txt"],
        dest: "/dst/",
        opts: || CopyOptions {
            preserve_owner: true,
            ..Default::default()
        },
        want: &["f /dst/a.txt 644 1234:5678 A"],
        absent: &[],
    },
    Case {
        name: "chmod octal applies to files and directories",
        sources: &["dir"],
        dest: "/dst",
        opts: || CopyOptions {
            chmod: Some(Chmod::parse("0700").unwrap()),
            ..Default::default()
        },
        want: &["d /dst 700 0:0", "f /dst/x 700 0:0 X", "d /dst/sub 700 0:0"],
        absent: &[],
    },
    Case {
        name: "chmod symbolic",
        sources: &["dir"],
        dest: "/dst",
        opts: || CopyOptions {
            chmod: Some(Chmod::parse("u=rwX,go=").unwrap()),
            ..Default::default()
        },
        want: &["d /dst 700 0:0", "f /dst/x 600 0:0 X"],
        absent: &[],
    },
    Case {
        name: "exclude",
        sources: &["dir", "c.md"],
        dest: "/dst/",
        opts: || CopyOptions {
            exclude: vec!["*.md".into(), "sub".into()],
            ..Default::default()
        },
        want: &["f /dst/x 644 0:0 X"],
        absent: &["f /dst/notes.md", "f /dst/c.md", "d /dst/sub"],
    },
    Case {
        name: "parents keeps the source directories",
        sources: &["deep/a/b/c.txt", "dir/sub"],
        dest: "/dst/",
        opts: || CopyOptions {
            parents: true,
            ..Default::default()
        },
        want: &[
            "f /dst/deep/a/b/c.txt 644 0:0 ABC",
            "f /dst/dir/sub/y 644 0:0 Y",
        ],
        absent: &["f /dst/c.txt"],
    },
    Case {
        name: "parents with a /./ pivot",
        sources: &["./deep/./a/b/*.txt"],
        dest: "/dst/",
        opts: || CopyOptions {
            parents: true,
            ..Default::default()
        },
        want: &["f /dst/a/b/c.txt 644 0:0 ABC"],
        absent: &["d /dst/deep"],
    },
    Case {
        name: "link is accepted",
        sources: &["a.txt"],
        dest: "/dst/",
        opts: || CopyOptions {
            link: true,
            ..Default::default()
        },
        want: &["f /dst/a.txt 644 0:0 A"],
        absent: &[],
    },
];

fn run(
    ctx: &Path,
    img: &Path,
    sources: &[CopySource],
    dest: &str,
    opts: &CopyOptions,
) -> Result<(), String> {
    let root = Root::open(ctx).unwrap();
    let view = SourceView {
        root: &root,
        ignore: None,
    };
    let req = CopyJob {
        source: Some(view),
        sources,
        dest,
        workdir: "/work",
        dest_root: img,
        options: opts,
    };
    copy(&req).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn copy_rules_table() {
    require_root();
    let ctx = context();
    for case in CASES {
        let img = image();
        let opts = (case.opts)();
        run(
            ctx.path(),
            img.path(),
            &paths(case.sources),
            case.dest,
            &opts,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got = tree(img.path());
        for want in case.want {
            assert!(
                got.iter().any(|l| l == want),
                "{}: missing {want:?} in {got:#?}",
                case.name
            );
        }
        for absent in case.absent {
            assert!(
                !got.iter().any(|l| l.starts_with(absent)),
                "{}: unexpected {absent:?} in {got:#?}",
                case.name
            );
        }
    }
}

#[test]
fn copy_errors_table() {
    require_root();
    let ctx = context();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["missing"], "/dst/", "\"/missing\": not found"),
        (
            &["a.txt", "b.txt"],
            "/dst",
            "When using COPY with more than one source file, the destination must be a directory and end with a /",
        ),
        (
            &["*.txt"],
            "/file",
            "When using COPY with more than one source file, the destination must be a directory and end with a /",
        ),
        (
            &["nodir/*.txt"],
            "/dst/",
            "/nodir: No such file or directory (os error 2)",
        ),
        (
            &["https://example.com/x"],
            "/dst/",
            "source can't be a URL for COPY",
        ),
        (&[], "/dst/", "no source files were specified"),
        // Escapes resolve inside the context, where there is no etc/passwd.
        (
            &["../../../../etc/passwd"],
            "/dst/",
            "\"/etc/passwd\": not found",
        ),
        (
            &["abs-etc/passwd"],
            "/dst/",
            "\"/abs-etc/passwd\": not found",
        ),
        (
            &["rel-etc/passwd"],
            "/dst/",
            "\"/rel-etc/passwd\": not found",
        ),
    ];
    for (sources, dest, want) in cases {
        let img = image();
        let err = run(
            ctx.path(),
            img.path(),
            &paths(sources),
            dest,
            &CopyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err, *want, "{sources:?} -> {dest}");
    }
    let img = image();
    let opts = CopyOptions {
        chown: Some("ghost".into()),
        ..Default::default()
    };
    let err = run(ctx.path(), img.path(), &paths(&["a.txt"]), "/dst/", &opts).unwrap_err();
    assert_eq!(
        err,
        "unable to find user ghost: no matching entries in passwd file"
    );
}

#[test]
fn source_symlink_escapes_stay_in_the_context() {
    require_root();
    let ctx = context();
    // A symlinked directory pointing at / copies the CONTEXT's root, not the host's.
    symlink("/", ctx.path().join("slash")).unwrap();
    let img = image();
    run(
        ctx.path(),
        img.path(),
        &paths(&["slash/a.txt"]),
        "/dst/",
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(img.path().join("dst/a.txt")).unwrap(),
        "A"
    );
    // Copying the symlinked dir itself follows it to the context root, and
    // symlinks inside are copied as links, not followed.
    let img = image();
    run(
        ctx.path(),
        img.path(),
        &paths(&["slash"]),
        "/dst",
        &CopyOptions::default(),
    )
    .unwrap();
    let got = tree(img.path());
    assert!(
        got.contains(&"l /dst/abs-etc -> /etc 0:0".to_owned()),
        "{got:#?}"
    );
}

#[test]
fn destination_symlinks_cannot_escape_the_image() {
    require_root();
    let ctx = context();
    let outside = tempfile::tempdir().unwrap();
    let host_file = outside.path().join("host.txt");
    fs::write(&host_file, "host").unwrap();

    let img = image();
    // A directory symlink to an absolute host path: followed inside the image.
    symlink(outside.path(), img.path().join("evil")).unwrap();
    run(
        ctx.path(),
        img.path(),
        &paths(&["a.txt"]),
        "/evil/",
        &CopyOptions::default(),
    )
    .unwrap();
    assert!(
        !outside.path().join("a.txt").exists(),
        "wrote outside the image"
    );
    let inside = img
        .path()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("a.txt");
    assert_eq!(fs::read_to_string(&inside).unwrap(), "A");

    // ../ chains are clamped at the image root.
    symlink("../../../../../../..", img.path().join("up")).unwrap();
    run(
        ctx.path(),
        img.path(),
        &paths(&["b.txt"]),
        "/up/x/",
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(img.path().join("x/b.txt")).unwrap(), "B");

    // A destination that is a symlink to a file is followed like BuildKit's
    // fs.RootPath does, but inside the image: the host file is untouched.
    symlink(&host_file, img.path().join("target.txt")).unwrap();
    run(
        ctx.path(),
        img.path(),
        &paths(&["a.txt"]),
        "/target.txt",
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "host");
    assert!(
        img.path()
            .join("target.txt")
            .symlink_metadata()
            .unwrap()
            .is_symlink()
    );
    let inside = img.path().join(host_file.strip_prefix("/").unwrap());
    assert_eq!(fs::read_to_string(inside).unwrap(), "A");
    // Inside a copied tree, an existing leaf symlink is replaced, never
    // written through.
    symlink(&host_file, img.path().join("existing/x")).unwrap();
    run(
        ctx.path(),
        img.path(),
        &paths(&["dir/x"]),
        "/existing/",
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "host");
    assert!(
        img.path()
            .join("existing/x")
            .symlink_metadata()
            .unwrap()
            .is_file()
    );

    // A symlink where the copy needs a directory is an error, not a redirect.
    symlink(outside.path(), img.path().join("existing/sub")).unwrap();
    let err = run(
        ctx.path(),
        img.path(),
        &paths(&["dir"]),
        "/existing",
        &CopyOptions::default(),
    )
    .unwrap_err();
    assert!(err.contains("cannot copy to non-directory"), "{err}");
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        1,
        "outside dir touched"
    );
}

#[test]
fn metadata_mtimes_hardlinks_xattrs_are_kept() {
    require_root();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "d/f", "F");
    fs::hard_link(ctx.path().join("d/f"), ctx.path().join("d/g")).unwrap();
    chmod(&ctx.path().join("d/f"), 0o4755);
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 123_456_789);
    fs::File::options()
        .write(true)
        .open(ctx.path().join("d/f"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    xattr::set(ctx.path().join("d/f"), "user.hoist", b"yes").unwrap();
    write(ctx.path(), "d/sub/z", "Z");
    xattr::set(ctx.path().join("d/sub"), "user.dir", b"d").unwrap();
    let dir_t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_400_000_000);
    filetime::set_file_mtime(
        ctx.path().join("d"),
        filetime::FileTime::from_system_time(dir_t),
    )
    .unwrap();
    let img = image();
    run(
        ctx.path(),
        img.path(),
        &paths(&["d"]),
        "/dst",
        &CopyOptions::default(),
    )
    .unwrap();
    let f = fs::metadata(img.path().join("dst/f")).unwrap();
    let g = fs::metadata(img.path().join("dst/g")).unwrap();
    assert_eq!(f.ino(), g.ino(), "hardlink kept");
    assert_eq!(f.mode() & 0o7777, 0o4755, "setuid kept after chown");
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_500_000_000, 123_456_789));
    let d = fs::metadata(img.path().join("dst")).unwrap();
    assert_eq!(
        d.mtime(),
        1_400_000_000,
        "new dest dir takes the source dir's mtime"
    );
    assert_eq!(
        xattr::get(img.path().join("dst/f"), "user.hoist")
            .unwrap()
            .as_deref(),
        Some(&b"yes"[..])
    );
}

#[test]
fn dockerignore_hides_files_from_copy() {
    require_root();
    let ctx_dir = tempfile::tempdir().unwrap();
    write(ctx_dir.path(), "keep.txt", "K");
    write(ctx_dir.path(), "secret.txt", "S");
    write(ctx_dir.path(), "logs/a.log", "L");
    write(ctx_dir.path(), "logs/keep.log", "KL");
    write(
        ctx_dir.path(),
        ".dockerignore",
        "secret.txt\nlogs\n!logs/keep.log\n",
    );
    let ctx = BuildContext::from_dir(ctx_dir.path(), None).unwrap();
    let img = image();
    let opts = CopyOptions::default();
    let sources = paths(&["."]);
    let req = CopyJob {
        source: Some(ctx.view()),
        sources: &sources,
        dest: "/app/",
        workdir: "/",
        dest_root: img.path(),
        options: &opts,
    };
    copy(&req).unwrap();
    let mut got: Vec<String> = tree(&img.path().join("app"));
    got.sort();
    assert_eq!(
        got,
        [
            "d /logs 755 0:0",
            "f /.dockerignore 644 0:0 secret.txt\nlogs\n!logs/keep.log\n",
            "f /keep.txt 644 0:0 K",
            "f /logs/keep.log 644 0:0 KL",
        ]
    );
    let sources = paths(&["secret.txt"]);
    let req = CopyJob {
        sources: &sources,
        ..req
    };
    assert_eq!(
        copy(&req).unwrap_err().to_string(),
        "\"/secret.txt\": not found"
    );
}

#[test]
fn heredoc_sources() {
    require_root();
    let img = image();
    let sources = vec![
        CopySource::Inline {
            name: "hello".into(),
            content: b"hi\n".to_vec(),
        },
        CopySource::Inline {
            name: "run.sh".into(),
            content: b"#!/bin/sh\n".to_vec(),
        },
    ];
    let opts = CopyOptions::default();
    let req = CopyJob {
        source: None,
        sources: &sources,
        dest: "/h/",
        workdir: "/",
        dest_root: img.path(),
        options: &opts,
    };
    copy(&req).unwrap();
    let got = tree(img.path());
    assert!(
        got.contains(&"f /h/hello 644 0:0 hi\n".to_owned()),
        "{got:#?}"
    );
    let opts = CopyOptions {
        chmod: Some(Chmod::parse("755").unwrap()),
        chown: Some("app".into()),
        ..Default::default()
    };
    let one = &sources[1..];
    let req = CopyJob {
        sources: one,
        dest: "/bin/run",
        options: &opts,
        ..req
    };
    copy(&req).unwrap();
    let got = tree(img.path());
    assert!(
        got.contains(&"f /bin/run 755 1000:1000 #!/bin/sh\n".to_owned()),
        "{got:#?}"
    );
}

fn sample_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(33);
        h.set_gid(44);
        h.set_mtime(1_234_567_890);
        h.set_size(data.len() as u64);
        if let Some(link) = link {
            h.set_link_name(link).unwrap();
        }
        h.set_path(path).unwrap();
        h.set_cksum();
        builder.append(&h, data).unwrap();
    };
    add("top/", tar::EntryType::Directory, 0o750, b"", None);
    add("top/file", tar::EntryType::Regular, 0o640, b"payload", None);
    add(
        "top/link",
        tar::EntryType::Symlink,
        0o777,
        b"",
        Some("file"),
    );
    add(
        "top/hard",
        tar::EntryType::Link,
        0o640,
        b"",
        Some("top/file"),
    );
    add(
        "top/.wh.plain",
        tar::EntryType::Regular,
        0o644,
        b"just a file",
        None,
    );
    builder.into_inner().unwrap()
}

fn compress(kind: &str, data: &[u8]) -> Vec<u8> {
    match kind {
        "tar" => data.to_vec(),
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(data, 3).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn add_extracts_every_compression() {
    require_root();
    let tar = sample_tar();
    for kind in ["tar", "gz", "bz2", "xz", "zst"] {
        let ctx = tempfile::tempdir().unwrap();
        // The name says nothing: detection is by magic bytes.
        fs::write(ctx.path().join("archive.bin"), compress(kind, &tar)).unwrap();
        let img = image();
        let opts = CopyOptions {
            add: true,
            ..Default::default()
        };
        run(
            ctx.path(),
            img.path(),
            &paths(&["archive.bin"]),
            "/x",
            &opts,
        )
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let got = tree(img.path());
        for want in [
            "d /x/top 750 33:44",
            "f /x/top/file 640 33:44 payload",
            "f /x/top/hard 640 33:44 payload",
            "l /x/top/link -> file 33:44",
            "f /x/top/.wh.plain 644 33:44 just a file",
        ] {
            assert!(
                got.iter().any(|l| l == want),
                "{kind}: missing {want:?} in {got:#?}"
            );
        }
        let f = fs::metadata(img.path().join("x/top/file")).unwrap();
        let h = fs::metadata(img.path().join("x/top/hard")).unwrap();
        assert_eq!(f.ino(), h.ino(), "{kind}: hardlink");
        assert_eq!(f.mtime(), 1_234_567_890, "{kind}: mtime");
        // COPY never unpacks.
        let img = image();
        run(
            ctx.path(),
            img.path(),
            &paths(&["archive.bin"]),
            "/x/",
            &CopyOptions::default(),
        )
        .unwrap();
        assert!(
            img.path().join("x/archive.bin").is_file(),
            "{kind}: COPY must copy the archive"
        );
    }
}

#[test]
fn add_non_archive_and_hostile_archive() {
    require_root();
    let ctx = tempfile::tempdir().unwrap();
    // gzip magic but not a tar inside: copied as is.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b"not a tar").unwrap();
    fs::write(ctx.path().join("notes.gz"), e.finish().unwrap()).unwrap();
    fs::write(ctx.path().join("plain.tar"), b"plain text named .tar").unwrap();
    let img = image();
    let opts = CopyOptions {
        add: true,
        ..Default::default()
    };
    run(
        ctx.path(),
        img.path(),
        &paths(&["notes.gz", "plain.tar"]),
        "/d/",
        &opts,
    )
    .unwrap();
    assert!(img.path().join("d/notes.gz").is_file());
    assert_eq!(
        fs::read_to_string(img.path().join("d/plain.tar")).unwrap(),
        "plain text named .tar"
    );

    // An archive that tries ../ and a symlink pointing out of the image.
    let outside = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_link_name(outside.path()).unwrap();
    h.set_path("out").unwrap();
    h.set_cksum();
    builder.append(&h, std::io::empty()).unwrap();
    for path in ["out/pwned", "../../../../escape"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        builder.append(&h, &b"x"[..]).unwrap();
    }
    fs::write(ctx.path().join("evil.tar"), builder.into_inner().unwrap()).unwrap();
    let img = image();
    run(ctx.path(), img.path(), &paths(&["evil.tar"]), "/e/", &opts).unwrap();
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "wrote through the symlink"
    );
    assert!(
        img.path().join("e/escape").is_file(),
        "../ clamped to the destination"
    );
    assert!(
        img.path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("pwned")
            .is_file()
    );
}

/// A one-shot HTTP server on 127.0.0.1 serving `body` for every request.
fn serve(body: Vec<u8>, extra_headers: &'static str, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n{extra_headers}Connection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_url_with_checksum() {
    require_root();
    let body = b"downloaded content".to_vec();
    let digest = {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)))
    };
    let base = serve(body.clone(), "", 3);
    let img = image();
    let tmp = tempfile::tempdir().unwrap();
    let good = CopyOptions {
        add: true,
        checksum: Some(digest.clone()),
        tmp_dir: Some(tmp.path().into()),
        ..Default::default()
    };
    let sources = vec![CopySource::Url(format!("{base}/files/tool.tar.gz"))];
    let req = CopyJob {
        source: None,
        sources: &sources,
        dest: "/opt/",
        workdir: "/",
        dest_root: img.path(),
        options: &good,
    };
    copy(&req).unwrap();
    let meta = fs::metadata(img.path().join("opt/tool.tar.gz")).unwrap();
    assert_eq!(fs::read(img.path().join("opt/tool.tar.gz")).unwrap(), body);
    assert_eq!(
        meta.mode() & 0o7777,
        0o600,
        "URL downloads are 0600 like Docker"
    );
    assert_eq!(meta.mtime(), 1_445_412_480, "mtime from Last-Modified");
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    let bad = CopyOptions {
        checksum: Some(format!("sha256:{}", "0".repeat(64))),
        ..good.clone()
    };
    let img2 = image();
    let req = CopyJob {
        dest_root: img2.path(),
        options: &bad,
        ..req
    };
    let err = copy(&req).unwrap_err().to_string();
    assert!(
        err.starts_with("digest mismatch for http://127.0.0.1:"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!("expected sha256:{}, got {digest}", "0".repeat(64))),
        "{err}"
    );
    assert!(
        !img2.path().join("opt").exists(),
        "nothing written on mismatch"
    );

    // A file name for a new file destination, and Content-Disposition.
    let base = serve(
        body.clone(),
        "Content-Disposition: attachment; filename=\"named.bin\"\r\n",
        1,
    );
    let sources = vec![CopySource::Url(format!("{base}/download?id=1"))];
    let req = CopyJob {
        sources: &sources,
        dest_root: img.path(),
        options: &good,
        ..req
    };
    copy(&req).unwrap();
    assert!(img.path().join("opt/named.bin").is_file());

    // COPY refuses URLs; git and --keep-git-dir are not supported yet.
    let copy_opts = CopyOptions::default();
    let req = CopyJob {
        options: &copy_opts,
        ..req
    };
    assert_eq!(
        copy(&req).unwrap_err().to_string(),
        "source can't be a URL for COPY"
    );
    let git = vec![CopySource::Url(
        "https://github.com/moby/buildkit.git".into(),
    )];
    let add = CopyOptions {
        add: true,
        ..Default::default()
    };
    let req = CopyJob {
        sources: &git,
        options: &add,
        ..req
    };
    assert!(
        copy(&req)
            .unwrap_err()
            .to_string()
            .contains("not supported yet")
    );
    let keep = CopyOptions {
        add: true,
        keep_git_dir: true,
        ..Default::default()
    };
    let req = CopyJob {
        options: &keep,
        ..req
    };
    assert_eq!(
        copy(&req).unwrap_err().to_string(),
        "ADD --keep-git-dir is not supported yet"
    );
}

/// ADD `--unpack` (Dockerfile 1.17), as BuildKit reads it: a remote
/// archive is kept packed unless `--unpack=true`; a local archive is
/// unpacked unless `--unpack=false`.
#[test]
fn r10_add_unpack() {
    require_root();
    let gz = compress("gz", &sample_tar());
    let tmp = tempfile::tempdir().unwrap();
    let opts = |unpack| CopyOptions {
        add: true,
        unpack,
        tmp_dir: Some(tmp.path().into()),
        ..Default::default()
    };
    // Remote: (--unpack, whether /opt/top/file exists, whether the
    // archive itself was kept).
    for (unpack, unpacked) in [(None, false), (Some(false), false), (Some(true), true)] {
        let base = serve(gz.clone(), "", 1);
        let img = image();
        let sources = vec![CopySource::Url(format!("{base}/dl/tool.tar.gz"))];
        let o = opts(unpack);
        let req = CopyJob {
            source: None,
            sources: &sources,
            dest: "/opt/",
            workdir: "/",
            dest_root: img.path(),
            options: &o,
        };
        copy(&req).unwrap_or_else(|e| panic!("--unpack={unpack:?}: {e}"));
        let got = tree(img.path());
        assert_eq!(
            got.iter().any(|l| l == "f /opt/top/file 640 33:44 payload"),
            unpacked,
            "--unpack={unpack:?}: {got:#?}"
        );
        assert_eq!(
            img.path().join("opt/tool.tar.gz").is_file(),
            !unpacked,
            "--unpack={unpack:?}: {got:#?}"
        );
    }
    // A remote file that is no archive is copied even with --unpack=true.
    let base = serve(b"plain".to_vec(), "", 1);
    let img = image();
    let sources = vec![CopySource::Url(format!("{base}/notes.txt"))];
    let o = opts(Some(true));
    let req = CopyJob {
        source: None,
        sources: &sources,
        dest: "/opt/",
        workdir: "/",
        dest_root: img.path(),
        options: &o,
    };
    copy(&req).unwrap();
    assert_eq!(
        fs::read(img.path().join("opt/notes.txt")).unwrap(),
        b"plain"
    );

    // Local.
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("tool.tar.gz"), &gz).unwrap();
    for (unpack, unpacked) in [(None, true), (Some(true), true), (Some(false), false)] {
        let img = image();
        run(
            ctx.path(),
            img.path(),
            &paths(&["tool.tar.gz"]),
            "/opt/",
            &opts(unpack),
        )
        .unwrap_or_else(|e| panic!("local --unpack={unpack:?}: {e}"));
        assert_eq!(
            img.path().join("opt/top/file").is_file(),
            unpacked,
            "local --unpack={unpack:?}"
        );
        assert_eq!(
            img.path().join("opt/tool.tar.gz").is_file(),
            !unpacked,
            "local --unpack={unpack:?}"
        );
    }
}

#[test]
fn user_resolution_reads_the_image_not_the_host() {
    let img = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    write(host.path(), "passwd", "app:x:777:777::/host:/bin/sh\n");
    fs::create_dir_all(img.path().join("etc")).unwrap();
    // /etc/passwd -> an absolute host path: resolved inside the image, where it is missing.
    symlink(host.path().join("passwd"), img.path().join("etc/passwd")).unwrap();
    let err = hoist_builder::user::resolve_user(img.path(), "app").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user app: no matching entries in passwd file"
    );
    // Numeric users need no passwd file.
    let u = hoist_builder::user::resolve_user(img.path(), "1000").unwrap();
    assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 0, "/"));
    // And a real file inside is read.
    fs::remove_file(img.path().join("etc/passwd")).unwrap();
    write(
        img.path(),
        "etc/passwd",
        "app:x:1000:1001::/home/app:/bin/sh\n",
    );
    write(img.path(), "etc/group", "g1:x:1001:\nextra:x:2000:app\n");
    let u = hoist_builder::user::resolve_user(img.path(), "app").unwrap();
    // Supplementary groups: the primary one, then the ones listing the
    // user, as BuildKit HEAD sets them.
    assert_eq!(
        (u.uid, u.gid, u.additional_gids.clone(), u.home.as_str()),
        (1000, 1001, vec![1001, 2000], "/home/app")
    );
    let mut all = BTreeMap::new();
    all.insert("app:extra", (1000, 2000));
    all.insert("1000:1001", (1000, 1001));
    for (spec, want) in all {
        assert_eq!(
            hoist_builder::user::resolve_chown(img.path(), spec).unwrap(),
            want,
            "{spec}"
        );
    }
}

#[test]
fn builder_entry_points() {
    require_root();
    let ctx = context();
    write(ctx.path(), ".dockerignore", "b.txt\n");
    let img = image();
    let heredocs = vec![hoist_parser::syntax::Heredoc {
        name: "greeting".into(),
        fd: 0,
        expand: false,
        chomp: true,
        content: "\thello\n".into(),
    }];
    let sources = vec!["*.txt".to_owned()];
    let context = hoist_builder::context::BuildContext::from_dir(ctx.path(), None).unwrap();
    let req = hoist_builder::copy::CopyRequest {
        source: context.view(),
        preserve_owner: false,
        sources: &sources,
        heredocs: &heredocs,
        dest: "/app/",
        chown: Some((1000, 50)),
        chmod: Some("u=rw,go=r"),
        exclude: &[],
        parents: false,
        is_add: false,
        checksum: None,
        unpack: None,
        prefetched: None,
        reuse: None,
    };
    hoist_builder::copy::copy_into(img.path(), &req).unwrap();
    let got = tree(&img.path().join("app"));
    assert_eq!(
        got,
        [
            "f /a.txt 644 1000:50 A",
            "f /greeting 644 1000:50 hello\n",
            "f /link.txt 644 1000:50 A"
        ],
        "b.txt is ignored, the heredoc is chomped"
    );
    let sum = context.checksum(&sources, &Default::default()).unwrap();
    let keys: Vec<&str> = sum.files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(keys, ["a.txt", "link.txt"]);

    // WORKDIR's mkdir -p follows symlinks inside the root only.
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), img.path().join("wd")).unwrap();
    hoist_builder::copy::mkdir_all_in_root(img.path(), "/wd/a/b", 1000, 1000).unwrap();
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    let made = img
        .path()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("a/b");
    let meta = fs::metadata(&made).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (1000, 0o755));

    // Bind-mount sources resolve inside the root.
    symlink("/etc", ctx.path().join("etc-link")).unwrap();
    let err = hoist_builder::copy::resolve_in_root(ctx.path(), "etc-link/passwd").unwrap_err();
    assert_eq!(err.to_string(), "\"/etc-link/passwd\": not found");
    let dir = hoist_builder::copy::resolve_in_root(ctx.path(), "/dir/../dir/sub").unwrap();
    assert_eq!(dir, ctx.path().join("dir/sub"));
    assert_eq!(hoist_builder::copy::join_workdir("/w", "x/"), "/w/x");
}

/// Not a correctness test: COPY throughput of a copy of /usr/share. Run
/// with `cargo test -p hoist-builder --release -- --ignored copy_throughput
/// --nocapture`.
#[test]
#[ignore = "benchmark"]
fn copy_throughput() {
    require_root();
    let src = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg("/usr/share")
        .arg(src.path().join("share"))
        .status()
        .unwrap();
    assert!(status.success());
    let img = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let root = Root::open(src.path()).unwrap();
    let sources = paths(&["share"]);
    let opts = CopyOptions::default();
    let job = CopyJob {
        source: Some(SourceView {
            root: &root,
            ignore: None,
        }),
        sources: &sources,
        dest: "/usr/share",
        workdir: "/",
        dest_root: img.path(),
        options: &opts,
    };
    let stats = copy(&job).unwrap();
    let took = start.elapsed().as_secs_f64();
    println!(
        "COPY of {} entries, {:.1} MB: {took:.2}s = {:.0} entries/s, {:.1} MB/s",
        stats.entries,
        stats.bytes as f64 / 1e6,
        stats.entries as f64 / took,
        stats.bytes as f64 / 1e6 / took
    );
}

/// Plain files of a directory source are copied on every core (issue 9):
/// the result must be exactly the sequential one, file modes and mtimes,
/// hardlinks, xattrs and the directories' mtimes (set after their
/// contents) included.
#[test]
fn r9_parallel_directory_copy_keeps_every_file_and_its_metadata() {
    require_root();
    let ctx = tempfile::tempdir().unwrap();
    let p = ctx.path();
    let t = |secs| std::time::UNIX_EPOCH + std::time::Duration::new(secs, 0);
    for i in 0..600u64 {
        let rel = format!("d/sub{}/deeper{}/f{i}", i % 12, i % 3);
        write(p, &rel, &format!("content {i}"));
        chmod(&p.join(&rel), if i % 5 == 0 { 0o600 } else { 0o755 });
        fs::File::options()
            .write(true)
            .open(p.join(&rel))
            .unwrap()
            .set_modified(t(1_600_000_000 + i))
            .unwrap();
    }
    xattr::set(p.join("d/sub1/deeper1/f1"), "user.hoist", b"x").unwrap();
    fs::hard_link(p.join("d/sub2/deeper2/f2"), p.join("d/sub2/link-to-f2")).unwrap();
    for s in 0..12 {
        filetime::set_file_mtime(
            p.join(format!("d/sub{s}")),
            filetime::FileTime::from_system_time(t(1_300_000_000 + s)),
        )
        .unwrap();
    }
    let img = image();
    run(
        p,
        img.path(),
        &paths(&["d"]),
        "/dst",
        &CopyOptions::default(),
    )
    .unwrap();

    // Same tree, same content and modes, owned by root as COPY does.
    let expected: Vec<String> = tree(&p.join("d"))
        .into_iter()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(' ').collect();
            if fields[0] != "l" {
                fields[3] = "0:0";
            }
            fields.join(" ")
        })
        .collect();
    assert_eq!(tree(&img.path().join("dst")), expected);
    for i in [0u64, 7, 599] {
        let rel = format!("dst/sub{}/deeper{}/f{i}", i % 12, i % 3);
        let meta = fs::metadata(img.path().join(&rel)).unwrap();
        assert_eq!(meta.mtime(), 1_600_000_000 + i as i64, "{rel}");
    }
    for s in 0..12 {
        let meta = fs::metadata(img.path().join(format!("dst/sub{s}"))).unwrap();
        assert_eq!(meta.mtime(), 1_300_000_000 + s as i64, "sub{s}");
    }
    let f2 = fs::metadata(img.path().join("dst/sub2/deeper2/f2")).unwrap();
    let link = fs::metadata(img.path().join("dst/sub2/link-to-f2")).unwrap();
    assert_eq!(f2.ino(), link.ino(), "hardlink kept");
    assert_eq!(
        xattr::get(img.path().join("dst/sub1/deeper1/f1"), "user.hoist")
            .unwrap()
            .as_deref(),
        Some(&b"x"[..])
    );
}
