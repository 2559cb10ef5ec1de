//! Blobs: `blobs/sha256/<hex>`, written by streaming into the session's temp
//! directory while hashing, verified, fsynced (or recorded as not yet
//! synced, for the layers a build makes) and renamed into place, and
//! read back through a [`VerifiedReader`] that checks the digest at EOF.
//! A blob under a digest is therefore always complete and correct.
//! (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md#blobs>)

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;

use crate::digest::{BackgroundSha256, Digest, HashingWriter};
use crate::direct::DirectWrites;
pub use crate::direct::{DIRECT_ALIGN, DIRECT_CHUNK, DIRECT_FROM};
use crate::error::into_io;
use crate::store::{Store, fsync_dir};
use crate::unsynced::Unsynced;
use crate::{Result, StoreError};

/// Small metadata (manifests, configs, indexes) read into memory is capped
/// at this size; bigger blobs must be streamed.
pub const MAX_METADATA_SIZE: u64 = 32 << 20;

/// What a blob must turn out to be: its digest, and its size when known
/// (docker archives do not record layer sizes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedBlob {
    pub digest: Digest,
    pub size: Option<u64>,
}

impl From<&Descriptor> for ExpectedBlob {
    fn from(d: &Descriptor) -> Self {
        ExpectedBlob {
            digest: d.digest().clone(),
            size: Some(d.size()),
        }
    }
}

impl From<&Digest> for ExpectedBlob {
    fn from(digest: &Digest) -> Self {
        ExpectedBlob {
            digest: digest.clone(),
            size: None,
        }
    }
}

impl Store {
    /// Streams `reader` into the store and returns the blob's digest and
    /// size. When `expected` is given, a mismatch is an error and nothing is
    /// stored. An existing blob is not rewritten.
    pub fn put_blob(
        &self,
        mut reader: impl Read,
        expected: Option<&ExpectedBlob>,
    ) -> Result<(Digest, u64)> {
        let mut writer = self.blob_writer()?;
        let path = writer.tmp.clone();
        io::copy(&mut reader, &mut writer).map_err(StoreError::io(path))?;
        writer.commit(expected)
    }

    /// Stores an in-memory blob (manifests, configs). One already stored
    /// is only leased: nothing is written (a no-op rebuild makes the same
    /// config and manifest again).
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let digest = crate::digest::sha256_bytes(bytes);
        let size = bytes.len() as u64;
        if self.lease_existing_blob(&digest, Durability::Now)? {
            return Ok((digest, size));
        }
        self.put_blob(bytes, None)
    }

    /// Leases `digest` when its blob is stored already, under the shared
    /// lock so that no GC removes it in between; `false` when it is not.
    /// A stored blob was fsynced by whoever published it, or recorded as
    /// unsynced ([`BlobWriter::commit_unsynced`]); with
    /// [`Durability::Now`], such a record is settled first.
    pub(crate) fn lease_existing_blob(
        &self,
        digest: &Digest,
        durability: Durability,
    ) -> Result<bool> {
        let target = self.blob_path(digest)?;
        if !target.is_file() {
            return Ok(false);
        }
        let _guard = self.lock_shared()?;
        self.session().lease_blob(digest)?;
        if !target.is_file() {
            return Ok(false);
        }
        if durability == Durability::Now {
            self.settle_one(digest.digest())?;
        }
        Ok(true)
    }

    /// A writer for callers that produce blob data (layer writers, archive
    /// readers); finish with [`BlobWriter::commit`]. Dropping it uncommitted
    /// discards the data.
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let tmp = self.temp_path("blob");
        let file = File::create(&tmp).map_err(StoreError::io(&tmp))?;
        Ok(BlobWriter {
            store: self,
            inner: Some(HashingWriter::new(BufWriter::with_capacity(
                256 << 10,
                BlobFile {
                    file,
                    written: 0,
                    kicked: None,
                    direct: None,
                },
            ))),
            tmp,
        })
    }

    /// Opens a blob for reading; the reader fails with an `InvalidData` error
    /// wrapping [`StoreError::DigestMismatch`] at EOF if the content does not
    /// match `digest`.
    /// A lazy blob (an imported cache's) is fetched first.
    pub fn open_blob(&self, digest: &Digest) -> Result<VerifiedReader> {
        let path = self.blob_path(digest)?;
        self.ensure_blob(digest)?;
        let file = File::open(&path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io(&path)(err),
        })?;
        let size = file.metadata().map_err(StoreError::io(&path))?.len();
        Ok(VerifiedReader {
            file,
            check: Check::Hashing(BackgroundSha256::new()),
            read: 0,
            expected: digest.clone(),
            size,
            done: false,
        })
    }

    /// Opens the blob a descriptor points at, checking its size up front and
    /// its digest at EOF.
    pub fn open_descriptor(&self, descriptor: &Descriptor) -> Result<VerifiedReader> {
        let reader = self.open_blob(descriptor.digest())?;
        if reader.size != descriptor.size() {
            return Err(StoreError::SizeMismatch {
                digest: descriptor.digest().clone(),
                expected: descriptor.size(),
                actual: reader.size,
            });
        }
        Ok(reader)
    }

    /// Reads a small blob (at most [`MAX_METADATA_SIZE`]) into memory,
    /// verified.
    pub fn read_blob_bytes(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut reader = self.open_blob(digest)?;
        if reader.size > MAX_METADATA_SIZE {
            return Err(StoreError::BlobTooLarge {
                digest: digest.clone(),
                size: reader.size,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(reader.size).unwrap_or(0));
        reader
            .read_to_end(&mut bytes)
            .map_err(|err| from_io(err, self.blob_path_unchecked(digest)))?;
        Ok(bytes)
    }

    /// Whether the blob is present (its content is trusted: only verified
    /// data is ever renamed into `blobs/`).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// The stored size of a blob (a lazy blob is fetched first: whoever
    /// asks is about to reference it).
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest)?;
        self.ensure_blob(digest)?;
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.clone()))
            }
            Err(err) => Err(StoreError::io(path)(err)),
        }
    }

    /// `blobs/sha256/<hex>`, after re-validating the digest so that no
    /// string ever reaches the filesystem unchecked.
    pub(crate) fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        let digest = crate::digest::parse_digest(digest.as_ref())?;
        Ok(self.blobs_dir().join(digest.digest()))
    }

    fn blob_path_unchecked(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.digest())
    }

    pub(crate) fn blob_path_hex(&self, hex: &str) -> PathBuf {
        self.blobs_dir().join(hex)
    }
}

