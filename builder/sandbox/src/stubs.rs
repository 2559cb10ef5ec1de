//! Mount stubs: the empty files and directories created in the upperdir to
//! mount /etc/hosts, /etc/resolv.conf, /etc/hostname or a RUN --mount target
//! on. Like BuildKit's MountStubsCleaner they are removed after the run when
//! still empty, keeping the parent directory's timestamps, so they never
//! reach the layer.

use std::path::Path;

use filetime::FileTime;

use crate::plan::Stub;

/// Removes `created` (paths relative to the root, shallowest first) from
/// `upperdir`, deepest first, stopping at the first one the run filled.
pub(crate) fn remove(upperdir: &Path, created: &[&Path]) {
    for rel in created.iter().rev() {
        let path = upperdir.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let empty = if meta.is_dir() {
            std::fs::read_dir(&path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
        } else {
            meta.is_file() && meta.len() == 0
        };
        if !empty {
            return;
        }
        let parent = path.parent().map(Path::to_owned);
        let times = parent
            .as_ref()
            .and_then(|p| std::fs::symlink_metadata(p).ok());
        let removed = if meta.is_dir() {
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if removed.is_err() {
            return;
        }
        if let (Some(parent), Some(m)) = (parent, times) {
            let _ = filetime::set_file_times(
                parent,
                FileTime::from_last_access_time(&m),
                FileTime::from_last_modification_time(&m),
            );
        }
    }
}

/// The stub paths the child reported: stub `id` created from prefix `from` on.
pub(crate) fn created(stubs: &[Stub], id: u32, from: u32) -> Vec<&Path> {
    stubs
        .get(id as usize)
        .map(|s| s.iter().skip(from as usize).map(|p| p.as_path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_empty_stubs() {
        let cases = [
            ("empty file and its new dir", "", true, true),
            ("file written by the run", "data", false, false),
        ];
        for (name, content, file_gone, dir_gone) in cases {
            let up = tempfile::tempdir().unwrap();
            std::fs::create_dir(up.path().join("etc")).unwrap();
            std::fs::write(up.path().join("etc/hosts"), content).unwrap();
            remove(up.path(), &[Path::new("etc"), Path::new("etc/hosts")]);
            assert_eq!(
                !up.path().join("etc/hosts").exists(),
                file_gone,
                "case {name}: file"
            );
            assert_eq!(
                !up.path().join("etc").exists(),
                dir_gone,
                "case {name}: dir"
            );
        }
    }
}
