//! Layer compression for images that leave the machine.
//!
//! The local store keeps layers as plain tars (the blob is the diff, so its
//! digest is its diff ID) and compresses only when an image is pushed or
//! exported. [`Store::compressed_layer`] does that once per layer and
//! algorithm and remembers the result:
//!
//! ```text
//! <root>/hoist/compressed/<diffid-hex>/gzip   {"mediaType":…,"digest":…,"size":…}
//! <root>/hoist/compressed/<diffid-hex>/zstd
//! ```
//!
//! The compressed blob itself lives in `blobs/sha256` like any other, so
//! push and save read it with [`Store::open_descriptor`]. GC keeps a
//! variant while an image with that diff ID lives, and removes both the
//! record and the blob when the last one goes (see [`crate::gc`]).
//!
//! Compression uses every core, and its output does not depend on how many
//! there are (so `SOURCE_DATE_EPOCH` builds stay byte-identical anywhere):
//! - gzip is cut into fixed 1 MiB blocks, each compressed by libdeflate into
//!   a gzip member of its own, and the members are written one after
//!   another. RFC 1952 (2.2) makes a gzip file a series of members, and the
//!   readers of layers read them as one stream: Go's `compress/gzip` (so
//!   docker, containerd, skopeo and umoci), pgzip, zlib's `gzread`, GNU gzip
//!   and flate2's `MultiGzDecoder`, which hoist uses; eStargz layers are
//!   multi-member gzip too. libdeflate compresses a whole buffer at a time
//!   and takes no dictionary, so members rather than one deflate stream;
//!   each member's cold start costs about 0.1% of the output;
//! - zstd runs in its multi-threaded mode, whose output is the same for any
//!   number of workers.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError, sync_channel};

use libdeflater::{CompressionLvl, Compressor};
use oci_spec::image::{Descriptor, MediaType};
use serde::{Deserialize, Serialize};

use crate::blob::ExpectedBlob;
use crate::digest::{DiffId, Digest, HashingWriter, parse_digest};
use crate::extract::decompress;
use crate::extract::decompress::read_full;
use crate::gc::list_dir_names;
use crate::store::{Store, fsync_dir, remove_file_if_exists};
use crate::{Result, StoreError};

/// Layer compression. The default is gzip level 1 (see [`Compression::default`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Gzip at libdeflate's `level` (0-9, zlib's scale: 0 stores, 1 is the
    /// fastest, 9 the smallest).
    Gzip {
        level: u32,
    },
    Zstd {
        level: i32,
    },
    Uncompressed,
}

/// `--compression` was not `gzip[:0-9]`, `zstd[:1-22]` or `uncompressed`.
#[derive(Debug, thiserror::Error)]
#[error("invalid compression {0:?}: expected gzip[:0-9], zstd[:1-22] or uncompressed")]
pub struct InvalidCompression(pub String);

impl Default for Compression {
    /// Gzip for compatibility with every registry and runtime, at
    /// libdeflate's level 1, in 1 MiB members. Measured on the layer of a
    /// `debootstrap --variant=minbase bookworm` root (204 MB of tar), MB of
    /// tar per CPU-second on one core, and compressed size over tar size:
    ///
    /// | compressor                       | MB/s | ratio  |
    /// |----------------------------------|------|--------|
    /// | gzip 0 (stored)                  | 6213 | 1.0001 |
    /// | **gzip 1**                       |  158 | 0.4735 |
    /// | gzip 2                           |  114 | 0.4624 |
    /// | gzip 3                           |  111 | 0.4592 |
    /// | gzip 6                           |   86 | 0.4508 |
    /// | gzip 9                           |   41 | 0.4488 |
    /// | zlib-rs 1, 1 MiB blocks (before) |  171 | 0.5568 |
    /// | zlib-rs 2, 1 MiB blocks (before) |   96 | 0.4802 |
    /// | zlib-rs 6, 1 MiB blocks (before) |   55 | 0.4592 |
    /// | zstd 1                           |  404 | 0.4633 |
    /// | zstd 3                           |  233 | 0.4116 |
    ///
    /// libdeflate's level 1 is 1.65x as fast as zlib-rs's level 2 (the
    /// default before it) and 1.4% smaller; its level 6 is 1.8% smaller than
    /// zlib-rs's 6 (Docker's default) at 1.6x the speed. zlib-rs's level 1
    /// was faster again but 16% bigger than its level 2, which users would
    /// see in every push. `--compression=zstd` is both smaller and faster
    /// where zstd is accepted.
    fn default() -> Self {
        Compression::Gzip { level: 1 }
    }
}

