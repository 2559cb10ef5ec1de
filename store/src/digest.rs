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
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

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
    let mut hasher = BackgroundSha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            return hasher.finish();
        }
        hasher.update(&buf[..n])?;
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
/// in the same streaming pass that writes the data. Big streams are hashed
/// on a thread of their own (see [`BackgroundSha256`]).
pub struct HashingWriter<W> {
    inner: W,
    hasher: BackgroundSha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: BackgroundSha256::new(),
            written: 0,
        }
    }

    /// The inner writer, for settings: data written through it directly
    /// is not hashed.
    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count; fails when
    /// the hashing thread did.
    pub fn finish(self) -> io::Result<(W, Digest, u64)> {
        let digest = self.hasher.finish()?;
        Ok((self.inner, digest, self.written))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n])?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Past this many bytes a [`BackgroundSha256`] hands its hashing to a
/// thread. Hashing 4 MiB inline takes about 2.5 ms (SHA-NI, 1.7 GB/s), so
/// a thread's start and the first chunks (tens of microseconds) cost under
/// 2% of what it then saves, while manifests, configs and indexes (a few
/// KiB) and small layers never start one.
const BACKGROUND_AFTER: u64 = 4 << 20;

/// The chunk a [`BackgroundSha256`] hands over at a time: big enough that
/// the channel's cost per chunk is nothing next to hashing it (about
/// 150 us), small enough that a chunk is still in the cache when the
/// hashing thread reads it.
const CHUNK: usize = 256 << 10;

/// Chunks in use at most: one being filled, the rest queued or being
/// hashed. 1 MiB in all, whatever the stream's size.
const CHUNKS: usize = 4;

/// A SHA-256 that hashes big streams on a second core, concurrently with
/// whoever reads or writes them: a layer's hash then costs its producer
/// one copy into a recycled buffer instead of the hashing itself.
///
/// The first [`BACKGROUND_AFTER`] bytes are hashed inline, so small data
/// (manifests, configs, small layers) never starts a thread. Past that,
/// the hash state moves to a thread, which is handed [`CHUNK`]-sized
/// owned buffers over a bounded channel and returns them over another
/// for reuse: [`CHUNKS`] buffers at most, none allocated per chunk.
/// A panic in the thread surfaces as an error from the next
/// [`BackgroundSha256::update`] or from [`BackgroundSha256::finish`];
/// dropping it unfinished stops the thread and waits for it. When no
/// thread can be had (`EAGAIN` under a pids cgroup or `RLIMIT_NPROC`), it
/// goes on hashing inline.
#[derive(Default)]
pub struct BackgroundSha256 {
    inner: BackgroundHasher<Sha256>,
}

impl BackgroundSha256 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes `data` after everything before it.
    pub fn update(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.update(data)
    }

    /// The digest of everything passed to [`BackgroundSha256::update`].
    pub fn finish(self) -> io::Result<Digest> {
        self.inner.finish().map(sha256_of)
    }
}

/// [`BackgroundSha256`] for any hash state (the tests use one that fails).
struct BackgroundHasher<H> {
    state: HasherState<H>,
    /// Bytes passed to `update` so far.
    len: u64,
}

enum HasherState<H> {
    Inline(H),
    Background(HashingThread<H>),
    /// A thread failed and its error was reported; later calls fail too.
    Failed,
}

impl<H: Default> Default for BackgroundHasher<H> {
    fn default() -> Self {
        Self {
            state: HasherState::Inline(H::default()),
            len: 0,
        }
    }
}

impl<H: sha2::digest::Update + Send + 'static> BackgroundHasher<H> {
    fn update(&mut self, data: &[u8]) -> io::Result<()> {
        let before = self.len;
        self.len += data.len() as u64;
        // Once, on the update that crosses the threshold.
        let crossing = before <= BACKGROUND_AFTER && self.len > BACKGROUND_AFTER;
        if crossing && matches!(self.state, HasherState::Inline(_)) {
            let HasherState::Inline(hasher) =
                std::mem::replace(&mut self.state, HasherState::Failed)
            else {
                unreachable!("matched above");
            };
            self.state = match HashingThread::start(hasher) {
                Ok(thread) => HasherState::Background(thread),
                // No thread to be had: hashing inline is only slower.
                Err(hasher) => HasherState::Inline(hasher),
            };
        }
        match &mut self.state {
            HasherState::Inline(hasher) => {
                hasher.update(data);
                Ok(())
            }
            HasherState::Background(thread) => {
                let pushed = thread.push(data);
                if pushed.is_err() {
                    self.state = HasherState::Failed;
                }
                pushed
            }
            HasherState::Failed => Err(hashing_failed_before()),
        }
    }

    fn finish(mut self) -> io::Result<H> {
        match std::mem::replace(&mut self.state, HasherState::Failed) {
            HasherState::Inline(hasher) => Ok(hasher),
            HasherState::Background(thread) => thread.finish(),
            HasherState::Failed => Err(hashing_failed_before()),
        }
    }
}

