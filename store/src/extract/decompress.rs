//! Compression detection by magic bytes, and the matching decoder.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

/// The compression of a layer stream, detected from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gzip,
    Zstd,
    Uncompressed,
}
/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<(Box<dyn Read + 'a>, Format)> {
    let mut buffered = BufReader::with_capacity(128 << 10, reader);
    let head = buffered.fill_buf()?;
    let format = detect(head);
    let reader: Box<dyn Read + 'a> = match format {
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Format::Uncompressed => Box::new(buffered),
    };
    Ok((reader, format))
}

fn detect(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else {
        Format::Uncompressed
    }
}

/// Counts the bytes read through it (the compressed size of a layer).
pub struct CountingReader<R> {
    pub inner: R,
    pub count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression_by_magic() {
        let cases: &[(&[u8], Format)] = &[
            (&[0x1f, 0x8b, 8, 0], Format::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd, 0], Format::Zstd),
            (b"etc/passwd\0", Format::Uncompressed),
            (b"", Format::Uncompressed),
        ];
        for (head, expected) in cases {
            assert_eq!(detect(head), *expected, "case {head:?}");
        }
    }
}