/// Turns an io::Error from a [`VerifiedReader`] back into the store error it
/// wraps, or attaches `path`.
pub(crate) fn from_io(err: io::Error, path: PathBuf) -> StoreError {
    if err.get_ref().is_some_and(|e| e.is::<StoreError>()) {
        if let Some(inner) = err.into_inner()
            && let Ok(store_err) = inner.downcast::<StoreError>()
        {
            return *store_err;
        }
        return StoreError::invalid("blob", "unreadable");
    }
    StoreError::io(path)(err)
}

/// A [`Write`] sink that becomes a blob on [`BlobWriter::commit`].
pub struct BlobWriter<'s> {
    store: &'s Store,
    inner: Option<HashingWriter<BufWriter<BlobFile>>>,
    tmp: PathBuf,
}

/// When a committed blob's data reaches the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Before the commit returns.
    Now,
    /// Within about 30 s (see [`BlobWriter::commit_unsynced`]).
    Deferred,
}

/// Past this much unwritten data, a blob writer that writes back early
/// asks the kernel to start writing it to the disk.
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// A blob's temp file, counting what was written.
struct BlobFile {
    file: File,
    written: u64,
    /// With early write-back: where the data not yet handed to write-back
    /// starts.
    kicked: Option<u64>,
    /// With [`BlobWriter::write_direct`].
    direct: Option<DirectWrites>,
}

impl BlobFile {
    /// Waits for the direct writes, if any; the file then holds all the
    /// data written.
    fn finish(mut self) -> io::Result<File> {
        if let Some(direct) = &mut self.direct {
            direct.finish(&self.file)?;
        }
        Ok(self.file)
    }
}