impl Compression {
    /// The default zstd level: 3, zstd's own default, already faster than
    /// gzip -1 with a better ratio.
    pub const ZSTD_DEFAULT: Compression = Compression::Zstd { level: 3 };

    pub fn media_type(&self) -> MediaType {
        match self {
            Compression::Gzip { .. } => MediaType::ImageLayerGzip,
            Compression::Zstd { .. } => MediaType::ImageLayerZstd,
            Compression::Uncompressed => MediaType::ImageLayer,
        }
    }

    /// The algorithm's name, as `--compression` spells it.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "gzip",
            Compression::Zstd { .. } => "zstd",
            Compression::Uncompressed => "uncompressed",
        }
    }

    /// The compression a layer media type says its blob has (OCI and
    /// Docker names, non-distributable variants included); `None` for
    /// media types that are not layers.
    pub fn of_media_type(media_type: &MediaType) -> Option<&'static str> {
        let name = media_type.to_string();
        if name.ends_with("+gzip") || name.ends_with(".tar.gzip") {
            Some("gzip")
        } else if name.ends_with("+zstd") || name.ends_with(".tar.zstd") {
            Some("zstd")
        } else if name.ends_with(".tar") || name.ends_with("rootfs.diff.tar") {
            Some("uncompressed")
        } else {
            None
        }
    }

    /// Parses `--compression=gzip|zstd|uncompressed`, with an optional
    /// `:LEVEL` (`zstd:9`).
    pub fn parse(text: &str) -> Result<Self, InvalidCompression> {
        let (kind, level) = match text.split_once(':') {
            Some((kind, level)) => (kind, Some(level)),
            None => (text, None),
        };
        let bad = || InvalidCompression(text.to_owned());
        match (kind, level) {
            ("gzip", None) => Ok(Compression::default()),
            ("gzip", Some(l)) => match l.parse() {
                Ok(level @ 0..=9) => Ok(Compression::Gzip { level }),
                _ => Err(bad()),
            },
            ("zstd", None) => Ok(Compression::ZSTD_DEFAULT),
            ("zstd", Some(l)) => match l.parse() {
                Ok(level @ 1..=22) => Ok(Compression::Zstd { level }),
                _ => Err(bad()),
            },
            ("uncompressed", None) => Ok(Compression::Uncompressed),
            _ => Err(bad()),
        }
    }
}

/// The worker count for compressing one stream: every core, capped so that
/// the blocks in flight stay a few MiB.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16)
}

/// Compresses `reader` into `out` with `compression` on every core. Returns
/// the number of uncompressed bytes read. The output depends only on the
/// input and `compression`, never on the number of cores.
pub fn compress(reader: impl Read, out: impl Write, compression: Compression) -> io::Result<u64> {
    compress_with(reader, out, compression, workers())
}

fn compress_with(
    mut reader: impl Read,
    mut out: impl Write,
    compression: Compression,
    workers: usize,
) -> io::Result<u64> {
    match compression {
        Compression::Uncompressed => io::copy(&mut reader, &mut out),
        Compression::Gzip { level } => parallel_gzip(reader, out, level, workers),
        Compression::Zstd { level } => {
            let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
            // Multi-threaded mode even for one worker: its output is the
            // same for any worker count, but differs from the single-
            // threaded mode's.
            encoder.multithread(u32::try_from(workers).unwrap_or(1))?;
            let n = io::copy(&mut reader, &mut encoder)?;
            encoder.finish()?.flush()?;
            Ok(n)
        }
    }
}

/// Gzip member size: each member starts with an empty window, so this is
/// big enough that the cold start costs about 0.1% of the output (measured
/// on a Debian root), and small enough that the members in flight stay a
/// few MiB.
const GZIP_MEMBER: usize = 1 << 20;

