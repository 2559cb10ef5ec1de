//! A fake [`Sandbox`], as the trait promises: it runs nothing, records
//! every spec it is given, and answers from a closure. It lets the
//! builder's orchestration (step order, cache decisions, error paths) be
//! unit-tested without root, namespaces or overlayfs; the real sandbox has
//! its own integration tests.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Mutex;

use crate::{Rootfs, RunIo, RunSpec, Sandbox, SandboxError};

type Script = dyn Fn(&RunSpec, &mut dyn RunIo) -> Result<i32, SandboxError> + Send + Sync;

/// Answers each run with the exit code (or error) `script` returns for it.
pub struct FakeSandbox {
    script: Box<Script>,
    runs: Mutex<Vec<RunSpec>>,
}

impl FakeSandbox {
    /// A sandbox whose runs do what `script` does: write to the spec's
    /// upperdir ([`upperdir`]), write output to `io`, return an exit code.
    pub fn new(
        script: impl Fn(&RunSpec, &mut dyn RunIo) -> Result<i32, SandboxError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            script: Box::new(script),
            runs: Mutex::new(Vec::new()),
        }
    }

    /// Every run succeeds and changes nothing.
    pub fn succeeding() -> Self {
        Self::new(|_, _| Ok(0))
    }

    /// The specs of every run so far, in order.
    pub fn runs(&self) -> Vec<RunSpec> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The argv of every run so far, in order (as text: bytes that are
    /// not UTF-8 show as U+FFFD).
    pub fn argvs(&self) -> Vec<Vec<String>> {
        self.runs()
            .into_iter()
            .map(|r| {
                r.args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect()
            })
            .collect()
    }
}

impl Sandbox for FakeSandbox {
    fn run(&self, spec: &RunSpec, io: &mut dyn RunIo) -> Result<ExitStatus, SandboxError> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(spec.clone());
        let code = (self.script)(spec, io)?;
        Ok(ExitStatus::from_raw((code & 0xff) << 8))
    }
}

/// Where a run's changes go (the next layer), for a script that simulates
/// a command's effect on the filesystem.
pub fn upperdir(spec: &RunSpec) -> Option<&Path> {
    match &spec.rootfs {
        Rootfs::Overlay { upperdir, .. } => Some(upperdir),
        Rootfs::Directory { path } => Some(path),
        Rootfs::Ephemeral { .. } => None,
    }
}
