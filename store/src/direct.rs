//! Writing a big blob's data with `O_DIRECT`, so that it takes no page cache.
//!
//! A layer the builder writes from an upperdir is a copy of a snapshot that
//! nothing reads during the build. Through the page cache it costs as much
//! memory again as the upperdir, and on a guest whose free memory goes back
//! to the host, every page of it is a host fault (a 1 GB buffered write
//! takes 2-3 s of system time there, 0.4-0.6 s with `O_DIRECT`).
//!
//! The first [`DIRECT_FROM`] bytes go through the page cache as usual, so
//! small layers pay nothing. Past that, whole aligned chunks are copied into
//! a few aligned buffers and written by a thread, fed through a bounded
//! queue; the tail that is not a whole block goes through the page cache.
//! Two cases fall back to the page cache for the rest of the blob:
//! - the disk falls behind the producer (the queue stays full, so that the
//!   producer waits longer than a buffered write would have taken; see
//!   [`WAIT_PER_MIB`]): a buffered write returns at memory speed while a
//!   direct one waits for the device, so on a slow disk this is about as
//!   fast as before;
//! - the filesystem refuses `O_DIRECT` (`EINVAL`, e.g. ramfs; tmpfs took it
//!   only from Linux 6.6): the data is the same either way, only the cache
//!   use differs, so this is silent.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::OFlags;

/// `O_DIRECT`'s alignment of memory, file offset and length: the page size,
/// a multiple of the logical block size of every disk Linux drives.
pub const DIRECT_ALIGN: usize = 4096;
/// The size of one direct write (4 MiB writes are a little faster still,
/// but hold four times the memory).
pub const DIRECT_CHUNK: usize = 1 << 20;
/// Buffers in all: one being filled, the others queued or being written.
const BUFFERS: usize = 4;
/// The producer may wait for the disk this long at first, and then this
/// much more for every MiB written directly, before the rest of the blob goes
/// through the page cache: a buffered MiB costs 0.25 ms into warm memory
/// here, 2.2-2.9 ms into memory the host took back. Giving up at the first
/// wait for a free buffer would give up on any fast producer, whose bursts
/// outrun even a fast disk. A longer allowance does not pay either: when
/// other work keeps both cores busy, the wait is for a core rather than the
/// disk, and the producer, which has one, is better off writing through the
/// page cache itself (with 1 ms a MiB, 8 builds of a 237 MB layer at load 5
/// never gave up and took 1.07 times as long as main's buffered writes;
/// with 0.5 ms, 2 in 8 gave up and they took 0.96 times as long).
const WAIT_GRACE: Duration = Duration::from_millis(20);
const WAIT_PER_MIB: Duration = Duration::from_micros(500);
/// Blobs up to this size stay in the page cache: a thread and 4 MiB of
/// buffers are not worth it for a small layer, and a small one is cheap to
/// cache.
pub const DIRECT_FROM: u64 = 8 << 20;

/// What the writer thread does with the chunks it is handed.
const MODE_DIRECT: u8 = 0;
/// Through the page cache: the producer gave up on direct writes.
const MODE_CACHED: u8 = 1;
/// Not at all: the blob is being discarded.
const MODE_DISCARD: u8 = 2;

/// The direct-write state of one blob file; the caller owns the file and
/// passes it in, writing through the page cache itself whenever
/// [`DirectWrites::write`] returns `None`.
pub(crate) struct DirectWrites {
    state: State,
}

enum State {
    /// Through the page cache until the file reaches this offset.
    Before(u64),
    Running(Writer),
    /// Through the page cache for the rest of the blob.
    Off,
}

impl DirectWrites {
    pub(crate) fn new() -> Self {
        DirectWrites {
            state: State::Before(DIRECT_FROM),
        }
    }

    /// Writes a prefix of `buf` at `offset`, the file's current end, or
    /// returns `None` when the caller is to write it through the page cache.
    pub(crate) fn write(
        &mut self,
        file: &File,
        offset: u64,
        buf: &[u8],
    ) -> Option<io::Result<usize>> {
        if let State::Before(from) = self.state {
            // Buffered up to `from`, and on to a block boundary, where
            // direct writes start.
            let misaligned = offset % DIRECT_ALIGN as u64;
            let buffered = if offset < from {
                from - offset
            } else {
                (DIRECT_ALIGN as u64 - misaligned) % DIRECT_ALIGN as u64
            };
            if buffered > 0 {
                let len = buf
                    .len()
                    .min(usize::try_from(buffered).unwrap_or(usize::MAX));
                return Some((&mut &*file).write(&buf[..len]));
            }
            self.state = match Writer::start(file) {
                Some(writer) => State::Running(writer),
                None => State::Off,
            };
        }
        let State::Running(writer) = &mut self.state else {
            return None;
        };
        let n = writer.filling.push(buf);
        if writer.filling.is_full() {
            match writer.hand_over() {
                Ok(true) => {}
                Ok(false) => {
                    if let Err(err) = self.stop(file, MODE_CACHED) {
                        return Some(Err(err));
                    }
                }
                Err(err) => {
                    let _ = self.stop(file, MODE_DISCARD);
                    return Some(Err(err));
                }
            }
        }
        Some(Ok(n))
    }