fn hashing_failed_before() -> io::Error {
    io::Error::other("sha256: the hashing thread failed earlier")
}

/// The thread a [`BackgroundHasher`] hashes on, and the buffers it shares
/// with it.
struct HashingThread<H> {
    /// The chunk being filled.
    filling: Vec<u8>,
    /// Full chunks to the thread; `None` once closed.
    full: Option<SyncSender<Vec<u8>>>,
    /// Hashed chunks back from the thread.
    empty: Receiver<Vec<u8>>,
    /// Chunks made so far, at most [`CHUNKS`].
    allocated: usize,
    /// Ends with the hash state, or `None` if it never got it.
    thread: Option<JoinHandle<Option<H>>>,
}

impl<H: sha2::digest::Update + Send + 'static> HashingThread<H> {
    /// Starts the thread and hands it `hasher`; gives `hasher` back when
    /// no thread can be started. (The state goes over a channel, not into
    /// the closure, which a failed spawn would drop with it.)
    fn start(hasher: H) -> Result<Self, H> {
        let (state_tx, state_rx) = sync_channel::<H>(1);
        let (full, full_rx) = sync_channel::<Vec<u8>>(CHUNKS);
        let (empty_tx, empty) = sync_channel::<Vec<u8>>(CHUNKS);
        let spawned = spawn_hashing_thread(move || {
            let mut hasher = state_rx.recv().ok()?;
            // Ends when the sender closes (finish, or drop).
            for mut chunk in full_rx {
                hasher.update(&chunk);
                chunk.clear();
                // The other side may be gone already: nothing to return.
                let _ = empty_tx.send(chunk);
            }
            Some(hasher)
        });
        let Ok(thread) = spawned else {
            return Err(hasher);
        };
        // Never blocks: the channel has room for the one state.
        if let Err(unsent) = state_tx.send(hasher) {
            return Err(unsent.0);
        }
        Ok(Self {
            filling: Vec::with_capacity(CHUNK),
            full: Some(full),
            empty,
            allocated: 1,
            thread: Some(thread),
        })
    }

    fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let take = data.len().min(CHUNK - self.filling.len());
            self.filling.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.filling.len() == CHUNK {
                let next = self.next_chunk()?;
                let full = std::mem::replace(&mut self.filling, next);
                self.send(full)?;
            }
        }
        Ok(())
    }

    /// An empty chunk: one the thread is done with, else a new one while
    /// fewer than [`CHUNKS`] exist, else the next the thread returns.
    fn next_chunk(&mut self) -> io::Result<Vec<u8>> {
        match self.empty.try_recv() {
            Ok(chunk) => return Ok(chunk),
            Err(TryRecvError::Empty) if self.allocated < CHUNKS => {
                self.allocated += 1;
                return Ok(Vec::with_capacity(CHUNK));
            }
            Err(_) => {}
        }
        // Fails only when the thread is gone (it holds the sender).
        match self.empty.recv() {
            Ok(chunk) => Ok(chunk),
            Err(_) => Err(self.join().err().unwrap_or_else(hashing_failed_before)),
        }
    }

    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let sent = self.full.as_ref().map(|full| full.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            // The thread is gone: its join tells why.
            _ => Err(self.join().err().unwrap_or_else(hashing_failed_before)),
        }
    }

    fn finish(mut self) -> io::Result<H> {
        if !self.filling.is_empty() {
            let last = std::mem::take(&mut self.filling);
            self.send(last)?;
        }
        self.join()
    }

    /// Closes the channel and waits for the thread's hash state.
    fn join(&mut self) -> io::Result<H> {
        self.full = None;
        let Some(thread) = self.thread.take() else {
            return Err(hashing_failed_before());
        };
        let state = thread.join().map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            io::Error::other(format!("sha256: the hashing thread panicked: {message}"))
        })?;
        state.ok_or_else(hashing_failed_before)
    }
}

