//! Layer extraction: hostile tarballs are refused without touching anything
//! outside the destination; metadata and whiteouts survive extraction.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use hoist_store::extract::{ApplyOptions, ExtractError, Format, WhiteoutMode, apply_layer};

/// One raw tar entry; names are written byte for byte, so hostile names
/// that tar::Builder refuses (`..`, absolute) can be built.
#[derive(Clone)]
pub struct Raw {
    pub name: String,
    pub kind: u8,
    pub link: String,
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub pax: Vec<(String, Vec<u8>)>,
    pub dev: (u32, u32),
}

pub fn file(name: &str, data: &[u8]) -> Raw {
    Raw {
        name: name.into(),
        kind: b'0',
        link: String::new(),
        data: data.to_vec(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        pax: Vec::new(),
        dev: (0, 0),
    }
}

pub fn dir(name: &str) -> Raw {
    Raw {
        kind: b'5',
        mode: 0o755,
        ..file(name, b"")
    }
}

pub fn symlink(name: &str, target: &str) -> Raw {
    Raw {
        kind: b'2',
        link: target.into(),
        mode: 0o777,
        ..file(name, b"")
    }
}

pub fn hardlink(name: &str, target: &str) -> Raw {
    Raw {
        kind: b'1',
        link: target.into(),
        ..file(name, b"")
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn header(name: &[u8], kind: u8, size: u64, raw: &Raw) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_size(size);
    header.set_mode(raw.mode);
    header.set_uid(raw.uid);
    header.set_gid(raw.gid);
    header.set_mtime(raw.mtime);
    if !raw.link.is_empty() {
        header.set_link_name_literal(raw.link.as_bytes()).unwrap();
    }
    header.set_device_major(raw.dev.0).unwrap();
    header.set_device_minor(raw.dev.1).unwrap();
    header.set_cksum();
    header
}

/// Builds an uncompressed tar from raw entries.
pub fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for raw in entries {
        if !raw.pax.is_empty() {
            let records: Vec<u8> = raw.pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let h = header(b"PaxHeaders/x", b'x', records.len() as u64, raw);
            append(&mut out, &h, &records);
        }
        let h = header(raw.name.as_bytes(), raw.kind, raw.data.len() as u64, raw);
        append(&mut out, &h, &raw.data);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn append(out: &mut Vec<u8>, header: &tar::Header, data: &[u8]) {
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0, pad));
}

pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Everything under `root`: path -> (mode, size, content hash or link).
fn snapshot_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in walkdir::WalkDir::new(root).sort_by_file_name() {
        let item = item.unwrap();
        let meta = item.path().symlink_metadata().unwrap();
        let extra = if meta.is_file() {
            format!("{:?}", fs::read(item.path()).unwrap())
        } else if meta.file_type().is_symlink() {
            fs::read_link(item.path()).unwrap().display().to_string()
        } else {
            String::new()
        };
        out.insert(
            item.path().display().to_string(),
            format!("{:o} {} {} {extra}", meta.mode(), meta.len(), meta.mtime()),
        );
    }
    out
}

struct Sandbox {
    _tmp: tempfile::TempDir,
    top: std::path::PathBuf,
    dest: std::path::PathBuf,
    sentinel: std::path::PathBuf,
}

fn sandbox() -> Sandbox {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().to_owned();
    let dest = top.join("dest");
    let sentinel = top.join("sentinel");
    fs::create_dir(&dest).unwrap();
    fs::create_dir(&sentinel).unwrap();
    fs::write(sentinel.join("canary"), b"do not touch").unwrap();
    Sandbox {
        _tmp: tmp,
        top,
        dest,
        sentinel,
    }
}

