//! The decompression bomb guard: a reader over the decompressed stream
//! that hashes it (for the diff_id) and stops it past the size and ratio
//! limits of [`ApplyOptions`].

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use crate::digest::BackgroundSha256;

use super::{ApplyOptions, ExtractError};

/// Hashes the decompressed stream and stops it when it grows past the
/// bomb limits. The reason is parked in `bomb` because the tar reader
/// rewraps io errors.
pub struct GuardedReader<'a, R> {
    pub inner: R,
    pub hasher: BackgroundSha256,
    pub read: u64,
    pub compressed: Rc<Cell<u64>>,
    pub opts: &'a ApplyOptions,
    pub bomb: Rc<Cell<Option<ExtractError>>>,
}

impl<R: Read> Read for GuardedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n])?;
        self.read += n as u64;
        let compressed = self.compressed.get().max(1);
        let reason = if self.read > self.opts.max_uncompressed {
            Some(format!("limit is {} bytes", self.opts.max_uncompressed))
        } else if self.read > self.opts.ratio_grace && self.read / compressed > self.opts.max_ratio
        {
            Some(format!("ratio limit is {}:1", self.opts.max_ratio))
        } else {
            None
        };
        if let Some(reason) = reason {
            self.bomb.set(Some(ExtractError::Bomb {
                uncompressed: self.read,
                compressed,
                reason,
            }));
            return Err(io::Error::other("decompression bomb"));
        }
        Ok(n)
    }
}
