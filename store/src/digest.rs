//! Digests and the identities derived from them.
//!
//! The OCI image spec uses three different sha256 identities for a layer, and
//! mixing them up is a classic bug, so each has its own type:
//! - the layer *digest* (of the blob as stored, usually compressed): a plain
//!   [`Digest`] in a [`oci_spec::image::Descriptor`];
//! - the [`DiffId`] (of the uncompressed tar), listed in the image config's
//!   `rootfs.diff_ids`;
//! - the [`ChainId`], which names a stack of layers and keys snapshots
//!   (<https://github.com/opencontainers/image-spec/blob/main/config.md#layer-chainid>).

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

pub use oci_spec::image::Digest;
use oci_spec::image::DigestAlgorithm;
use sha2::{Digest as _, Sha256};

/// A digest string that hoist will not use.
#[derive(Debug, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct InvalidDigest {
    pub input: String,
    pub reason: String,
}

/// Parses and validates a digest. Only sha256 is accepted, so the hex part is
/// always 64 lowercase hex characters and safe to use as a file name.
pub fn parse_digest(input: &str) -> Result<Digest, InvalidDigest> {
    let invalid = |reason: String| InvalidDigest {
        input: input.to_owned(),
        reason,
    };
    let digest = Digest::from_str(input).map_err(|err| invalid(err.to_string()))?;
    if *digest.algorithm() != DigestAlgorithm::Sha256 {
        return Err(invalid(format!(
            "unsupported algorithm {}",
            digest.algorithm()
        )));
    }
    Ok(digest)
}

/// Builds a sha256 [`Digest`] from a finished hasher.
pub fn sha256_of(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    parse_digest(&format!("sha256:{hex}")).expect("sha256 hex is always a valid digest")
}

/// Digests a byte slice (for small metadata such as manifests and configs).
pub fn sha256_bytes(bytes: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    sha256_of(hasher)
}

/// Digests a file's content, read in 1 MiB chunks (for checking stored
/// blobs without the [`crate::VerifiedReader`]'s expectations).
pub(crate) fn hash_file(path: &std::path::Path) -> io::Result<Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            return Ok(sha256_of(hasher));
        }
        hasher.update(&buf[..n]);
    }
}

/// The digest of a layer's uncompressed tar stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiffId(String);

/// The identity of a stack of layers: `ChainID(L0) = DiffID(L0)` and
/// `ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId(String);

macro_rules! digest_newtype {
    ($name:ident) => {
        impl $name {
            pub fn new(digest: &Digest) -> Self {
                Self(digest.to_string())
            }

            pub fn digest(&self) -> Digest {
                parse_digest(&self.0).expect("validated at construction")
            }

            /// The 64 hex characters, safe to use as a file name.
            pub fn hex(&self) -> &str {
                &self.0["sha256:".len()..]
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidDigest;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_digest(s).map(|digest| Self::new(&digest))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_newtype!(DiffId);
digest_newtype!(ChainId);

impl ChainId {
    /// The chain ID of `parent` (none for the bottom layer) plus `diff_id`.
    pub fn child(parent: Option<&ChainId>, diff_id: &DiffId) -> ChainId {
        match parent {
            None => ChainId(diff_id.0.clone()),
            Some(parent) => ChainId::new(&sha256_bytes(
                format!("{} {}", parent.0, diff_id.0).as_bytes(),
            )),
        }
    }

    /// The chain IDs of every prefix of `diff_ids`, bottom layer first.
    pub fn chain(diff_ids: &[DiffId]) -> Vec<ChainId> {
        let mut chain: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
        for diff_id in diff_ids {
            let next = ChainId::child(chain.last(), diff_id);
            chain.push(next);
        }
        chain
    }
}

/// A writer that hashes everything passing through it, for computing digests
/// in the same streaming pass that writes the data.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, for settings: data written through it directly
    /// is not hashed.
    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, sha256_of(self.hasher), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsafe_or_foreign_digests() {
        for bad in [
            "sha256:../x",
            "sha256:ABC",
            "sha256:",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha512:00",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        ] {
            assert!(parse_digest(bad).is_err(), "{bad} must be rejected");
        }
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(parse_digest(empty).unwrap().to_string(), empty);
        assert_eq!(sha256_bytes(b"").to_string(), empty);
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a: DiffId = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let b: DiffId = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
            .parse()
            .unwrap();
        let chain = ChainId::chain(&[a.clone(), b.clone()]);
        assert_eq!(chain[0].as_str(), a.as_str());
        let expected = sha256_bytes(format!("{a} {b}").as_bytes());
        assert_eq!(chain[1].digest(), expected);
    }
}
