//! COPY source checksums remembered with the fingerprint of the walk behind
//! them ([`SourceWalk::fingerprint`]), so that a COPY whose sources did not
//! change costs one walk of stats: no file's digest is looked up, and the
//! context's digest index is not even read (a 20,000-file context's is a
//! few MB).
//!
//! One record per context directory and checksum request (the source
//! arguments, `--exclude`, whether owners count), beside the context's
//! digest index in the store, replaced atomically. A missing, corrupt or
//! foreign record only means the checksum is computed in full.

use std::io::{self, BufRead};
use std::sync::OnceLock;

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

use crate::context::{
    BuildContext, ChecksumOptions, ContextError, Fingerprint, SourceChecksum, SourceWalk,
};
use hoist_store::{CacheRecord, Store};

/// One checksum request of a COPY/ADD (or a RUN's bind mount) on the
/// build context.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub sources: &'a [String],
    pub exclude: &'a [String],
    pub include_owner: bool,
}

/// What a build knows of one request's sources.
#[derive(Debug)]
pub enum Sources {
    /// Checksummed file by file.
    Computed(SourceChecksum),
    /// The walk's fingerprint matched a remembered one: the digest is that
    /// checksum's, and the per-file digests wait for a miss that needs
    /// them ([`Sources::full`]).
    Remembered {
        digest: Digest,
        walk: SourceWalk,
        include_owner: bool,
        full: OnceLock<Option<SourceChecksum>>,
    },
}

impl Sources {
    pub fn digest(&self) -> &Digest {
        match self {
            Sources::Computed(sum) => &sum.digest,
            Sources::Remembered { digest, .. } => digest,
        }
    }

    /// The checksum with its per-file digests, computed (once) from the
    /// same walk when it was remembered; `None` when that no longer gives
    /// the remembered digest (a file changed since the walk).
    pub fn full(&self, context: &BuildContext) -> Option<&SourceChecksum> {
        match self {
            Sources::Computed(sum) => Some(sum),
            Sources::Remembered {
                digest,
                walk,
                include_owner,
                full,
            } => full
                .get_or_init(|| {
                    let opts = ChecksumOptions {
                        include_owner: *include_owner,
                        ..ChecksumOptions::default()
                    };
                    let sum = context.checksum_walk(walk, &opts).ok()?;
                    (sum.digest == *digest).then_some(sum)
                })
                .as_ref(),
        }
    }

    /// [`Sources::full`], by value.
    pub fn into_full(self, context: &BuildContext) -> Option<SourceChecksum> {
        self.full(context)?;
        match self {
            Sources::Computed(sum) => Some(sum),
            Sources::Remembered { full, .. } => full.into_inner().flatten(),
        }
    }
}

/// The checksum of `request`'s sources in the build context: the
/// remembered one when the walk's fingerprint is the remembered
/// fingerprint, else computed in full (through the context's digest index)
/// and remembered for the next build.
pub fn context_sources(
    store: &Store,
    context: &BuildContext,
    request: Request<'_>,
) -> Result<Sources, ContextError> {
    let walk = SourceWalk::new(context.view(), request.sources, request.exclude)?;
    let fingerprint = context.fingerprint(&walk, request.include_owner);
    let key = record_key(store, context, request);
    let remembered = match (&key, fingerprint) {
        (Some(key), Some(_)) => recall(store, key),
        _ => None,
    };
    if let (Some(remembered), Some(fingerprint)) = (&remembered, fingerprint)
        && remembered.fingerprint == fingerprint
    {
        return Ok(Sources::Remembered {
            digest: remembered.digest.clone(),
            walk,
            include_owner: request.include_owner,
            full: OnceLock::new(),
        });
    }
    let opts = ChecksumOptions {
        include_owner: request.include_owner,
        ..ChecksumOptions::default()
    };
    let sum = context.checksum_walk(&walk, &opts)?;
    if let (Some(key), Some(fingerprint)) = (key, fingerprint) {
        let record = Remembered {
            fingerprint,
            digest: sum.digest.clone(),
        };
        // Best effort: losing the record only costs the next build time.
        let _ =
            store.cache_record_write(CacheRecord::ContextChecksum, &key, |out| record.write(out));
    }
    Ok(Sources::Computed(sum))
}

