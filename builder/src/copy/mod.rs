//! COPY and ADD, executed into a destination root directory (the merged
//! overlay view of the layer being built; mounting it is the caller's job).
//!
//! The semantics are BuildKit's (`dockerfile2llb`'s copy dispatch plus
//! fsutil's copier): wildcards with Go's `filepath.Match`, a directory source
//! copies its contents, a destination ending in `/` or naming an existing
//! directory receives sources by name, several sources need a directory,
//! a named source that is a symlink is followed (inside the source root)
//! while symlinks below it are copied as symlinks, mtimes are kept, and
//! ownership is reset to 0:0 for the build context but kept for `--from`.
//! Every path on both sides is resolved inside its root as if chrooted
//! (see [`root`]).
//!
//! <https://docs.docker.com/reference/dockerfile/#copy>

pub mod archive;
pub mod chmod;
pub mod fetch;
mod request;
pub mod reuse;
pub mod source;
pub mod write;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{FileType, OFlags, Stat};

pub use chmod::{Chmod, InvalidChmod};
pub use fetch::FetchError;
use hoist_store::inroot::{Root, root_relative};
pub use request::{CopyRequest, copy_into, join_workdir, mkdir_all_in_root, resolve_in_root};
pub use source::{Match, SourceError, SourceView};
use write::{Meta, Writer};

use crate::dockerignore::{PatternError, PatternMatcher};
use crate::user::UserError;

/// One source argument of a COPY or ADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopySource {
    /// A path or wildcard pattern inside the source root.
    Path(String),
    /// A heredoc: `COPY <<EOF /dest` names the file after the heredoc.
    Inline { name: String, content: Vec<u8> },
    /// `ADD http(s)://...`.
    Url(String),
}

/// The flags of a COPY or ADD instruction.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// ADD: unpack local archives, allow URLs.
    pub add: bool,
    /// `--chown`, resolved against the destination root's /etc files.
    pub chown: Option<String>,
    /// An already-resolved `--chown` (wins over `chown`).
    pub chown_ids: Option<(u32, u32)>,
    /// Keep the sources' ownership when there is no `--chown`: true for
    /// `--from`, false for the build context (which resets to 0:0).
    pub preserve_owner: bool,
    /// `--chmod`.
    pub chmod: Option<Chmod>,
    /// `--exclude` patterns, relative to each source.
    pub exclude: Vec<String>,
    /// `--parents`.
    pub parents: bool,
    /// `--link`: placement in its own layer is the caller's business.
    pub link: bool,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD `--unpack`: `None` unpacks local archives and keeps URL
    /// downloads as they are; `Some(true)` unpacks both, `Some(false)`
    /// neither (BuildKit's `AttemptUnpack`).
    pub unpack: Option<bool>,
    /// Where ADD downloads land before they are copied in (defaults to the
    /// system temp dir).
    pub tmp_dir: Option<PathBuf>,
    /// mtime for heredoc files and URL downloads without Last-Modified
    /// (seconds); the current time when unset.
    pub created_time: Option<i64>,
    /// URL downloads made before the step (to key it by their content),
    /// by URL: taken instead of fetching the URL again.
    pub prefetched: Option<Prefetched>,
    /// The earlier build of this step whose unchanged files are linked
    /// instead of copied (see [`reuse`]).
    pub reuse: Option<std::sync::Arc<reuse::Reuse>>,
}

/// Downloads made ahead of a step, shared with the copy that uses them.
pub type Prefetched =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, fetch::Download>>>;

