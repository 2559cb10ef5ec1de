//! `hoist logout [SERVER]`: removes a registry's credentials from Docker's
//! config.json (and from its credential helper), as `docker logout` does.

use std::process::ExitCode;

use anyhow::Context;
use hoist_store::registry::DockerConfig;
use hoist_store::registry::docker_config::auths_key;

use crate::commands::login::registry_host;
use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry (default: Docker Hub)
    #[arg(value_name = "SERVER")]
    server: Option<String>,
}

pub fn run(args: Args, _globals: &Globals) -> anyhow::Result<ExitCode> {
    let host = registry_host(args.server.as_deref().unwrap_or("docker.io"))?;
    let config = DockerConfig::from_env()?;
    // Docker names Docker Hub by its config key in these messages.
    let shown = auths_key(&host);
    if !config.has_entry(&host)? {
        println!("Not logged in to {shown}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Removing login credentials for {shown}");
    config
        .erase(&host)
        .with_context(|| format!("removing login credentials for {shown}"))?;
    Ok(ExitCode::SUCCESS)
}
