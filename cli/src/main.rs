//! The `hoist` binary: argument parsing, progress drawing and error
//! rendering. Every verb lives in `commands/<verb>.rs`; the libraries do
//! the work and never print.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod epoch;
mod globals;
mod output;
mod progress;
mod render;

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::Parser;

use crate::commands::Command;
use crate::globals::Globals;

/// A daemonless Dockerfile image builder.
#[derive(Debug, Parser)]
#[command(name = "hoist", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli.command, &cli.globals) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `hoist images | head -1` must not report an error when `head` exits.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}
