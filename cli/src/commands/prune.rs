//! `hoist prune`: collect garbage (unreferenced blobs and snapshots,
//! dangling images, and build cache per `--all` / `--keep-storage`). A
//! dangling image is an untagged one that is not a tag's image for another
//! platform (pulled through the same index).

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
    /// Provide filter values (`until=24h`: build cache and cache mounts
    /// not used for that long)
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
}

/// What is pruned: everything unused (`hoist prune`, `hoist system prune`)
/// or the build cache only (`hoist builder prune`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Everything,
    BuildCache,
}

pub fn run(args: Args, globals: &Globals, scope: Scope) -> anyhow::Result<ExitCode> {
    let mut until = None;
    for filter in &args.filters {
        match filter.split_once('=') {
            Some(("until", value)) => {
                until = Some(
                    parse_duration(value)
                        .map_err(|e| anyhow::anyhow!("invalid filter {filter:?}: {e}"))?,
                );
            }
            _ => anyhow::bail!("invalid filter {filter:?}: only until=DURATION is supported"),
        }
    }
    let store = globals.open_store()?;
    if !args.force {
        let what = match (scope, args.all) {
            (Scope::Everything, true) => {
                "all dangling images, unreferenced data and all build cache"
            }
            (Scope::Everything, false) => {
                "all dangling images, unreferenced data and unusable build cache"
            }
            (Scope::BuildCache, true) => "all build cache",
            (Scope::BuildCache, false) => "unusable build cache",
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
        dangling_images: scope == Scope::Everything,
        cache_unused_for: until,
        cache_mounts: args.all || until.is_some(),
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
    if report.cache_mounts > 0 {
        writeln!(out, "Deleted cache mounts: {}", report.cache_mounts)?;
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

/// Parses a Go duration as docker's `until` filter takes it: `90s`,
/// `30m`, `24h`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{text:?} is not a duration (e.g. 24h, 30m, 1h30m)");
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = tail;
    }
    Ok(std::time::Duration::from_secs_f64(total))
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
    fn durations_parse_like_go() {
        for (text, secs) in [
            ("24h", 86400.0),
            ("1h30m", 5400.0),
            ("90s", 90.0),
            ("1.5h", 5400.0),
        ] {
            assert_eq!(parse_duration(text).unwrap().as_secs_f64(), secs, "{text}");
        }
        for text in ["", "24", "1d", "h"] {
            assert!(parse_duration(text).is_err(), "{text:?}");
        }
    }

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