#[test]
fn hostile_layers_are_refused_without_touching_the_outside() {
    let sb = sandbox();
    let sentinel = sb.sentinel.display().to_string();
    let canary = format!("{sentinel}/canary");
    let whiteout_with_content = Raw {
        data: b"x".to_vec(),
        ..file("a/.wh.b", b"")
    };
    // (case, entries, whiteout mode)
    let cases: Vec<(&str, Vec<Raw>, WhiteoutMode)> = vec![
        (
            "dotdot file",
            vec![file("../sentinel/evil", b"x")],
            WhiteoutMode::Overlay,
        ),
        (
            "nested dotdot",
            vec![file("a/../../sentinel/evil", b"x")],
            WhiteoutMode::Overlay,
        ),
        (
            "absolute file",
            vec![file(&format!("{sentinel}/evil"), b"x")],
            WhiteoutMode::Overlay,
        ),
        (
            "absolute dir",
            vec![dir(&format!("{sentinel}/evil/"))],
            WhiteoutMode::Overlay,
        ),
        (
            "symlink escape then write through it (relative)",
            vec![symlink("link", "../sentinel"), file("link/evil", b"x")],
            WhiteoutMode::Overlay,
        ),
        (
            "symlink escape then write through it (absolute)",
            vec![symlink("link", &sentinel), file("link/canary", b"x")],
            WhiteoutMode::Overlay,
        ),
        (
            "symlink chain escape",
            vec![
                symlink("a", "b"),
                symlink("b", "../../../../../../../../sentinel"),
                file("a/evil", b"x"),
            ],
            WhiteoutMode::Overlay,
        ),
        (
            "symlink then dir through it",
            vec![symlink("link", &sentinel), dir("link/evil/")],
            WhiteoutMode::Overlay,
        ),
        (
            "hardlink escape (dotdot)",
            vec![hardlink("evil", "../sentinel/canary")],
            WhiteoutMode::Overlay,
        ),
        (
            "hardlink escape (absolute)",
            vec![hardlink("evil", &canary)],
            WhiteoutMode::Overlay,
        ),
        (
            "hardlink through an escaping symlink",
            vec![symlink("s", &sentinel), hardlink("evil", "s/canary")],
            WhiteoutMode::Overlay,
        ),
        (
            "whiteout of dotdot",
            vec![file(".wh..", b"")],
            WhiteoutMode::Apply,
        ),
        (
            "empty whiteout name",
            vec![file("a/.wh.", b"")],
            WhiteoutMode::Apply,
        ),
        (
            "whiteout with content",
            vec![whiteout_with_content.clone()],
            WhiteoutMode::Overlay,
        ),
        (
            "whiteout with content (apply)",
            vec![whiteout_with_content],
            WhiteoutMode::Apply,
        ),
        (
            "opaque marker with content",
            vec![Raw {
                data: b"x".to_vec(),
                ..file("a/.wh..wh..opq", b"")
            }],
            WhiteoutMode::Apply,
        ),
        (
            "whiteout escaping the root",
            vec![file("../.wh.sentinel", b"")],
            WhiteoutMode::Apply,
        ),
        (
            "absolute whiteout",
            vec![file(&format!("{sentinel}/.wh.canary"), b"")],
            WhiteoutMode::Apply,
        ),
        (
            "dotdot opaque",
            vec![file("../sentinel/.wh..wh..opq", b"")],
            WhiteoutMode::Apply,
        ),
        (
            "file for the root",
            vec![file("./", b"x")],
            WhiteoutMode::Overlay,
        ),
    ];
    let before = snapshot_tree(&sb.sentinel);
    for (case, entries, mode) in cases {
        fs::remove_dir_all(&sb.dest).unwrap();
        fs::create_dir(&sb.dest).unwrap();
        let opts = ApplyOptions {
            whiteouts: mode,
            ..ApplyOptions::default()
        };
        let result = apply_layer(tar_of(&entries).as_slice(), &sb.dest, &opts);
        assert!(
            result.is_err(),
            "case {case}: must be refused, got {result:?}"
        );
        assert_eq!(
            snapshot_tree(&sb.sentinel),
            before,
            "case {case}: sentinel changed"
        );
        let top: Vec<_> = fs::read_dir(&sb.top)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            top.len(),
            2,
            "case {case}: something appeared beside dest: {top:?}"
        );
    }
}

