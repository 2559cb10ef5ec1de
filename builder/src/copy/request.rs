//! The builder's entry points: a COPY/ADD step as the stage builder holds
//! it (parser values, `--chown` already resolved), plus the small path
//! helpers WORKDIR and `RUN --mount` share with COPY.

use std::path::{Path, PathBuf};

use hoist_parser::syntax::Heredoc;

use super::source::SourceView;
use super::{
    Chmod, CopyError, CopyJob, CopyOptions, CopySource, CopyStats, SourceError, copy, fetch,
};
use crate::dockerignore::clean_path;
use hoist_store::inroot::Root;

/// One COPY or ADD as the stage builder runs it.
#[derive(Clone, Copy, Debug)]
pub struct CopyRequest<'a> {
    /// The build context (with its ignore file), or the `--from`
    /// stage/image root.
    pub source: SourceView<'a>,
    /// Keep the sources' ownership (`--from`); the build context's files
    /// are reset to 0:0.
    pub preserve_owner: bool,
    pub sources: &'a [String],
    pub heredocs: &'a [Heredoc],
    /// Absolute (already joined with WORKDIR); a trailing `/` is kept.
    pub dest: &'a str,
    /// `--chown`, already resolved.
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<&'a str>,
    pub exclude: &'a [String],
    pub parents: bool,
    pub is_add: bool,
    pub checksum: Option<&'a str>,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
    /// URLs already downloaded (see [`super::CopyOptions::prefetched`]).
    pub prefetched: Option<&'a super::Prefetched>,
    /// An earlier build of the step to take unchanged files from.
    pub reuse: Option<&'a std::sync::Arc<super::reuse::Reuse>>,
}

/// Runs a COPY/ADD into `dest_root` (the merged view of the new layer).
pub fn copy_into(dest_root: &Path, req: &CopyRequest<'_>) -> Result<CopyStats, CopyError> {
    let mut sources: Vec<CopySource> = req
        .sources
        .iter()
        .map(|s| {
            if req.is_add && fetch::is_http_url(s) && !fetch::is_git_url(s) {
                CopySource::Url(s.clone())
            } else {
                CopySource::Path(s.clone())
            }
        })
        .collect();
    sources.extend(req.heredocs.iter().map(|h| CopySource::Inline {
        name: h.name.clone(),
        content: h.body().as_bytes().to_vec(),
    }));
    let options = CopyOptions {
        add: req.is_add,
        chown_ids: req.chown,
        preserve_owner: req.preserve_owner,
        chmod: req.chmod.map(Chmod::parse).transpose()?,
        exclude: req.exclude.to_vec(),
        parents: req.parents,
        checksum: req.checksum.map(str::to_owned),
        unpack: req.unpack,
        prefetched: req.prefetched.cloned(),
        reuse: req.reuse.cloned(),
        ..CopyOptions::default()
    };
    let job = CopyJob {
        source: Some(req.source),
        sources: &sources,
        dest: req.dest,
        workdir: "/",
        dest_root,
        options: &options,
    };
    copy(&job)
}

/// A path as the image sees it after WORKDIR: absolute and cleaned
/// (`path.Join(workdir, p)` for a relative one, as BuildKit does).
pub fn join_workdir(workdir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        let base = if workdir.is_empty() { "/" } else { workdir };
        format!("{base}/{path}")
    };
    let cleaned = clean_path(&joined);
    if cleaned.starts_with('/') {
        cleaned
    } else {
        format!("/{cleaned}")
    }
}

/// WORKDIR's `mkdir -p` inside an image root: missing directories are
/// created 0755 and owned by `uid:gid` (BuildKit gives them the USER);
/// existing symlinks are followed inside the root.
pub fn mkdir_all_in_root(root: &Path, dir: &str, uid: u32, gid: u32) -> Result<(), CopyError> {
    let root_dir = Root::open(root).map_err(|source| CopyError::Root {
        path: root.to_owned(),
        source,
    })?;
    root_dir
        .mkdir_all(Path::new(dir), Some((uid, gid)))
        .map_err(|source| CopyError::Dest {
            path: dir.to_owned(),
            source,
        })?;
    Ok(())
}

/// The host path of `path` resolved inside `root` (symlinks followed as if
/// chrooted), for bind mounts; it must exist.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, CopyError> {
    let root_dir = Root::open(root).map_err(|source| CopyError::Root {
        path: root.to_owned(),
        source,
    })?;
    let resolved = root_dir
        .resolve(Path::new(path))
        .map_err(|source| CopyError::Read {
            path: path.to_owned(),
            source,
        })?;
    if root_dir.stat_in(&resolved, false).is_err() {
        return Err(SourceError::NotFound(path.trim_start_matches('/').to_owned()).into());
    }
    Ok(root.join(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_workdir_table() {
        let table = [
            ("/", "app", "/app"),
            ("/work", "a/../b", "/work/b"),
            ("/work", "/abs/", "/abs"),
            ("/work", ".", "/work"),
            ("", "x", "/x"),
            ("/w", "../../..", "/"),
        ];
        for (workdir, path, want) in table {
            assert_eq!(join_workdir(workdir, path), want, "{workdir} + {path}");
        }
    }
}