impl Write for BlobFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let direct = self.direct.as_mut();
        let n = match direct.and_then(|d| d.write(&self.file, self.written, buf)) {
            Some(written) => written?,
            None => self.file.write(buf)?,
        };
        self.written += n as u64;
        if let Some(kicked) = self.kicked
            && self.written - kicked >= WRITEBACK_CHUNK
        {
            // POSIX_FADV_DONTNEED starts write-back of the range's dirty
            // pages without waiting for it (and drops the pages already
            // written back). Advice: a failure changes only the timing.
            let len = std::num::NonZeroU64::new(self.written - kicked);
            let _ = rustix::fs::fadvise(&self.file, kicked, len, rustix::fs::Advice::DontNeed);
            self.kicked = Some(self.written);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter<'_> {
    /// Starts writing the data back to the disk as it comes, in chunks of
    /// [`WRITEBACK_CHUNK`], rather than all in [`BlobWriter::commit`]'s
    /// fsync: the disk then works while the writer still produces, and the
    /// fsync waits for the last chunk only. The blob's pages leave the page
    /// cache once on disk, so this is for blobs nobody reads soon: a layer
    /// written from an upperdir, which is itself the layer's snapshot.
    /// (The durability is the same: commit still fsyncs everything.)
    pub fn write_back_early(&mut self) {
        if let Some(inner) = &mut self.inner {
            let file = inner.get_mut().get_mut();
            file.kicked = Some(file.written);
        }
    }

    /// Writes the blob's data past its first [`DIRECT_FROM`] bytes with
    /// `O_DIRECT`, so that it takes no page cache (see `direct.rs`): for a
    /// big blob nobody reads soon, like [`BlobWriter::write_back_early`],
    /// where the memory it would fill costs more than the write (on a guest
    /// whose free memory goes back to the host, a page cache page not
    /// touched lately costs a host fault). Where the disk is slower than
    /// the producer, or the filesystem refuses `O_DIRECT`, the rest goes
    /// through the page cache as without it. The bytes, digest and
    /// durability are the same.
    pub fn write_direct(&mut self) {
        if let Some(inner) = &mut self.inner {
            let file = inner.get_mut().get_mut();
            file.direct.get_or_insert_with(DirectWrites::new);
        }
    }

    /// Verifies the content against `expected` (when given), fsyncs it and
    /// renames it to `blobs/sha256/<hex>`. Returns the digest and size.
    pub fn commit(self, expected: Option<&ExpectedBlob>) -> Result<(Digest, u64)> {
        self.publish(expected, Durability::Now)
    }

    /// [`BlobWriter::commit`] without waiting for the disk: for the layers
    /// a build makes, whose data would otherwise reach the disk before the
    /// build returns (a 237 MB layer takes about half a second here).
    ///
    /// The blob is recorded, durably, under
    /// `hoist/unsynced/<boot-id>/blobs/<hex>` before it is renamed into
    /// place, and neither it nor `blobs/` is fsynced: the kernel writes it
    /// back within about 30 s (then the next [`Store::open`] syncs it,
    /// cheaply, and drops the record), or at once on `sync`. If the machine
    /// crashes before that, the first open after the reboot hashes every
    /// recorded blob and removes those the crash cut short, along with the
    /// cache entries and tags that need them, which a build makes again.
    /// The store is never corrupt, and a process that dies loses nothing.
    ///
    /// Do not combine it with [`BlobWriter::write_back_early`]: on ext4
    /// (`data=ordered`), data whose blocks are allocated is written out by
    /// the next journal commit, so the builder's next small fsync (a
    /// record's) would wait for the whole layer after all. The record's own
    /// fsync is cheap because the blob's buffered data has no blocks yet.
    /// [`BlobWriter::write_direct`] keeps that true: data written with
    /// `O_DIRECT` has reached the device when the write returns (not its
    /// stable storage: nothing flushes the device's cache), so the next
    /// journal commit has none of it to wait for, only the extents and the
    /// size it records. Until that commit and a cache flush, a crash can
    /// still cut the blob short; and as the direct writes move the size on
    /// disk past the buffered head (still in the page cache, with no blocks
    /// yet), it can also leave a blob of full length with a range of zeros.
    /// Either way the unsynced record covers it: recovery hashes every
    /// recorded blob, whatever its length.
    pub fn commit_unsynced(self, expected: Option<&ExpectedBlob>) -> Result<(Digest, u64)> {
        self.publish(expected, Durability::Deferred)
    }

    fn publish(
        mut self,
        expected: Option<&ExpectedBlob>,
        durability: Durability,
    ) -> Result<(Digest, u64)> {
        let Some(inner) = self.inner.take() else {
            return Err(StoreError::invalid("blob writer", "already committed"));
        };
        let (buffered, digest, size) = inner.finish().map_err(StoreError::io(&self.tmp))?;
        let file = buffered
            .into_inner()
            .map_err(|e| StoreError::io(&self.tmp)(e.into_error()))?
            .finish()
            .map_err(StoreError::io(&self.tmp))?;
        if let Some(expected) = expected {
            if expected.digest != digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.digest.clone(),
                    actual: digest,
                });
            }
            if let Some(want) = expected.size.filter(|want| *want != size) {
                return Err(StoreError::SizeMismatch {
                    digest,
                    expected: want,
                    actual: size,
                });
            }
        }
        // A blob stored already is not written again (a RUN that made the
        // same layer as an earlier build, a pull of known content).
        if self.store.lease_existing_blob(&digest, durability)? {
            return Ok((digest, size)); // Drop removes the temp file
        }
        if durability == Durability::Now {
            file.sync_all().map_err(StoreError::io(&self.tmp))?;
        }
        drop(file);
        let target = self.store.blob_path(&digest)?;
        let _guard = self.store.lock_shared()?;
        // Lease before publishing, so a GC that runs right after sees it.
        self.store.session().lease_blob(&digest)?;
        if target.exists() {
            if durability == Durability::Now {
                self.store.settle_one(digest.digest())?;
            }
            return Ok((digest, size)); // Drop removes the temp file
        }
        if durability == Durability::Deferred {
            self.store
                .record_unsynced(Unsynced::Blob, digest.digest())?;
        }
        std::fs::rename(&self.tmp, &target).map_err(StoreError::io(&target))?;
        if durability == Durability::Now {
            fsync_dir(&self.store.blobs_dir())?;
        }
        Ok((digest, size))
    }

    /// The temp file's path (for error messages).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Some(inner) => inner.write(buf),
            None => Err(io::Error::other("blob writer already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Some(inner) => inner.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // After a successful rename this finds nothing; otherwise it discards
        // an unverified or duplicate temp file.
        self.inner = None;
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// A reader over a stored blob that checks the digest once it has read the
/// blob's size, and again at EOF (and fails early if the file grows past its
/// initial size). Readers that stop at the size, as an HTTP body of known
/// length does, never read to EOF, so the check cannot wait for it.
pub struct VerifiedReader {
    file: File,
    check: Check,
    read: u64,
    expected: Digest,
    size: u64,
    done: bool,
}

/// Where a [`VerifiedReader`]'s digest check stands.
enum Check {
    /// Big blobs (a layer a push sends) are hashed on a second core.
    Hashing(BackgroundSha256),
    /// Everything read so far matches the digest.
    Matched,
    /// The content does not match, so that retrying never yields a clean EOF.
    Corrupt(Digest),
    /// Hashing failed; every later read fails too.
    Failed,
}

impl VerifiedReader {
    /// The blob's size on disk.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest the content must match.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }
}

impl VerifiedReader {
    fn mismatch(&self, actual: &Digest) -> io::Error {
        into_io(StoreError::DigestMismatch {
            expected: self.expected.clone(),
            actual: actual.clone(),
        })
    }

    /// Compares the digest of what was read with the expected one, once.
    fn verify(&mut self) -> io::Result<()> {
        if !matches!(self.check, Check::Hashing(_)) {
            return Ok(());
        }
        let Check::Hashing(hasher) = std::mem::replace(&mut self.check, Check::Failed) else {
            unreachable!("matched above");
        };
        let actual = hasher.finish()?;
        if actual != self.expected {
            let err = self.mismatch(&actual);
            self.check = Check::Corrupt(actual);
            return Err(err);
        }
        self.check = Check::Matched;
        Ok(())
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.check {
            Check::Corrupt(actual) => return Err(self.mismatch(actual)),
            Check::Failed => {
                return Err(io::Error::other(format!(
                    "blob {}: hashing failed earlier",
                    self.expected
                )));
            }
            Check::Hashing(_) | Check::Matched => {}
        }
        if self.done {
            return Ok(0);
        }
        let n = self.file.read(buf)?;
        if let Check::Hashing(hasher) = &mut self.check
            && let Err(err) = hasher.update(&buf[..n])
        {
            self.check = Check::Failed;
            return Err(err);
        }
        self.read += n as u64;
        if self.read > self.size {
            return Err(into_io(StoreError::SizeMismatch {
                digest: self.expected.clone(),
                expected: self.size,
                actual: self.read,
            }));
        }
        let eof = n == 0 && !buf.is_empty();
        if self.read == self.size || eof {
            self.verify()?;
        }
        if eof {
            self.done = true;
            if self.read != self.size {
                return Err(into_io(StoreError::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: self.size,
                    actual: self.read,
                }));
            }
        }
        Ok(n)
    }
}
