//! Compression detection by magic bytes, and the matching decoder.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

/// The compression of a stream, detected from its first bytes: the five
/// that moby's `archive.DecompressStream` knows, for layers (`docker load`
/// takes all five) and for ADD's local archives alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
    Uncompressed,
}

/// The longest magic number [`detect`] looks at (xz's).
pub const MAGIC_LEN: usize = 6;

/// Tells the compression from a stream's first bytes (up to [`MAGIC_LEN`]).
pub fn detect(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else if head.starts_with(b"BZh") {
        Format::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Format::Xz
    } else {
        Format::Uncompressed
    }
}

/// Wraps a buffered `reader` in the decoder for `format`; concatenated
/// members (gzip, bzip2, xz) are all read, as Go's readers do.
pub fn decoder<'a>(format: Format, reader: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
        Format::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(reader)),
        Format::Uncompressed => Box::new(reader),
    })
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the stream.
pub fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    while total < buf.len() {
        match reader.read(&mut buf[total..]) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(total)
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a>(mut reader: impl Read + 'a) -> io::Result<(Box<dyn Read + 'a>, Format)> {
    let mut head = [0u8; MAGIC_LEN];
    let n = read_full(&mut reader, &mut head)?;
    let format = detect(&head[..n]);
    let rest = io::Cursor::new(head[..n].to_vec()).chain(reader);
    let buffered = BufReader::with_capacity(128 << 10, rest);
    Ok((decoder(format, buffered)?, format))
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
            (b"BZh91AY", Format::Bzip2),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Format::Xz),
            (&[0xfd, b'7', b'z', b'X', b'Z'], Format::Uncompressed),
            (b"etc/passwd\0", Format::Uncompressed),
            (b"", Format::Uncompressed),
        ];
        for (head, expected) in cases {
            assert_eq!(detect(head), *expected, "case {head:?}");
        }
    }

    /// Reads one byte per call, as a slow pipe can.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn decompresses_every_format_even_from_a_trickling_stream() {
        use std::io::Write;
        let plain = b"etc/passwd and some text long enough to compress".repeat(20);
        let gzip = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let bzip2 = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let zstd = zstd::stream::encode_all(plain.as_slice(), 1).unwrap();
        let cases = [
            (Format::Gzip, gzip),
            (Format::Bzip2, bzip2),
            (Format::Xz, xz),
            (Format::Zstd, zstd),
            (Format::Uncompressed, plain.clone()),
        ];
        for (format, encoded) in cases {
            let (mut reader, got) = decompress(Trickle(&encoded)).unwrap();
            assert_eq!(got, format, "case {format:?}");
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, plain, "case {format:?}");
        }
    }
}
