//! `hoist pull`: download an image from a registry, with `docker pull`'s
//! flags and output.

use std::process::ExitCode;

use hoist_store::Reference;
use hoist_store::registry::{Platform, PullOptions};

use crate::globals::Globals;
use crate::transfer::{self, Direction};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of the image: NAME[:TAG|@DIGEST]
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    reference: String,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Set the max concurrent downloads
    #[arg(long, default_value_t = hoist_store::registry::pull::DEFAULT_CONCURRENT_DOWNLOADS, value_name = "N")]
    max_concurrent_downloads: usize,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse_normalized(&args.reference)?.with_default_tag();
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    if args.max_concurrent_downloads == 0 {
        anyhow::bail!("invalid --max-concurrent-downloads 0: it must be at least 1");
    }
    let store = globals.open_store()?;
    let client = globals.registry_client()?;
    let drawer = transfer::drawer(Direction::Pull, args.quiet);
    let part = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => tag.to_owned(),
        (None, Some(digest)) => digest.to_string(),
        (None, None) => "latest".to_owned(),
    };
    drawer.line(&format!("{part}: Pulling from {}", reference.path()));
    let mut options = PullOptions::new(drawer.as_progress());
    options.platform = platform;
    options.max_concurrent_downloads = args.max_concurrent_downloads;
    // The client's errors name the reference or URL.
    let pulled = client.pull(&store, &reference, &options)?;
    drawer.line(&format!("Digest: {}", pulled.repo_digest));
    let status = if pulled.up_to_date {
        "Image is up to date for"
    } else {
        "Downloaded newer image for"
    };
    drawer.line(&format!("Status: {status} {}", reference.familiar_string()));
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}
