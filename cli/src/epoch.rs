//! SOURCE_DATE_EPOCH (<https://reproducible-builds.org/specs/source-date-epoch/>):
//! when set, the time written into images, so that builds and imports are
//! reproducible.

use anyhow::Context;

/// The epoch from `value` (a `--build-arg`) or else the environment.
pub fn source_date_epoch(value: Option<&str>) -> anyhow::Result<Option<u64>> {
    let value = match value {
        Some(value) => Some(value.to_owned()),
        None => std::env::var("SOURCE_DATE_EPOCH").ok(),
    };
    match value {
        Some(value) if !value.is_empty() => value
            .parse::<u64>()
            .map(Some)
            .with_context(|| format!("invalid SOURCE_DATE_EPOCH {value:?}: expected seconds")),
        _ => Ok(None),
    }
}

/// The epoch as RFC 3339, the form image configs use.
pub fn rfc3339(epoch: u64) -> Option<String> {
    let seconds = i64::try_from(epoch).ok()?;
    chrono::DateTime::<chrono::Utc>::from_timestamp(seconds, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}