#[test]
fn whiteouts_through_escaping_symlinks_delete_nothing_outside() {
    let sb = sandbox();
    let sentinel = sb.sentinel.display().to_string();
    let before = snapshot_tree(&sb.sentinel);
    for mode in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        for entries in [
            vec![symlink("s", &sentinel), file("s/.wh.canary", b"")],
            vec![symlink("s", "../sentinel"), file("s/.wh..wh..opq", b"")],
        ] {
            fs::remove_dir_all(&sb.dest).unwrap();
            fs::create_dir(&sb.dest).unwrap();
            let opts = ApplyOptions {
                whiteouts: mode,
                ..ApplyOptions::default()
            };
            // Refused or harmless, but never outside.
            let _ = apply_layer(tar_of(&entries).as_slice(), &sb.dest, &opts);
            assert_eq!(snapshot_tree(&sb.sentinel), before, "mode {mode:?}");
        }
    }
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let sb = sandbox();
    let entries = vec![
        dir("real/"),
        symlink("etc", "/real"),
        file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        symlink("up", "../../.."),
        file("up/real/up.txt", b"contained"),
    ];
    apply_layer(
        tar_of(&entries).as_slice(),
        &sb.dest,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read(sb.dest.join("real/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(fs::read(sb.dest.join("real/up.txt")).unwrap(), b"contained");
    assert!(
        sb.dest
            .join("etc")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn gzip_bomb_is_refused_with_a_clear_error() {
    let sb = sandbox();
    let big = Raw {
        data: vec![0; 200 << 20],
        ..file("zeros", b"")
    };
    let bomb = gzip(&tar_of(&[big]), 9);
    assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
    let err = apply_layer(bomb.as_slice(), &sb.dest, &ApplyOptions::default()).unwrap_err();
    assert!(matches!(err, ExtractError::Bomb { .. }), "got {err}");
    assert!(err.to_string().contains("decompression bomb"), "got {err}");

    // The absolute size limit, independent of the ratio.
    let small = gzip(&tar_of(&[file("f", &[7; 4 << 20])]), 1);
    let opts = ApplyOptions {
        max_uncompressed: 1 << 20,
        ..ApplyOptions::default()
    };
    let err = apply_layer(small.as_slice(), &sb.dest, &opts).unwrap_err();
    assert!(matches!(err, ExtractError::Bomb { .. }), "got {err}");
}

#[test]
fn metadata_is_preserved() {
    let sb = sandbox();
    let cap = vec![
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let entries = vec![
        Raw {
            mode: 0o750,
            uid: 1000,
            gid: 1001,
            mtime: 1_500_000_000,
            ..dir("d/")
        },
        Raw {
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            mtime: 1_500_000_001,
            ..file("d/suid", b"#!")
        },
        Raw {
            pax: vec![
                ("SCHILY.xattr.security.capability".into(), cap.clone()),
                ("SCHILY.xattr.user.note".into(), b"hi".to_vec()),
                (
                    "SCHILY.xattr.trusted.overlay.redirect".into(),
                    b"/x".to_vec(),
                ),
                ("uid".into(), b"3000000".to_vec()),
                ("mtime".into(), b"1500000002.25".to_vec()),
            ],
            ..file("d/cap", b"bin")
        },
        Raw {
            uid: 1000,
            gid: 1000,
            mtime: 1_500_000_003,
            ..symlink("d/link", "/nowhere")
        },
        hardlink("d/hard", "d/suid"),
        Raw {
            kind: b'3',
            dev: (1, 3),
            mode: 0o666,
            ..file("d/null", b"")
        },
        Raw {
            kind: b'6',
            mode: 0o600,
            ..file("d/fifo", b"")
        },
    ];
    let stats = apply_layer(
        tar_of(&entries).as_slice(),
        &sb.dest,
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(stats.format, Format::Uncompressed);
    assert_eq!(stats.entries, 7);
    let d = sb.dest.join("d");
    let meta = |p: &str| d.join(p).symlink_metadata().unwrap();
    let dm = d.symlink_metadata().unwrap();
    assert_eq!(
        (dm.mode() & 0o7777, dm.uid(), dm.gid(), dm.mtime()),
        (0o750, 1000, 1001, 1_500_000_000)
    );
    let s = meta("suid");
    assert_eq!(
        (s.mode() & 0o7777, s.uid(), s.mtime()),
        (0o4755, 1000, 1_500_000_001)
    );
    let c = meta("cap");
    assert_eq!(
        (c.uid(), c.mtime(), c.mtime_nsec()),
        (3_000_000, 1_500_000_002, 250_000_000)
    );
    assert_eq!(
        xattr::get(d.join("cap"), "security.capability").unwrap(),
        Some(cap)
    );
    assert_eq!(
        xattr::get(d.join("cap"), "user.note").unwrap(),
        Some(b"hi".to_vec())
    );
    assert_eq!(
        xattr::get(d.join("cap"), "trusted.overlay.redirect").unwrap(),
        None,
        "overlay xattrs are dropped"
    );
    let l = meta("link");
    assert!(l.file_type().is_symlink());
    assert_eq!((l.uid(), l.mtime()), (1000, 1_500_000_003));
    assert_eq!(meta("hard").ino(), s.ino());
    let n = meta("null");
    assert!(
        n.file_type().is_char_device(),
        "devices are created as root"
    );
    assert_eq!(n.rdev(), rustix::fs::makedev(1, 3));
    assert!(meta("fifo").file_type().is_fifo());

    // Without the devices option they are skipped and counted.
    let sb2 = sandbox();
    let opts = ApplyOptions {
        devices: false,
        ..ApplyOptions::default()
    };
    let stats = apply_layer(tar_of(&entries).as_slice(), &sb2.dest, &opts).unwrap();
    assert_eq!(stats.skipped_devices, 1);
    assert!(!sb2.dest.join("d/null").exists());
}

#[test]
fn whiteouts_in_overlay_mode() {
    for (userxattr, key) in [
        (false, "trusted.overlay.opaque"),
        (true, "user.overlay.opaque"),
    ] {
        let sb = sandbox();
        let entries = vec![
            dir("a/"),
            file("a/.wh..wh..opq", b""),
            file("a/kept", b"k"),
            file(".wh.gone", b""),
            file("b/.wh.deep", b""),
        ];
        let opts = ApplyOptions {
            userxattr,
            ..ApplyOptions::default()
        };
        let stats = apply_layer(gzip(&tar_of(&entries), 6).as_slice(), &sb.dest, &opts).unwrap();
        assert_eq!(stats.format, Format::Gzip);
        assert_eq!(stats.whiteouts, 3);
        assert_eq!(
            xattr::get(sb.dest.join("a"), key).unwrap(),
            Some(b"y".to_vec()),
            "{key}"
        );
        for wh in ["gone", "b/deep"] {
            let m = sb.dest.join(wh).symlink_metadata().unwrap();
            assert!(
                m.file_type().is_char_device() && m.rdev() == 0,
                "{wh} is a 0/0 whiteout"
            );
        }
        assert!(!sb.dest.join("a/.wh..wh..opq").exists());
        assert!(sb.dest.join("a/kept").exists());
    }
}

#[test]
fn whiteouts_in_apply_mode() {
    let sb = sandbox();
    for p in ["a/old1", "a/old2", "b/x", "c/y"] {
        let path = sb.dest.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, p).unwrap();
    }
    let entries = vec![
        dir("a/"),
        file("a/new", b"n"),
        file("a/.wh..wh..opq", b""),
        file("a/newer", b"n"),
        file(".wh.b", b""),
        file("c/.wh.y", b""),
        file("nowhere/.wh.z", b""),
    ];
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Apply,
        ..ApplyOptions::default()
    };
    let zstd = zstd::encode_all(tar_of(&entries).as_slice(), 3).unwrap();
    let stats = apply_layer(zstd.as_slice(), &sb.dest, &opts).unwrap();
    assert_eq!(stats.format, Format::Zstd);
    let mut names: Vec<_> = walkdir::WalkDir::new(&sb.dest)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(&sb.dest)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["a", "a/new", "a/newer", "c"]);
}

#[test]
fn directory_modes_and_mtimes_apply_after_contents() {
    let sb = sandbox();
    let entries = vec![
        Raw {
            mode: 0o555,
            mtime: 1_000,
            ..dir("ro/")
        },
        Raw {
            mtime: 2_000,
            ..file("ro/f", b"x")
        },
        Raw {
            mode: 0o1777,
            mtime: 3_000,
            ..dir("tmp/")
        },
        Raw {
            mode: 0o700,
            mtime: 4_000,
            ..dir("later/")
        },
        Raw {
            mode: 0o750,
            mtime: 5_000,
            ..dir("later/")
        },
    ];
    apply_layer(
        tar_of(&entries).as_slice(),
        &sb.dest,
        &ApplyOptions::default(),
    )
    .unwrap();
    let ro = sb.dest.join("ro").metadata().unwrap();
    assert_eq!(
        (ro.permissions().mode() & 0o7777, ro.mtime()),
        (0o555, 1_000)
    );
    let tmp = sb.dest.join("tmp").metadata().unwrap();
    assert_eq!(
        (tmp.permissions().mode() & 0o7777, tmp.mtime()),
        (0o1777, 3_000)
    );
    let later = sb.dest.join("later").metadata().unwrap();
    assert_eq!(
        (later.permissions().mode() & 0o7777, later.mtime()),
        (0o750, 5_000),
        "the last entry for a directory wins"
    );
}

#[test]
fn diff_id_covers_the_whole_uncompressed_stream() {
    let sb = sandbox();
    let tar = tar_of(&[file("f", b"data")]);
    let expected = hoist_store::digest::sha256_bytes(&tar);
    let stats = apply_layer(gzip(&tar, 1).as_slice(), &sb.dest, &ApplyOptions::default()).unwrap();
    assert_eq!(stats.diff_id.digest(), expected);
    assert_eq!(stats.uncompressed_bytes, tar.len() as u64);
}

fn put_layer(store: &hoist_store::Store, entries: &[Raw]) -> (oci_spec::image::Descriptor, String) {
    let tar = tar_of(entries);
    let diff_id = hoist_store::digest::sha256_bytes(&tar).to_string();
    let gz = gzip(&tar, 1);
    let (digest, size) = store.put_blob_bytes(&gz).unwrap();
    let desc =
        oci_spec::image::Descriptor::new(oci_spec::image::MediaType::ImageLayerGzip, size, digest);
    (desc, diff_id)
}

/// Puts an image made of `layers` (raw tar entries, bottom first).
pub fn put_test_image(store: &hoist_store::Store, layers: &[Vec<Raw>]) -> hoist_store::Image {
    let (descs, diff_ids): (Vec<_>, Vec<_>) = layers.iter().map(|l| put_layer(store, l)).unzip();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    store.put_image_json(&config, &descs).unwrap()
}

#[test]
fn snapshots_stack_into_an_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let store = hoist_store::Store::open(tmp.path().join("root")).unwrap();
    let image = put_test_image(
        &store,
        &[
            vec![
                dir("a/"),
                file("a/one", b"1"),
                file("a/two", b"2"),
                dir("d/"),
                file("d/x", b"x"),
                file("keep", b"k"),
            ],
            vec![
                file("a/.wh.one", b""),
                dir("d/"),
                file("d/.wh..wh..opq", b""),
                file("d/y", b"y"),
            ],
            vec![file(".wh.keep", b""), file("a/three", b"3")],
        ],
    );
    let snapshots = hoist_store::snapshot::ensure_snapshots(&store, &image).unwrap();
    assert_eq!(snapshots.len(), 3);
    for (path, chain_id) in snapshots.iter().zip(image.chain_ids()) {
        assert_eq!(path, &store.snapshot_path(&chain_id));
    }
    // Idempotent: a second call finds them.
    assert_eq!(
        hoist_store::snapshot::ensure_snapshots(&store, &image).unwrap(),
        snapshots
    );
    // Nothing half-extracted is left in tmp.
    let leftovers: Vec<_> = walkdir::WalkDir::new(store.tmp_dir())
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let lowerdir = hoist_store::snapshot::lowerdir_option(&snapshots);
    rustix::mount::mount(
        "overlay",
        &merged,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(
            std::ffi::CString::new(format!("lowerdir={lowerdir}"))
                .unwrap()
                .as_c_str(),
        ),
    )
    .expect("mounting overlay needs root and overlayfs");
    let mut seen: Vec<String> = walkdir::WalkDir::new(&merged)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(&merged)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    seen.sort();
    let content = fs::read(merged.join("a/three"));
    rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty()).unwrap();
    assert_eq!(seen, ["a", "a/three", "a/two", "d", "d/y"]);
    assert_eq!(content.unwrap(), b"3");
}

#[test]
fn a_layer_lying_about_its_diff_id_makes_no_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let store = hoist_store::Store::open(tmp.path().join("root")).unwrap();
    let (desc, _) = put_layer(&store, &[file("evil", b"x")]);
    let (_, other_diff_id) = put_layer(&store, &[file("good", b"y")]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [other_diff_id]},
    });
    let image = store.put_image_json(&config, &[desc]).unwrap();
    let err = hoist_store::snapshot::ensure_snapshots(&store, &image).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(!store.snapshot_path(&image.chain_ids()[0]).exists());
}

