//! `hoist load`: read a docker-archive or OCI layout tarball (plain or
//! compressed) from a file or stdin.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hoist_store::archive::load;

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Read from a tar archive file instead of stdin ("-" is stdin)
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    let loaded = match args.input.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let file = fs_err::File::open(path)?;
            load(&store, file).with_context(|| format!("loading {}", path.display()))?
        }
        None => {
            let stdin = std::io::stdin();
            if std::io::IsTerminal::is_terminal(&stdin) {
                anyhow::bail!("requested load from stdin, but stdin is empty");
            }
            load(&store, stdin.lock()).context("loading from stdin")?
        }
    };
    if !args.quiet {
        for image in loaded {
            if image.tags.is_empty() {
                println!("Loaded image ID: {}", image.image.id());
            }
            for tag in image.tags {
                println!("Loaded image: {}", tag.familiar_string());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
