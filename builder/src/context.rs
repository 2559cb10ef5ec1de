//! The build context: a directory (or a tar read from stdin and unpacked
//! into a temporary one), seen through its `.dockerignore`.
//!
//! Two things are derived from it for the cache:
//! - a [`StatIndex`], the cheap view (path, mode, owner, size, mtime, inode,
//!   link target) used to tell whether anything may have changed at all, and
//! - content checksums of COPY/ADD sources in the spirit of BuildKit's
//!   `contenthash`: a digest over the relative paths, modes, link targets and
//!   file contents (never mtimes), keeping each file's own digest so that a
//!   cache miss can be explained ("2 files changed: src/main.rs, Cargo.lock").
//!
//! Both walk with the same filtered walker as COPY itself
//! ([`crate::copy::source`]), so they see exactly the files COPY takes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use oci_spec::image::Digest;
use rayon::prelude::*;
use rustix::fs::{FileType, OFlags, Stat};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::copy::archive;
use crate::copy::source::{Entry, Match, SourceError, SourceView, join, slash_path};
use crate::dockerignore::{self, IgnoreFileError, PatternError, PatternMatcher};
use hoist_store::inroot::Root;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("opening build context {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Ignore(#[from] IgnoreFileError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("reading /{path} in the build context: {source}")]
    Read { path: String, source: io::Error },
    #[error("unpacking the build context from a tar stream: {0}")]
    Tar(io::Error),
    #[error("invalid --exclude pattern: {0}")]
    Pattern(#[from] PatternError),
}

/// A build context directory and its ignore rules.
#[derive(Debug)]
pub struct BuildContext {
    dir: PathBuf,
    root: Root,
    ignore: Option<PatternMatcher>,
    /// File digests by stat, shared by every COPY/ADD of the build.
    digests: DigestCache,
    // Keeps a context unpacked from a tar alive as long as we are.
    _tmp: Option<tempfile::TempDir>,
}

impl BuildContext {
    /// Opens a context directory. `dockerfile` is the `-f` path, if any:
    /// a `<name>.dockerignore` beside it wins over the context's own.
    pub fn from_dir(dir: &Path, dockerfile: Option<&Path>) -> Result<Self, ContextError> {
        let root = Root::open(dir).map_err(|source| ContextError::Open {
            path: dir.to_owned(),
            source,
        })?;
        let ignore = dockerignore::load_for_build(dir, dockerfile)?;
        Ok(Self {
            dir: dir.to_owned(),
            root,
            ignore,
            digests: DigestCache::for_build(),
            _tmp: None,
        })
    }

    /// Unpacks a context tar (plain or compressed, as `docker build -`
    /// accepts) into a fresh directory under `tmp_parent`, with the same
    /// in-root extractor ADD uses, then opens it. Ownership in the tar is
    /// ignored (COPY from the context resets it anyway).
    pub fn from_tar(
        reader: impl Read,
        tmp_parent: &Path,
        dockerfile: Option<&Path>,
    ) -> Result<Self, ContextError> {
        let tmp = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(tmp_parent)
            .map_err(|source| ContextError::Open {
                path: tmp_parent.to_owned(),
                source,
            })?;
        // Spool to a file so that the compression can be sniffed and the
        // header checked without holding the stream in memory.
        let mut spool = tempfile::tempfile_in(tmp_parent).map_err(ContextError::Tar)?;
        let mut reader = reader;
        io::copy(&mut reader, &mut spool).map_err(ContextError::Tar)?;
        io::Seek::rewind(&mut spool).map_err(ContextError::Tar)?;
        let kind = archive::archive_kind(&mut spool).map_err(ContextError::Tar)?;
        let root = Root::open(tmp.path()).map_err(ContextError::Tar)?;
        if let Some(kind) = kind {
            let owner = (
                rustix::process::getuid().as_raw(),
                rustix::process::getgid().as_raw(),
            );
            let mut writer = crate::copy::write_into(&root, Some(owner));
            archive::extract(spool, kind, Path::new(""), &mut writer).map_err(ContextError::Tar)?;
            writer.finish().map_err(ContextError::Tar)?;
        } else if spool.metadata().map(|m| m.len()).unwrap_or(0) > 0 {
            return Err(ContextError::Tar(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a tar archive",
            )));
        }
        let dockerfile = dockerfile.map(|d| tmp.path().join(d));
        let ignore = dockerignore::load_for_build(tmp.path(), dockerfile.as_deref())?;
        Ok(Self {
            dir: tmp.path().to_owned(),
            root,
            ignore,
            digests: DigestCache::for_build(),
            _tmp: Some(tmp),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ignore(&self) -> Option<&PatternMatcher> {
        self.ignore.as_ref()
    }

    /// The context as COPY sees it.
    pub fn view(&self) -> SourceView<'_> {
        SourceView {
            root: &self.root,
            ignore: self.ignore.as_ref(),
        }
    }

    /// For a `RUN --mount=type=bind` of the context directory `sub`
    /// (relative to the context): writes into `dest` an overlay layer of
    /// whiteouts (0/0 character devices) hiding what `.dockerignore`
    /// excludes below `sub`, so that the RUN sees the context as COPY and
    /// BuildKit do. Returns how many entries are hidden.
    pub fn write_ignore_whiteouts(&self, sub: &Path, dest: &Path) -> Result<usize, ContextError> {
        let Some(ignore) = &self.ignore else {
            return Ok(0);
        };
        let mut hidden = 0;
        let mut pending = vec![PathBuf::new()];
        while let Some(rel) = pending.pop() {
            let dir = self.dir.join(sub).join(&rel);
            let read_err = |source| ContextError::Read {
                path: slash_path(&sub.join(&rel)),
                source,
            };
            for entry in std::fs::read_dir(&dir).map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                let child = rel.join(entry.file_name());
                let in_context = slash_path(&sub.join(&child));
                let is_dir = entry.file_type().map_err(read_err)?.is_dir();
                let excluded = ignore
                    .matches_or_parent_matches(&in_context)
                    .map_err(ContextError::Pattern)?;
                if excluded && !(is_dir && ignore.must_descend_excluded(&in_context)) {
                    let target = dest.join(&child);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(read_err)?;
                    }
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &target,
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::Mode::empty(),
                        rustix::fs::makedev(0, 0),
                    )
                    .map_err(|err| read_err(err.into()))?;
                    hidden += 1;
                } else if is_dir {
                    pending.push(child);
                }
            }
        }
        Ok(hidden)
    }

    /// Stats every file the context exposes.
    pub fn stat_index(&self) -> Result<StatIndex, ContextError> {
        StatIndex::build(self.view())
    }

    /// The content checksum of COPY/ADD sources (see [`checksum`]),
    /// through the context's digest cache unless `opts` names another.
    pub fn checksum(
        &self,
        sources: &[String],
        opts: &ChecksumOptions<'_>,
    ) -> Result<SourceChecksum, ContextError> {
        let walk = SourceWalk::new(self.view(), sources, &opts.exclude)?;
        self.checksum_walk(&walk, opts)
    }

    /// The content checksum of what `walk` saw, through the context's
    /// digest cache unless `opts` names another (`opts.exclude` was the
    /// walk's).
    pub fn checksum_walk(
        &self,
        walk: &SourceWalk,
        opts: &ChecksumOptions<'_>,
    ) -> Result<SourceChecksum, ContextError> {
        let mut opts = opts.clone();
        opts.cache = opts.cache.or(Some(&self.digests));
        walk.checksum(&self.root, &opts)
    }

    /// The fingerprint of what `walk` saw (see [`SourceWalk::fingerprint`]),
    /// `None` when a file in it changed too close to this build's start.
    pub fn fingerprint(&self, walk: &SourceWalk, include_owner: bool) -> Option<Fingerprint> {
        let racy_after_ns = self.digests.racy_after_ns.unwrap_or_else(racy_limit_now);
        walk.fingerprint(include_owner, racy_after_ns)
    }

    /// The file digests this context remembers by stat.
    pub fn digests(&self) -> &DigestCache {
        &self.digests
    }
}