/// What to copy where.
#[derive(Clone, Copy, Debug)]
pub struct CopyJob<'a> {
    /// The source root (context, or another stage's rootfs for `--from`)
    /// and the context's `.dockerignore`; `None` when every source is a
    /// heredoc or URL.
    pub source: Option<SourceView<'a>>,
    pub sources: &'a [CopySource],
    /// The destination as written in the Dockerfile.
    pub dest: &'a str,
    /// The image's WORKDIR, for a relative destination.
    pub workdir: &'a str,
    pub dest_root: &'a Path,
    pub options: &'a CopyOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("no source files were specified")]
    NoSources,
    #[error(
        "When using {0} with more than one source file, the destination must be a directory and end with a /"
    )]
    NotADirectory(&'static str),
    #[error("{0}")]
    Unsupported(String),
    #[error("source can't be a URL for COPY")]
    UrlInCopy,
    #[error("copying to {path}: {source}")]
    Dest { path: String, source: io::Error },
    #[error("reading /{path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("opening destination root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("invalid --exclude pattern: {0}")]
    Pattern(#[from] PatternError),
    #[error(transparent)]
    Chmod(#[from] InvalidChmod),
    #[error(transparent)]
    Ignore(#[from] crate::dockerignore::IgnoreFileError),
    #[error(transparent)]
    Context(#[from] Box<crate::context::ContextError>),
}

/// What a copy did, for progress output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub entries: u64,
    pub bytes: u64,
}

fn dest_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Dest {
        path: format!("/{}", path.display()),
        source,
    }
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// A writer for callers outside COPY (the tar context extractor).
pub(crate) fn write_into(root: &Root, owner: Option<(u32, u32)>) -> Writer<'_> {
    Writer::new(root, owner, None)
}

enum Item {
    Path {
        found: Match,
        target: Option<PathBuf>,
    },
    Inline {
        name: String,
        content: Vec<u8>,
    },
    Url(fetch::Download),
}

/// Runs one COPY or ADD.
pub fn copy(req: &CopyJob<'_>) -> Result<CopyStats, CopyError> {
    let opts = req.options;
    let cmd = if opts.add { "ADD" } else { "COPY" };
    if opts.keep_git_dir {
        return Err(CopyError::Unsupported(
            "ADD --keep-git-dir is not supported yet".into(),
        ));
    }
    if req.sources.is_empty() {
        return Err(CopyError::NoSources);
    }
    let dest_root = Root::open(req.dest_root).map_err(|source| CopyError::Root {
        path: req.dest_root.to_owned(),
        source,
    })?;
    let chown = match (&opts.chown_ids, &opts.chown) {
        (Some(ids), _) => Some(*ids),
        (None, Some(spec)) => Some(crate::user::resolve_chown(req.dest_root, spec)?),
        (None, None) => None,
    };
    // BuildKit resets the context's ownership to 0:0 when it receives it;
    // other stages keep theirs; an archive's entries keep the tar's.
    let owner = match chown {
        Some(owner) => Some(owner),
        None if opts.preserve_owner => None,
        None => Some((0, 0)),
    };
    let exclude = if opts.exclude.is_empty() {
        None
    } else {
        Some(PatternMatcher::new(&opts.exclude)?)
    };

    // The destination, resolved inside the root (existing symlinks followed).
    let dest_text = req.dest;
    let dir_syntax = dest_text.is_empty()
        || dest_text == "."
        || dest_text.ends_with('/')
        || dest_text.ends_with("/.");
    let dest_lexical = if dest_text.starts_with('/') {
        PathBuf::from(dest_text)
    } else {
        Path::new(if req.workdir.is_empty() {
            "/"
        } else {
            req.workdir
        })
        .join(dest_text)
    };
    let dest = dest_root
        .resolve(&dest_lexical)
        .map_err(dest_err(&dest_lexical))?;
    let dest_is_existing_dir =
        matches!(dest_root.stat_in(&dest, false), Ok(st) if source::is_dir(&st));

    // Expand every source first: errors (missing files, failed downloads)
    // must happen before the image is touched.
    let tmp_dir = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut items = Vec::new();
    for src in req.sources {
        match src {
            CopySource::Path(pattern)
                if fetch::is_http_url(pattern) || fetch::is_git_url(pattern) =>
            {
                return Err(if opts.add {
                    unsupported_or_fetch(pattern)
                } else {
                    CopyError::UrlInCopy
                });
            }
            CopySource::Url(url) => {
                if !opts.add {
                    return Err(CopyError::UrlInCopy);
                }
                if fetch::is_git_url(url) {
                    return Err(unsupported_or_fetch(url));
                }
                let prefetched = opts
                    .prefetched
                    .as_ref()
                    .and_then(|p| p.lock().ok()?.remove(url.as_str()));
                items.push(Item::Url(match prefetched {
                    Some(download) => download,
                    None => fetch::fetch(url, opts.checksum.as_deref(), &tmp_dir)?,
                }));
            }
            CopySource::Inline { name, content } => {
                items.push(Item::Inline {
                    name: name.clone(),
                    content: content.clone(),
                });
            }
            CopySource::Path(pattern) => {
                let view = req
                    .source
                    .ok_or_else(|| SourceError::NotFound(pattern.clone()))?;
                let pivot = opts.parents.then(|| parents_pivot(pattern));
                for found in view.expand(pattern)? {
                    let target = pivot.as_ref().map(|pivot| {
                        found
                            .lexical
                            .strip_prefix(pivot)
                            .unwrap_or(&found.lexical)
                            .to_owned()
                    });
                    items.push(Item::Path { found, target });
                }
            }
        }
    }
    let dest_is_dir = dir_syntax || dest_is_existing_dir || opts.parents;
    if items.len() > 1 && !dest_is_dir {
        return Err(CopyError::NotADirectory(cmd));
    }

    let mut writer = Writer::new(&dest_root, owner, opts.chmod.as_ref());
    let mut stats = CopyStats::default();
    let now = opts.created_time.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    });
    for item in items {
        match item {
            Item::Inline { name, content } => {
                let target = if dest_is_dir {
                    dest.join(&name)
                } else {
                    dest.clone()
                };
                mkdir_parent(&writer, &target)?;
                let meta = Meta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: (now, 0),
                };
                writer
                    .file(&target, &mut content.as_slice(), meta)
                    .map_err(dest_err(&target))?;
                stats.entries += 1;
                stats.bytes += content.len() as u64;
            }
            Item::Url(download) => {
                let target = if dest_is_dir {
                    dest.join(&download.name)
                } else {
                    dest.clone()
                };
                mkdir_parent(&writer, &target)?;
                let meta = Meta {
                    mode: 0o600,
                    uid: 0,
                    gid: 0,
                    mtime: (download.mtime.unwrap_or(now), 0),
                };
                let file = download
                    .file
                    .reopen()
                    .map_err(read_err(download.file.path()))?;
                stats.bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
                let mut file = file;
                let archive = if opts.unpack == Some(true) {
                    archive::archive_kind(&mut file).map_err(read_err(download.file.path()))?
                } else {
                    None
                };
                if let Some(kind) = archive {
                    // As a local archive: unpacked into the destination,
                    // as a directory, keeping the tar's ownership.
                    writer
                        .root
                        .mkdir_all(&dest, Some(writer.parent_owner()))
                        .map_err(dest_err(&dest))?;
                    let mut unpack = Writer::new(writer.root, chown, None);
                    archive::extract(file, kind, &dest, &mut unpack).map_err(dest_err(&dest))?;
                    unpack.finish().map_err(dest_err(&dest))?;
                } else {
                    writer
                        .copy_file(&target, file, meta, None)
                        .map_err(dest_err(&target))?;
                }
                stats.entries += 1;
            }
            Item::Path { found, target } => {
                let Some(view) = req.source else { continue };
                let unpack = opts.add && opts.unpack != Some(false);
                let add = unpack.then_some(AddArchive { owner: chown });
                copy_match(
                    view,
                    &found,
                    target.as_deref(),
                    &dest,
                    dest_is_dir,
                    exclude.as_ref(),
                    add,
                    opts.reuse.as_deref(),
                    &mut writer,
                    &mut stats,
                )?;
            }
        }
    }
    writer.finish().map_err(dest_err(&dest))?;
    Ok(stats)
}