    /// Writes what is still buffered and waits for the thread; the file is
    /// then back to plain buffered writes, at its end.
    pub(crate) fn finish(&mut self, file: &File) -> io::Result<()> {
        self.stop(file, MODE_DIRECT)
    }

    fn stop(&mut self, file: &File, mode: u8) -> io::Result<()> {
        let State::Running(mut writer) = std::mem::replace(&mut self.state, State::Off) else {
            return Ok(());
        };
        let result = writer.join(mode);
        let cleared = set_direct(file, false);
        result.and(cleared)
    }
}

/// The producer's side of the writer thread.
struct Writer {
    filling: AlignedBuf,
    full: Option<SyncSender<AlignedBuf>>,
    free: Receiver<AlignedBuf>,
    mode: Arc<AtomicU8>,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Chunks handed over, and how long the producer waited for free
    /// buffers in all.
    chunks: u32,
    waited: Duration,
}

impl Writer {
    /// Turns on `O_DIRECT` and starts the thread; `None` (and the file as it
    /// was) when the filesystem refuses it or no thread can be had.
    fn start(file: &File) -> Option<Writer> {
        set_direct(file, true).ok()?;
        let started = file.try_clone().and_then(|clone| {
            let (full, queued) = mpsc::sync_channel(BUFFERS);
            let (recycle, free) = mpsc::sync_channel(BUFFERS);
            for _ in 1..BUFFERS {
                recycle
                    .send(AlignedBuf::new())
                    .expect("the channel holds every buffer");
            }
            let mode = Arc::new(AtomicU8::new(MODE_DIRECT));
            let thread_mode = Arc::clone(&mode);
            let thread = std::thread::Builder::new()
                .name("blob-direct".into())
                .spawn(move || write_queued(&clone, &queued, &recycle, &thread_mode))?;
            Ok(Writer {
                filling: AlignedBuf::new(),
                full: Some(full),
                free,
                mode,
                thread: Some(thread),
                chunks: 0,
                waited: Duration::ZERO,
            })
        });
        match started {
            Ok(writer) => Some(writer),
            Err(_) => {
                let _ = set_direct(file, false);
                None
            }
        }
    }

    /// Queues the full buffer and takes a free one: `false` when there is
    /// none within the producer's allowance of waiting, the disk being
    /// behind.
    fn hand_over(&mut self) -> io::Result<bool> {
        let full = std::mem::replace(&mut self.filling, AlignedBuf::empty());
        let sent = self.full.as_ref().map(|queue| queue.send(full));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.thread_error());
        }
        self.chunks += 1;
        let allowed = WAIT_GRACE + WAIT_PER_MIB * self.chunks * (DIRECT_CHUNK >> 20) as u32;
        let started = Instant::now();
        let free = self.free.recv_timeout(allowed.saturating_sub(self.waited));
        self.waited += started.elapsed();
        match free {
            Ok(buf) => {
                self.filling = buf;
                Ok(true)
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Err(RecvTimeoutError::Disconnected) => Err(self.thread_error()),
        }
    }

    /// Hands over what was filled, tells the thread how to write what is
    /// queued, and waits for it.
    fn join(&mut self, mode: u8) -> io::Result<()> {
        let tail = std::mem::replace(&mut self.filling, AlignedBuf::empty());
        if mode != MODE_DISCARD
            && !tail.filled().is_empty()
            && let Some(queue) = &self.full
            && queue.send(tail).is_err()
        {
            return Err(self.thread_error());
        }
        self.mode.store(mode, Ordering::Release);
        self.full = None;
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the blob's writer thread panicked")),
        }
    }

    /// The error that ended the thread early.
    fn thread_error(&mut self) -> io::Error {
        match self.join(MODE_DISCARD) {
            Err(err) => err,
            Ok(()) => io::Error::other("the blob's writer thread stopped early"),
        }
    }
}

impl Drop for Writer {
    /// A blob dropped uncommitted: its queued chunks are discarded and the
    /// thread is gone before the temp file is removed.
    fn drop(&mut self) {
        let _ = self.join(MODE_DISCARD);
    }
}

