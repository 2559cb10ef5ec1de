//! `hoist fsck [--repair]`: verify every blob, image, tag, snapshot and
//! cache entry.

use std::io::Write;
use std::process::ExitCode;

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Drop what cannot be trusted: corrupt blobs, broken or dangling tags,
    /// incomplete snapshots, unusable cache entries
    #[arg(long)]
    repair: bool,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    let report = store.fsck(args.repair)?;
    let mut out = std::io::stdout().lock();
    for problem in &report.problems {
        writeln!(out, "{problem}")?;
    }
    writeln!(
        out,
        "checked {} blobs, {} images, {} snapshots, {} cache entries: {} problem{}{}",
        report.blobs_checked,
        report.images_checked,
        report.snapshots_checked,
        report.cache_entries_checked,
        report.problems.len(),
        if report.problems.len() == 1 { "" } else { "s" },
        if args.repair && !report.problems.is_empty() {
            " (repaired)"
        } else {
            ""
        },
    )?;
    if report.is_clean() {
        return Ok(ExitCode::SUCCESS);
    }
    if args.repair {
        // Dropping a blob can break an image that used it: check again.
        let again = store.fsck(true)?;
        if again.is_clean() || store.fsck(false)?.is_clean() {
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::bail!("the store still has problems after repair; run `hoist fsck` for details");
    }
    Ok(ExitCode::FAILURE)
}