/// Spawns a hashing thread; in tests, fails as a full pids cgroup would
/// when [`tests::no_threads`] says so.
fn spawn_hashing_thread<T: Send + 'static>(
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    #[cfg(test)]
    if tests::no_threads() {
        return Err(io::Error::from(io::ErrorKind::WouldBlock));
    }
    std::thread::Builder::new()
        .name("sha256".into())
        .spawn(body)
}

impl<H> Drop for HashingThread<H> {
    /// Unfinished (an error elsewhere ended the stream): the closed
    /// channel stops the thread after at most [`CHUNKS`] queued chunks.
    fn drop(&mut self) {
        self.full = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bytes::noise;
    use std::cell::Cell;

    thread_local! {
        /// Whether this test thread's hashers can start no thread.
        static NO_THREADS: Cell<bool> = const { Cell::new(false) };
    }

    pub(super) fn no_threads() -> bool {
        NO_THREADS.with(Cell::get)
    }

    /// Feeds `data` in pieces of the sizes `plan` gives, cycling through
    /// it (the last piece takes what is left).
    fn hash_in_pieces(data: &[u8], plan: &[usize]) -> Digest {
        let mut hasher = BackgroundSha256::new();
        let mut rest = data;
        for &size in plan.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            hasher.update(piece).unwrap();
            rest = tail;
        }
        hasher.finish().unwrap()
    }

    #[test]
    fn background_hash_equals_the_hash_of_the_whole_input() {
        let after = BACKGROUND_AFTER as usize;
        // Past the threshold by a few chunks and an odd tail.
        let data = noise(after + 3 * CHUNK + 12_345, 1);
        let expected = sha256_bytes(&data);
        let mut sizes = noise(64, 2).into_iter().map(|b| b as usize * 4099 + 1);
        let random: Vec<usize> = (0..64).map(|_| sizes.next().unwrap()).collect();
        // One-byte pieces across the threshold and the first chunk's end.
        let mut bytes_across = vec![after - 7];
        bytes_across.extend(std::iter::repeat_n(1, CHUNK + 20));
        bytes_across.push(usize::MAX);
        let cases: Vec<(&str, Vec<usize>)> = vec![
            ("whole", vec![usize::MAX]),
            ("empty pieces between", vec![0, 1_000_003, 0, 0, 7]),
            ("odd", vec![1, 3, 65_537, 333_333]),
            ("chunk - 1", vec![CHUNK - 1]),
            ("chunk", vec![CHUNK]),
            ("chunk + 1", vec![CHUNK + 1]),
            ("threshold - 1", vec![after - 1, 1, CHUNK - 1, usize::MAX]),
            ("threshold", vec![after, 0, 1, CHUNK, usize::MAX]),
            ("threshold + 1", vec![after + 1, 2 * CHUNK - 1, usize::MAX]),
            ("bytes across", bytes_across),
            ("random", random),
        ];
        for (name, plan) in cases {
            assert_eq!(hash_in_pieces(&data, &plan), expected, "case {name}");
        }
    }

    #[test]
    fn background_hash_of_small_or_empty_input_stays_inline() {
        for len in [0, 1, 64, BACKGROUND_AFTER as usize] {
            let data = noise(len, 3);
            let mut hasher = BackgroundSha256::new();
            hasher.update(&data).unwrap();
            assert!(
                matches!(hasher.inner.state, HasherState::Inline(_)),
                "case {len}: no thread"
            );
            assert_eq!(hasher.finish().unwrap(), sha256_bytes(&data), "case {len}");
        }
        assert_eq!(
            BackgroundSha256::new().finish().unwrap(),
            sha256_bytes(b""),
            "case never updated"
        );
    }

    #[test]
    fn without_a_thread_to_be_had_big_input_is_hashed_inline() {
        let data = noise(BACKGROUND_AFTER as usize + 3 * CHUNK + 5, 8);
        let expected = sha256_bytes(&data);
        NO_THREADS.with(|no| no.set(true));
        let mut hasher = BackgroundSha256::new();
        for piece in data.chunks(CHUNK - 3) {
            hasher.update(piece).unwrap();
        }
        let stayed_inline = matches!(hasher.inner.state, HasherState::Inline(_));
        let digest = hasher.finish();
        NO_THREADS.with(|no| no.set(false));
        assert!(stayed_inline, "no thread could start");
        assert_eq!(digest.unwrap(), expected);
    }

