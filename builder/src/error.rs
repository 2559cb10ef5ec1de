//! Build errors. A step's error carries where it is in the Dockerfile, so
//! the cli can show the line with a caret, and the cause as a chain.

use hoist_parser::{ParseError, Span};

use crate::layer::LayerError;
use hoist_sandbox::SandboxError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse, or its stages do not resolve.
    #[error("{file}:{error}")]
    Parse {
        file: String,
        error: Box<ParseError>,
    },
    /// A step failed.
    #[error("{file}:{}:{}: {step}: {cause}", span.line, span.column)]
    Step {
        file: String,
        span: Span,
        /// BuildKit's vertex name: `[build 2/4] RUN make`.
        step: String,
        #[source]
        cause: Box<StepError>,
    },
    /// Work outside any one step (the final image, tags).
    #[error(transparent)]
    Store(#[from] hoist_store::StoreError),
    #[error("{0}")]
    Invalid(String),
    /// The build context cannot be read.
    #[error("build context: {0}")]
    Context(#[source] crate::context::ContextError),
    #[error("build cancelled")]
    Cancelled,
}

impl BuildError {
    /// Where in the Dockerfile the error is, when it is at a step or a line.
    pub fn span(&self) -> Option<Span> {
        match self {
            BuildError::Parse { error, .. } => Some(error.span),
            BuildError::Step { span, .. } => Some(*span),
            _ => None,
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(
        "process {command:?} did not complete successfully: exit code: {code}{}",
        tail_suffix(output_tail)
    )]
    RunFailed {
        command: String,
        code: i32,
        /// The last lines of the step's output.
        output_tail: String,
    },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] hoist_store::StoreError),
    #[error(transparent)]
    Snapshot(#[from] hoist_store::snapshot::SnapshotError),
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    #[error(transparent)]
    User(#[from] crate::user::UserError),
    #[error(transparent)]
    Expand(#[from] ParseError),
    #[error("{0}")]
    Invalid(String),
    /// An image config that does not decode.
    #[error("{what}: {source}")]
    ImageConfig {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A cache entry that does not encode.
    #[error("encoding a cache entry: {0}")]
    CacheEncode(#[source] serde_json::Error),
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    /// BuildKit's refusal of a step that needs an entitlement the build
    /// was not given (`--allow security.insecure`).
    #[error("{0} is not allowed")]
    NotAllowed(&'static str),
    /// The stage's image config (its environment, labels, build args and
    /// history) grew past what a registry pull accepts: a guard against a
    /// Dockerfile that doubles a variable line after line.
    #[error(
        "the image config would hold more than {} MiB of environment, labels, build args and history",
        limit >> 20
    )]
    ConfigTooLarge { limit: u64 },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- last lines of output ---\n{}", tail.trim_end())
    }
}

impl StepError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StepError {
        let context = context.into();
        move |source| StepError::Io { context, source }
    }
}