fn unsupported_or_fetch(url: &str) -> CopyError {
    CopyError::Unsupported(format!(
        "ADD of git repository {} is not supported yet",
        fetch::redact(url)
    ))
}

/// The part of a `--parents` source before a `/./` pivot; without a pivot
/// the whole path is kept.
fn parents_pivot(pattern: &str) -> PathBuf {
    match pattern.find("/./") {
        Some(at) => root_relative(Path::new(&pattern[..at])),
        None => PathBuf::new(),
    }
}

fn mkdir_parent(writer: &Writer<'_>, target: &Path) -> Result<(), CopyError> {
    if let Some(parent) = target.parent() {
        writer
            .root
            .mkdir_all(parent, Some(writer.parent_owner()))
            .map_err(dest_err(parent))?;
    }
    Ok(())
}

fn meta_of(stat: &Stat) -> Meta {
    Meta {
        mode: stat.st_mode & 0o7777,
        uid: stat.st_uid,
        gid: stat.st_gid,
        mtime: (stat.st_mtime, stat.st_mtime_nsec as i64),
    }
}

/// ADD's archive handling: unpacked entries keep the tar's ownership
/// unless `--chown` was given.
#[derive(Clone, Copy)]
struct AddArchive {
    owner: Option<(u32, u32)>,
}

