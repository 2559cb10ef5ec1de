//! `hoist df`: space used by images, snapshots and the build cache, shaped
//! like `docker system df`.

use std::process::ExitCode;

use crate::commands::images::{human_size, write_table};
use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Format output: "table" (default) or "json" (one object per line)
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    let usage = store.disk_usage()?;
    let rows = [
        (
            "Images",
            usage.images,
            usage.tagged_images,
            usage.images_size + usage.unreferenced_blobs_size,
            usage.unreferenced_blobs_size,
        ),
        (
            "Snapshots",
            usage.snapshots,
            usage.snapshots_active,
            usage.snapshots_size,
            usage.unreferenced_snapshots_size,
        ),
        (
            "Build Cache",
            usage.cache_entries,
            0,
            usage.cache_size,
            usage.cache_size,
        ),
        (
            "Cache Mounts",
            usage.cache_mounts,
            0,
            usage.cache_mounts_size,
            usage.cache_mounts_size,
        ),
    ];
    let reclaimable = |size: u64, free: u64| match (free * 100).checked_div(size) {
        Some(percent) => format!("{} ({percent}%)", human_size(free, 4)),
        None => human_size(free, 4),
    };
    let mut out = std::io::stdout().lock();
    match args.format.as_deref() {
        None | Some("table") => {
            let mut table = vec![
                ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for (kind, total, active, size, free) in rows {
                table.push(vec![
                    kind.to_owned(),
                    total.to_string(),
                    active.to_string(),
                    human_size(size, 4),
                    reclaimable(size, free),
                ]);
            }
            write_table(&mut out, &table)?;
        }
        Some("json") => {
            use std::io::Write;
            for (kind, total, active, size, free) in rows {
                let json = serde_json::json!({
                    "Active": active.to_string(),
                    "Reclaimable": reclaimable(size, free),
                    "Size": human_size(size, 4),
                    "TotalCount": total.to_string(),
                    "Type": kind,
                });
                writeln!(out, "{json}")?;
            }
        }
        Some(other) => anyhow::bail!("unsupported --format {other:?}: use \"table\" or \"json\""),
    }
    Ok(ExitCode::SUCCESS)
}