/// The record of `request` on this context; `None` for a context unpacked
/// into the store's temporary space.
fn record_key(store: &Store, context: &BuildContext, request: Request<'_>) -> Option<String> {
    let context_key = crate::cache::context_index_key(store, context)?;
    let mut hasher = Sha256::new();
    hasher.update(context_key.as_bytes());
    for list in [request.sources, request.exclude] {
        hasher.update(b"\0");
        hasher.update(serde_json::to_vec(list).ok()?);
    }
    hasher.update([b'\0', u8::from(request.include_owner)]);
    Some(hex::encode(hasher.finalize()))
}

/// The first line of a record; the second is `<fingerprint hex> <digest>`.
/// Version 2: entries' digests cover their extended attributes.
const HEADER: &str = "hoist-context-checksum 2";

#[derive(Debug, PartialEq, Eq)]
struct Remembered {
    fingerprint: Fingerprint,
    digest: Digest,
}

impl Remembered {
    fn write(&self, out: &mut dyn io::Write) -> io::Result<()> {
        writeln!(
            out,
            "{HEADER}\n{} {}",
            hex::encode(self.fingerprint.0),
            self.digest
        )
    }

    /// A whole record, or `None`.
    fn parse(reader: impl BufRead) -> Option<Self> {
        let mut lines = reader.lines();
        if lines.next()?.ok()? != HEADER {
            return None;
        }
        let line = lines.next()?.ok()?;
        let (fingerprint, digest) = line.split_once(' ')?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(fingerprint, &mut bytes).ok()?;
        let digest: Digest = digest.parse().ok()?;
        let whole = digest.to_string().starts_with("sha256:") && lines.next().is_none();
        whole.then_some(Remembered {
            fingerprint: Fingerprint(bytes),
            digest,
        })
    }
}

fn recall(store: &Store, key: &str) -> Option<Remembered> {
    let reader = store
        .cache_record_reader(CacheRecord::ContextChecksum, key)
        .ok()??;
    Remembered::parse(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record reads back as written; anything else is no record.
    #[test]
    fn records_round_trip_and_anything_else_is_none() {
        let record = Remembered {
            fingerprint: Fingerprint([7; 32]),
            digest: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap(),
        };
        let mut text = Vec::new();
        record.write(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(Remembered::parse(text.as_bytes()), Some(record), "{text}");
        let fp = "07".repeat(32);
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases = [
            ("empty", String::new()),
            ("header only", format!("{HEADER}\n")),
            (
                "another version",
                format!("hoist-context-checksum 1\n{fp} {digest}\n"),
            ),
            ("cut short", format!("{HEADER}\n{fp} sha256:e3b0c442")),
            ("short fingerprint", format!("{HEADER}\n0707 {digest}\n")),
            ("no digest", format!("{HEADER}\n{fp}\n")),
            ("trailing line", format!("{HEADER}\n{fp} {digest}\nmore\n")),
            (
                "another algorithm",
                format!("{HEADER}\n{fp} sha512:{}\n", "ab".repeat(64)),
            ),
            ("binary", "\u{0}\u{1}garbage".to_owned()),
        ];
        for (case, text) in cases {
            assert_eq!(Remembered::parse(text.as_bytes()), None, "case {case:?}");
        }
    }

    /// What a crash can leave of a record written without fsync (a rename
    /// that reached the disk before the data did): the record cut short at
    /// any byte, with or without its tail zero-filled, or zeros alone. None
    /// of them reads as a record, save the whole one less its last newline,
    /// which reads as itself.
    #[test]
    fn a_torn_record_is_no_record() {
        let record = || Remembered {
            fingerprint: Fingerprint([0xa5; 32]),
            digest: "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse()
                .unwrap(),
        };
        let mut whole = Vec::new();
        record().write(&mut whole).unwrap();
        for len in 0..=whole.len() {
            let cut = &whole[..len];
            let mut zero_filled = cut.to_vec();
            zero_filled.resize(whole.len(), 0);
            for (case, text) in [("cut", cut), ("zero-filled", &zero_filled[..])] {
                let parsed = Remembered::parse(text);
                let intact = match case {
                    "cut" => len + 1 >= whole.len(),
                    _ => len == whole.len(),
                };
                assert_eq!(
                    parsed,
                    intact.then(record),
                    "{case} at byte {len}: {:?}",
                    String::from_utf8_lossy(text)
                );
            }
        }
        assert_eq!(Remembered::parse(&vec![0u8; 4096][..]), None, "zeros");
    }
}