/// One stat record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub inode: u64,
    pub link_target: Option<String>,
}

impl StatEntry {
    fn new(path: String, stat: &Stat, link: Option<&Path>) -> Self {
        Self {
            path,
            mode: stat.st_mode,
            uid: stat.st_uid,
            gid: stat.st_gid,
            size: stat.st_size as u64,
            mtime_ns: stat.st_mtime as i128 * 1_000_000_000 + stat.st_mtime_nsec as i128,
            ctime_ns: stat.st_ctime as i128 * 1_000_000_000 + stat.st_ctime_nsec as i128,
            inode: stat.st_ino,
            link_target: link.map(|l| l.to_string_lossy().into_owned()),
        }
    }
}

/// A sorted stat snapshot of a context, for cheap change detection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatIndex {
    pub entries: Vec<StatEntry>,
}

impl StatIndex {
    pub fn build(view: SourceView<'_>) -> Result<Self, ContextError> {
        let walked = view.walk(Path::new(""), None)?;
        let mut entries: Vec<StatEntry> = walked
            .iter()
            .skip(1)
            .map(|e| StatEntry::new(slash_path(&e.rel), &e.stat, e.link.as_deref()))
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self { entries })
    }

    /// Paths added, removed or changed since `older`, sorted.
    pub fn changed_since(&self, older: &StatIndex) -> Vec<String> {
        let old: HashMap<&str, &StatEntry> =
            older.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut out: Vec<String> = Vec::new();
        for entry in &self.entries {
            if old.get(entry.path.as_str()) != Some(&entry) {
                out.push(entry.path.clone());
            }
        }
        let new: std::collections::HashSet<&str> =
            self.entries.iter().map(|e| e.path.as_str()).collect();
        out.extend(
            older
                .entries
                .iter()
                .filter(|e| !new.contains(e.path.as_str()))
                .map(|e| e.path.clone()),
        );
        out.sort();
        out
    }
}

