//! hoist-store: the local content-addressed store, an OCI image layout with
//! hoist's own cache index and snapshots beside it. Knows OCI, knows nothing
//! of Dockerfiles.
//!
//! On disk (`<root>` is [`Store::root`]):
//! ```text
//! <root>/oci-layout, <root>/index.json, <root>/blobs/sha256/<hex>   the OCI image layout
//! <root>/hoist/lock                 flock: shared by writers, exclusive for index edits and GC
//! <root>/hoist/tmp/<session>/       one flock-held directory per open Store: temp files, leases
//! <root>/hoist/snapshots/<chainid>/ an extracted layer stack member, present only when complete
//! <root>/hoist/cache/<key>.json     build-cache entries
//! <root>/hoist/compressed/<diffid>/<gzip|zstd>  the compressed blob made for a layer on export
//! <root>/hoist/context-index/, context-checksum/, cache-recent/, cache-files/   the builder's cache records
//! <root>/hoist/unsynced/<boot-id>/<chainid>     snapshots whose data was left to the kernel
//! <root>/hoist/unsynced/<boot-id>/blobs/<hex>   blobs (a build's layers, compressed variants) not yet synced
//! <root>/hoist/trash/<nanos>-<what>  trees nobody needs, deleted off the critical path when
//!                                   minutes old, at once by GC or when the disk is nearly full
//! ```
//!
//! Guarantees: every write goes to a temp file in the session directory, is
//! verified, fsynced and renamed into place; index.json is replaced
//! atomically under an exclusive lock; a process that dies leaves only a
//! stale session directory, removed by the next [`Store::open`]. Two kinds
//! of data are not fsynced, and are recorded under `hoist/unsynced` before
//! they are published instead: snapshots, caches of their blobs, dropped
//! after a reboot (see [`Store::commit_snapshot`]); and the layer blobs a
//! build makes, durable within about 30 s of the build or at once after
//! `sync`: a machine crash before then loses them, and the cache entries
//! and tags that need them, but never leaves a corrupt store (see
//! [`BlobWriter::commit_unsynced`]); likewise the compressed variants a
//! push or save makes, whose loss costs only their remaking. Work in flight is protected from GC by
//! *leases*: each session records the blobs and chain IDs it created or
//! looked up, and [`Store::gc`] treats the leases of live sessions as roots.

#![forbid(unsafe_code)]

pub mod archive;
pub mod blob;
pub mod cache;
pub mod compress;
pub mod digest;
mod direct;
mod error;
pub mod extract;
pub mod fsck;
pub mod gc;
pub mod image;
pub mod image_config;
pub mod import;
pub mod inroot;
mod layout;
pub mod lazy;
mod lock;
pub mod reference;
pub mod registry;
mod session;
pub mod snapshot;
mod sources;
mod store;
pub mod tar_guard;
#[cfg(test)]
mod test_bytes;
pub mod trash;
mod unsynced;

pub use blob::{BlobWriter, ExpectedBlob, VerifiedReader};
pub use cache::{CacheEntry, CacheRecord};
pub use compress::Compression;

pub use error::StoreError;
pub use image::{Image, ImageRecord, Layer};
pub use lazy::BlobSource;
pub use reference::{Reference, ReferenceError};
pub use store::{Store, default_root};

/// The annotation holding the familiar `name:tag` that skopeo and umoci match
/// (`skopeo inspect oci:<root>:busybox:latest`).
pub const ANNOTATION_REF_NAME: &str = oci_spec::image::ANNOTATION_REF_NAME;
/// The annotation holding the fully normalised name
/// (`docker.io/library/busybox:latest`); containerd and `docker load` read
/// the same key from OCI archives.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
