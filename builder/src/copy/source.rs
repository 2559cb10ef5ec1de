//! Finding COPY/ADD sources inside a source root: wildcard expansion with
//! Go's `filepath.Match`, symlink resolution confined to the root, and the
//! filtered walk of a source tree that both the copier and the content
//! checksum use, so the two can never disagree about which files a COPY
//! takes.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, OFlags, Stat};

use crate::dockerignore::{MatchInfo, PatternError, PatternMatcher, glob_match, has_wildcards};
use hoist_store::inroot::{Root, root_relative};

/// Errors while resolving and walking sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// BuildKit's wording for a missing source.
    #[error("\"/{0}\": not found")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: format!("/{}", path.display()),
        source,
    }
}

/// One source matched by a COPY argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The path as matched, relative to the root, before following a final
    /// symlink: its base name names the destination file, and `--parents`
    /// keeps its directories.
    pub lexical: PathBuf,
    /// Where it leads, with every symlink resolved inside the root.
    pub resolved: PathBuf,
}

/// The view of a source root that COPY sees: the root, minus what the
/// context's `.dockerignore` excludes.
#[derive(Clone, Copy, Debug)]
pub struct SourceView<'a> {
    pub root: &'a Root,
    pub ignore: Option<&'a PatternMatcher>,
}

impl SourceView<'_> {
    /// Whether `.dockerignore` hides `rel` (a directory that an exception
    /// may re-enter stays visible).
    fn hidden(&self, rel: &Path, is_dir: bool) -> Result<bool, SourceError> {
        let Some(ignore) = self.ignore else {
            return Ok(false);
        };
        let text = slash_path(rel);
        if text.is_empty() {
            return Ok(false);
        }
        let excluded = ignore.matches_or_parent_matches(&text)?;
        Ok(excluded && !(is_dir && ignore.must_descend_excluded(&text)))
    }

    /// Expands one COPY source argument. A literal path must exist; a
    /// wildcard may match nothing (BuildKit's `AllowEmptyWildcard`) but
    /// the directory before the first wildcard must exist.
    pub fn expand(&self, pattern: &str) -> Result<Vec<Match>, SourceError> {
        let rel = root_relative(Path::new(pattern));
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let first_wild = parts.iter().position(|p| has_wildcards(p));
        let Some(first_wild) = first_wild else {
            let resolved = self.root.resolve(&rel).map_err(io_err(&rel))?;
            let stat = match self.root.stat_in(&resolved, false) {
                Ok(stat) => stat,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    return Err(SourceError::NotFound(slash_path(&rel)));
                }
                Err(err) => return Err(io_err(&rel)(err)),
            };
            if self.hidden(&rel, is_dir(&stat))? || self.hidden(&resolved, is_dir(&stat))? {
                return Err(SourceError::NotFound(slash_path(&rel)));
            }
            return Ok(vec![Match {
                lexical: rel,
                resolved,
            }]);
        };
        let base: PathBuf = parts[..first_wild].iter().collect();
        let base_resolved = self.root.resolve(&base).map_err(io_err(&base))?;
        if let Err(err) = self.root.stat_in(&base_resolved, false) {
            return Err(io_err(&base)(err));
        }
        let mut out = Vec::new();
        self.expand_from(&base, &base_resolved, &parts[first_wild..], &mut out)?;
        Ok(out)
    }

    fn expand_from(
        &self,
        lexical: &Path,
        dir: &Path,
        rest: &[String],
        out: &mut Vec<Match>,
    ) -> Result<(), SourceError> {
        let Some((component, rest)) = rest.split_first() else {
            return Ok(());
        };
        let names = match list_dir(self.root, dir) {
            Ok(names) => names,
            Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => return Ok(()),
            Err(err) => return Err(io_err(dir)(err)),
        };
        for (name, stat) in names {
            let name_str = name.to_string_lossy();
            if !glob_match(component, &name_str)? {
                continue;
            }
            let lex = lexical.join(&name);
            let real = dir.join(&name);
            if self.hidden(&real, is_dir(&stat))? {
                continue;
            }
            if rest.is_empty() {
                let resolved = self.root.resolve(&real).map_err(io_err(&real))?;
                out.push(Match {
                    lexical: lex,
                    resolved,
                });
            } else if is_dir(&stat) {
                // filepath.Walk does not follow symlinks, so neither do we.
                self.expand_from(&lex, &real, rest, out)?;
            }
        }
        Ok(())
    }

    /// Walks a resolved source: the start itself (with an empty `rel`),
    /// then, for a directory, everything below it in sorted pre-order.
    /// Entries hidden by `.dockerignore` or matched by `exclude` (relative
    /// to the start) are left out; a left-out directory is still entered
    /// when an exception could re-include something inside it, and is then
    /// emitted just before its first included descendant.
    pub fn walk(
        &self,
        start: &Path,
        exclude: Option<&PatternMatcher>,
    ) -> Result<Vec<Entry>, SourceError> {
        let stat = self.root.stat_in(start, false).map_err(io_err(start))?;
        let link = read_link_if(self.root, start, &stat)?;
        let mut out = vec![Entry {
            rel: PathBuf::new(),
            stat,
            link,
        }];
        if !is_dir(&stat) {
            return Ok(out);
        }
        let ignore_info = match self.ignore {
            Some(ignore) if !start.as_os_str().is_empty() => {
                ignore
                    .matches_using_parent_results(&slash_path(start), &MatchInfo::default())?
                    .1
            }
            _ => MatchInfo::default(),
        };
        let mut walker = Walker {
            view: *self,
            start,
            exclude,
            out: &mut out,
            pending: Vec::new(),
        };
        walker.dir(Path::new(""), &ignore_info, &MatchInfo::default())?;
        Ok(out)
    }
}