/// What the content checksum covers besides paths, modes and contents.
#[derive(Clone, Debug, Default)]
pub struct ChecksumOptions<'a> {
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// Hash uid/gid too: for `--from` sources, whose ownership is copied.
    pub include_owner: bool,
    /// Digests from an earlier run, reused for files whose stat is unchanged.
    pub cache: Option<&'a DigestCache>,
}

/// File digests remembered by stat (size, mtime, ctime, inode, mode), so
/// an unchanged file is not re-read. A build keeps one per context in the
/// store (see [`crate::cache`]). Lookups, made from every hashing thread at
/// once, take a read lock and allocate nothing.
#[derive(Debug, Default)]
pub struct DigestCache {
    /// By path. foldhash rather than SipHash: the paths are the user's own
    /// context, and hashing 20,000 of them twice per build showed in the
    /// no-op rebuild's profile.
    entries: RwLock<Entries>,
    /// Files changed this close to (or after) the build's start are hashed
    /// but not remembered: a write in the same timestamp tick as the stat
    /// could leave the stat unchanged ("racily clean", as git calls it).
    racy_after_ns: Option<i128>,
    /// Regular files read and hashed in this session.
    reads: AtomicUsize,
    dirty: AtomicBool,
    /// A saved cache not read yet: it is read when a checksum first looks
    /// a file up, so a build whose checksums are all remembered (see
    /// [`SourceWalk::fingerprint`]) never reads it.
    unread: Mutex<Option<UnreadRecord>>,
}

/// A saved [`DigestCache`] and its size in bytes.
struct UnreadRecord(Box<dyn io::BufRead + Send>, u64);

impl std::fmt::Debug for UnreadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UnreadRecord({} bytes)", self.1)
    }
}

