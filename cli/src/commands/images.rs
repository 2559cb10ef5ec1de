//! `hoist images`: `docker images` over the store, plus the table and
//! size/time formatting shared by the other listing verbs.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hoist_store::{Image, Reference};

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only images matching REPOSITORY[:TAG]
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Show all images (accepted for compatibility; hoist has no
    /// intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Format output: "table" (default), "json" (one object per line), or
    /// a Go template ("{{.Repository}}:{{.Tag}}", "table {{.ID}}\t{{.Size}}")
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

/// `docker images`' column headers for `--format 'table ...'`.
const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

/// One row: an image under one of its names (or `<none>`).
struct Row<'a> {
    image: &'a Image,
    name: Option<&'a Reference>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    let records = store.list_images()?;
    let filter = args.reference.as_deref().map(Filter::parse).transpose()?;
    let mut rows: Vec<Row<'_>> = Vec::new();
    for record in &records {
        if record.names.is_empty() {
            if filter.is_none() {
                rows.push(Row {
                    image: &record.image,
                    name: None,
                });
            }
            continue;
        }
        for name in &record.names {
            if filter.as_ref().is_none_or(|f| f.matches(name)) {
                rows.push(Row {
                    image: &record.image,
                    name: Some(name),
                });
            }
        }
    }
    // Newest first, as docker does.
    rows.sort_by(|a, b| {
        created(b.image)
            .cmp(&created(a.image))
            .then_with(|| repository(a).cmp(&repository(b)))
            .then_with(|| tag(a).cmp(&tag(b)))
    });

    let mut out = std::io::stdout().lock();
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            if seen.insert(row.image.id().clone()) {
                writeln!(out, "{}", short_id(row.image.id(), args.no_trunc))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format.as_deref() {
        None | Some("table") => {
            let mut header = vec!["REPOSITORY", "TAG"];
            if args.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let mut table = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
            for row in &rows {
                let mut cells = vec![repository(row), tag(row)];
                if args.digests {
                    cells.push(repo_digest(&store, row));
                }
                cells.extend([
                    short_id(row.image.id(), args.no_trunc),
                    created_since(created(row.image)),
                    human_size(row.image.size(), 3),
                ]);
                table.push(cells);
            }
            write_table(&mut out, &table)?;
        }
        Some("json") => {
            for row in &rows {
                writeln!(out, "{}", go_json(&row_json(row, args.no_trunc), false)?)?;
            }
        }
        Some(format) => {
            let template = crate::template::Template::parse(format)?;
            let mut lines = Vec::with_capacity(rows.len() + 1);
            if template.table {
                lines.push(template.header(HEADERS));
            }
            for row in &rows {
                let json = row_json(row, args.no_trunc);
                lines.push(template.render(&json, crate::template::Missing::Error)?);
            }
            if template.table {
                let table: Vec<Vec<String>> = lines
                    .iter()
                    .map(|l| l.split('\t').map(str::to_owned).collect())
                    .collect();
                write_table(&mut out, &table)?;
            } else {
                for line in lines {
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One row as `docker images --format json` gives it; also what templates
/// see.
fn row_json(row: &Row<'_>, no_trunc: bool) -> serde_json::Value {
    let created_at = created(row.image).map_or_else(String::new, |t| {
        t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
    });
    serde_json::json!({
        "Containers": "N/A",
        "CreatedAt": created_at,
        "CreatedSince": created_since(created(row.image)),
        "Digest": row.name.map_or_else(|| "<none>".to_owned(), |_| row.image.digest().to_string()),
        "ID": short_id(row.image.id(), no_trunc),
        "Repository": repository(row),
        "SharedSize": "N/A",
        "Size": human_size(row.image.size(), 3),
        "Tag": tag(row),
        "UniqueSize": "N/A",
        "VirtualSize": human_size(row.image.size(), 4),
    })
}

/// `docker images REPOSITORY[:TAG]`: the repository must match, and the tag
/// when one is given.
struct Filter {
    name: String,
    tag: Option<String>,
}

impl Filter {
    fn parse(input: &str) -> anyhow::Result<Filter> {
        let reference = Reference::parse_normalized(input)
            .with_context(|| format!("invalid reference {input:?}"))?;
        Ok(Filter {
            name: reference.name(),
            tag: reference.tag().map(str::to_owned),
        })
    }

    fn matches(&self, name: &Reference) -> bool {
        name.name() == self.name && self.tag.as_deref().is_none_or(|t| name.tag() == Some(t))
    }
}

/// The digest the row's repository knows the image by (recorded by pulls
/// and pushes), else the manifest digest of a tagged image, else `<none>`.
fn repo_digest(store: &hoist_store::Store, row: &Row<'_>) -> String {
    let Some(name) = row.name else {
        return "<none>".to_owned();
    };
    let full = name.name();
    store
        .repo_digests(row.image.digest())
        .iter()
        .find_map(|d| {
            d.split_once('@')
                .filter(|(repo, _)| *repo == full)
                .map(|(_, digest)| digest.to_owned())
        })
        .unwrap_or_else(|| row.image.digest().to_string())
}

fn repository(row: &Row<'_>) -> String {
    row.name
        .map_or_else(|| "<none>".to_owned(), Reference::familiar_name)
}

fn tag(row: &Row<'_>) -> String {
    row.name
        .and_then(|n| n.tag())
        .unwrap_or("<none>")
        .to_owned()
}

/// The image's creation time from its config.
pub(crate) fn created(image: &Image) -> Option<DateTime<Utc>> {
    parse_time(image.config().created().as_deref()?)
}

pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The 12-hex-character ID docker shows, or the full `sha256:` digest.
pub(crate) fn short_id(digest: &hoist_store::digest::Digest, no_trunc: bool) -> String {
    if no_trunc {
        digest.to_string()
    } else {
        digest.digest()[..12].to_owned()
    }
}

/// "3 weeks ago", as docker's go-units HumanDuration plus " ago".
pub(crate) fn created_since(time: Option<DateTime<Utc>>) -> String {
    let Some(time) = time else {
        return "N/A".to_owned();
    };
    let seconds = (Utc::now() - time).num_seconds();
    format!("{} ago", human_duration(seconds))
}

pub(crate) fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    let hours = (seconds as f64 / 3600.0 + 0.5) as i64;
    match () {
        _ if seconds < 1 => "Less than a second".to_owned(),
        _ if seconds == 1 => "1 second".to_owned(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// Decimal sizes with `precision` significant digits, like go-units'
/// HumanSizeWithPrecision: `4.26MB`, `512B`, `1.2GB`.
pub(crate) fn human_size(bytes: u64, precision: usize) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(size, precision), UNITS[unit])
}

/// Go's `%.Ng` for the values sizes produce (no exponent form).
fn significant(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let digits = value.abs().log10().floor() as i64 + 1;
    let decimals = (precision as i64 - digits).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Writes rows like docker's tabwriter (min width 10, padding 3).
pub(crate) fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let widest = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0);
            (widest + 3).max(10)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[c] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// JSON as Go's encoding/json writes it: `<`, `>` and `&` escaped, and
/// optionally indented by four spaces like `docker inspect`.
pub(crate) fn go_json(value: &serde_json::Value, pretty: bool) -> anyhow::Result<String> {
    let text = if pretty {
        let mut buf = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
        serde::Serialize::serialize(value, &mut ser)?;
        String::from_utf8(buf)?
    } else {
        serde_json::to_string(value)?
    };
    // These characters only occur inside strings in JSON text.
    Ok(text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_go_units() {
        let cases: &[(u64, usize, &str)] = &[
            (0, 3, "0B"),
            (512, 3, "512B"),
            (4_261_000, 3, "4.26MB"),
            (4_261_000, 4, "4.261MB"),
            (77_800_000, 3, "77.8MB"),
            (1_200_000_000, 3, "1.2GB"),
            (1_000, 3, "1kB"),
            (999, 3, "999B"),
            (123_456_789, 3, "123MB"),
        ];
        for (bytes, precision, expected) in cases {
            assert_eq!(
                human_size(*bytes, *precision),
                *expected,
                "{bytes} at {precision}"
            );
        }
    }

    #[test]
    fn durations_match_go_units() {
        let cases: &[(i64, &str)] = &[
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (61 * 60, "About an hour"),
            (5 * 3600, "5 hours"),
            (3 * 86400, "3 days"),
            (15 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (3 * 365 * 86400, "3 years"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(*seconds), *expected, "{seconds}s");
        }
    }

    #[test]
    fn tables_pad_like_docker() {
        let rows = vec![
            vec!["REPOSITORY".to_owned(), "TAG".to_owned(), "SIZE".to_owned()],
            vec![
                "busybox".to_owned(),
                "latest".to_owned(),
                "4.26MB".to_owned(),
            ],
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n"
        );
    }

    #[test]
    fn json_escapes_like_go() {
        let v = serde_json::json!({"Digest": "<none>", "a": "b&c"});
        assert_eq!(
            go_json(&v, false).unwrap(),
            r#"{"Digest":"\u003cnone\u003e","a":"b\u0026c"}"#
        );
    }
}
