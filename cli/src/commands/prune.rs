//! `hoist prune`: collect garbage (unreferenced blobs and snapshots,
//! untagged images, and build cache per `--all` / `--keep-storage`).

use std::io::{BufRead, Write};
use std::process::ExitCode;

use hoist_store::gc::GcOptions;

use crate::commands::images::{human_size, short_id};
use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove all build cache, not just what is unusable
    #[arg(short, long)]
    all: bool,
    /// Drop least-recently-used build cache until it fits in SIZE (e.g. 10GB, 512MB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    keep_storage: Option<u64>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    if !args.force {
        let what = if args.all {
            "all untagged images, unreferenced data and all build cache"
        } else {
            "all untagged images, unreferenced data and unusable build cache"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = store.gc(&GcOptions {
        all_cache: args.all,
        keep_storage: args.keep_storage,
        dangling_images: true,
    })?;
    let mut out = std::io::stdout().lock();
    if !report.images.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for digest in &report.images {
            writeln!(out, "deleted: {digest}")?;
        }
        writeln!(out)?;
    }
    if !report.cache_entries.is_empty() {
        writeln!(out, "Deleted build cache objects:")?;
        for key in &report.cache_entries {
            writeln!(out, "{}", &key[..25.min(key.len())])?;
        }
        writeln!(out)?;
    }
    if !report.snapshots.is_empty() {
        writeln!(out, "Deleted snapshots:")?;
        for chain in &report.snapshots {
            writeln!(out, "{}", short_id(&chain.digest(), false))?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(report.reclaimed, 3)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Parses a size like docker's `--keep-storage`: a number with an optional
/// unit (b, k/kb/kib, m/mb/mib, g/gb/gib, t/tb/tib; case-insensitive, all
/// binary multiples as in go-units' RAMInBytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size: {text:?}");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => return Err(invalid()),
    };
    if !value.is_finite() || value < 0.0 {
        return Err(invalid());
    }
    Ok((value * multiplier as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("512", Some(512)),
            ("10b", Some(10)),
            ("1k", Some(1024)),
            ("1KB", Some(1024)),
            ("1.5m", Some(1_572_864)),
            ("10GB", Some(10 << 30)),
            ("2gib", Some(2 << 30)),
            ("1T", Some(1 << 40)),
            ("", None),
            ("ten", None),
            ("10 XB", None),
            ("-1", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text).ok(), *expected, "{text:?}");
        }
    }
}