#[allow(clippy::too_many_arguments)]
fn copy_match(
    view: SourceView<'_>,
    found: &Match,
    parents_target: Option<&Path>,
    dest: &Path,
    dest_is_dir: bool,
    exclude: Option<&PatternMatcher>,
    add: Option<AddArchive>,
    reuse: Option<&reuse::Reuse>,
    writer: &mut Writer<'_>,
    stats: &mut CopyStats,
) -> Result<(), CopyError> {
    let src_root = view.root;
    let stat = src_root
        .stat_in(&found.resolved, false)
        .map_err(read_err(&found.resolved))?;
    // Matching followed every link, so a link here was swapped in since:
    // copying it as a link would lose the source Docker follows.
    if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
        return Err(read_err(&found.resolved)(io::Error::other(
            "the source was replaced by a symbolic link during the copy",
        )));
    }
    let name = found
        .lexical
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    if source::is_dir(&stat) {
        let target = match parents_target {
            Some(kept) => source::join(dest, kept),
            None => dest.to_owned(),
        };
        mkdir_parent(writer, &target)?;
        writer
            .dir(&target, meta_of(&stat), false)
            .map_err(dest_err(&target))?;
        let entries = view.walk(&found.resolved, exclude)?;
        // Directories, links and special files in walk order (parents
        // first); then the plain files, which need no bookkeeping, on
        // every core.
        let mut plain = Vec::new();
        for entry in entries.iter().skip(1) {
            let src_path = found.resolved.join(&entry.rel);
            let dest_path = target.join(&entry.rel);
            if entry.file_type() == FileType::RegularFile && entry.stat.st_nlink <= 1 {
                plain.push((src_path, dest_path, entry));
                continue;
            }
            write_entry(src_root, &src_path, entry, &dest_path, writer, stats)?;
        }
        if let Some(reuse) = reuse {
            plain = take_unchanged(src_root, &found.lexical, plain, reuse, writer, stats);
        }
        copy_plain_files(src_root, &plain, writer, stats)?;
        return Ok(());
    }
    // A single non-directory: --exclude applies to its name.
    if let Some(exclude) = exclude
        && exclude.matches_or_parent_matches(&source::slash_path(&name))?
    {
        return Ok(());
    }
    let target = match parents_target {
        Some(kept) => source::join(dest, kept),
        None if dest_is_dir => dest.join(&name),
        None => dest.to_owned(),
    };
    if let Some(add) = add
        && FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
    {
        let mut file = open_source(src_root, &found.resolved)?;
        if let Some(kind) = archive::archive_kind(&mut file).map_err(read_err(&found.resolved))? {
            // An archive always unpacks into the destination as a directory.
            let dir = if parents_target.is_some() {
                target.parent().unwrap_or(dest).to_owned()
            } else {
                dest.to_owned()
            };
            writer
                .root
                .mkdir_all(&dir, Some(writer.parent_owner()))
                .map_err(dest_err(&dir))?;
            let mut unpack = Writer::new(writer.root, add.owner, None);
            archive::extract(file, kind, &dir, &mut unpack).map_err(dest_err(&dir))?;
            unpack.finish().map_err(dest_err(&dir))?;
            stats.entries += 1;
            stats.bytes += stat.st_size as u64;
            return Ok(());
        }
    }
    mkdir_parent(writer, &target)?;
    let entry = source::Entry {
        rel: PathBuf::new(),
        stat,
        link: None,
    };
    write_entry(src_root, &found.resolved, &entry, &target, writer, stats)
}

