//! `hoist import`: a root filesystem tarball (gzip, zstd or plain) becomes a
//! one-layer image, as with `docker import`. The tar stream is kept byte for
//! byte (its sha256 is the diff_id) and stored gzip-compressed, in one pass.

use std::io::{self, Read, Write};

use oci_spec::image::{Descriptor, MediaType};

use crate::StoreError;
use crate::digest::{DiffId, HashingWriter};
use crate::extract::decompress;
use crate::image::Image;
use crate::reference::Reference;
use crate::store::Store;

/// Options for [`import`].
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub architecture: String,
    pub os: String,
    /// RFC 3339 creation time (default: now).
    pub created: Option<String>,
    /// Where the tarball came from, for the history comment.
    pub source: String,
    /// Gzip level of the stored layer.
    pub gzip_level: u32,
    /// The image's `config` (`docker import --change` sets it).
    pub config: crate::image_config::RuntimeConfig,
    /// The history comment (`docker import --message`); by default
    /// `Imported from SOURCE`.
    pub message: Option<String>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            architecture: "amd64".into(),
            os: "linux".into(),
            created: None,
            source: "-".into(),
            gzip_level: 2,
            config: crate::image_config::RuntimeConfig::default(),
            message: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading {source_name}: {error}")]
    Read {
        source_name: String,
        #[source]
        error: io::Error,
    },
}

/// Imports `reader` as a one-layer image and tags it `reference` when given.
pub fn import(
    store: &Store,
    reader: impl Read,
    reference: Option<&str>,
    opts: &ImportOptions,
) -> Result<(Image, Option<Reference>), ImportError> {
    let read_err = |error| ImportError::Read {
        source_name: opts.source.clone(),
        error,
    };
    let (mut reader, _) = decompress(reader).map_err(read_err)?;
    let blob = store.blob_writer()?;
    let encoder = flate2::write::GzEncoder::new(blob, flate2::Compression::new(opts.gzip_level));
    let mut hashing = HashingWriter::new(encoder);
    io::copy(&mut reader, &mut hashing).map_err(read_err)?;
    let (encoder, diff_id, _) = hashing.finish().map_err(read_err)?;
    let mut blob = encoder.finish().map_err(read_err)?;
    blob.flush().map_err(read_err)?;
    let (digest, size) = blob.commit(None)?;
    let diff_id = DiffId::new(&diff_id);

    let created = opts
        .created
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    let config = serde_json::json!({
        "architecture": opts.architecture,
        "os": opts.os,
        "created": created,
        "config": opts.config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{
            "created": created,
            "created_by": "hoist import",
            "comment": opts.message.clone().unwrap_or_else(|| format!("Imported from {}", opts.source)),
        }],
    });
    let layer = Descriptor::new(MediaType::ImageLayerGzip, size, digest);
    let image = store.put_image_json(&config, &[layer])?;
    let tag = match reference {
        Some(reference) => Some(store.tag(reference, &image)?),
        None => {
            store.add_untagged(&image)?;
            None
        }
    };
    Ok((image, tag))
}
