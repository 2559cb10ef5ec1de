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
    #[error("mount overlay on {target}: {source}")]
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

impl SandboxError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SandboxError {
        let path = path.into();
        move |source| SandboxError::Io { path, source }
    }
}