/// The writer thread: writes the queued chunks in order, and returns each
/// buffer for reuse.
fn write_queued(
    file: &File,
    queued: &Receiver<AlignedBuf>,
    recycle: &SyncSender<AlignedBuf>,
    mode: &AtomicU8,
) -> io::Result<()> {
    let mut direct = true;
    for mut buf in queued {
        match mode.load(Ordering::Acquire) {
            MODE_DISCARD => return Ok(()),
            MODE_CACHED if direct => {
                set_direct(file, false)?;
                direct = false;
            }
            _ => {}
        }
        #[cfg(test)]
        if direct {
            std::thread::sleep(tests::slow_disk());
        }
        write_chunk(file, buf.filled(), &mut direct)?;
        buf.clear();
        // Never blocks (the channel holds every buffer); the producer may
        // have gone already.
        let _ = recycle.try_send(buf);
    }
    Ok(())
}

/// Writes `data` at the file's offset, with `O_DIRECT` while `direct` and
/// the data is whole blocks; a tail that is not (the blob's last bytes), or
/// a filesystem that refuses a direct write with `EINVAL`, turns `direct`
/// off and goes through the page cache.
fn write_chunk(mut file: &File, mut data: &[u8], direct: &mut bool) -> io::Result<()> {
    while !data.is_empty() {
        if *direct && data.len() < DIRECT_ALIGN {
            set_direct(file, false)?;
            *direct = false;
        }
        let len = if *direct {
            data.len() - data.len() % DIRECT_ALIGN
        } else {
            data.len()
        };
        match file.write(&data[..len]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                if *direct && n % DIRECT_ALIGN != 0 {
                    // A short write left the offset off a block boundary.
                    set_direct(file, false)?;
                    *direct = false;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if *direct && err.raw_os_error() == Some(libc::EINVAL) => {
                set_direct(file, false)?;
                *direct = false;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Sets or clears `O_DIRECT` on the open file (shared by its clones).
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
}

/// A [`DIRECT_CHUNK`]-sized buffer whose start is [`DIRECT_ALIGN`]-aligned
/// (a `Vec` over-allocated by one alignment, used from an aligned offset:
/// moving the `Vec` does not move its heap memory).
struct AlignedBuf {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new() -> Self {
        let bytes = vec![0u8; DIRECT_CHUNK + DIRECT_ALIGN];
        let start = (DIRECT_ALIGN - bytes.as_ptr().addr() % DIRECT_ALIGN) % DIRECT_ALIGN;
        AlignedBuf {
            bytes,
            start,
            len: 0,
        }
    }

    /// A placeholder that holds nothing and is never filled.
    fn empty() -> Self {
        AlignedBuf {
            bytes: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    /// Copies as much of `data` as fits; returns how much.
    fn push(&mut self, data: &[u8]) -> usize {
        let spare = &mut self.bytes[self.start + self.len..self.start + DIRECT_CHUNK];
        let n = spare.len().min(data.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    fn is_full(&self) -> bool {
        self.len == DIRECT_CHUNK
    }

    fn filled(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// How long each direct write takes on top of the disk's own time.
    static SLOW_DISK_MS: AtomicU64 = AtomicU64::new(0);

    pub(super) fn slow_disk() -> Duration {
        Duration::from_millis(SLOW_DISK_MS.load(Ordering::Relaxed))
    }

    /// Writes `data` as a blob file does, and returns how long it took.
    fn write_blob(file: &File, data: &[u8]) -> Duration {
        let started = Instant::now();
        let mut direct = DirectWrites::new();
        let mut offset = 0;
        while offset < data.len() {
            let rest = &data[offset..];
            let n = match direct.write(file, offset as u64, rest) {
                Some(written) => written.unwrap(),
                None => (&mut &*file).write(rest).unwrap(),
            };
            offset += n;
        }
        direct.finish(file).unwrap();
        started.elapsed()
    }

    #[test]
    fn a_disk_behind_the_producer_gets_the_rest_through_the_page_cache() {
        let per_chunk = 200;
        SLOW_DISK_MS.store(per_chunk, Ordering::Relaxed);
        let chunks = 16;
        let data: Vec<u8> = (0..DIRECT_FROM as usize + chunks * DIRECT_CHUNK)
            .map(|i| (i % 251) as u8)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let file = File::create(&path).unwrap();
        let took = write_blob(&file, &data);
        // Waiting for every direct write would take chunks * per_chunk; the
        // producer gives up after its allowance and the few chunks queued.
        let waiting = Duration::from_millis(chunks as u64 * per_chunk);
        assert!(
            took < waiting / 2,
            "{took:?} for a blob the disk writes in {waiting:?}: no fallback to the page cache"
        );
        assert!(std::fs::read(&path).unwrap() == data, "the file differs");
    }
}
