//! `hoist run`.

use std::process::ExitCode;

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _globals: &Globals) -> anyhow::Result<ExitCode> {
    anyhow::bail!("hoist run is not implemented yet")
}
