use std::io;
use std::path::PathBuf;

/// Why a sandboxed run could not run (a command that runs and fails is an
/// `Ok` exit status, not an error).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot create the sandbox process: {0}")]
    Spawn(#[source] io::Error),
    #[error("sandbox setup failed: {step}: {source}")]
    Setup { step: String, source: io::Error },
    #[error("exec: \"{program}\": executable file not found in $PATH")]
    NotFound { program: String },
    #[error("exec: \"{program}\": {source}")]
    Exec { program: String, source: io::Error },
    #[error("cannot {step}: {source}")]
    Namespace {
        step: &'static str,
        source: io::Error,
    },
    #[error("rootless id mapping: {0}")]
    IdMap(String),
    #[error("mount overlay on {target}: {source}{hint}", hint = overlay_hint(.source))]
    Overlay { target: PathBuf, source: io::Error },
    #[error("sandbox i/o: {0}")]
    Pipe(#[source] io::Error),
    #[error("the run was cancelled")]
    Cancelled,
    /// A seccomp profile that cannot be read, parsed or compiled.
    #[error("{0}")]
    Seccomp(String),
    /// Resource limits that cannot be set up.
    #[error("cgroup: {0}")]
    Cgroup(String),
    /// The run was killed by the kernel's OOM killer at its `--memory` limit.
    #[error(
        "out of memory: the run exceeded its memory limit of {limit} bytes (--memory) and was killed"
    )]
    OutOfMemory { limit: u64 },
}

/// What an overlayfs mount failure means where builders run in containers,
/// and what to do about it.
fn overlay_hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        // overlayfs cannot take its upper and work directories from an
        // overlay: a store inside a container's root filesystem.
        Some(libc::EINVAL) => {
            " (the store is on a filesystem overlayfs cannot stack on, such as a container's \
             own overlay root: put it on a volume, e.g. an emptyDir or a bind mount, with \
             HOIST_ROOT or --root)"
        }
        Some(libc::EPERM) => {
            " (mounting overlayfs needs CAP_SYS_ADMIN, which a user namespace grants for \
             overlayfs only on Linux 5.11 or later)"
        }
        Some(libc::ENODEV) => " (the kernel has no overlay filesystem: modprobe overlay)",
        _ => "",
    }
}

impl SandboxError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SandboxError {
        let path = path.into();
        move |source| SandboxError::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_errors_say_what_to_do() {
        for (errno, says) in [
            (libc::EINVAL, "put it on a volume"),
            (libc::EPERM, "Linux 5.11"),
            (libc::ENODEV, "modprobe overlay"),
        ] {
            let err = SandboxError::Overlay {
                target: PathBuf::from("/store/merged"),
                source: io::Error::from_raw_os_error(errno),
            };
            let shown = err.to_string();
            assert!(
                shown.starts_with("mount overlay on /store/merged: "),
                "{shown}"
            );
            assert!(shown.contains(says), "errno {errno}: {shown}");
        }
        let other = SandboxError::Overlay {
            target: PathBuf::from("/m"),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert!(other.to_string().ends_with("(os error 28)"), "{other}");
    }
}
