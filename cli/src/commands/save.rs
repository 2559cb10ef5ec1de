//! `hoist save`: write images to a docker-archive or OCI layout tarball.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hoist_store::archive::{ArchiveFormat, SaveItem, SaveOptions, save_with};
use hoist_store::{Compression, Image, Reference, Store};

use crate::globals::Globals;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write to a file instead of stdout ("-" is stdout)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive format: docker (docker load) or oci (an OCI image layout)
    #[arg(long, value_name = "FORMAT", default_value = "docker", value_parser = ["docker", "oci"])]
    format: String,
    /// Layer compression of `--format oci`: gzip[:LEVEL], zstd[:LEVEL] or
    /// uncompressed (docker archives are always uncompressed)
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// Images to save (name[:tag], name@digest or image ID)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(args: Args, globals: &Globals) -> anyhow::Result<ExitCode> {
    let format = match args.format.as_str() {
        "oci" => ArchiveFormat::Oci,
        _ => ArchiveFormat::Docker,
    };
    let options = SaveOptions {
        compression: Some(Compression::parse(&args.compression)?),
    };
    let store = globals.open_store()?;
    let mut images = Vec::new();
    for name in &args.images {
        let image = store.resolve(name)?;
        // Saved by name: the archive carries that tag (as docker save does);
        // by ID or digest: untagged.
        let by_id = name.contains('@')
            || name.starts_with("sha256:")
            || image.id().digest().starts_with(name.as_str());
        let names = if by_id {
            Vec::new()
        } else {
            vec![name.clone()]
        };
        images.push((image, names));
    }
    let dest = args.output.unwrap_or_else(|| PathBuf::from("-"));
    write_archive(&store, &images, format, &options, &dest)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `images` (each with the names to save it under) to `dest`, a file
/// or `-` for stdout. A file is written beside its final name and renamed,
/// so a failed save never leaves a truncated archive under that name.
pub fn write_archive(
    store: &Store,
    images: &[(Image, Vec<String>)],
    format: ArchiveFormat,
    options: &SaveOptions,
    dest: &Path,
) -> anyhow::Result<()> {
    let mut items = Vec::new();
    for (image, names) in images {
        let references = names
            .iter()
            .map(|name| Ok(Reference::parse_normalized(name)?.with_default_tag()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        items.push(SaveItem {
            image: image.clone(),
            references,
        });
    }
    if dest.as_os_str() == "-" {
        let stdout = std::io::stdout();
        if std::io::IsTerminal::is_terminal(&stdout) {
            bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        }
        let mut lock = stdout.lock();
        save_with(store, &items, format, options, &mut lock)?;
        lock.flush()?;
        return Ok(());
    }
    let tmp = dest.with_file_name(format!(
        ".{}.hoist-tmp",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let file = fs_err::File::create(&tmp)?;
    if let Err(err) = save_with(store, &items, format, options, file) {
        let _ = fs_err::remove_file(&tmp);
        return Err(err).with_context(|| format!("saving to {}", dest.display()));
    }
    fs_err::rename(&tmp, dest)?;
    Ok(())
}
