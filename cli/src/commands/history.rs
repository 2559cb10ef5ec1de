//! `hoist history`: the config's history, newest first, like `docker history`.

use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

use crate::commands::images::{
    created_since, go_json, human_size, parse_time, short_id, write_table,
};
use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image (name[:tag], name@digest, image ID or prefix)
    image: String,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output: "table" (default) or "json" (one object per line)
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

struct Row {
    id: String,
    created: String,
    created_by: String,
    size: u64,
    comment: String,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    let image = store.resolve(&args.image)?;
    let layers = image.manifest().layers();
    let history: Vec<Value> = image
        .config_json()
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut layer = 0;
    if history.is_empty() {
        // No history recorded: one row per layer.
        for l in layers {
            rows.push(Row {
                id: String::new(),
                created: String::new(),
                created_by: String::new(),
                size: l.size(),
                comment: String::new(),
            });
        }
    }
    for h in &history {
        let field = |k: &str| {
            h.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let empty = h
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let size = if empty {
            0
        } else {
            let size = layers.get(layer).map_or(0, |l| l.size());
            layer += 1;
            size
        };
        rows.push(Row {
            id: String::new(),
            created: field("created"),
            created_by: field("created_by"),
            size,
            comment: field("comment"),
        });
    }
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first.id = short_id(image.id(), args.no_trunc);
    }
    let id = |row: &Row| {
        if row.id.is_empty() {
            "<missing>".to_owned()
        } else {
            row.id.clone()
        }
    };

    let mut out = std::io::stdout().lock();
    if args.quiet {
        for row in &rows {
            writeln!(out, "{}", id(row))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let created_by = |row: &Row| {
        let text = row.created_by.replace('\t', " ");
        if args.no_trunc || text.chars().count() <= 45 {
            text
        } else {
            let cut: String = text.chars().take(44).collect();
            format!("{cut}…")
        }
    };
    match args.format.as_deref() {
        None | Some("table") => {
            let mut table = vec![
                ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for row in &rows {
                table.push(vec![
                    id(row),
                    created_since(parse_time(&row.created)),
                    created_by(row),
                    human_size(row.size, 3),
                    row.comment.clone(),
                ]);
            }
            write_table(&mut out, &table)?;
        }
        Some("json") => {
            for row in &rows {
                let json = serde_json::json!({
                    "Comment": row.comment,
                    "CreatedAt": row.created,
                    "CreatedBy": created_by(row),
                    "CreatedSince": created_since(parse_time(&row.created)),
                    "ID": id(row),
                    "Size": human_size(row.size, 3),
                });
                writeln!(out, "{}", go_json(&json, false)?)?;
            }
        }
        Some(other) => anyhow::bail!("unsupported --format {other:?}: use \"table\" or \"json\""),
    }
    Ok(ExitCode::SUCCESS)
}
