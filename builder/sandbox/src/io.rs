//! How a run's output reaches the caller: streamed chunks, never one buffer
//! of unbounded size, so the builder can draw progress and keep the tail.

use std::os::fd::OwnedFd;

/// Receives a run's output as it arrives and supplies its stdin.
pub trait RunIo {
    /// A chunk of the process's stdout (arbitrary boundaries).
    fn stdout(&mut self, chunk: &[u8]);
    /// A chunk of the process's stderr (arbitrary boundaries).
    fn stderr(&mut self, chunk: &[u8]);
    /// The process's stdin, asked for once per run; /dev/null unless the
    /// caller says otherwise (RUN steps get an empty pipe, as in BuildKit).
    fn stdin(&mut self) -> Stdin {
        Stdin::Null
    }
}

/// The source of a sandboxed process's stdin.
#[derive(Debug, Default)]
pub enum Stdin {
    #[default]
    Null,
    /// This descriptor (a terminal, a file, a pipe) becomes fd 0.
    Fd(OwnedFd),
    /// These bytes are written to a pipe, then it is closed.
    Bytes(Vec<u8>),
}

/// A [`RunIo`] that keeps everything in memory: for tests and short commands.
#[derive(Debug, Default)]
pub struct CollectIo {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdin: Option<Vec<u8>>,
}

impl CollectIo {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl RunIo for CollectIo {
    fn stdout(&mut self, chunk: &[u8]) {
        self.stdout.extend_from_slice(chunk);
    }

    fn stderr(&mut self, chunk: &[u8]) {
        self.stderr.extend_from_slice(chunk);
    }

    fn stdin(&mut self) -> Stdin {
        self.stdin.take().map_or(Stdin::Null, Stdin::Bytes)
    }
}
