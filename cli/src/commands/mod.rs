//! One module per verb. Each exposes `Args` (its clap arguments) and
//! `run(args, globals)`, so verbs never share mutable state.

use std::process::ExitCode;

use crate::globals::Globals;

pub mod build;
pub mod completion;
pub mod debug;
pub mod df;
pub mod fsck;
pub mod history;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod load;
pub mod login;
pub mod logout;
pub mod man;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
pub mod save;
pub mod tag;
pub mod version;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(Box<build::Args>),
    /// Run a command in a new sandbox of an image
    Run(run::Args),
    /// List images
    Images(images::Args),
    /// Show low-level information on images
    Inspect(inspect::Args),
    /// Show the history of an image
    History(history::Args),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::Args),
    /// Remove one or more images
    Rmi(rmi::Args),
    /// Save one or more images to a tar archive
    Save(save::Args),
    /// Load images from a tar archive
    Load(load::Args),
    /// Download an image from a registry
    Pull(pull::Args),
    /// Upload an image to a registry
    Push(push::Args),
    /// Import the contents from a tarball to create a filesystem image
    Import(import::Args),
    /// Log in to a registry
    Login(login::Args),
    /// Log out from a registry
    Logout(logout::Args),
    /// Remove unused data
    Prune(prune::Args),
    /// Verify the store
    Fsck(fsck::Args),
    /// Show disk usage
    Df(df::Args),
    /// Show the store and the kernel features hoist uses
    Info(info::Args),
    /// Show the hoist version information
    Version(version::Args),
    /// Print a shell completion script (bash, zsh or fish)
    Completion(completion::Args),
    /// Print the man page, or write every page into a directory
    Man(man::Args),
    /// Manage the build cache
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Manage the store as a whole
    #[command(subcommand)]
    System(SystemCommand),
    /// Tools for looking inside hoist
    #[command(subcommand)]
    Debug(debug::Command),
}

pub fn run(command: Command, globals: &Globals) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(args) => build::run(*args, globals),
        Command::Run(args) => run::run(args, globals),
        Command::Images(args) => images::run(args, globals),
        Command::Inspect(args) => inspect::run(args, globals),
        Command::History(args) => history::run(args, globals),
        Command::Tag(args) => tag::run(args, globals),
        Command::Rmi(args) => rmi::run(args, globals),
        Command::Save(args) => save::run(args, globals),
        Command::Load(args) => load::run(args, globals),
        Command::Pull(args) => pull::run(args, globals),
        Command::Push(args) => push::run(args, globals),
        Command::Import(args) => import::run(args, globals),
        Command::Login(args) => login::run(args, globals),
        Command::Logout(args) => logout::run(args, globals),
        Command::Prune(args) => prune::run(args, globals, prune::Scope::Everything),
        Command::Builder(BuilderCommand::Prune(args)) => {
            prune::run(args, globals, prune::Scope::BuildCache)
        }
        Command::System(SystemCommand::Df(args)) => df::run(args, globals),
        Command::System(SystemCommand::Prune(args)) => {
            prune::run(args, globals, prune::Scope::Everything)
        }
        Command::Fsck(args) => fsck::run(args, globals),
        Command::Df(args) => df::run(args, globals),
        Command::Info(args) => info::run(args, globals),
        Command::Version(args) => version::run(args),
        Command::Completion(args) => completion::run(args, crate::cli_command()),
        Command::Man(args) => man::run(args, crate::cli_command()),
        Command::Debug(command) => debug::run(command, globals),
    }
}

/// Writes all of `bytes` to stdout (a closed pipe is reported as such, and
/// `main` treats it as success).
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// `hoist builder ...`, as `docker builder`.
#[derive(Debug, clap::Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache (entries and cache mounts)
    Prune(prune::Args),
}

/// `hoist system ...`, as `docker system`.
#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Show disk usage
    Df(df::Args),
    /// Remove unused data
    Prune(prune::Args),
}
