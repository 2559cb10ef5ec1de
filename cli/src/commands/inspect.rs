//! `hoist inspect`: a JSON array shaped like `docker image inspect`.

use std::io::Write;
use std::process::ExitCode;

use hoist_store::{Image, Reference, Store};
use serde_json::{Map, Value, json};

use crate::commands::images::go_json;
use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to inspect (name[:tag], name@digest, image ID or prefix)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// Format output: "json" (default), or a Go template applied to each
    /// image ("{{.Id}}", "{{json .Config}}", "{{index .RepoTags 0}}")
    #[arg(short, long, value_name = "FORMAT")]
    format: Option<String>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let template = match args.format.as_deref() {
        None | Some("json") => None,
        Some(format) => Some(crate::template::Template::parse(format)?),
    };
    let store = globals.open_store()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for query in &args.images {
        match store.resolve(query) {
            Ok(image) => found.push(inspect(&store, &image)?),
            Err(err) if err.is_not_found() => missing.push(query.clone()),
            Err(err) => return Err(err.into()),
        }
    }
    let mut out = std::io::stdout().lock();
    match &template {
        None => writeln!(out, "{}", go_json(&Value::Array(found), true)?)?,
        Some(template) => {
            // docker inspect falls back to the decoded JSON, where a
            // missing field is Go's <no value>.
            for image in &found {
                let line = template.render(image, crate::template::Missing::NoValue)?;
                writeln!(out, "{line}")?;
            }
        }
    }
    if missing.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        // Docker prints what it found, then fails for the rest.
        for query in &missing {
            eprintln!("Error: No such image: {query}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The `docker image inspect` object for one image.
pub(crate) fn inspect(store: &Store, image: &Image) -> anyhow::Result<Value> {
    let names = store.names_of(image.digest())?;
    let repo_tags: Vec<String> = names.iter().map(Reference::familiar_string).collect();
    // What pulls and pushes recorded; an image that never met a registry
    // shows its tags with its manifest digest.
    let recorded = store.repo_digests(image.digest());
    let mut repo_digests: Vec<String> = if recorded.is_empty() {
        names
            .iter()
            .map(|n| format!("{}@{}", n.familiar_name(), image.digest()))
            .collect()
    } else {
        recorded.iter().map(|d| familiar_repo_digest(d)).collect()
    };
    repo_digests.dedup();
    let raw = image.config_json();
    let text = |key: &str| {
        raw.get(key)
            .cloned()
            .unwrap_or(Value::String(String::new()))
    };
    let config = raw
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let diff_ids: Vec<String> = image.diff_ids().iter().map(ToString::to_string).collect();
    let mut object = json!({
        "Id": image.id().to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": history_comment(raw),
        "Created": text("created"),
        "DockerVersion": "",
        "Author": text("author"),
        "Config": docker_config(&config),
        "Architecture": text("architecture"),
        "Os": text("os"),
        "Size": image.size(),
        "RootFS": {"Type": "layers", "Layers": diff_ids},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "Descriptor": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.digest().to_string(),
            "size": image.descriptor().size(),
        },
    });
    if let (Some(variant), Some(map)) = (raw.get("variant"), object.as_object_mut()) {
        map.insert("Variant".to_owned(), variant.clone());
    }
    Ok(object)
}

/// Docker's `Config` with the fields it always shows (null or "" when
/// unset) and the optional ones when set.
fn docker_config(config: &Map<String, Value>) -> Value {
    let get = |key: &str| config.get(key).cloned().unwrap_or(Value::Null);
    let text = |key: &str| {
        config
            .get(key)
            .cloned()
            .unwrap_or(Value::String(String::new()))
    };
    let mut out = Map::new();
    out.insert("User".into(), text("User"));
    out.insert("ExposedPorts".into(), get("ExposedPorts"));
    out.insert("Env".into(), get("Env"));
    out.insert("Cmd".into(), get("Cmd"));
    for key in ["Healthcheck", "ArgsEscaped"] {
        if let Some(v) = config.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert("Volumes".into(), get("Volumes"));
    out.insert("WorkingDir".into(), text("WorkingDir"));
    out.insert("Entrypoint".into(), get("Entrypoint"));
    out.insert("OnBuild".into(), get("OnBuild"));
    out.insert("Labels".into(), get("Labels"));
    for key in ["StopSignal", "Shell"] {
        if let Some(v) = config.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// Docker shows the last history entry's comment (e.g. `buildkit.dockerfile.v0`).
fn history_comment(raw: &Value) -> Value {
    raw.get("history")
        .and_then(Value::as_array)
        .and_then(|h| h.last())
        .and_then(|h| h.get("comment"))
        .cloned()
        .unwrap_or(Value::String(String::new()))
}

/// `docker.io/library/busybox@sha256:...` as Docker shows it:
/// `busybox@sha256:...`.
fn familiar_repo_digest(full: &str) -> String {
    match Reference::parse_normalized(full) {
        Ok(reference) => match reference.digest() {
            Some(digest) => format!("{}@{digest}", reference.familiar_name()),
            None => full.to_owned(),
        },
        Err(_) => full.to_owned(),
    }
}