fn parallel_gzip(
    mut reader: impl Read,
    mut out: impl Write,
    level: u32,
    workers: usize,
) -> io::Result<u64> {
    // Checked here once, so that a bad level fails before any work.
    let level = i32::try_from(level).unwrap_or(i32::MAX);
    compression_level(level)?;
    let mut total: u64 = 0;
    // A pipeline, not batches: this thread reads the next blocks and writes
    // out finished members, in order, while the pool compresses those in
    // between. So reading (and the caller's hashing) and writing (the
    // store's file, the upload) overlap the compression instead of waiting
    // for a batch.
    let in_flight = workers.max(1) * 2;
    // Jobs come back once their member is written and carry the next
    // block: a stream allocates its buffers and compressors once.
    let mut spare: Vec<MemberJob> = Vec::new();
    rayon::in_place_scope(|scope| -> io::Result<()> {
        let mut pending: VecDeque<Receiver<io::Result<MemberJob>>> = VecDeque::new();
        let mut eof = false;
        loop {
            while !eof && pending.len() < in_flight {
                let mut job = spare.pop().unwrap_or_default();
                let len = job.read_block(&mut reader)?;
                eof = len < GZIP_MEMBER;
                // Empty input is still one (empty) member: a gzip file has
                // at least one.
                if len == 0 && total > 0 {
                    break;
                }
                total += len as u64;
                let (done, result) = sync_channel(1);
                scope.spawn(move |_| {
                    // The receiver is gone only when the writer failed.
                    let _ = done.send(job.compress(level));
                });
                pending.push_back(result);
            }
            let Some(next) = pending.pop_front() else {
                return Ok(());
            };
            let job = wait_for(&next)?;
            out.write_all(job.member())?;
            spare.push(job);
        }
    })?;
    out.flush()?;
    Ok(total)
}

/// A job's result, once it has run. On a pool thread (a caller
/// compressing several layers with rayon) this runs other jobs while it
/// waits, so the pool can never block on its own work.
fn wait_for<T>(result: &Receiver<io::Result<T>>) -> io::Result<T> {
    let stopped = || io::Error::other("a compression worker stopped");
    loop {
        match result.try_recv() {
            Ok(member) => return member,
            Err(TryRecvError::Disconnected) => return Err(stopped()),
            Err(TryRecvError::Empty) => match rayon::yield_now() {
                None => return result.recv().map_err(|_| stopped())?,
                Some(rayon::Yield::Executed) => {}
                Some(rayon::Yield::Idle) => match result.recv_timeout(IDLE_WAIT) {
                    Ok(member) => return member,
                    Err(RecvTimeoutError::Disconnected) => return Err(stopped()),
                    Err(RecvTimeoutError::Timeout) => {}
                },
            },
        }
    }
}

/// How long a pool thread with nothing to run waits for a block before it
/// looks for other jobs again.
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// One block on its way through the pipeline: the block as read, its gzip
/// member once compressed, and the compressors that made it. A job is
/// reused for block after block, so its buffers are allocated and zeroed
/// once: fresh ones for every MiB (their zeroing and the page faults of new
/// memory) were about 8% of a push's CPU.
#[derive(Default)]
struct MemberJob {
    /// `GZIP_MEMBER` bytes once used; the block is its first `block_len`.
    block: Vec<u8>,
    block_len: usize,
    /// At least the compress bound of a block; the member is its first
    /// `member_len` bytes.
    member: Vec<u8>,
    member_len: usize,
    compressors: Compressors,
}

impl MemberJob {
    /// Reads the next block (up to [`GZIP_MEMBER`] bytes, fewer only at
    /// EOF) and returns its length.
    fn read_block(&mut self, reader: &mut impl Read) -> io::Result<usize> {
        self.block.resize(GZIP_MEMBER, 0);
        self.block_len = read_full(reader, &mut self.block)?;
        Ok(self.block_len)
    }

    fn compress(mut self, level: i32) -> io::Result<Self> {
        self.member_len = gzip_member(
            &self.block[..self.block_len],
            level,
            &mut self.compressors,
            &mut self.member,
        )?;
        Ok(self)
    }

