//! `hoist man [DIR]`: the man pages, made from the same clap definitions as
//! `--help` so they never drift. Without DIR, hoist(1) goes to stdout; with
//! DIR, one page per verb is written there (hoist.1, hoist-build.1, ...).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write every page into this directory instead of hoist(1) to stdout
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(args: Args, command: clap::Command) -> anyhow::Result<ExitCode> {
    match args.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            crate::commands::write_stdout(&page)?;
        }
        Some(dir) => {
            let dir = crate::globals::absolute(&dir)?;
            fs_err::create_dir_all(&dir)?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
