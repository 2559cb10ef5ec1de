//! Upperdir -> layer -> snapshot round trips: the tree survives, whiteouts
//! and opaque directories convert both ways, and output is deterministic.

#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use hoist_builder::layer::{Compression, LayerOptions, write_layer};
use hoist_store::extract::{ApplyOptions, WhiteoutMode, apply_layer};

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn set_mtime(path: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

fn mknod_whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

/// An upperdir with one of everything a RUN step can leave behind.
fn make_upperdir(root: &Path) {
    fs::create_dir_all(root.join("etc/app")).unwrap();
    fs::write(root.join("etc/app/config"), b"key=value\n").unwrap();
    fs::write(root.join("etc/app/suid"), b"#!/bin/sh\n").unwrap();
    chown(&root.join("etc/app/suid"), 1000, 1000);
    fs::set_permissions(
        root.join("etc/app/suid"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::write(root.join("etc/app/cap"), b"ping").unwrap();
    let cap = [
        1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    xattr::set(root.join("etc/app/cap"), "security.capability", &cap).unwrap();
    xattr::set(root.join("etc/app/config"), "user.note", b"hello").unwrap();
    fs::hard_link(
        root.join("etc/app/config"),
        root.join("etc/app/config.hard"),
    )
    .unwrap();
    symlink("config", root.join("etc/app/link")).unwrap();
    chown(&root.join("etc/app/link"), 1000, 1000);
    let long = "d".repeat(90);
    fs::create_dir_all(root.join(format!("{long}/{long}"))).unwrap();
    fs::write(
        root.join(format!("{long}/{long}/{}", "f".repeat(120))),
        b"long",
    )
    .unwrap();
    symlink("t".repeat(150), root.join("longlink")).unwrap();
    // Deleted files and a deleted-then-recreated (opaque) directory.
    mknod_whiteout(&root.join("etc/app/removed"));
    mknod_whiteout(&root.join("gone"));
    fs::create_dir(root.join("opaque")).unwrap();
    xattr::set(root.join("opaque"), "trusted.overlay.opaque", b"y").unwrap();
    fs::write(root.join("opaque/new"), b"new").unwrap();
    fs::create_dir(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    for item in walkdir::WalkDir::new(root).contents_first(true) {
        set_mtime(item.unwrap().path(), 1_700_000_000);
    }
}

/// path -> description of everything a layer must keep.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    for item in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let item = item.unwrap();
        let rel = item
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let m = item.path().symlink_metadata().unwrap();
        let mut xattrs: Vec<String> = xattr::list(item.path())
            .unwrap()
            .map(|k| {
                let v = xattr::get(item.path(), &k).unwrap().unwrap_or_default();
                format!("{}={v:?}", k.to_string_lossy())
            })
            .collect();
        xattrs.sort();
        let content = if m.is_file() {
            format!("{:?}", fs::read(item.path()).unwrap())
        } else if m.file_type().is_symlink() {
            fs::read_link(item.path()).unwrap().display().to_string()
        } else {
            String::new()
        };
        let link_group = if m.is_file() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone()
        } else {
            String::new()
        };
        out.insert(
            rel,
            format!(
                "mode={:o} uid={} gid={} mtime={} rdev={} {content} xattrs={xattrs:?} link={link_group}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.rdev()
            ),
        );
    }
    out
}

fn tar_names(layer: &[u8]) -> Vec<String> {
    let (reader, _) = hoist_store::extract::decompress(layer).unwrap();
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

#[test]
fn upperdir_round_trips_through_a_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir(&upper).unwrap();
    make_upperdir(&upper);
    for compression in [
        Compression::default(),
        Compression::Zstd { level: 3 },
        Compression::Uncompressed,
    ] {
        let mut layer = Vec::new();
        let info = write_layer(&upper, &mut layer, compression, &LayerOptions::default()).unwrap();
        assert!(!info.empty);
        assert_eq!(info.size, layer.len() as u64, "{compression:?}");
        assert_eq!(
            info.digest,
            hoist_store::digest::sha256_bytes(&layer),
            "{compression:?}"
        );
        assert_eq!(info.media_type, compression.media_type());

        let names = tar_names(&layer);
        for expected in [
            "etc/app/.wh.removed",
            ".wh.gone",
            "opaque/",
            "opaque/.wh..wh..opq",
        ] {
            assert!(
                names.contains(&expected.to_string()),
                "{compression:?}: {expected} in {names:?}"
            );
        }
        // Sorted by the upperdir's names, as containerd walks it: a
        // whiteout sits where the name it deletes sorts, the opaque marker
        // right after its directory.
        let source_names: Vec<String> = names
            .iter()
            .map(|n| n.replace(".wh..wh..opq", "").replace(".wh.", ""))
            .collect();
        let mut sorted = source_names.clone();
        sorted.sort();
        assert_eq!(source_names, sorted, "entries are in sorted order");

        let snap = tmp.path().join(format!("snap-{compression:?}"));
        fs::create_dir(&snap).unwrap();
        let stats = apply_layer(layer.as_slice(), &snap, &ApplyOptions::default()).unwrap();
        assert_eq!(stats.diff_id, info.diff_id, "{compression:?}");
        assert_eq!(describe(&snap), describe(&upper), "{compression:?}");
    }
}

#[test]
fn a_compressed_layer_is_the_one_the_store_makes_of_the_same_diff() {
    // A push or a save compresses the stored plain tar with the store's
    // compressor: a layer compressed here must come out byte for byte the
    // same, or one diff would have two digests per algorithm.
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir(&upper).unwrap();
    make_upperdir(&upper);
    // Over a gzip member (1 MiB), so the layer has several.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(upper.join("big"), big).unwrap();
    let opts = LayerOptions::default();
    let mut plain = Vec::new();
    write_layer(&upper, &mut plain, Compression::Uncompressed, &opts).unwrap();
    for compression in [Compression::default(), Compression::Zstd { level: 3 }] {
        let mut layer = Vec::new();
        let info = write_layer(&upper, &mut layer, compression, &opts).unwrap();
        let mut expected = Vec::new();
        hoist_store::compress::compress(plain.as_slice(), &mut expected, compression).unwrap();
        assert!(layer == expected, "{compression:?}: not the store's bytes");
        assert_eq!(
            info.diff_id.digest(),
            hoist_store::digest::sha256_bytes(&plain)
        );
    }
}

#[test]
fn layers_are_deterministic_and_clamp_mtimes() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = LayerOptions {
        mtime_clamp: Some(1_600_000_000),
    };
    let mut digests = Vec::new();
    for run in ["a", "b"] {
        // Same content made in different places at different times.
        let upper = tmp.path().join(run);
        fs::create_dir(&upper).unwrap();
        make_upperdir(&upper);
        for item in walkdir::WalkDir::new(&upper) {
            set_mtime(
                item.unwrap().path(),
                if run == "a" {
                    1_700_000_000
                } else {
                    1_800_000_000
                },
            );
        }
        let info = write_layer(&upper, std::io::sink(), Compression::default(), &opts).unwrap();
        digests.push((info.diff_id, info.digest));
    }
    assert_eq!(digests[0], digests[1]);

    let upper = tmp.path().join("a");
    let mut layer = Vec::new();
    write_layer(&upper, &mut layer, Compression::Uncompressed, &opts).unwrap();
    let mut archive = tar::Archive::new(layer.as_slice());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 1_600_000_000);
    }
}

#[test]
fn an_empty_upperdir_is_an_empty_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let info = write_layer(
        tmp.path(),
        std::io::sink(),
        Compression::default(),
        &LayerOptions::default(),
    )
    .unwrap();
    assert!(info.empty);
}

#[test]
fn layer_applies_onto_a_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    for p in ["etc/app/removed", "gone/sub/file", "opaque/old", "keep"] {
        let path = rootfs.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, p).unwrap();
    }
    let upper = tmp.path().join("upper");
    fs::create_dir(&upper).unwrap();
    make_upperdir(&upper);
    let mut layer = Vec::new();
    write_layer(
        &upper,
        &mut layer,
        Compression::default(),
        &LayerOptions::default(),
    )
    .unwrap();
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Apply,
        ..ApplyOptions::default()
    };
    apply_layer(layer.as_slice(), &rootfs, &opts).unwrap();
    assert!(!rootfs.join("etc/app/removed").exists());
    assert!(!rootfs.join("gone").exists());
    assert!(!rootfs.join("opaque/old").exists());
    assert!(rootfs.join("opaque/new").exists());
    assert!(rootfs.join("keep").exists());
    assert!(!rootfs.join("opaque/.wh..wh..opq").exists());
}