type Entries = HashMap<String, Remembered, foldhash::fast::RandomState>;

/// One remembered digest.
#[derive(Debug)]
struct Remembered {
    key: StatKey,
    digest: String,
    /// Looked up or added in this session (then kept by a save without
    /// checking that the file still exists).
    used: AtomicBool,
}

impl Remembered {
    fn new(key: StatKey, digest: String, used: bool) -> Self {
        Remembered {
            key,
            digest,
            used: AtomicBool::new(used),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StatKey {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
    mode: u32,
}

impl StatKey {
    fn of(stat: &Stat) -> Self {
        let e = StatEntry::new(String::new(), stat, None);
        Self {
            size: e.size,
            mtime_ns: e.mtime_ns,
            ctime_ns: e.ctime_ns,
            inode: e.inode,
            mode: e.mode,
        }
    }
}

/// How far back from the start of a build a change counts as racy: more
/// than any Linux filesystem's timestamp granularity that matters here.
const RACY_WINDOW_NS: i128 = 1_000_000_000;

/// The time from which a change counts as racy for a build starting now.
fn racy_limit_now() -> i128 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    now - RACY_WINDOW_NS
}

/// The first line of a saved [`DigestCache`]; then one line per file:
/// `size mtime_ns ctime_ns inode mode digest path` (a path with a newline
/// is not remembered). Lines, not JSON: a 20,000-file context loads in a
/// few milliseconds.
/// Version 2: a file's digest covers its extended attributes.
const DIGESTS_HEADER: &str = "hoist-context-index 2";

impl DigestCache {
    /// An empty cache for a build starting now: files changed within the
    /// last second are not remembered.
    pub fn for_build() -> Self {
        Self {
            racy_after_ns: Some(racy_limit_now()),
            ..Self::default()
        }
    }

    /// Loads a saved cache (see [`DigestCache::load_sized`]) when a
    /// checksum first needs it rather than now; a record that turns out
    /// unreadable is then as good as none.
    pub fn load_when_needed(&self, reader: impl io::BufRead + Send + 'static, size: u64) {
        if let Ok(mut unread) = self.unread.lock() {
            *unread = Some(UnreadRecord(Box::new(reader), size));
        }
    }

    /// Reads the record [`DigestCache::load_when_needed`] left, once; every
    /// caller returns after it is in.
    fn load_pending(&self) {
        let Ok(mut unread) = self.unread.lock() else {
            return;
        };
        if let Some(UnreadRecord(reader, size)) = unread.take() {
            let _ = self.load_sized(reader, size);
        }
    }

    /// Whether a record left by [`DigestCache::load_when_needed`] is still
    /// unread.
    pub fn is_unread(&self) -> bool {
        self.unread.lock().is_ok_and(|unread| unread.is_some())
    }

    /// Loads remembered digests (from [`DigestCache::save`]) into this
    /// cache. A record of another version, or a malformed line, is
    /// ignored: it only costs reading those files again.
    pub fn load(&self, reader: impl io::BufRead) -> io::Result<()> {
        self.load_sized(reader, 0)
    }

    /// [`DigestCache::load`] of a record of `size` bytes, so the table is
    /// made at its final size rather than grown (rehashing) as it fills.
    pub fn load_sized(&self, mut reader: impl io::BufRead, size: u64) -> io::Result<()> {
        // One line buffer for the whole file: a 20,000-file index costs no
        // allocation per line beyond the entry itself.
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim_end_matches('\n') != DIGESTS_HEADER {
            return Ok(());
        }
        // A line is about 100 bytes plus its path.
        let expected = usize::try_from(size / 110).unwrap_or(0);
        let mut entries = Entries::with_capacity_and_hasher(expected, Default::default());
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            if let Some((path, key, digest)) = parse_digest_line(line.trim_end_matches('\n')) {
                entries.insert(path, Remembered::new(key, digest, false));
            }
        }
        if let Ok(mut map) = self.entries.write() {
            *map = entries;
        }
        Ok(())
    }

    /// Writes the digests worth keeping: those used in this session, and
    /// older ones whose file `exists` still.
    pub fn save(
        &self,
        writer: &mut dyn io::Write,
        exists: impl Fn(&str) -> bool,
    ) -> io::Result<()> {
        let map = self
            .entries
            .read()
            .map_err(|_| io::Error::other("digest cache lock poisoned"))?;
        writeln!(writer, "{DIGESTS_HEADER}")?;
        for (path, entry) in map.iter() {
            if path.contains('\n') || !(entry.used.load(Ordering::Relaxed) || exists(path)) {
                continue;
            }
            let key = &entry.key;
            writeln!(
                writer,
                "{} {} {} {} {:o} {} {path}",
                key.size, key.mtime_ns, key.ctime_ns, key.inode, key.mode, entry.digest
            )?;
        }
        Ok(())
    }

    fn get(&self, path: &str, key: &StatKey) -> Option<String> {
        let map = self.entries.read().ok()?;
        let entry = map.get(path).filter(|e| e.key == *key)?;
        entry.used.store(true, Ordering::Relaxed);
        Some(entry.digest.clone())
    }

    fn put(&self, path: String, key: StatKey, digest: String) {
        if let Some(limit) = self.racy_after_ns
            && (key.mtime_ns >= limit || key.ctime_ns >= limit)
        {
            return;
        }
        if let Ok(mut map) = self.entries.write() {
            map.insert(path, Remembered::new(key, digest, true));
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many regular files were read and hashed through this cache.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// Whether a digest was added since it was loaded.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed)
    }
}

/// The checksum of a COPY/ADD's sources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceChecksum {
    pub digest: Digest,
    /// (path as the COPY names it, that entry's digest), in order.
    pub files: Vec<(String, String)>,
    /// Which of those paths are directories (not part of the digest: it
    /// only lets a miss count files, as `N of M files changed` says).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub dirs: BTreeSet<String>,
}

impl SourceChecksum {
    /// Paths whose digest differs from `older` (added, removed, changed).
    /// How many of the entries are not directories.
    pub fn file_count(&self) -> usize {
        self.files
            .iter()
            .filter(|(p, _)| !self.dirs.contains(p))
            .count()
    }