    fn member(&self) -> &[u8] {
        &self.member[..self.member_len]
    }
}

/// libdeflate compressors by level, made once per job: each one is a few
/// hundred KiB of tables.
#[derive(Default)]
struct Compressors(Vec<(i32, Compressor)>);

impl Compressors {
    fn at(&mut self, level: i32) -> io::Result<&mut Compressor> {
        let index = match self.0.iter().position(|(l, _)| *l == level) {
            Some(index) => index,
            None => {
                self.0
                    .push((level, Compressor::new(compression_level(level)?)));
                self.0.len() - 1
            }
        };
        Ok(&mut self.0[index].1)
    }
}

/// One block as a complete gzip member (RFC 1952: header with no name and
/// no mtime, deflate data, CRC-32 and length), compressed by libdeflate at
/// `level` into `out` (grown to the compress bound when shorter). Returns
/// the member's length. A block that does not compress (random or already
/// compressed data) is stored as it is, at the speed of a copy.
fn gzip_member(
    block: &[u8],
    level: i32,
    compressors: &mut Compressors,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    let bound = compressors.at(level)?.gzip_compress_bound(block.len());
    if out.len() < bound {
        out.resize(bound, 0);
    }
    let level = if incompressible(block, level, compressors, out)? {
        0
    } else {
        level
    };
    compressors
        .at(level)?
        .gzip_compress(block, out)
        .map_err(|err| io::Error::other(format!("gzip: {err}")))
}

fn compression_level(level: i32) -> io::Result<CompressionLvl> {
    CompressionLvl::new(level).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("gzip level {level} is out of range"),
        )
    })
}

/// Bytes sampled from a block to judge whether it compresses.
const SAMPLE: usize = 16 << 10;

/// Whether compressing `block` is not worth its time: four samples spread
/// over it compress to more than 95% of their size. The answer depends
/// only on the content, so the output stays the same on any machine.
/// (klauspost's encoders, which skopeo and Docker use, skip such data too.)
fn incompressible(
    block: &[u8],
    level: i32,
    compressors: &mut Compressors,
    scratch: &mut [u8],
) -> io::Result<bool> {
    if level == 0 || block.len() < 4 * SAMPLE {
        return Ok(false);
    }
    let compressor = compressors.at(level)?;
    // A sample that does not fit in 95% of its size did not compress.
    let room = &mut scratch[..SAMPLE * 95 / 100];
    let limit = 4 * SAMPLE * 95 / 100;
    let mut written = 0;
    for i in 0..4 {
        let start = i * (block.len() - SAMPLE) / 3;
        let sample = &block[start..start + SAMPLE];
        written += compressor.deflate_compress(sample, room).unwrap_or(SAMPLE);
        // Stop once the samples left could not reach the limit even if
        // they did not compress at all: one sample decides for most
        // blocks, with the same answer as all four.
        if written + (3 - i) * SAMPLE <= limit {
            return Ok(false);
        }
    }
    Ok(written > limit)
}

/// What `hoist/compressed/<diffid>/<algorithm>` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariantRecord {
    media_type: String,
    digest: String,
    size: u64,
}

impl Store {
    /// The layer `layer` (whose uncompressed digest is `diff_id`) as a blob
    /// with `compression`: the layer itself when it already has that
    /// algorithm, else a variant made once, stored as a blob and remembered
    /// for the next call. The variant is leased to this session and kept by
    /// GC as long as an image with `diff_id` lives. The content is checked
    /// against `diff_id` as it is compressed.
    pub fn compressed_layer(
        &self,
        layer: &Descriptor,
        diff_id: &DiffId,
        compression: Compression,
    ) -> Result<Descriptor> {
        if let Some(known) = self.known_compressed_layer(layer, diff_id, compression)? {
            return Ok(known);
        }
        self.compress_layer_teed(layer, diff_id, compression, &mut io::sink(), &|_| {})
    }