/// Leaves out of `plain` the files the earlier build's snapshot already
/// holds exactly (they are linked once the copy is done) and returns the
/// rest, to be copied.
fn take_unchanged<'e>(
    src_root: &Root,
    lexical: &Path,
    plain: Vec<(PathBuf, PathBuf, &'e source::Entry)>,
    reuse: &reuse::Reuse,
    writer: &Writer<'_>,
    stats: &mut CopyStats,
) -> Vec<(PathBuf, PathBuf, &'e source::Entry)> {
    // Keys as the checksum names the files; a name that is not UTF-8 has
    // a lossy key that two files could share, so it is always copied.
    let keys: Vec<Option<String>> = plain
        .iter()
        .map(|(_, _, entry)| {
            source::join(lexical, &entry.rel)
                .to_str()
                .map(str::to_owned)
        })
        .collect();
    let dests: Vec<PathBuf> = plain
        .iter()
        .map(|(_, dest, _)| root_relative(dest))
        .collect();
    let mut candidates = Vec::new();
    let mut always = Vec::new();
    for (i, ((src, _, entry), key)) in plain.iter().zip(&keys).enumerate() {
        match key {
            Some(key) => candidates.push((
                i,
                reuse::Candidate {
                    key,
                    src,
                    stat: &entry.stat,
                    dest: &dests[i],
                    meta: writer.final_meta(meta_of(&entry.stat), false),
                },
            )),
            None => always.push(i),
        }
    }
    let (indices, candidates): (Vec<usize>, Vec<reuse::Candidate<'_>>) =
        candidates.into_iter().unzip();
    let copy = reuse.select(src_root, &candidates);
    let mut keep = vec![false; plain.len()];
    for i in always {
        keep[i] = true;
    }
    for c in copy {
        keep[indices[c]] = true;
    }
    let mut rest = Vec::new();
    for (item, keep) in plain.into_iter().zip(keep) {
        if keep {
            rest.push(item);
        } else {
            stats.entries += 1;
            stats.bytes += item.2.stat.st_size as u64;
        }
    }
    rest
}

/// Copies regular files with a single link each, in parallel.
fn copy_plain_files(
    src_root: &Root,
    files: &[(PathBuf, PathBuf, &source::Entry)],
    writer: &Writer<'_>,
    stats: &mut CopyStats,
) -> Result<(), CopyError> {
    use rayon::prelude::*;
    files.par_iter().try_for_each(|(src, dest, entry)| {
        let file = open_source(src_root, src)?;
        writer
            .copy_single_link_file(dest, file, meta_of(&entry.stat))
            .map_err(dest_err(dest))
    })?;
    stats.entries += files.len() as u64;
    stats.bytes += files
        .iter()
        .map(|(_, _, entry)| entry.stat.st_size as u64)
        .sum::<u64>();
    Ok(())
}

fn open_source(root: &Root, path: &Path) -> Result<File, CopyError> {
    let fd = root
        .open_in(path, OFlags::RDONLY, false)
        .map_err(read_err(path))?;
    Ok(File::from(fd))
}

fn write_entry(
    src_root: &Root,
    src_path: &Path,
    entry: &source::Entry,
    dest: &Path,
    writer: &mut Writer<'_>,
    stats: &mut CopyStats,
) -> Result<(), CopyError> {
    let meta = meta_of(&entry.stat);
    let result = match entry.file_type() {
        FileType::Directory => {
            // Opened first, so that a source directory removed since the
            // walk is reported as the source, not as the destination.
            let flags = OFlags::RDONLY | OFlags::DIRECTORY;
            let src = src_root
                .open_in(src_path, flags, false)
                .map_err(read_err(src_path))?;
            writer.dir(dest, meta, true).and_then(|()| {
                let dst = writer.root.open_in(dest, flags, false)?;
                hoist_store::inroot::copy_xattrs(&src, &dst);
                Ok(())
            })
        }
        FileType::RegularFile => {
            let file = open_source(src_root, src_path)?;
            stats.bytes += entry.stat.st_size as u64;
            let key = (entry.stat.st_nlink > 1).then_some((entry.stat.st_dev, entry.stat.st_ino));
            writer.copy_file(dest, file, meta, key)
        }
        FileType::Symlink => {
            let target = entry.link.clone().unwrap_or_default();
            writer.symlink(dest, &target, meta)
        }
        kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
            writer.node(dest, kind, entry.stat.st_rdev, meta)
        }
        // Sockets cannot be copied; Docker skips them too.
        _ => return Ok(()),
    };
    result.map_err(dest_err(dest))?;
    stats.entries += 1;
    Ok(())
}