/// One walked entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Relative to the walk's start; empty for the start itself.
    pub rel: PathBuf,
    pub stat: Stat,
    pub link: Option<PathBuf>,
}

impl Entry {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

struct Walker<'a, 'b> {
    view: SourceView<'a>,
    start: &'a Path,
    exclude: Option<&'a PatternMatcher>,
    out: &'b mut Vec<Entry>,
    pending: Vec<Entry>,
}

impl Walker<'_, '_> {
    fn dir(
        &mut self,
        rel: &Path,
        ignore_info: &MatchInfo,
        exclude_info: &MatchInfo,
    ) -> Result<(), SourceError> {
        let dir_path = self.start.join(rel);
        let names = list_dir(self.view.root, &dir_path).map_err(io_err(&dir_path))?;
        for (name, stat) in names {
            let child = rel.join(&name);
            // The path from the root, which only `.dockerignore` and a
            // symlink's target need (not made for every entry of a big
            // context).
            let full = || self.start.join(&child);
            let dir = is_dir(&stat);
            let (mut skip, mut descend) = (false, true);
            let mut child_ignore = MatchInfo::default();
            if let Some(ignore) = self.view.ignore {
                let text = slash_path(&full());
                let (hit, info) = ignore.matches_using_parent_results(&text, ignore_info)?;
                child_ignore = info;
                if hit {
                    skip = true;
                    descend &= dir && ignore.must_descend_excluded(&text);
                }
            }
            let mut child_exclude = MatchInfo::default();
            if let Some(exclude) = self.exclude {
                let text = slash_path(&child);
                let (hit, info) = exclude.matches_using_parent_results(&text, exclude_info)?;
                child_exclude = info;
                if hit {
                    skip = true;
                    descend &= dir && exclude.must_descend_excluded(&text);
                }
            }
            let link = match FileType::from_raw_mode(stat.st_mode) {
                FileType::Symlink => read_link_if(self.view.root, &full(), &stat)?,
                _ => None,
            };
            if skip {
                if dir && descend {
                    let depth = self.pending.len();
                    self.pending.push(Entry {
                        rel: child.clone(),
                        stat,
                        link,
                    });
                    self.dir(&child, &child_ignore, &child_exclude)?;
                    self.pending.truncate(depth);
                }
                continue;
            }
            self.out.append(&mut self.pending);
            // Only a directory's path is needed again, to walk into it.
            let descend_into = dir.then(|| child.clone());
            self.out.push(Entry {
                rel: child,
                stat,
                link,
            });
            if let Some(child) = descend_into {
                self.dir(&child, &child_ignore, &child_exclude)?;
            }
        }
        Ok(())
    }
}

fn read_link_if(root: &Root, path: &Path, stat: &Stat) -> Result<Option<PathBuf>, SourceError> {
    if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
        return Ok(None);
    }
    let leaf = root.leaf(path).map_err(io_err(path))?;
    let target = rustix::fs::readlinkat(&leaf.dir, &leaf.name, Vec::new()).map_err(|e| {
        // EINVAL: no longer a symlink, replaced since it was statted.
        let err = match e {
            rustix::io::Errno::INVAL => {
                io::Error::other("changed while being read: no longer a symlink")
            }
            e => e.into(),
        };
        io_err(path)(err)
    })?;
    Ok(Some(PathBuf::from(OsString::from_vec(target.into_bytes()))))
}

/// Lists a directory inside the root, sorted by name, with lstat results.
pub fn list_dir(root: &Root, dir: &Path) -> io::Result<Vec<(OsString, Stat)>> {
    let fd = root.open_in(dir, OFlags::PATH | OFlags::DIRECTORY, false)?;
    let mut names: Vec<OsString> = hoist_store::inroot::list_names(&fd)?
        .into_iter()
        .map(OsString::from_vec)
        .collect();
    names.sort();
    // An entry removed since the listing is left out, as fsutil's walk
    // (BuildKit's) leaves it out, instead of failing the whole directory
    // with an error that names only the directory.
    let stat = |name: OsString| -> io::Result<Option<(OsString, Stat)>> {
        match rustix::fs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some((name, stat))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(err) => Err(err.into()),
        }
    };
    // A big directory is statted on every core (a context's no-op rebuild
    // is mostly these stats); the order stays the sorted one.
    let stats: Vec<_> = if names.len() >= PARALLEL_STAT_MIN {
        use rayon::prelude::*;
        names.into_par_iter().map(stat).collect::<io::Result<_>>()?
    } else {
        names.into_iter().map(stat).collect::<io::Result<_>>()?
    };
    Ok(stats.into_iter().flatten().collect())
}

/// From how many entries a directory's stats are spread over threads.
const PARALLEL_STAT_MIN: usize = 64;

pub fn is_dir(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::Directory
}

/// `base/rel`, without the trailing slash `Path::join` adds for an empty
/// `rel`.
pub fn join(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_owned()
    } else {
        base.join(rel)
    }
}

/// A relative path as slash-separated text (empty for the root).
pub fn slash_path(path: &Path) -> String {
    String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned()
}
