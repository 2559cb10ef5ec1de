//! `hoist debug ast|graph`: the parser's view of a Dockerfile, for tooling
//! and for comparing against BuildKit's parser fixtures.

use std::process::ExitCode;

use crate::globals::Globals;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the parse tree of a Dockerfile
    Ast(AstArgs),
    /// Print the stages of a Dockerfile and their dependencies
    Graph(GraphArgs),
}

#[derive(Debug, clap::Args)]
pub struct AstArgs {}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {}

pub fn run(_command: Command, _globals: &Globals) -> anyhow::Result<ExitCode> {
    anyhow::bail!("hoist debug is not implemented yet")
}