    /// Accepts a few bytes per write, fails some writes outright and,
    /// from `dies_at` on, every write.
    struct FlakyWriter {
        out: Vec<u8>,
        calls: usize,
        dies_at: usize,
    }

    impl Write for FlakyWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.out.len() >= self.dies_at {
                return Err(io::Error::other("disk full"));
            }
            if self.calls.is_multiple_of(3) {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = buf.len().min(100_003 + self.calls % 7);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn hashing_writer_hashes_what_its_writer_took() {
        let data = noise(BACKGROUND_AFTER as usize + 2 * CHUNK + 99, 4);
        let flaky = FlakyWriter {
            out: Vec::new(),
            calls: 0,
            dies_at: usize::MAX,
        };
        let mut writer = HashingWriter::new(flaky);
        for piece in data.chunks(CHUNK + 17) {
            writer.write_all(piece).unwrap();
        }
        let (flaky, digest, size) = writer.finish().unwrap();
        assert_eq!(flaky.out, data);
        assert_eq!((digest, size), (sha256_bytes(&data), data.len() as u64));

        // One whose disk fills up midway, past the threshold: the error
        // comes back, and dropping the writer does not hang.
        let dying = FlakyWriter {
            out: Vec::new(),
            calls: 0,
            dies_at: BACKGROUND_AFTER as usize + CHUNK,
        };
        let mut writer = HashingWriter::new(dying);
        let err = io::copy(&mut &data[..], &mut writer).unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert!(matches!(
            writer.hasher.inner.state,
            HasherState::Background(_)
        ));
        drop(writer);
    }

    /// A hash state that panics once it has seen `limit` bytes, and holds
    /// `alive` while it exists.
    struct Fragile {
        seen: u64,
        limit: u64,
        _alive: std::sync::Arc<()>,
    }

    impl sha2::digest::Update for Fragile {
        fn update(&mut self, data: &[u8]) {
            self.seen += data.len() as u64;
            assert!(self.seen < self.limit, "hash state broke");
        }
    }

    fn fragile(limit: u64) -> (BackgroundHasher<Fragile>, std::sync::Arc<()>) {
        let alive = std::sync::Arc::new(());
        let hasher = BackgroundHasher {
            state: HasherState::Inline(Fragile {
                seen: 0,
                limit,
                _alive: alive.clone(),
            }),
            len: 0,
        };
        (hasher, alive)
    }

    #[test]
    fn a_panic_in_the_hashing_thread_is_an_error() {
        let data = noise(CHUNK, 5);
        // Panics on the thread's first chunk: an update fails once the
        // thread is seen gone, or else finish does; never a hang.
        let (mut hasher, _) = fragile(BACKGROUND_AFTER + 1);
        let mut failed = None;
        for _ in 0..(BACKGROUND_AFTER as usize / CHUNK + 2 * CHUNKS + 2) {
            if let Err(err) = hasher.update(&data) {
                failed = Some(err);
                break;
            }
        }
        let err = match failed {
            Some(err) => {
                assert!(hasher.update(b"more").is_err(), "fails from then on");
                err
            }
            None => hasher.finish().err().expect("finish fails"),
        };
        assert!(
            err.to_string().contains("panicked: hash state broke"),
            "{err}"
        );

        // Panics on the last bytes only, which finish hands over.
        let (mut hasher, _) = fragile(BACKGROUND_AFTER + 10);
        hasher.update(&noise(BACKGROUND_AFTER as usize, 6)).unwrap();
        hasher.update(&[0; 10]).unwrap();
        let err = hasher.finish().err().expect("finish fails");
        assert!(err.to_string().contains("panicked"), "{err}");
    }

    #[test]
    fn dropping_an_unfinished_hash_stops_its_thread() {
        let (mut hasher, alive) = fragile(u64::MAX);
        hasher
            .update(&noise(BACKGROUND_AFTER as usize + 3 * CHUNK, 7))
            .unwrap();
        assert!(matches!(hasher.state, HasherState::Background(_)));
        drop(hasher);
        // The thread owned the hash state: it is gone, so the thread ended.
        assert_eq!(std::sync::Arc::strong_count(&alive), 1);
    }

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
