//! The store's error type.

use std::io;
use std::path::PathBuf;

use crate::digest::{Digest, InvalidDigest};
use crate::reference::ReferenceError;

/// Everything that can go wrong in the store. Messages name the path, digest
/// or reference involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    InvalidDigest(#[from] InvalidDigest),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("blob {expected} is corrupt: expected {expected}, read {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} has the wrong size: expected {expected} bytes, read {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} not found")]
    BlobNotFound(Digest),
    #[error("blob {digest} is too large to read into memory ({size} bytes)")]
    BlobTooLarge { digest: Digest, size: u64 },
    #[error("invalid {what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("no such image: {0}")]
    ImageNotFound(String),
    #[error("multiple images found with prefix {0:?}")]
    AmbiguousId(String),
    #[error("refusing to create a tag with a digest reference: {0}")]
    TagWithDigest(String),
    #[error("invalid cache key {0:?}: expected 64 lowercase hex characters")]
    InvalidCacheKey(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> StoreError {
        StoreError::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// True when the error means "the thing is not in the store" rather than
    /// "the store is broken".
    pub fn is_not_found(&self) -> bool {
        match self {
            StoreError::BlobNotFound(_) | StoreError::ImageNotFound(_) => true,
            StoreError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// Converts an io::Error produced by a [`crate::VerifiedReader`] back into the
/// store error it carries, if any.
pub(crate) fn into_io(err: StoreError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}
