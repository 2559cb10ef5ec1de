//! `hoist tag SOURCE_IMAGE TARGET_IMAGE`.

use std::process::ExitCode;

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image to tag (name[:tag], name@digest, image ID or prefix)
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    /// The new name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    let image = store.resolve(&args.source)?;
    store.tag(&args.target, &image).map_err(|err| match err {
        hoist_store::StoreError::Reference(inner) => {
            anyhow::anyhow!(
                "Error parsing reference: {:?} is not a valid repository/tag: {inner}",
                args.target
            )
        }
        other => other.into(),
    })?;
    Ok(ExitCode::SUCCESS)
}
