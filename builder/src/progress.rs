//! How the builder reports what it is doing. The builder only emits events;
//! the cli draws them (indicatif on a TTY, BuildKit-style plain lines
//! otherwise), so the library never prints.

use std::time::Duration;

/// Identifies one step of the build, numbered in the order steps start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepId(pub usize);

/// Which stream a chunk of RUN output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
pub enum Event<'a> {
    /// A step began; `name` is BuildKit's vertex name, such as
    /// `[build 2/5] RUN make`.
    Started { step: StepId, name: &'a str },
    /// A chunk of output from a running step.
    Output {
        step: StepId,
        stream: Stream,
        data: &'a [u8],
    },
    /// The step was satisfied from the build cache.
    Cached { step: StepId },
    /// The step finished.
    Done { step: StepId, elapsed: Duration },
    /// The step failed; the error itself is returned by the build.
    Failed { step: StepId, elapsed: Duration },
    /// The step was stopped because another stage failed (or the build
    /// was interrupted); BuildKit's `CANCELED`.
    Canceled { step: StepId, elapsed: Duration },
    /// A free-form status line for a step (`exporting layers`, a digest).
    Status { step: StepId, message: &'a str },
    /// A build check's finding while the build runs (BuildKit's
    /// `UndefinedVar`), as `FILE:LINE: RULE: message`.
    Warning { message: &'a str },
}

/// Receives build events. Implementations must be cheap: events arrive from
/// the build threads as they happen.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// Discards every event (`--progress=quiet`, tests).
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: Event<'_>) {}
}
