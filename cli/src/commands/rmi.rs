//! `hoist rmi IMAGE...`: untag, and delete images left without tags.

use std::io::Write;
use std::process::ExitCode;

use anyhow::anyhow;
use hoist_store::gc::GcOptions;
use hoist_store::{Reference, Store};

use crate::commands::images::short_id;
use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images to remove (name[:tag], name@digest, image ID or prefix)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// Force removal of an image referenced by several tags
    #[arg(short, long)]
    force: bool,
    /// Do not collect the removed image's data now (leave it to `hoist prune`)
    #[arg(long)]
    no_prune: bool,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let store = globals.open_store()?;
    let mut failed = false;
    let mut deleted_any = false;
    for query in &args.images {
        match remove(&store, query, args.force) {
            Ok(deleted) => deleted_any |= deleted,
            Err(err) => {
                eprintln!("Error: {err:#}");
                failed = true;
            }
        }
    }
    if deleted_any && !args.no_prune {
        // This session leased what it resolved; a fresh one holds nothing,
        // so the deleted images' data can go now.
        drop(store);
        globals.open_store()?.gc(&GcOptions::default())?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Removes one argument; returns whether an image was deleted.
fn remove(store: &Store, query: &str, force: bool) -> anyhow::Result<bool> {
    let image = store.resolve(query)?;
    let names = store.names_of(image.digest())?;
    // Named by one of its tags: untag just that one.
    let by_tag = Reference::parse_tagged(query)
        .ok()
        .filter(|r| names.iter().any(|n| n == r));
    let untag: Vec<Reference> = match by_tag {
        Some(reference) => vec![reference],
        None if names.len() > 1 && !force => {
            return Err(anyhow!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                short_id(image.id(), false)
            ));
        }
        None => names.clone(),
    };
    let mut still_tagged = false;
    for reference in &untag {
        let (_, remaining) = store.untag(&reference.to_string())?;
        still_tagged = remaining;
        writeln!(
            std::io::stdout(),
            "Untagged: {}",
            reference.familiar_string()
        )?;
    }
    if still_tagged {
        return Ok(false);
    }
    store.remove_image(image.digest())?;
    writeln!(std::io::stdout(), "Deleted: {}", image.id())?;
    Ok(true)
}
