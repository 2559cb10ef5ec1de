//! Build errors. A step's error carries where it is in the Dockerfile, so
//! the cli can show the line with a caret, and the cause as a chain.

use hoist_parser::expand::ExpandError;
use hoist_parser::{ParseError, Span};

use crate::args::Platform;
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
    /// `--platform` other than the host's: hoist does not emulate.
    #[error(
        "platform {platform} is not supported: hoist builds for the host's platform {host} only"
    )]
    PlatformNotSupported {
        platform: Box<Platform>,
        host: Box<Platform>,
    },
    #[error("starting a build thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the Dockerfile has no stage to build")]
    NoStage,
    /// A stage waits for one that is not built before it (an ONBUILD
    /// trigger's `--from` is not in the graph).
    #[error("stage {stage} reads stage {dependency}, which is not built before it")]
    StageOrder { stage: String, dependency: String },
    #[error("building stage {stage} panicked")]
    StagePanicked { stage: String },
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
    /// A stage this step reads failed.
    #[error("{0}")]
    Stage(#[source] Box<BuildError>),
    #[error("heredoc {name}: {source}")]
    Heredoc {
        name: String,
        #[source]
        source: ExpandError,
    },
    #[error("invalid heredoc name {0:?}")]
    HeredocName(String),
    #[error("image {image} is {os}/{architecture}, but the build is for {platform}")]
    ImagePlatform {
        image: String,
        os: String,
        architecture: String,
        platform: Box<Platform>,
    },
    #[error("failed to parse platform {0}: expected os/arch[/variant]")]
    PlatformSpec(String),
    #[error(
        "the stage's platform is {platform}, but this host is {host}: running a program for \
         another platform needs emulation, which hoist does not support (stages for \
         another platform can only be copied from)"
    )]
    ForeignPlatform {
        platform: Box<Platform>,
        host: Box<Platform>,
    },
    #[error("invalid ONBUILD trigger: {}", .0.kind)]
    OnbuildTrigger(#[source] Box<ParseError>),
    #[error("FROM inside a stage")]
    FromInStage,
    /// `--dry-run` predicted an ADD from a URL's last download; nothing
    /// was downloaded to copy.
    #[error("{0}: not downloaded (--dry-run)")]
    NotDownloaded(String),
    #[error(transparent)]
    Port(#[from] crate::config::PortError),
    #[error("invalid signal: {0}")]
    Signal(String),
    #[error("no command specified: the image has no CMD or ENTRYPOINT")]
    NoCommand,
    #[error(
        "RUN --device is not supported: hoist gives RUN steps no host devices (asked for {})",
        .0.join(", ")
    )]
    Devices(Vec<String>),
    /// `--mount=...` of a RUN: the mount's text and what is wrong with it.
    #[error("--mount={mount}: a target is required")]
    MountTarget { mount: String },
    #[error("--mount={mount}: {source}")]
    MountSource {
        mount: String,
        #[source]
        source: crate::context::ContextError,
    },
    #[error("--mount={mount}: a secret needs an id or a target")]
    SecretId { mount: String },
    #[error("secret {id}: not found (pass it with --secret id={id},src=FILE or env=VAR)")]
    SecretNotFound { id: String },
    #[error("secret {id}: env={env} needs UTF-8 content (mount it as a file instead)")]
    SecretNotUtf8 {
        id: String,
        env: String,
        #[source]
        source: std::string::FromUtf8Error,
    },
    #[error("ssh agent {id}: not found (pass it with --ssh {id}[=SOCKET])")]
    SshNotFound { id: String },
    #[error(
        "image {reference:?} is not in the store: pull it with `hoist pull {reference}`, \
         or add it with `hoist load` or `hoist import`"
    )]
    ImageNotInStore { reference: String },
    #[error("failed to resolve source metadata for {reference}: {source}")]
    Resolve {
        reference: String,
        #[source]
        source: hoist_store::registry::RegistryError,
    },
    /// A pull that failed for an image the store does not have either.
    #[error("{0} (the store does not have it either: add it with `hoist load` or `hoist import`)")]
    NotInStoreEither(#[source] Box<StepError>),
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
    /// `# check=error=true` and a build check warned at this instruction
    /// (BuildKit's `Linter.Error`).
    #[error("{0}")]
    LintViolation(String),
    /// BuildKit's refusal of a step that needs an entitlement the build
    /// was not given (`--allow security.insecure`).
    #[error("{0} is not allowed")]
    NotAllowed(&'static str),
    /// `HOIST_SNAPSHOTTER` names no snapshotter.
    #[error("{0}")]
    Snapshotter(String),
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