    /// The layer as a blob with `compression` when that needs no work: the
    /// layer itself when it already has that algorithm, its uncompressed
    /// blob, or a variant made earlier (leased to this session). `None`
    /// when [`Store::compress_layer_teed`] has to make it.
    pub fn known_compressed_layer(
        &self,
        layer: &Descriptor,
        diff_id: &DiffId,
        compression: Compression,
    ) -> Result<Option<Descriptor>> {
        if Compression::of_media_type(layer.media_type()) == Some(compression.algorithm()) {
            return Ok(Some(layer.clone()));
        }
        if compression == Compression::Uncompressed {
            let digest = diff_id.digest();
            if self.has_blob(&digest) {
                self.lease_blob(&digest)?;
                let size = self.blob_size(&digest)?;
                return Ok(Some(Descriptor::new(MediaType::ImageLayer, size, digest)));
            }
            return Ok(None);
        }
        self.recorded_variant(diff_id, compression)
    }

    /// Compresses the layer once more and stores and remembers the result,
    /// as [`Store::compressed_layer`] does, while also writing every
    /// compressed byte to `tee` as it is made (a push streams them to the
    /// registry as they come). `read` is told how many uncompressed bytes
    /// have gone into the compressor so far. An error from `tee` fails the
    /// call: a tee that may go away must swallow its own errors.
    pub fn compress_layer_teed(
        &self,
        layer: &Descriptor,
        diff_id: &DiffId,
        compression: Compression,
        tee: &mut dyn Write,
        read: &(dyn Fn(u64) + Sync),
    ) -> Result<Descriptor> {
        let source = self.open_descriptor(layer)?;
        let (plain, _) =
            decompress(source).map_err(StoreError::io(self.blob_path(layer.digest())?))?;
        // A layer stored uncompressed is its diff: the store's reader already
        // verifies its digest at the end, so hashing it again is waste.
        let verified = layer.digest() == &diff_id.digest();
        let mut checked = HashingReader::new(plain, read, !verified);
        let mut writer = self.blob_writer()?;
        // A compressed variant is a cache of its layer: made again whenever
        // it is missing (a record whose blob is gone counts as none), so a
        // push need not wait for the disk before its closing PUT. A crash
        // that cuts it short costs its remaking (the first open after it
        // drops the blob and its record). An uncompressed layer made from a
        // compressed one is the layer itself, and is made durable.
        let variant = compression != Compression::Uncompressed;
        if !variant {
            // Read again only later: its pages go to the disk as they come,
            // so the commit's fsync waits for the tail.
            writer.write_back_early();
        }
        let tmp = writer.temp_path().to_owned();
        compress(
            &mut checked,
            &mut Tee {
                first: &mut writer,
                second: tee,
            },
            compression,
        )
        .map_err(|err| crate::blob::from_io(err, tmp.clone()))?;
        if let Some(actual) = checked
            .digest()
            .map_err(|err| crate::blob::from_io(err, tmp.clone()))?
            && actual != diff_id.digest()
        {
            return Err(StoreError::invalid(
                format!("layer {}", layer.digest()),
                format!("its content is {actual}, but the image config says {diff_id}"),
            ));
        }
        let (digest, size) = if variant {
            writer.commit_unsynced(None::<&ExpectedBlob>)?
        } else {
            writer.commit(None::<&ExpectedBlob>)?
        };
        let descriptor = Descriptor::new(compression.media_type(), size, digest);
        if variant {
            self.record_variant(diff_id, compression, &descriptor)?;
        }
        Ok(descriptor)
    }

    /// `hoist/compressed`: one directory per diff ID with a variant.
    pub(crate) fn compressed_dir(&self) -> PathBuf {
        self.root().join("hoist/compressed")
    }

