//! `hoist push`: upload an image to a registry, with `docker push`'s flags
//! and output.

use std::process::ExitCode;

use anyhow::Context;
use hoist_store::registry::{Client, PushOptions};
use hoist_store::{Reference, Store};

use crate::globals::Globals;
use crate::transfer::{self, Direction};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of the image: NAME[:TAG]
    #[arg(value_name = "NAME[:TAG]")]
    reference: String,
    /// Push all tags of an image to the repository
    #[arg(short, long)]
    all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse_normalized(&args.reference)?;
    if reference.digest().is_some() {
        anyhow::bail!("cannot push a digest reference: {}", args.reference);
    }
    let store = globals.open_store()?;
    let client = globals.registry_client()?;
    let tags: Vec<Reference> = if args.all_tags {
        if reference.tag().is_some() {
            anyhow::bail!("tag can't be used with --all-tags/-a");
        }
        let name = reference.name();
        let mut tags: Vec<Reference> = store
            .list_images()?
            .into_iter()
            .flat_map(|record| record.names)
            .filter(|n| n.name() == name)
            .collect();
        tags.sort_by(|a, b| a.tag().cmp(&b.tag()));
        if tags.is_empty() {
            anyhow::bail!("no such image: {}", reference.familiar_name());
        }
        tags
    } else {
        vec![reference.with_default_tag()]
    };
    let drawer = transfer::drawer(Direction::Push, args.quiet);
    drawer.line(&format!(
        "The push refers to repository [{}]",
        tags[0].familiar_name()
    ));
    for tag in &tags {
        push_one(&client, &store, tag, drawer.as_progress(), |line| {
            drawer.line(line)
        })?;
    }
    if args.quiet {
        for tag in &tags {
            println!("{}", tag.familiar_string());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pushes one tag and prints `TAG: digest: sha256:... size: N`; shared
/// with `build --push`.
pub fn push_one(
    client: &Client,
    store: &Store,
    reference: &Reference,
    progress: &dyn hoist_store::registry::TransferProgress,
    line: impl Fn(&str),
) -> anyhow::Result<()> {
    let shown = reference.familiar_string();
    let image = match store.resolve(&reference.to_string()) {
        Ok(image) => image,
        Err(err) if err.is_not_found() => anyhow::bail!(
            "an image does not exist locally with the tag: {}",
            reference.familiar_name()
        ),
        Err(err) => return Err(err.into()),
    };
    let pushed = client
        .push(store, &image, reference, &PushOptions::new(progress))
        .with_context(|| format!("pushing {shown}"))?;
    line(&format!(
        "{}: digest: {} size: {}",
        reference.tag().unwrap_or("latest"),
        pushed.digest,
        pushed.size
    ));
    Ok(())
}