    /// Paths that are not directories (in either checksum) and whose
    /// digest differs from `older` (added, removed, changed). A directory
    /// whose own metadata changed counts only when no file did.
    pub fn changed_non_dirs(&self, older: &SourceChecksum) -> Vec<String> {
        let changed = self.changed_files(older);
        let files: Vec<String> = changed
            .iter()
            .filter(|p| !self.dirs.contains(*p) && !older.dirs.contains(*p))
            .cloned()
            .collect();
        if files.is_empty() { changed } else { files }
    }

    pub fn changed_files(&self, older: &SourceChecksum) -> Vec<String> {
        let old: BTreeMap<&str, &str> = older
            .files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_str()))
            .collect();
        let new: BTreeMap<&str, &str> = self
            .files
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_str()))
            .collect();
        let mut out: Vec<String> = new
            .iter()
            .filter(|(p, d)| old.get(*p) != Some(*d))
            .map(|(p, _)| (*p).to_owned())
            .collect();
        out.extend(
            old.keys()
                .filter(|p| !new.contains_key(*p))
                .map(|p| (*p).to_owned()),
        );
        out.sort();
        out
    }
}

struct Job<'a> {
    key: String,
    path: PathBuf,
    entry: &'a Entry,
}

/// What one COPY/ADD's sources select in a source root: each argument
/// expanded and walked exactly as COPY does, before anything is read.
#[derive(Debug)]
pub struct SourceWalk {
    sources: Vec<String>,
    /// Each match of each argument, in order, with its walk.
    walks: Vec<(Match, Vec<Entry>)>,
}

