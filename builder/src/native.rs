//! The native snapshotter: RUN without overlayfs, as BuildKit's
//! `--oci-worker-snapshotter=native` does.
//!
//! Where overlayfs cannot be mounted (a store on an overlay root, a kernel
//! without user-namespace overlay), a RUN gets a fresh root directory filled
//! from the parent snapshots bottom first: each snapshot's whiteouts delete,
//! its opaque directories replace, and file data is copied with
//! `copy_file_range` (which shares extents where the filesystem can), never
//! hard-linked, because the RUN may change a file in place. After the RUN a
//! double walk compares the root with what the fill recorded and moves what
//! changed into an upperdir in overlay form (0/0 character devices for
//! deletions, the opaque xattr for a replaced directory), which the layer
//! writer and snapshot commit take as they take overlay's.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use hoist_store::Store;
use hoist_store::inroot::ops::is_overlay_xattr;
use hoist_store::snapshot::snapshot_options;

use crate::error::StepError;

/// The environment variable that chooses the snapshotter.
pub const SNAPSHOTTER_ENV: &str = "HOIST_SNAPSHOTTER";

/// How a RUN's root filesystem is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshotter {
    /// Parent snapshots as overlay lowerdirs, changes in the upperdir.
    Overlayfs,
    /// A copied root directory and a diff against the parent afterwards.
    Native,
}

/// Why `auto` chose native, kept for the one warning per process.
static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
static WARNED: AtomicBool = AtomicBool::new(false);

/// The snapshotter `HOIST_SNAPSHOTTER` names (`auto` by default: overlayfs
/// when an overlay with an upperdir mounts in the store's temp space, probed
/// once per process). The second value is a warning to show once, when
/// `auto` fell back to native.
pub fn select(store: &Store) -> Result<(Snapshotter, Option<String>), StepError> {
    let wanted = std::env::var(SNAPSHOTTER_ENV).unwrap_or_default();
    if let Some(chosen) = parse(&wanted)? {
        return Ok((chosen, None));
    }
    match PROBE.get_or_init(|| probe_overlay(store)) {
        Ok(()) => Ok((Snapshotter::Overlayfs, None)),
        Err(why) => {
            let warning = (!WARNED.swap(true, Ordering::Relaxed)).then(|| {
                format!(
                    "auto snapshotter: overlayfs is not available for {}, falling back to \
                     native: {why}",
                    store.root().display()
                )
            });
            Ok((Snapshotter::Native, warning))
        }
    }
}

/// `HOIST_SNAPSHOTTER`'s value: a snapshotter, or `None` for `auto`.
fn parse(value: &str) -> Result<Option<Snapshotter>, StepError> {
    match value {
        "overlayfs" | "overlay" => Ok(Some(Snapshotter::Overlayfs)),
        "native" => Ok(Some(Snapshotter::Native)),
        "" | "auto" => Ok(None),
        other => Err(StepError::Snapshotter(format!(
            "{SNAPSHOTTER_ENV}={other:?} is not a snapshotter (auto, overlayfs or native)"
        ))),
    }
}