/// A layer whose first entry is a PAX extended header claiming `size`
/// bytes, made up as it is read: records of pseudo-random hex digits (about
/// 2:1 under gzip, so far below the bomb guard's ratio), never held in
/// memory here. Counts the bytes handed out.
struct HugePaxLayer {
    header: [u8; 512],
    pos: u64,
    size: u64,
    state: u64,
    produced: std::rc::Rc<std::cell::Cell<u64>>,
}

impl std::io::Read for HugePaxLayer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.pos < 512 + self.size {
            buf[n] = if self.pos < 512 {
                self.header[self.pos as usize]
            } else if (self.pos - 512) % 64 == 63 {
                b'\n'
            } else {
                // xorshift64
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                b"0123456789abcdef"[(self.state & 15) as usize]
            };
            self.pos += 1;
            n += 1;
        }
        self.produced.set(self.produced.get() + n as u64);
        Ok(n)
    }
}

/// Peak resident set size of this process, in bytes.
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

#[test]
fn huge_pax_header_is_refused_with_bounded_memory() {
    const SIZE: u64 = 512 << 20;
    let sb = sandbox();
    let mut header = tar::Header::new_ustar();
    header.as_old_mut().name[..12].copy_from_slice(b"PaxHeaders/f");
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_size(SIZE);
    header.set_mode(0o644);
    header.set_cksum();
    let produced = std::rc::Rc::new(std::cell::Cell::new(0));
    let layer = HugePaxLayer {
        header: *header.as_bytes(),
        pos: 0,
        size: SIZE,
        state: 0x9e37_79b9_7f4a_7c15,
        produced: produced.clone(),
    };
    let gzipped = flate2::read::GzEncoder::new(layer, flate2::Compression::fast());
    // Start the high-water mark afresh where the kernel allows it
    // (clear_refs "5", Linux 4.0+); otherwise it holds since process start.
    let _ = fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss();
    let started = std::time::Instant::now();
    let err = apply_layer(gzipped, &sb.dest, &ApplyOptions::default()).unwrap_err();
    let elapsed = started.elapsed();
    let growth = peak_rss().saturating_sub(before);
    let message = err.to_string();
    assert!(
        message.contains(
            "tar PAX extended header ('x') of 536870912 bytes at offset 0 exceeds the 1 MiB limit"
        ),
        "got {message}"
    );
    assert!(
        produced.get() < 8 << 20,
        "read {} bytes of the layer before refusing it ({elapsed:?})",
        produced.get()
    );
    assert!(growth < 64 << 20, "peak RSS grew by {} MiB", growth >> 20);
    assert_eq!(fs::read_dir(&sb.dest).unwrap().count(), 0);
}

/// Numeric header fields left blank (all NULs, as some tar writers leave
/// uid, gid, mode and mtime) read as 0, as Go's archive/tar reads them for
/// Docker and containerd; the tar crate alone calls them an error.
#[test]
fn r11_blank_numeric_fields_read_as_zero() {
    let mut layer = tar_of(&[file("a", b"x")]);
    let mut header = tar::Header::from_byte_slice(&layer[..512]).clone();
    let old = header.as_old_mut();
    old.uid = [0; 8];
    old.gid = [0; 8];
    old.mtime = [0; 12];
    old.mode = [b' '; 8];
    header.set_cksum();
    layer[..512].copy_from_slice(header.as_bytes());
    let dest = tempfile::tempdir().unwrap();
    let opts = ApplyOptions {
        chown: true,
        ..ApplyOptions::default()
    };
    let stats = apply_layer(layer.as_slice(), dest.path(), &opts).unwrap();
    assert_eq!(stats.entries, 1);
    let meta = fs::symlink_metadata(dest.path().join("a")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777, meta.mtime()),
        (0, 0, 0, 0)
    );
}