impl SourceWalk {
    /// Expands and walks `sources`, leaving out what `exclude` (COPY's
    /// `--exclude`) and the view's `.dockerignore` leave out.
    pub fn new(
        view: SourceView<'_>,
        sources: &[String],
        exclude: &[String],
    ) -> Result<Self, ContextError> {
        let exclude = if exclude.is_empty() {
            None
        } else {
            Some(PatternMatcher::new(exclude)?)
        };
        let mut walks = Vec::new();
        for pattern in sources {
            // A URL's identity is its text (in the combined digest) and its
            // --checksum; its content is not known before it is fetched.
            if crate::copy::fetch::is_http_url(pattern) || crate::copy::fetch::is_git_url(pattern) {
                continue;
            }
            for found in view.expand(pattern)? {
                let entries = view.walk(&found.resolved, exclude.as_ref())?;
                walks.push((found, entries));
            }
        }
        Ok(Self {
            sources: sources.to_vec(),
            walks,
        })
    }

    /// How many entries the walk saw.
    pub fn len(&self) -> usize {
        self.walks.iter().map(|(_, entries)| entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A digest of everything the walk saw that the checksum depends on:
    /// the source arguments, each match's path before and after symlinks,
    /// and for every entry its path, type and mode, device number and link
    /// target, uid and gid when `include_owner`, for a regular file the
    /// stat that stands for its content (size, mtime, ctime, inode), as
    /// [`DigestCache`] trusts it, and for a directory its ctime, which
    /// stands for its extended attributes. Equal fingerprints give equal
    /// checksums, so a checksum remembered with its fingerprint can be
    /// reused without looking at a single file's digest.
    ///
    /// `None` when a regular file or a directory changed at or after
    /// `racy_after_ns`: a write in the same timestamp tick as the stat
    /// could leave the stat unchanged, so such a walk must not be
    /// remembered.
    pub fn fingerprint(&self, include_owner: bool, racy_after_ns: i128) -> Option<Fingerprint> {
        let mut hasher = Sha256::new();
        hasher.update(b"hoist source walk 2\0");
        hasher.update(u8::from(include_owner).to_le_bytes());
        for pattern in &self.sources {
            hasher.update(pattern.as_bytes());
            hasher.update(b"\0");
        }
        for (found, entries) in &self.walks {
            hasher.update(b"\0match\0");
            hasher.update(found.lexical.as_os_str().as_encoded_bytes());
            hasher.update(b"\0");
            hasher.update(found.resolved.as_os_str().as_encoded_bytes());
            hasher.update(b"\0");
            hasher.update((entries.len() as u64).to_le_bytes());
            for entry in entries {
                let stat = &entry.stat;
                hasher.update(entry.rel.as_os_str().as_encoded_bytes());
                hasher.update(b"\0");
                hasher.update(stat.st_mode.to_le_bytes());
                hasher.update(stat.st_rdev.to_le_bytes());
                match FileType::from_raw_mode(stat.st_mode) {
                    FileType::RegularFile => {
                        let key = StatKey::of(stat);
                        if key.mtime_ns >= racy_after_ns || key.ctime_ns >= racy_after_ns {
                            return None;
                        }
                        hasher.update(key.size.to_le_bytes());
                        hasher.update(key.mtime_ns.to_le_bytes());
                        hasher.update(key.ctime_ns.to_le_bytes());
                        hasher.update(key.inode.to_le_bytes());
                    }
                    FileType::Directory => {
                        let ctime_ns = StatKey::of(stat).ctime_ns;
                        if ctime_ns >= racy_after_ns {
                            return None;
                        }
                        hasher.update(ctime_ns.to_le_bytes());
                    }
                    _ => {}
                }
                if include_owner {
                    hasher.update(stat.st_uid.to_le_bytes());
                    hasher.update(stat.st_gid.to_le_bytes());
                }
                match &entry.link {
                    Some(link) => {
                        hasher.update(b"l");
                        hasher.update(link.as_os_str().as_encoded_bytes());
                        hasher.update(b"\0");
                    }
                    None => hasher.update(b"-"),
                }
            }
        }
        Some(Fingerprint(hasher.finalize().into()))
    }

    /// The checksum of the walked sources (see [`checksum`]); `opts.exclude`
    /// is not used again.
    pub fn checksum(
        &self,
        root: &Root,
        opts: &ChecksumOptions<'_>,
    ) -> Result<SourceChecksum, ContextError> {
        if let Some(cache) = opts.cache {
            cache.load_pending();
        }
        let mut jobs = Vec::with_capacity(self.len());
        for (found, entries) in &self.walks {
            for entry in entries {
                let key = slash_path(&join(&found.lexical, &entry.rel));
                jobs.push(Job {
                    key,
                    path: join(&found.resolved, &entry.rel),
                    entry,
                });
            }
        }
        let digests: Vec<Result<String, ContextError>> = jobs
            .par_iter()
            .map(|job| entry_digest(root, job, opts))
            .collect();
        let mut combined = Sha256::new();
        for pattern in &self.sources {
            combined.update(b"source\0");
            combined.update(pattern.as_bytes());
            combined.update(b"\n");
        }
        let mut files = Vec::with_capacity(jobs.len());
        let mut dirs = BTreeSet::new();
        for (job, digest) in jobs.into_iter().zip(digests) {
            if FileType::from_raw_mode(job.entry.stat.st_mode) == FileType::Directory {
                dirs.insert(job.key.clone());
            }
            let digest = digest?;
            combined.update(job.key.as_bytes());
            combined.update(b"\0");
            combined.update(digest.as_bytes());
            combined.update(b"\n");
            files.push((job.key, digest));
        }
        let hex = hex::encode(combined.finalize());
        let digest: Digest =
            format!("sha256:{hex}")
                .parse()
                .map_err(|e: oci_spec::OciSpecError| {
                    ContextError::Tar(io::Error::other(e.to_string()))
                })?;
        Ok(SourceChecksum {
            digest,
            files,
            dirs,
        })
    }
}

/// See [`SourceWalk::fingerprint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

/// Checksums the sources of one COPY/ADD in a source root: each argument is
/// expanded and walked exactly as COPY would, every entry is hashed (files
/// in parallel, streamed in 64 KiB blocks), and the per-entry digests are
/// combined in order with the source arguments.
pub fn checksum(
    view: SourceView<'_>,
    sources: &[String],
    opts: &ChecksumOptions<'_>,
) -> Result<SourceChecksum, ContextError> {
    SourceWalk::new(view, sources, &opts.exclude)?.checksum(view.root, opts)
}

fn entry_digest(
    root: &Root,
    job: &Job<'_>,
    opts: &ChecksumOptions<'_>,
) -> Result<String, ContextError> {
    let stat = &job.entry.stat;
    let kind = FileType::from_raw_mode(stat.st_mode);
    let cache_key =
        (kind == FileType::RegularFile).then(|| (slash_path(&job.path), StatKey::of(stat)));
    if let (Some(cache), Some((path, key))) = (opts.cache, &cache_key)
        && let Some(hit) = cache.get(path, key)
    {
        return Ok(owner_suffix(hit, stat, opts));
    }
    let read_err = |source| ContextError::Read {
        path: slash_path(&job.path),
        source,
    };
    // What COPY copies of an entry's extended attributes (a regular file's
    // and a directory's), read only now that the entry is hashed.
    let (file, xattrs) = match kind {
        FileType::RegularFile | FileType::Directory => {
            let flags = if kind == FileType::Directory {
                OFlags::RDONLY | OFlags::DIRECTORY
            } else {
                OFlags::RDONLY
            };
            let fd = root.open_in(&job.path, flags, false).map_err(read_err)?;
            let xattrs = hoist_store::inroot::copied_xattrs(&fd);
            (Some(std::fs::File::from(fd)), xattrs)
        }
        _ => (None, Vec::new()),
    };
    let mut hasher = Sha256::new();
    let type_tag: &[u8] = match kind {
        FileType::RegularFile => b"file",
        FileType::Directory => b"dir",
        FileType::Symlink => b"symlink",
        FileType::CharacterDevice => b"char",
        FileType::BlockDevice => b"block",
        FileType::Fifo => b"fifo",
        _ => b"other",
    };
    hasher.update(type_tag);
    // Only an entry with extended attributes hashes them, under a tag of
    // its own, so that every other entry's digest (and the cache keys made
    // of it) stays what it was before they counted. The block is
    // length-prefixed, so it cannot pass for content.
    if !xattrs.is_empty() {
        hasher.update(b"+xattrs");
    }
    hasher.update(format!("\0{:o}\0{}\0", stat.st_mode & 0o7777, stat.st_rdev).as_bytes());
    if let Some(link) = &job.entry.link {
        hasher.update(link.as_os_str().as_encoded_bytes());
    }
    hasher.update(b"\0");
    if !xattrs.is_empty() {
        hasher.update((xattrs.len() as u64).to_le_bytes());
        for (name, value) in &xattrs {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name);
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value);
        }
    }
    if let (FileType::RegularFile, Some(mut file)) = (kind, file) {
        if let Some(cache) = opts.cache {
            cache.reads.fetch_add(1, Ordering::Relaxed);
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(read_err(err)),
            };
            hasher.update(&buf[..n]);
        }
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let (Some(cache), Some((path, key))) = (opts.cache, cache_key) {
        cache.put(path, key, digest.clone());
    }
    Ok(owner_suffix(digest, stat, opts))
}

