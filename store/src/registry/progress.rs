//! Progress of pulls and pushes, reported through a trait so that the
//! library never prints; the cli draws bars or docker-like lines.

use oci_spec::image::Descriptor;

/// What happened to one layer. Called from download and upload threads.
pub trait TransferProgress: Sync {
    /// The manifest is resolved; `layers` are about to be transferred.
    fn resolved(&self, _layers: &[Descriptor]) {}
    /// The layer is already where it has to be (store or registry).
    fn exists(&self, _layer: &Descriptor) {}
    /// The transfer of the layer starts (or restarts after a retry).
    fn started(&self, _layer: &Descriptor) {}
    /// `done` bytes of the layer are transferred so far.
    fn advanced(&self, _layer: &Descriptor, _done: u64) {}
    /// The layer is transferred and verified.
    fn finished(&self, _layer: &Descriptor) {}
    /// The registry mounted the layer from another repository.
    fn mounted(&self, _layer: &Descriptor, _from: &str) {}
}

/// Progress that nobody watches.
pub struct NoProgress;

impl TransferProgress for NoProgress {}
