//! The `hoist` binary: argument parsing, progress drawing and error
//! rendering. Every verb lives in `commands/<verb>.rs`; the libraries do
//! the work and never print.

#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod commands;
mod epoch;
mod globals;
mod output;
mod progress;
mod render;
mod security;
mod template;
mod transfer;

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::process::{ExitCode, ExitStatus};

use anyhow::Context;
use clap::{CommandFactory, Parser};
use hoist_sandbox::{self as sandbox, Entered};

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

/// The whole command line definition, for completions and man pages.
pub(crate) fn cli_command() -> clap::Command {
    Cli::command()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // First, while the process has one thread: a private mount namespace,
    // or for an ordinary user a re-executed copy in a user namespace.
    let result = match enter_namespaces(&cli) {
        Ok(Entered::Here) => commands::run(cli.command, &cli.globals),
        Ok(Entered::Reexecuted(status)) => return exit_code(status),
        Err(err) => Err(err),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `build` and `run` mount overlays, so they run in a mount namespace of
/// their own that takes every mount with it when hoist dies. An ordinary
/// user runs every verb that opens the store in a user namespace where it
/// is root (rootless builds write files owned by subordinate IDs, which
/// only that namespace may read, chown or delete).
fn enter_namespaces(cli: &Cli) -> anyhow::Result<Entered> {
    let mounts = matches!(cli.command, Command::Build(_) | Command::Run(_));
    let opens_store = !matches!(
        cli.command,
        Command::Debug(_)
            | Command::Version(_)
            | Command::Completion(_)
            | Command::Man(_)
            | Command::Login(_)
            | Command::Logout(_)
    );
    let env = if sandbox::running_as_root() {
        if !mounts {
            return Ok(Entered::Here);
        }
        Vec::new()
    } else {
        if !opens_store {
            return Ok(Entered::Here);
        }
        // Decided as the real user: inside, hoist is root and would pick
        // /var/lib/hoist.
        vec![("HOIST_ROOT", cli.globals.store_root()?.into_os_string())]
    };
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    sandbox::enter_namespaces(&env).context("setting up the builder's namespaces")
}

/// `hoist images | head -1` must not report an error when `head` exits.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}

/// The re-executed copy's status as ours; a copy killed by a signal exits
/// 128 + the signal, as shells report it.
fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}