/// One line of a saved digest cache.
fn parse_digest_line(line: &str) -> Option<(String, StatKey, String)> {
    let mut fields = line.splitn(7, ' ');
    let key = StatKey {
        size: fields.next()?.parse().ok()?,
        mtime_ns: fields.next()?.parse().ok()?,
        ctime_ns: fields.next()?.parse().ok()?,
        inode: fields.next()?.parse().ok()?,
        mode: u32::from_str_radix(fields.next()?, 8).ok()?,
    };
    let digest = fields.next()?.to_owned();
    let path = fields.next()?.to_owned();
    digest.starts_with("sha256:").then_some((path, key, digest))
}

/// Ownership is folded in after the cacheable content digest.
fn owner_suffix(digest: String, stat: &Stat, opts: &ChecksumOptions<'_>) -> String {
    if !opts.include_owner {
        return digest;
    }
    let mut hasher = Sha256::new();
    hasher.update(format!("{digest}\0{}:{}", stat.st_uid, stat.st_gid).as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar stream (the build context here, an ADD archive alike: both go
    /// through `archive::extract`) whose extension header is over the cap
    /// is refused with the guard's message, before its data is read.
    #[test]
    fn oversized_tar_extension_headers_are_refused() {
        let x_header = {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::XHeader);
            header.set_size(2 << 30);
            header.set_cksum();
            let mut data = header.as_bytes().to_vec();
            data.extend_from_slice(&[b'a'; 64 << 10]);
            data
        };
        let long_name = {
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(1);
            builder
                .append_data(&mut header, "d/".repeat(3 << 20) + "f", &b"x"[..])
                .unwrap();
            builder.into_inner().unwrap()
        };
        let cases = [
            (
                "PAX header of 2 GiB",
                x_header,
                "tar PAX extended header ('x') of 2147483648 bytes at offset 0 exceeds the 1 MiB limit",
            ),
            (
                "GNU long name of 6 MiB",
                long_name,
                "tar GNU long name header ('L') of 6291458 bytes at offset 0 exceeds the 1 MiB limit",
            ),
        ];
        for (case, data, message) in cases {
            let parent = tempfile::tempdir().unwrap();
            let err = BuildContext::from_tar(data.as_slice(), parent.path(), None).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("unpacking the build context from a tar stream: {message}"),
                "case {case:?}"
            );
        }
    }
}