    /// The blob digests of every recorded variant of `diff_id_hex`.
    pub(crate) fn variant_blobs(&self, diff_id_hex: &str) -> Vec<Digest> {
        let dir = self.compressed_dir().join(diff_id_hex);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| variant_blob(&e.path()))
            .collect()
    }

    /// Removes the variant records that name a blob in `lost` (hex
    /// digests, blobs a crash cut short). Nothing else needs a variant, so
    /// no image goes with it: the next push or save makes it again. Call
    /// with the exclusive lock held.
    pub(crate) fn forget_variants_of(&self, lost: &HashSet<String>) -> Result<()> {
        let root = self.compressed_dir();
        for diff_id_hex in list_dir_names(&root)? {
            let dir = root.join(diff_id_hex);
            let mut removed = false;
            for algorithm in list_dir_names(&dir)? {
                let record = dir.join(algorithm);
                if variant_blob(&record).is_some_and(|blob| lost.contains(blob.digest())) {
                    removed |= remove_file_if_exists(&record)?;
                }
            }
            if removed {
                fsync_dir(&dir)?;
            }
        }
        Ok(())
    }

    fn recorded_variant(
        &self,
        diff_id: &DiffId,
        compression: Compression,
    ) -> Result<Option<Descriptor>> {
        let path = self
            .compressed_dir()
            .join(diff_id.hex())
            .join(compression.algorithm());
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StoreError::io(&path)(err)),
        };
        // A record that does not parse, or whose blob GC took, is remade.
        let Ok(record) = serde_json::from_slice::<VariantRecord>(&bytes) else {
            return Ok(None);
        };
        let Ok(digest) = parse_digest(&record.digest) else {
            return Ok(None);
        };
        // Lease first, so that a GC between this check and the caller's read
        // cannot take the blob.
        self.lease_blob(&digest)?;
        if self.blob_size(&digest).ok() != Some(record.size) {
            return Ok(None);
        }
        Ok(Some(Descriptor::new(
            compression.media_type(),
            record.size,
            digest,
        )))
    }

    pub(crate) fn record_variant(
        &self,
        diff_id: &DiffId,
        compression: Compression,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let record = VariantRecord {
            media_type: descriptor.media_type().to_string(),
            digest: descriptor.digest().to_string(),
            size: descriptor.size(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|source| StoreError::Json {
            what: "compressed layer record".into(),
            source,
        })?;
        let dir = self.compressed_dir().join(diff_id.hex());
        // Shared lock: GC removes records under the exclusive one.
        let _guard = self.lock_shared()?;
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        self.write_atomic(&dir.join(compression.algorithm()), &bytes)
    }
}

/// The blob a variant record names; `None` when it cannot be read.
fn variant_blob(record: &Path) -> Option<Digest> {
    let bytes = std::fs::read(record).ok()?;
    let record = serde_json::from_slice::<VariantRecord>(&bytes).ok()?;
    parse_digest(&record.digest).ok()
}

/// A reader that hashes what passes through it (the diff ID check of
/// [`Store::compressed_layer`]) and reports how much has.
struct HashingReader<'a, R> {
    inner: R,
    hasher: Option<HashingWriter<io::Sink>>,
    total: u64,
    read: &'a (dyn Fn(u64) + Sync),
}

impl<'a, R: Read> HashingReader<'a, R> {
    /// `hash`: whether to hash at all (not when `inner` verifies itself).
    fn new(inner: R, read: &'a (dyn Fn(u64) + Sync), hash: bool) -> Self {
        Self {
            inner,
            hasher: hash.then(|| HashingWriter::new(io::sink())),
            total: 0,
            read,
        }
    }

    /// The digest of what was read; `None` when it was not hashed.
    fn digest(self) -> io::Result<Option<Digest>> {
        self.hasher
            .map(|hasher| hasher.finish().map(|(_, digest, _)| digest))
            .transpose()
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.write_all(&buf[..n])?;
        }
        self.total += n as u64;
        (self.read)(self.total);
        Ok(n)
    }
}

/// Writes everything to both writers, the store's first.
struct Tee<'a, A> {
    first: &'a mut A,
    second: &'a mut dyn Write,
}