/// Mounts a one-layer overlay with an upperdir in the store's temp space
/// and writes through it.
fn probe_overlay(store: &Store) -> Result<(), String> {
    let root = store.temp_path("probe");
    let dirs = ["lower", "upper", "work", "merged"].map(|d| root.join(d));
    let result = (|| {
        for dir in &dirs {
            fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let guard = hoist_sandbox::mount_overlay(&dirs[..1], &dirs[1], &dirs[2], &dirs[3])
            .map_err(|e| e.to_string())?;
        let wrote = fs_err::write(dirs[3].join("probe"), b"").map_err(|e| e.to_string());
        guard.unmount().map_err(|e| e.to_string())?;
        wrote
    })();
    let _ = hoist_sandbox::remove_workdir(&dirs[2]);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// What the fill left at one path, to tell afterwards what the RUN changed.
#[derive(Debug)]
struct Recorded {
    is_dir: bool,
    ino: u64,
    mode: u32,
    owner: (u32, u32),
    mtime: (i64, i64),
    /// A directory's own xattrs (its metadata is compared when it changed).
    xattrs: Vec<(OsString, Option<Vec<u8>>)>,
    ctime: (i64, i64),
    nlink: u64,
    /// The snapshot file the data came from (regular files).
    source: Option<PathBuf>,
    /// Directory entries (directories).
    children: Vec<OsString>,
}

/// A RUN's root directory filled from its parent snapshots.
pub struct NativeRoot {
    path: PathBuf,
    recorded: HashMap<PathBuf, Recorded>,
}

impl NativeRoot {
    /// Fills `path` (an existing empty directory) from `snapshots`, bottom
    /// first.
    pub fn fill(path: &Path, snapshots_bottom_first: &[PathBuf]) -> Result<Self, StepError> {
        let mut sources = HashMap::new();
        for snapshot in snapshots_bottom_first {
            let mut links = HashMap::new();
            apply_dir(snapshot, path, Path::new(""), &mut sources, &mut links)?;
        }
        let mut recorded = HashMap::new();
        record(path, Path::new(""), &mut sources, &mut recorded)?;
        Ok(Self {
            path: path.to_owned(),
            recorded,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves what changed since [`NativeRoot::fill`] into `upper` (an
    /// existing directory) in overlay form. The root is consumed: what
    /// changed is renamed out of it, not copied.
    pub fn diff_into(self, upper: &Path) -> Result<(), StepError> {
        let opaque = opaque_xattr();
        let mut ctx = Diff {
            recorded: &self.recorded,
            opaque,
        };
        ctx.dir(&self.path, upper, Path::new(""))?;
        Ok(())
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> StepError + '_ {
    move |e| StepError::Io {
        context: context.to_owned(),
        source: e,
    }
}

fn opaque_xattr() -> &'static str {
    if snapshot_options().userxattr {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|key| matches!(xattr::get(path, key), Ok(Some(v)) if v == b"y"))
        || path.join(OPAQUE_MARKER).is_file()
}

/// OCI's whiteout forms, which a snapshot holds where the filesystem takes
/// neither overlay's 0/0 device nor its xattrs (a store on overlayfs).
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

fn remove_any(path: &Path) -> Result<(), StepError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("reading a root entry")(e)),
        Ok(m) if m.is_dir() => {
            fs_err::remove_dir_all(path).map_err(io("removing a directory from the root"))
        }
        Ok(_) => fs_err::remove_file(path).map_err(io("removing a file from the root")),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<OsString>, StepError> {
    let mut names = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(io("listing a directory"))? {
        names.push(entry.map_err(io("listing a directory"))?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Applies one snapshot directory onto the root directory.
fn apply_dir(
    src: &Path,
    dst: &Path,
    rel: &Path,
    sources: &mut HashMap<PathBuf, PathBuf>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), StepError> {
    for name in sorted_entries(src)? {
        let from = src.join(&name);
        let to = dst.join(&name);
        let rel = rel.join(&name);
        let meta = fs_err::symlink_metadata(&from).map_err(io("reading a snapshot"))?;
        if is_whiteout(&meta) {
            remove_any(&to)?;
            continue;
        }
        if meta.is_file()
            && let Some(hidden) = name.as_encoded_bytes().strip_prefix(WHITEOUT_PREFIX)
        {
            if name != OPAQUE_MARKER {
                use std::os::unix::ffi::OsStrExt;
                remove_any(&dst.join(std::ffi::OsStr::from_bytes(hidden)))?;
            }
            continue;
        }
        if meta.is_dir() {
            let existing = std::fs::symlink_metadata(&to).ok();
            if existing.as_ref().is_some_and(|m| !m.is_dir()) || is_opaque(&from) {
                remove_any(&to)?;
            }
            if std::fs::symlink_metadata(&to).is_err() {
                fs_err::create_dir(&to).map_err(io("creating a root directory"))?;
            }
            apply_dir(&from, &to, &rel, sources, links)?;
            copy_metadata(&from, &to, &meta)?;
            continue;
        }
        remove_any(&to)?;
        let ft = meta.file_type();
        if meta.nlink() > 1
            && !meta.is_dir()
            && let Some(first) = links.get(&(meta.dev(), meta.ino()))
        {
            fs_err::hard_link(first, &to).map_err(io("linking a root file"))?;
            if ft.is_file() {
                sources.insert(rel, from);
            }
            continue;
        }
        if ft.is_file() {
            let mut input = fs_err::File::open(&from).map_err(io("reading a snapshot file"))?;
            let mut output = fs_err::File::create(&to).map_err(io("writing a root file"))?;
            // File to File: std copies with copy_file_range, in the kernel,
            // sharing extents where the filesystem supports it.
            std::io::copy(input.file_mut(), output.file_mut())
                .map_err(io("copying a snapshot file"))?;
            sources.insert(rel, from.clone());
        } else if ft.is_symlink() {
            let target = fs_err::read_link(&from).map_err(io("reading a snapshot symlink"))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io("creating a root symlink"))?;
        } else {
            let kind = if ft.is_fifo() {
                rustix::fs::FileType::Fifo
            } else if ft.is_char_device() {
                rustix::fs::FileType::CharacterDevice
            } else if ft.is_block_device() {
                rustix::fs::FileType::BlockDevice
            } else {
                // Sockets are never in layers.
                continue;
            };
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &to,
                kind,
                rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .map_err(|e| io("creating a root device node")(e.into()))?;
        }
        if meta.nlink() > 1 {
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        copy_metadata(&from, &to, &meta)?;
    }
    Ok(())
}

/// Owner, mode, xattrs (not overlay's) and times from `from` to `to`.
fn copy_metadata(from: &Path, to: &Path, meta: &std::fs::Metadata) -> Result<(), StepError> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(io("setting a root entry's owner"))?;
    if !meta.file_type().is_symlink() {
        // After chown, which clears setuid and setgid.
        fs_err::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io("setting a root entry's mode"))?;
    }
    if let Ok(names) = xattr::list(from) {
        for name in names {
            if is_overlay_xattr(name.as_encoded_bytes()) {
                continue;
            }
            if let Ok(Some(value)) = xattr::get(from, &name) {
                let _ = xattr::set(to, &name, &value);
            }
        }
    }
    let times = times_of(meta);
    rustix::fs::utimensat(
        rustix::fs::CWD,
        to,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io("setting a root entry's times")(e.into()))
}

/// Records every entry of the filled root.
fn record(
    dir: &Path,
    rel: &Path,
    sources: &mut HashMap<PathBuf, PathBuf>,
    recorded: &mut HashMap<PathBuf, Recorded>,
) -> Result<(), StepError> {
    let meta = fs_err::symlink_metadata(dir).map_err(io("reading the root"))?;
    let children = sorted_entries(dir)?;
    for name in &children {
        let path = dir.join(name);
        let rel = rel.join(name);
        let m = fs_err::symlink_metadata(&path).map_err(io("reading the root"))?;
        if m.is_dir() {
            record(&path, &rel, sources, recorded)?;
        } else {
            let source = if m.is_file() {
                sources.remove(&rel)
            } else {
                None
            };
            recorded.insert(
                rel,
                Recorded {
                    is_dir: false,
                    ino: m.ino(),
                    mode: m.mode(),
                    owner: (m.uid(), m.gid()),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    xattrs: Vec::new(),
                    ctime: (m.ctime(), m.ctime_nsec()),
                    nlink: m.nlink(),
                    source,
                    children: Vec::new(),
                },
            );
        }
    }
    recorded.insert(
        rel.to_owned(),
        Recorded {
            is_dir: true,
            ino: meta.ino(),
            mode: meta.mode(),
            owner: (meta.uid(), meta.gid()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            xattrs: xattrs(dir),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            nlink: meta.nlink(),
            source: None,
            children,
        },
    );
    Ok(())
}

struct Diff<'a> {
    recorded: &'a HashMap<PathBuf, Recorded>,
    opaque: &'static str,
}

impl Diff<'_> {
    /// Diffs the directory `root_dir` (at `rel`), which exists in both the
    /// parent and the root as the same directory, into `upper_dir`. Returns
    /// whether anything went into `upper_dir`, which the caller then keeps.
    fn dir(&mut self, root_dir: &Path, upper_dir: &Path, rel: &Path) -> Result<bool, StepError> {
        let parent = &self.recorded[rel];
        let current = sorted_entries(root_dir)?;
        let mut changed = false;
        for name in &parent.children {
            if current.binary_search(name).is_err() {
                ensure_dir(upper_dir)?;
                whiteout(&upper_dir.join(name))?;
                changed = true;
            }
        }
        for name in &current {
            let path = root_dir.join(name);
            let up = upper_dir.join(name);
            let rel = rel.join(name);
            let meta = fs_err::symlink_metadata(&path).map_err(io("reading the root"))?;
            let Some(rec) = self.recorded.get(&rel) else {
                ensure_dir(upper_dir)?;
                fs_err::rename(&path, &up).map_err(io("moving a new entry to the layer"))?;
                changed = true;
                continue;
            };
            if rec.ino != meta.ino() || rec.is_dir != meta.is_dir() {
                // Replaced: a new entry over the old one. A directory
                // replacing anything hides what was below it.
                ensure_dir(upper_dir)?;
                fs_err::rename(&path, &up).map_err(io("moving a new entry to the layer"))?;
                if meta.is_dir() {
                    mark_opaque(&up, self.opaque, &meta)?;
                }
                changed = true;
                continue;
            }
            if meta.is_dir() {
                let keep = self.dir(&path, &up, &rel)? || !same_dir_metadata(rec, &meta, &path);
                if keep {
                    ensure_dir(upper_dir)?;
                    ensure_dir(&up)?;
                    copy_metadata(&path, &up, &meta)?;
                    changed = true;
                }
                continue;
            }
            if !self.same_file(rec, &meta, &path)? {
                ensure_dir(upper_dir)?;
                fs_err::rename(&path, &up).map_err(io("moving a changed file to the layer"))?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// True when a non-directory is unchanged: an unchanged ctime settles it
    /// (every write and metadata change moves it); otherwise the metadata,
    /// and then the content or link target, decide.
    fn same_file(
        &self,
        rec: &Recorded,
        meta: &std::fs::Metadata,
        path: &Path,
    ) -> Result<bool, StepError> {
        if (meta.ctime(), meta.ctime_nsec()) == rec.ctime && meta.nlink() == rec.nlink {
            return Ok(true);
        }
        if meta.nlink() != rec.nlink {
            return Ok(false);
        }
        let same_meta = rec.mode == meta.mode()
            && rec.owner == (meta.uid(), meta.gid())
            && rec.mtime == (meta.mtime(), meta.mtime_nsec());
        // A symlink or device node whose ctime moved is kept: overlay
        // copies it up too.
        let Some(source) = &rec.source else {
            return Ok(false);
        };
        let old = fs_err::metadata(source).map_err(io("reading a snapshot"))?;
        if !same_meta || old.size() != meta.size() || xattrs(source) != xattrs(path) {
            return Ok(false);
        }
        same_content(source, path)
    }
}

/// A directory's own metadata: unchanged when its ctime is, else compared.
fn same_dir_metadata(rec: &Recorded, meta: &std::fs::Metadata, path: &Path) -> bool {
    (meta.ctime(), meta.ctime_nsec()) == rec.ctime
        || (rec.mode == meta.mode()
            && rec.owner == (meta.uid(), meta.gid())
            && rec.mtime == (meta.mtime(), meta.mtime_nsec())
            && rec.xattrs == xattrs(path))
}

fn xattrs(path: &Path) -> Vec<(OsString, Option<Vec<u8>>)> {
    let mut all: Vec<_> = xattr::list(path)
        .map(|names| {
            names
                .filter(|n| !is_overlay_xattr(n.as_encoded_bytes()))
                .map(|n| {
                    let v = xattr::get(path, &n).ok().flatten();
                    (n, v)
                })
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    all
}

fn same_content(a: &Path, b: &Path) -> Result<bool, StepError> {
    let mut fa = fs_err::File::open(a).map_err(io("reading a snapshot file"))?;
    let mut fb = fs_err::File::open(b).map_err(io("reading a root file"))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut fs_err::File, buf: &mut [u8]) -> Result<usize, StepError> {
    let mut n = 0;
    while n < buf.len() {
        match file
            .read(&mut buf[n..])
            .map_err(io("comparing file contents"))?
        {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn ensure_dir(dir: &Path) -> Result<(), StepError> {
    fs_err::create_dir_all(dir).map_err(io("creating a layer directory"))
}

/// An overlay whiteout: a 0/0 character device (unprivileged since Linux
/// 5.8); where the filesystem refuses it (overlayfs itself), OCI's
/// `.wh.NAME`, an empty file of mode 0 as the layer writer writes it.
fn whiteout(path: &Path) -> Result<(), StepError> {
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP) => {
            let mut name = std::ffi::OsString::from(".wh.");
            name.push(path.file_name().unwrap_or_default());
            oci_marker(&path.with_file_name(name), None)
        }
        Err(e) => Err(io("creating a whiteout")(e.into())),
    }
}

/// A directory that hides what was below it: overlay's opaque xattr, or
/// OCI's `.wh..wh..opq` marker where the filesystem refuses the xattr.
fn mark_opaque(dir: &Path, key: &str, meta: &std::fs::Metadata) -> Result<(), StepError> {
    if xattr::set(dir, key, b"y").is_ok() {
        return Ok(());
    }
    oci_marker(&dir.join(OPAQUE_MARKER), Some(meta))?;
    // The marker's creation moved the directory's times: put them back.
    let times = times_of(meta);
    rustix::fs::utimensat(rustix::fs::CWD, dir, &times, rustix::fs::AtFlags::empty())
        .map_err(|e| io("setting a layer directory's times")(e.into()))
}

/// `meta`'s access and modification times, for `utimensat`.
fn times_of(meta: &std::fs::Metadata) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    }
}

/// An empty file of mode 0 owned by root, with `meta`'s times if given.
fn oci_marker(path: &Path, meta: Option<&std::fs::Metadata>) -> Result<(), StepError> {
    fs_err::File::create(path).map_err(io("creating a whiteout"))?;
    std::os::unix::fs::lchown(path, Some(0), Some(0)).map_err(io("creating a whiteout"))?;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o0))
        .map_err(io("creating a whiteout"))?;
    if let Some(meta) = meta {
        let times = times_of(meta);
        rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::empty())
            .map_err(|e| io("creating a whiteout")(e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(path: &Path) -> String {
        match std::fs::symlink_metadata(path) {
            Err(_) => "absent".into(),
            Ok(m) if is_whiteout(&m) => "whiteout".into(),
            Ok(m) if m.is_dir() => "dir".into(),
            Ok(m) if m.file_type().is_symlink() => "symlink".into(),
            Ok(_) => format!("file:{}", std::fs::read_to_string(path).unwrap()),
        }
    }

    #[test]
    fn fill_copies_and_diff_moves_only_what_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, top, root, upper) = (
            tmp.path().join("base"),
            tmp.path().join("top"),
            tmp.path().join("root"),
            tmp.path().join("upper"),
        );
        for d in [&base, &top, &root, &upper] {
            fs_err::create_dir(d).unwrap();
        }
        fs_err::create_dir_all(base.join("d/sub")).unwrap();
        fs_err::write(base.join("d/sub/f"), "f").unwrap();
        fs_err::write(base.join("a"), "a").unwrap();
        fs_err::write(base.join("gone-in-top"), "x").unwrap();
        fs_err::write(base.join("same"), "s").unwrap();
        fs_err::write(base.join("del"), "d").unwrap();
        whiteout(&top.join("gone-in-top")).unwrap();
        fs_err::write(top.join("t"), "t").unwrap();

        let filled = NativeRoot::fill(&root, &[base.clone(), top.clone()]).unwrap();
        assert_eq!(kind(&root.join("gone-in-top")), "absent", "top's whiteout");
        assert_eq!(kind(&root.join("t")), "file:t");
        assert_eq!(kind(&root.join("d/sub/f")), "file:f");

        // What a RUN does: append in place, delete, replace a directory
        // with a file, add a directory, hard-link.
        use std::io::Write;
        let mut a = fs_err::OpenOptions::new()
            .append(true)
            .open(root.join("a"))
            .unwrap();
        a.write_all(b"+").unwrap();
        drop(a);
        fs_err::remove_file(root.join("del")).unwrap();
        fs_err::remove_dir_all(root.join("d")).unwrap();
        fs_err::write(root.join("d"), "now a file").unwrap();
        fs_err::create_dir(root.join("n")).unwrap();
        fs_err::write(root.join("n/x"), "x").unwrap();
        fs_err::hard_link(root.join("t"), root.join("t2")).unwrap();
        filled.diff_into(&upper).unwrap();

        let cases = [
            ("a", "file:a+"),
            ("del", "whiteout"),
            ("d", "file:now a file"),
            ("n", "dir"),
            ("n/x", "file:x"),
            ("t", "file:t"),
            ("t2", "file:t"),
            ("same", "absent"),
            ("gone-in-top", "absent"),
        ];
        for (path, want) in cases {
            assert_eq!(kind(&upper.join(path)), want, "upper/{path}");
        }
        let ino = |p: &Path| fs_err::metadata(p).unwrap().ino();
        assert_eq!(ino(&upper.join("t")), ino(&upper.join("t2")), "a hard link");
        // The base was copied, not linked: the append did not reach it.
        assert_eq!(kind(&base.join("a")), "file:a");
    }

    #[test]
    fn a_metadata_only_change_with_equal_content_is_compared_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, root, upper) = (
            tmp.path().join("base"),
            tmp.path().join("root"),
            tmp.path().join("upper"),
        );
        for d in [&base, &root, &upper] {
            fs_err::create_dir(d).unwrap();
        }
        fs_err::write(base.join("rewritten"), "same").unwrap();
        fs_err::write(base.join("changed"), "abcd").unwrap();
        let filled = NativeRoot::fill(&root, std::slice::from_ref(&base)).unwrap();
        // Both keep size and mtime; one keeps its content too.
        for (name, content) in [("rewritten", "same"), ("changed", "wxyz")] {
            let path = root.join(name);
            let before = fs_err::metadata(&path).unwrap();
            fs_err::write(&path, content).unwrap();
            let times = times_of(&before);
            rustix::fs::utimensat(rustix::fs::CWD, &path, &times, rustix::fs::AtFlags::empty())
                .unwrap();
        }
        filled.diff_into(&upper).unwrap();
        assert_eq!(kind(&upper.join("rewritten")), "absent");
        assert_eq!(kind(&upper.join("changed")), "file:wxyz");
    }

    #[test]
    fn snapshotter_names() {
        let cases = [
            ("", Some(None)),
            ("auto", Some(None)),
            ("native", Some(Some(Snapshotter::Native))),
            ("overlayfs", Some(Some(Snapshotter::Overlayfs))),
            ("fuse-overlayfs", None),
        ];
        for (value, want) in cases {
            assert_eq!(parse(value).ok(), want, "case {value:?}");
        }
        let err = parse("zfs").unwrap_err().to_string();
        assert!(err.contains("HOIST_SNAPSHOTTER=\"zfs\""), "{err}");
    }
}
