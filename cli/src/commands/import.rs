//! `hoist import`: make a one-layer image from a root filesystem tarball.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hoist_store::import::{ImportOptions, import};

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tarball (gzip, zstd or plain; "-" reads stdin)
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The name to tag the image with
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
    /// Set the platform of the image (only linux/amd64 for now)
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Set the commit message for the imported image
    #[arg(short, long)]
    message: Option<String>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let (os, architecture) = args
        .platform
        .split_once('/')
        .with_context(|| format!("invalid platform {:?}: expected os/arch", args.platform))?;
    let store = globals.open_store()?;
    let source = args.file.display().to_string();
    let opts = ImportOptions {
        architecture: architecture.to_owned(),
        os: os.to_owned(),
        source: args.message.clone().unwrap_or_else(|| source.clone()),
        created: crate::epoch::source_date_epoch(None)?.and_then(crate::epoch::rfc3339),
        ..ImportOptions::default()
    };
    let (image, _) = if args.file.as_os_str() == "-" {
        import(
            &store,
            std::io::stdin().lock(),
            args.reference.as_deref(),
            &opts,
        )
    } else {
        let file = fs_err::File::open(&args.file)?;
        import(&store, file, args.reference.as_deref(), &opts)
    }
    .with_context(|| format!("importing {source}"))?;
    println!("{}", image.id());
    Ok(ExitCode::SUCCESS)
}