impl<A: Write> Write for Tee<'_, A> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.first.write_all(buf)?;
        self.second.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.first.flush()?;
        self.second.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// Compressible but not trivially so: text-like runs with a counter.
    fn sample(len: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(len);
        let mut i: u64 = 0;
        while data.len() < len {
            data.extend_from_slice(format!("line {i} of {}\n", i * 2654435761 % 1000).as_bytes());
            i += 1;
        }
        data.truncate(len);
        data
    }

    /// Bytes that do not compress.
    fn noise(len: usize) -> Vec<u8> {
        crate::test_bytes::noise(len, 0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn parses_compression() {
        let cases = [
            ("gzip", Some(Compression::Gzip { level: 1 })),
            ("gzip:2", Some(Compression::Gzip { level: 2 })),
            ("gzip:6", Some(Compression::Gzip { level: 6 })),
            ("zstd", Some(Compression::Zstd { level: 3 })),
            ("zstd:19", Some(Compression::Zstd { level: 19 })),
            ("uncompressed", Some(Compression::Uncompressed)),
            ("gzip:10", None),
            ("lz4", None),
        ];
        for (input, expected) in cases {
            assert_eq!(Compression::parse(input).ok(), expected, "case {input}");
        }
    }

    #[test]
    fn media_types_name_their_compression() {
        let cases = [
            (MediaType::ImageLayer, Some("uncompressed")),
            (MediaType::ImageLayerGzip, Some("gzip")),
            (MediaType::ImageLayerZstd, Some("zstd")),
            (
                MediaType::Other("application/vnd.docker.image.rootfs.diff.tar.gzip".into()),
                Some("gzip"),
            ),
            (MediaType::ImageConfig, None),
        ];
        for (media_type, expected) in cases {
            assert_eq!(
                Compression::of_media_type(&media_type),
                expected,
                "case {media_type}"
            );
        }
    }

    #[test]
    fn output_round_trips_and_does_not_depend_on_the_worker_count() {
        // Sizes around the block boundaries, and empty input.
        let sizes = [
            0,
            1,
            GZIP_MEMBER - 1,
            GZIP_MEMBER,
            GZIP_MEMBER + 1,
            5 * GZIP_MEMBER + 77,
        ];
        for compression in [
            Compression::Gzip { level: 2 },
            Compression::Gzip { level: 0 },
            Compression::Gzip { level: 9 },
            Compression::Zstd { level: 3 },
        ] {
            for size in sizes {
                let data = sample(size);
                let mut outputs = Vec::new();
                for workers in [1, 3, 8] {
                    let mut out = Vec::new();
                    let n = compress_with(data.as_slice(), &mut out, compression, workers).unwrap();
                    assert_eq!(n, size as u64, "{compression:?} size {size}");
                    outputs.push(out);
                }
                assert!(
                    outputs.windows(2).all(|w| w[0] == w[1]),
                    "{compression:?} size {size}: output depends on the worker count"
                );
                let (mut plain, _) = decompress(outputs[0].as_slice()).unwrap();
                let mut back = Vec::new();
                plain.read_to_end(&mut back).unwrap();
                assert!(
                    back == data,
                    "{compression:?} size {size}: round trip differs"
                );
            }
        }
    }

    #[test]
    fn pipelined_gzip_writes_the_members_in_order() {
        // The pipeline's output is exactly the blocks as gzip members one
        // after another, whichever job finished first; also when called
        // from a pool thread, where waiting must not starve the pool (two
        // layers at once on two threads).
        let data = sample(7 * GZIP_MEMBER + 300);
        let mut expected = Vec::new();
        let mut compressors = Compressors::default();
        let mut member = Vec::new();
        for block in data.chunks(GZIP_MEMBER) {
            let len = gzip_member(block, 2, &mut compressors, &mut member).unwrap();
            expected.extend_from_slice(&member[..len]);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let outputs: Vec<Vec<u8>> = pool.install(|| {
            (0..4)
                .into_par_iter()
                .map(|_| {
                    let mut out = Vec::new();
                    compress_with(data.as_slice(), &mut out, Compression::Gzip { level: 2 }, 2)
                        .unwrap();
                    out
                })
                .collect()
        });
        for (i, out) in outputs.iter().enumerate() {
            assert!(
                *out == expected,
                "layer {i}: output differs from member order"
            );
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_and_others_compressed() {
        // Random bytes, text, and a layer half of each.
        let random = noise(3 * GZIP_MEMBER);
        let text = sample(3 * GZIP_MEMBER);
        let mut mixed = random[..GZIP_MEMBER].to_vec();
        mixed.extend_from_slice(&text[..GZIP_MEMBER]);
        mixed.extend_from_slice(&random[GZIP_MEMBER..2 * GZIP_MEMBER]);
        for (name, data, most) in [
            // Stored: a few bytes per 64 KiB more than the input.
            ("random", &random, random.len() + random.len() / 10_000 + 64),
            ("text", &text, text.len() / 2),
            ("mixed", &mixed, mixed.len() * 3 / 4),
        ] {
            let mut out = Vec::new();
            compress_with(data.as_slice(), &mut out, Compression::default(), 3).unwrap();
            assert!(
                out.len() <= most,
                "{name}: {} bytes, at most {most}",
                out.len()
            );
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(out.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == *data, "{name}: round trip differs");
        }
        let mut compressors = Compressors::default();
        let mut scratch = vec![0; SAMPLE];
        for (name, block, expected) in [("random", &random, true), ("text", &text, false)] {
            let judged =
                incompressible(&block[..GZIP_MEMBER], 1, &mut compressors, &mut scratch).unwrap();
            assert_eq!(judged, expected, "{name}: incompressible");
        }
    }

    #[test]
    fn reused_jobs_make_the_members_fresh_ones_would() {
        // With one worker two jobs alternate: one carries blocks 0, 2 and
        // 4 (text, random, short text), the other 1 and 3 (text, random).
        // So a stored block follows a compressed one, a compressed one a
        // stored one, and a short block a full one; each must come out as
        // a job made for it alone would make it.
        let mut data = sample(2 * GZIP_MEMBER);
        data.extend_from_slice(&noise(2 * GZIP_MEMBER));
        data.extend_from_slice(&sample(1000));
        let mut expected = Vec::new();
        for block in data.chunks(GZIP_MEMBER) {
            let mut member = Vec::new();
            let len = gzip_member(block, 1, &mut Compressors::default(), &mut member).unwrap();
            expected.extend_from_slice(&member[..len]);
        }
        for workers in [1, 2] {
            let mut out = Vec::new();
            let gzip = Compression::Gzip { level: 1 };
            compress_with(data.as_slice(), &mut out, gzip, workers).unwrap();
            assert!(out == expected, "{workers} workers: members differ");
        }
    }

    /// The members of a multi-member gzip stream, each decoded on its own
    /// by a strict single-member decoder (which checks its CRC and length).
    fn members(mut gzip: &[u8]) -> Vec<Vec<u8>> {
        let mut members = Vec::new();
        while !gzip.is_empty() {
            let mut decoder = flate2::bufread::GzDecoder::new(gzip);
            let mut member = Vec::new();
            decoder.read_to_end(&mut member).unwrap();
            gzip = decoder.into_inner();
            members.push(member);
        }
        members
    }

    #[test]
    fn gzip_is_one_member_per_mib_of_input() {
        // Every member is a whole gzip file of its own, with a correct CRC
        // and length, holding the next MiB of the input; empty input is one
        // empty member (a gzip file has at least one).
        for size in [0, 1, GZIP_MEMBER, 3 * GZIP_MEMBER + 5] {
            let data = sample(size);
            let mut out = Vec::new();
            compress_with(data.as_slice(), &mut out, Compression::default(), 4).unwrap();
            let members = members(&out);
            let expected: Vec<&[u8]> = if data.is_empty() {
                vec![&[]]
            } else {
                data.chunks(GZIP_MEMBER).collect()
            };
            assert_eq!(members.len(), expected.len(), "size {size}: member count");
            for (i, (member, block)) in members.iter().zip(expected).enumerate() {
                assert!(member == block, "size {size}: member {i} differs");
            }
        }
    }

    #[test]
    fn default_gzip_is_no_bigger_than_zlib_level_2() {
        // The default was zlib level 2 as one stream; libdeflate's level 1
        // in 1 MiB members must not cost users bytes against it.
        let data = sample(4 * GZIP_MEMBER + 5);
        let mut out = Vec::new();
        compress_with(data.as_slice(), &mut out, Compression::default(), 4).unwrap();
        let mut zlib = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(2));
        zlib.write_all(&data).unwrap();
        let zlib = zlib.finish().unwrap();
        assert!(
            out.len() <= zlib.len(),
            "default gzip {} bytes, zlib level 2 {} bytes",
            out.len(),
            zlib.len()
        );
    }
}
