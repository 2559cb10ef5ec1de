//! A streaming guard for untrusted tar streams: caps the extension headers
//! that the `tar` crate would otherwise read whole into memory.
//!
//! `tar::Archive` reads PAX extended headers (`x`, and `g` when a caller asks
//! for an entry's PAX records), GNU long names (`L`) and GNU long link names
//! (`K`) with `read_to_end`, however large they claim to be. A hostile layer
//! whose PAX header is a few GiB of mildly compressible bytes passes the
//! ratio-based bomb guard and makes the reader allocate gigabytes.
//! [`TarGuard`] sits between the decompressor and `tar::Archive`, follows the
//! tar block structure as the bytes flow through
//! (<https://pubs.opengroup.org/onlinepubs/9799919799/utilities/pax.html#tag_20_92_13_06>,
//! <https://www.gnu.org/software/tar/manual/html_node/Standard.html>), and
//! fails the read that completes such a header when its size is over the cap,
//! before a byte of its data is handed on.
//!
//! The guard must see the stream exactly as the `tar` crate (0.4, with
//! `ignore_zeros` off, its default) does, or a crafted stream could show it
//! one header while the crate reads another. So it parses header fields with
//! the crate's own [`tar::Header`] and [`tar::PaxExtensions`] and follows the
//! crate's rules: a PAX `size` record overrides the size of the next entry
//! that is not itself an extension header; GNU sparse entries (`S`) are
//! followed by extension blocks while `isextended` is set (their count is
//! capped too, since the crate keeps a list entry per sparse chunk); the
//! first all-zero header block ends the archive, and whatever follows it is
//! passed through uninspected, as the crate never parses it.
//!
//! Data bytes are passed through untouched and reads are not split: each
//! read is scanned after the fact, only header blocks are copied (512 bytes
//! per entry) and only PAX `x` records are collected (at most the cap), so
//! the guard costs nothing measurable on large layers.

use std::fmt;
use std::io::{self, Read};

use tar::{GnuExtSparseHeader, Header};

/// The default cap on one extension header, and on one GNU sparse map.
pub const DEFAULT_MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

/// Why a [`TarGuard`] stopped a stream. Carried inside the `io::Error` it
/// returns (find it with `io::Error::get_ref` and `downcast_ref`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TarGuardError {
    #[error("tar {kind} of {size} bytes at offset {offset} exceeds the {} limit", Bytes(*.limit))]
    ExtensionTooLarge {
        kind: ExtensionKind,
        size: u64,
        offset: u64,
        limit: u64,
    },
    #[error(
        "tar GNU sparse map at offset {offset} has more than {blocks} extension blocks, over the {} limit",
        Bytes(*.limit)
    )]
    SparseMapTooLarge {
        offset: u64,
        blocks: u64,
        limit: u64,
    },
    #[error("tar stream truncated at offset {offset}: it ends inside {inside}")]
    Truncated { offset: u64, inside: &'static str },
    #[error("tar header at offset {offset} is invalid; nothing after it is read")]
    InvalidHeader { offset: u64 },
}

impl From<TarGuardError> for io::Error {
    fn from(err: TarGuardError) -> Self {
        let kind = match err {
            TarGuardError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

/// The tar entry types whose data the `tar` crate holds in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtensionKind {
    /// `x`: PAX extended header for the next entry.
    PaxLocal,
    /// `g`: PAX global extended header.
    PaxGlobal,
    /// `L`: GNU long name for the next entry.
    GnuLongName,
    /// `K`: GNU long link name for the next entry.
    GnuLongLink,
}

impl ExtensionKind {
    fn of(type_flag: u8) -> Option<Self> {
        match type_flag {
            b'x' => Some(Self::PaxLocal),
            b'g' => Some(Self::PaxGlobal),
            b'L' => Some(Self::GnuLongName),
            b'K' => Some(Self::GnuLongLink),
            _ => None,
        }
    }
}

impl fmt::Display for ExtensionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PaxLocal => "PAX extended header ('x')",
            Self::PaxGlobal => "PAX global header ('g')",
            Self::GnuLongName => "GNU long name header ('L')",
            Self::GnuLongLink => "GNU long link name header ('K')",
        })
    }
}

/// A byte count the way a limit reads best: `1 MiB`, `64 KiB`, `1000 bytes`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            write!(f, "{} KiB", n >> 10)
        } else {
            write!(f, "{n} bytes")
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Collecting the next header block.
    Header,
    /// Collecting GNU sparse extension block number `blocks` (from 0) of the
    /// entry whose header began at `entry`; its data (`left` bytes with the
    /// padding) follows the last one.
    SparseExt { entry: u64, blocks: u64, left: u64 },
    /// Inside an entry's data and padding, `left` bytes to go; the first
    /// `collect` of them are PAX records to keep.
    Data { left: u64, collect: u64 },
    /// Past the end-of-archive block.
    End,
}

/// A `Read` adapter that fails the stream when a tar extension header is
/// larger than a cap. See the [module docs](self).
pub struct TarGuard<R> {
    inner: R,
    max_extension: u64,
    state: State,
    /// Bytes read from `inner` so far.
    pos: u64,
    /// Where the entry being read began (its first header block).
    entry: u64,
    block: [u8; BLOCK],
    filled: usize,
    /// The PAX records of a pending `x` entry.
    pax: Vec<u8>,
    /// The `size` record of the last `x` entry, for the next entry.
    pax_size: Option<u64>,
    failed: Option<TarGuardError>,
}

impl<R: Read> TarGuard<R> {
    /// Guards `inner`, which must be positioned at the start of a tar stream,
    /// with the [`DEFAULT_MAX_EXTENSION`] cap.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            max_extension: DEFAULT_MAX_EXTENSION,
            state: State::Header,
            pos: 0,
            entry: 0,
            block: [0; BLOCK],
            filled: 0,
            pax: Vec::new(),
            pax_size: None,
            failed: None,
        }
    }

    /// Sets the largest extension header (and GNU sparse map) accepted.
    #[must_use]
    pub fn max_extension(mut self, bytes: u64) -> Self {
        self.max_extension = bytes;
        self
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Handles a complete header block: decides what follows it.
    fn on_header(&mut self) -> Result<State, TarGuardError> {
        if self.block.iter().all(|&b| b == 0) {
            // The tar crate stops at the first zero block.
            return Ok(State::End);
        }
        let header = Header::from_byte_slice(&self.block);
        let invalid = TarGuardError::InvalidHeader { offset: self.entry };
        // The tar crate fails on a size it cannot parse, and on a checksum
        // mismatch, so it reads nothing after such a block; neither do we.
        let Ok(mut size) = header.entry_size() else {
            return Err(invalid);
        };
        let type_flag = header.entry_type().as_byte();
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let mut collect = 0;
        if let Some(kind) = ExtensionKind::of(type_flag) {
            if size > self.max_extension {
                return Err(TarGuardError::ExtensionTooLarge {
                    kind,
                    size,
                    offset: self.entry,
                    limit: self.max_extension,
                });
            }
            // The crate gathers recognized L, K and x entries for the entry
            // after them; anything else (g included) is an entry of its own
            // and takes the pending PAX records with it.
            match type_flag {
                b'x' if recognized => {
                    collect = size;
                    // At most the cap, which has just been checked.
                    self.pax = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                    self.pax_size = None;
                }
                b'L' | b'K' if recognized => {}
                _ => self.pax_size = None,
            }
        } else {
            if let Some(pax_size) = self.pax_size.take() {
                size = pax_size;
            }
        }
        let left = padded(size).ok_or(invalid.clone())?;
        if type_flag == b'S' {
            let Some(gnu) = header.as_gnu() else {
                return Err(invalid);
            };
            if gnu.is_extended() {
                return Ok(State::SparseExt {
                    entry: self.entry,
                    blocks: 0,
                    left,
                });
            }
        }
        Ok(self.data(left, collect))
    }

    /// Handles a complete GNU sparse extension block.
    fn on_sparse_ext(
        &mut self,
        entry: u64,
        blocks: u64,
        left: u64,
    ) -> Result<State, TarGuardError> {
        let mut ext = GnuExtSparseHeader::new();
        ext.as_mut_bytes().copy_from_slice(&self.block);
        if !ext.is_extended() {
            return Ok(self.data(left, 0));
        }
        let blocks = blocks + 1;
        if (blocks + 1) * BLOCK as u64 > self.max_extension {
            return Err(TarGuardError::SparseMapTooLarge {
                offset: entry,
                blocks,
                limit: self.max_extension,
            });
        }
        Ok(State::SparseExt {
            entry,
            blocks,
            left,
        })
    }

    fn data(&mut self, left: u64, collect: u64) -> State {
        if collect == 0 {
            self.finish_pax();
        }
        if left == 0 {
            State::Header
        } else {
            State::Data { left, collect }
        }
    }

    /// Records the `size` of the PAX records collected, as the tar crate
    /// reads it: the first `size` record, if it is well formed and every
    /// record before it is.
    fn finish_pax(&mut self) {
        if !self.pax.is_empty() {
            self.pax_size = pax_size(&self.pax);
            self.pax = Vec::new();
        }
    }

    /// Follows the tar structure through `bytes`, just read at `self.pos`.
    /// Returns how many of them may be handed on: all, unless a header the
    /// tar crate will refuse ends among them (the rest are withheld and
    /// every later read fails).
    fn scan(&mut self, bytes: &[u8]) -> Result<usize, TarGuardError> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::End => break,
                State::Data { left, collect } => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    let mut collect = collect;
                    if collect > 0 {
                        let take = usize::try_from(collect).unwrap_or(usize::MAX).min(n);
                        self.pax.extend_from_slice(&bytes[i..i + take]);
                        collect -= take as u64;
                        if collect == 0 {
                            self.finish_pax();
                        }
                    }
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Data { left, collect }
                    };
                    i += n;
                }
                State::Header | State::SparseExt { .. } => {
                    if self.filled == 0 && matches!(self.state, State::Header) {
                        self.entry = self.pos + i as u64;
                    }
                    let n = (BLOCK - self.filled).min(bytes.len() - i);
                    self.block[self.filled..self.filled + n].copy_from_slice(&bytes[i..i + n]);
                    self.filled += n;
                    i += n;
                    if self.filled < BLOCK {
                        continue;
                    }
                    self.filled = 0;
                    let next = match self.state {
                        State::SparseExt {
                            entry,
                            blocks,
                            left,
                        } => self.on_sparse_ext(entry, blocks, left),
                        _ => self.on_header(),
                    };
                    match next {
                        Ok(state) => self.state = state,
                        // Let the tar crate see the block and report it in
                        // its own words; fail only what comes after it.
                        Err(err @ TarGuardError::InvalidHeader { .. }) => {
                            self.failed = Some(err);
                            return Ok(i);
                        }
                        Err(err) => return Err(err),
                    }
                }
            }
        }
        Ok(bytes.len())
    }

    /// The stream ended at `self.pos`: fine between entries, not inside one.
    fn check_end(&self) -> Result<(), TarGuardError> {
        let inside = match self.state {
            State::End => return Ok(()),
            State::Header if self.filled == 0 => return Ok(()),
            State::Header => "a header block",
            State::SparseExt { .. } => "a GNU sparse extension block",
            State::Data { .. } => "an entry's data",
        };
        Err(TarGuardError::Truncated {
            offset: self.pos,
            inside,
        })
    }

    fn fail(&mut self, err: TarGuardError) -> io::Error {
        self.failed = Some(err.clone());
        err.into()
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(err) = &self.failed {
            return Err(err.clone().into());
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if matches!(self.state, State::End) {
            return self.inner.read(buf);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            // A clean end without the end-of-archive blocks is accepted, as
            // the tar crate accepts it.
            return match self.check_end() {
                Ok(()) => Ok(0),
                Err(err) => Err(self.fail(err)),
            };
        }
        let pass = match self.scan(&buf[..n]) {
            Ok(pass) => pass,
            Err(err) => return Err(self.fail(err)),
        };
        self.pos += n as u64;
        Ok(pass)
    }
}

/// `size` rounded up to whole blocks, as the tar crate steps over it.
fn padded(size: u64) -> Option<u64> {
    Some(size.checked_add(BLOCK as u64 - 1)? & !(BLOCK as u64 - 1))
}

/// The PAX `size` record, read as `tar` 0.4 reads it (its private
/// `pax_extensions_value`): a malformed record before it hides it.
fn pax_size(records: &[u8]) -> Option<u64> {
    for record in tar::PaxExtensions::new(records) {
        let record = record.ok()?;
        if record.key() != Ok("size") {
            continue;
        }
        return record.value().ok()?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use tar::EntryType;

    use super::*;

    const MIB: u64 = 1 << 20;

    /// A header as `tar::Builder` would start one (GNU magic).
    fn gnu(kind: EntryType, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(1_600_000_000);
        header
    }

    fn ustar(kind: EntryType, size: u64) -> Header {
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(1_600_000_000);
        header
    }

    /// Appends a header exactly as given (after setting its path and
    /// checksum) and its padded data, bypassing the builder's own logic.
    fn raw(out: &mut Vec<u8>, mut header: Header, path: &str, data: &[u8]) {
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }

    fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        let mut out = format!("{len} {key}=").into_bytes();
        out.extend_from_slice(value);
        out.push(b'\n');
        out
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        records.iter().flat_map(|(k, v)| pax_record(k, v)).collect()
    }

    /// Writes `size` into a header's size field in GNU base-256 form.
    fn base256(header: &mut Header, size: u64) {
        let field = &mut header.as_old_mut().size;
        field.fill(0);
        field[0] = 0x80;
        field[4..].copy_from_slice(&size.to_be_bytes());
    }

    /// A header block that would be refused, to plant where a guard that
    /// lost track of the block structure would read a header.
    fn trap() -> Vec<u8> {
        let mut out = Vec::new();
        raw(&mut out, ustar(EntryType::XHeader, 2 << 30), "trap", b"");
        out
    }

    fn end(mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(&[0; 2 * BLOCK]);
        out
    }

    fn built(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut header = gnu(EntryType::Regular, data.len() as u64);
        builder.append_data(&mut header, path, data).unwrap();
    }

    fn plain() -> Vec<u8> {
        built(|b| {
            let mut dir = gnu(EntryType::Directory, 0);
            dir.set_mode(0o755);
            b.append_data(&mut dir, "etc/", io::empty()).unwrap();
            for (i, size) in [0, 1, 511, 512, 513, 100_000].into_iter().enumerate() {
                let data: Vec<u8> = (0..size).map(|n| (n % 251) as u8).collect();
                file(b, &format!("etc/f{i}"), &data);
            }
        })
    }

    /// A GNU sparse entry of `real_size` bytes with `chunks` 512-byte chunks
    /// spread over it (more than 4 need extension blocks).
    fn sparse(out: &mut Vec<u8>, real_size: u64, chunks: u64) {
        let stride = real_size / chunks;
        let mut header = gnu(EntryType::GNUSparse, chunks * BLOCK as u64);
        // The last chunk ends the file, as the tar crate checks.
        let offsets: Vec<u64> = (0..chunks)
            .map(|i| match i + 1 == chunks {
                true => real_size - BLOCK as u64,
                false => i * stride,
            })
            .collect();
        let gnu = header.as_gnu_mut().unwrap();
        gnu.set_real_size(real_size);
        for (slot, offset) in gnu.sparse.iter_mut().zip(&offsets) {
            slot.set_offset(*offset);
            slot.set_length(BLOCK as u64);
        }
        let rest: Vec<&[u64]> = offsets.get(4..).unwrap_or(&[]).chunks(21).collect();
        gnu.set_is_extended(!rest.is_empty());
        header.as_old_mut().name[..6].copy_from_slice(b"sparse");
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        for (i, group) in rest.iter().enumerate() {
            let mut ext = GnuExtSparseHeader::new();
            for (slot, offset) in ext.sparse_mut().iter_mut().zip(*group) {
                slot.set_offset(*offset);
                slot.set_length(BLOCK as u64);
            }
            ext.set_is_extended(i + 1 < rest.len());
            out.extend_from_slice(ext.as_bytes());
        }
        for i in 0..chunks {
            // Each chunk starts with a trap: data, not a header.
            let mut chunk = trap();
            chunk[BLOCK - 1] = i as u8;
            out.extend_from_slice(&chunk);
        }
    }

    /// An entry of the archive as the tar crate shows it.
    #[derive(Debug, PartialEq)]
    struct Listed {
        kind: u8,
        path: Vec<u8>,
        link: Option<Vec<u8>>,
        size: u64,
        pax: Vec<(Vec<u8>, Vec<u8>)>,
        data: Vec<u8>,
    }

    /// Reads `input` the way the extractors do: every entry, its PAX
    /// records, and the data of the small ones.
    fn list(input: impl Read) -> io::Result<Vec<Listed>> {
        let mut archive = tar::Archive::new(input);
        let mut listed = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let mut pax = Vec::new();
            if let Some(records) = entry.pax_extensions()? {
                for record in records {
                    let Ok(record) = record else {
                        pax.push((b"(malformed)".to_vec(), Vec::new()));
                        break;
                    };
                    pax.push((record.key_bytes().to_vec(), record.value_bytes().to_vec()));
                }
            }
            let mut data = Vec::new();
            if entry.size() <= MIB {
                entry.read_to_end(&mut data)?;
            }
            listed.push(Listed {
                kind: entry.header().entry_type().as_byte(),
                path: entry.path_bytes().into_owned(),
                link: entry.link_name_bytes().map(|l| l.into_owned()),
                size: entry.size(),
                pax,
                data,
            });
        }
        Ok(listed)
    }

    /// Reads `input` through a guard in `chunk`-sized reads.
    fn pass(input: impl Read, limit: u64, chunk: usize) -> io::Result<Vec<u8>> {
        let mut guard = TarGuard::new(input).max_extension(limit);
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            match guard.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn normal_archives_pass_through_unchanged() {
        let long = "d/".repeat(150) + "file";
        let long_pax_path = "p/".repeat(200) + "file";
        let cases: Vec<(&str, Vec<u8>, u64)> = vec![
            ("empty", end(Vec::new()), DEFAULT_MAX_EXTENSION),
            ("files and a directory", plain(), DEFAULT_MAX_EXTENSION),
            (
                "GNU long name",
                built(|b| file(b, &long, b"long")),
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "GNU long link name",
                built(|b| {
                    let mut header = gnu(EntryType::Symlink, 0);
                    b.append_link(&mut header, "link", &long).unwrap();
                    let mut header = gnu(EntryType::Link, 0);
                    b.append_link(&mut header, &long, &long).unwrap();
                }),
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "PAX path and xattrs",
                {
                    let records = pax(&[
                        ("path", long_pax_path.as_bytes()),
                        ("SCHILY.xattr.user.a", b"1"),
                        (
                            "SCHILY.xattr.security.capability",
                            &[1, 0, 0, 2, 0, 0, 0, 0],
                        ),
                        ("mtime", b"1700000000.5"),
                    ]);
                    built(|b| {
                        let mut header = ustar(EntryType::XHeader, records.len() as u64);
                        b.append_data(&mut header, "PaxHeaders/f", records.as_slice())
                            .unwrap();
                        file(b, "f", b"with xattrs");
                    })
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "PAX size overrides the header's size",
                {
                    let mut data = trap();
                    data.resize(1000, b'z');
                    let mut out = Vec::new();
                    let records = pax(&[("size", b"1000")]);
                    raw(
                        &mut out,
                        ustar(EntryType::XHeader, records.len() as u64),
                        "x",
                        &records,
                    );
                    raw(&mut out, ustar(EntryType::Regular, 0), "big", &data);
                    file_after(out)
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "PAX size carries over a GNU long name",
                {
                    let mut data = trap();
                    data.resize(2000, b'z');
                    let mut out = Vec::new();
                    let records = pax(&[("uid", b"7"), ("size", b"2000")]);
                    raw(
                        &mut out,
                        gnu(EntryType::XHeader, records.len() as u64),
                        "x",
                        &records,
                    );
                    let name = long.as_bytes();
                    raw(
                        &mut out,
                        gnu(EntryType::GNULongName, name.len() as u64),
                        "L",
                        name,
                    );
                    raw(&mut out, gnu(EntryType::Regular, 5), "short", &data);
                    file_after(out)
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "malformed PAX record hides the size",
                {
                    let mut records = b"9 bad\n".to_vec();
                    records.extend(pax(&[("size", b"4096")]));
                    let mut out = Vec::new();
                    raw(
                        &mut out,
                        ustar(EntryType::XHeader, records.len() as u64),
                        "x",
                        &records,
                    );
                    raw(&mut out, ustar(EntryType::Regular, 3), "f", b"abc");
                    file_after(out)
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "GNU base-256 size",
                {
                    let data: Vec<u8> = (0..1000u32).map(|n| n as u8).collect();
                    let mut header = gnu(EntryType::Regular, 0);
                    base256(&mut header, 1000);
                    let mut out = Vec::new();
                    raw(&mut out, header, "b256", &data);
                    let records = pax(&[("uid", b"12345")]);
                    let mut header = gnu(EntryType::XHeader, 0);
                    base256(&mut header, records.len() as u64);
                    raw(&mut out, header, "x", &records);
                    file_after(out)
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "PAX global header",
                {
                    let records = pax(&[("comment", b"made by hand")]);
                    let mut out = Vec::new();
                    raw(
                        &mut out,
                        ustar(EntryType::XGlobalHeader, records.len() as u64),
                        "g",
                        &records,
                    );
                    file_after(out)
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "huge GNU sparse file in the header alone",
                {
                    let mut out = Vec::new();
                    sparse(&mut out, 1 << 40, 3);
                    file_after(out)
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "huge GNU sparse file with extension blocks",
                {
                    let mut out = Vec::new();
                    sparse(&mut out, 1 << 50, 4 + 21 + 5);
                    file_after(out)
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "trailing data after the end blocks",
                {
                    let mut out = plain();
                    out.extend(trap());
                    out.extend((0..10_000u32).map(|n| (n * 7 % 256) as u8));
                    out
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "no end blocks",
                {
                    let mut out = Vec::new();
                    raw(&mut out, gnu(EntryType::Regular, 3), "f", b"abc");
                    out
                },
                DEFAULT_MAX_EXTENSION,
            ),
            (
                "GNU long name exactly at a small cap",
                {
                    let name = "n".repeat(4095);
                    built(|b| file(b, &name, b"x"))
                },
                4096,
            ),
        ];
        for (case, input, limit) in cases {
            let expected = list(input.as_slice()).unwrap_or_else(|err| {
                panic!("case {case:?}: the tar crate refuses the unguarded input: {err}")
            });
            let guarded = TarGuard::new(input.as_slice()).max_extension(limit);
            let got = list(guarded)
                .unwrap_or_else(|err| panic!("case {case:?}: refused through the guard: {err}"));
            assert_eq!(got, expected, "case {case:?}");
            for chunk in [1, 7, 100, 512, 513, 4096, 1 << 20] {
                let out = pass(input.as_slice(), limit, chunk)
                    .unwrap_or_else(|err| panic!("case {case:?}, chunk {chunk}: {err}"));
                assert!(out == input, "case {case:?}, chunk {chunk}: bytes differ");
            }
        }
    }

    /// Follows `entries` with an ordinary file and the end blocks.
    fn file_after(mut out: Vec<u8>) -> Vec<u8> {
        raw(&mut out, gnu(EntryType::Regular, 4), "last", b"last");
        end(out)
    }

    /// Counts what the guard pulls from the stream.
    struct Counting<R> {
        inner: R,
        read: Rc<Cell<u64>>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    /// A hostile case: its input, the cap, the error kind and message
    /// expected, and the most bytes the guard may read before refusing.
    type Hostile = (&'static str, Vec<u8>, u64, io::ErrorKind, String, u64);

    #[test]
    fn hostile_extensions_are_refused_early() {
        let prefix = plain();
        let prefix = &prefix[..prefix.len() - 2 * BLOCK];
        let at = prefix.len() as u64;
        let with = |tail: Vec<u8>| [prefix, &tail].concat();
        let block = BLOCK as u64;
        // (case, input, cap, error kind, message, most bytes read)
        let cases: Vec<Hostile> = vec![
            (
                "'x' claiming 2 GiB",
                with({
                    let mut out = Vec::new();
                    raw(
                        &mut out,
                        ustar(EntryType::XHeader, 2 << 30),
                        "x",
                        &[b'a'; 4096],
                    );
                    out
                }),
                DEFAULT_MAX_EXTENSION,
                io::ErrorKind::InvalidData,
                format!(
                    "tar PAX extended header ('x') of 2147483648 bytes at offset {at} exceeds the 1 MiB limit"
                ),
                at + block,
            ),
            (
                "'x' claiming 2^62 bytes in base-256",
                with({
                    let mut header = gnu(EntryType::XHeader, 0);
                    base256(&mut header, 1 << 62);
                    let mut out = Vec::new();
                    raw(&mut out, header, "x", &[b'a'; 4096]);
                    out
                }),
                DEFAULT_MAX_EXTENSION,
                io::ErrorKind::InvalidData,
                format!(
                    "tar PAX extended header ('x') of {} bytes at offset {at} exceeds the 1 MiB limit",
                    1u64 << 62
                ),
                at + block,
            ),
            (
                "'L' of 10 MiB",
                with(built(|b| file(b, &"a".repeat(10 << 20), b"x"))),
                DEFAULT_MAX_EXTENSION,
                io::ErrorKind::InvalidData,
                format!(
                    "tar GNU long name header ('L') of {} bytes at offset {at} exceeds the 1 MiB limit",
                    (10 << 20) + 1
                ),
                at + block,
            ),
            (
                "'K' over the cap",
                with(built(|b| {
                    let mut header = gnu(EntryType::Symlink, 0);
                    b.append_link(&mut header, "l", "t".repeat(2 << 20))
                        .unwrap();
                })),
                DEFAULT_MAX_EXTENSION,
                io::ErrorKind::InvalidData,
                format!(
                    "tar GNU long link name header ('K') of {} bytes at offset {at} exceeds the 1 MiB limit",
                    (2 << 20) + 1
                ),
                at + block,
            ),
            (
                "'g' one byte over the cap",
                with({
                    let mut out = Vec::new();
                    let records = vec![b'g'; (MIB + 1) as usize];
                    raw(
                        &mut out,
                        ustar(EntryType::XGlobalHeader, MIB + 1),
                        "g",
                        &records,
                    );
                    out
                }),
                DEFAULT_MAX_EXTENSION,
                io::ErrorKind::InvalidData,
                format!(
                    "tar PAX global header ('g') of 1048577 bytes at offset {at} exceeds the 1 MiB limit"
                ),
                at + block,
            ),
            (
                "'x' over a custom cap",
                with({
                    let mut out = Vec::new();
                    raw(&mut out, gnu(EntryType::XHeader, 5000), "x", &[b'a'; 5000]);
                    out
                }),
                4096,
                io::ErrorKind::InvalidData,
                format!(
                    "tar PAX extended header ('x') of 5000 bytes at offset {at} exceeds the 4 KiB limit"
                ),
                at + block,
            ),
            (
                "PAX size hides a header from a guard that trusts the header",
                with({
                    let mut out = Vec::new();
                    let records = pax(&[("size", b"0")]);
                    raw(
                        &mut out,
                        ustar(EntryType::XHeader, records.len() as u64),
                        "x",
                        &records,
                    );
                    raw(&mut out, ustar(EntryType::Regular, MIB), "f", b"");
                    out.extend(trap());
                    out
                }),
                DEFAULT_MAX_EXTENSION,
                io::ErrorKind::InvalidData,
                format!(
                    "tar PAX extended header ('x') of 2147483648 bytes at offset {} exceeds the 1 MiB limit",
                    at + 3 * block
                ),
                at + 4 * block,
            ),
            (
                "GNU sparse map over the cap",
                with({
                    let mut out = Vec::new();
                    sparse(&mut out, 1 << 40, 4 + 21 * 20);
                    out
                }),
                4096,
                io::ErrorKind::InvalidData,
                format!(
                    "tar GNU sparse map at offset {at} has more than 8 extension blocks, over the 4 KiB limit"
                ),
                at + 4096 + block,
            ),
            (
                "truncated header",
                with(plain()[..300].to_vec()),
                DEFAULT_MAX_EXTENSION,
                io::ErrorKind::UnexpectedEof,
                format!(
                    "tar stream truncated at offset {}: it ends inside a header block",
                    at + 300
                ),
                at + 300,
            ),
            (
                "truncated PAX records",
                with({
                    let mut out = Vec::new();
                    raw(&mut out, gnu(EntryType::XHeader, 1000), "x", &[b'a'; 1000]);
                    out.truncate(BLOCK + 700);
                    out
                }),
                DEFAULT_MAX_EXTENSION,
                io::ErrorKind::UnexpectedEof,
                format!(
                    "tar stream truncated at offset {}: it ends inside an entry's data",
                    at + block + 700
                ),
                at + block + 700,
            ),
        ];
        for (case, input, limit, kind, message, most) in cases {
            for chunk in [1, 512, 64 << 10] {
                let read = Rc::new(Cell::new(0));
                let counting = Counting {
                    inner: input.as_slice(),
                    read: read.clone(),
                };
                let err = pass(counting, limit, chunk).expect_err(case);
                assert_eq!(err.kind(), kind, "case {case:?}, chunk {chunk}");
                assert_eq!(err.to_string(), message, "case {case:?}, chunk {chunk}");
                // The guard reads no more than it is asked for: the read
                // that completes the header may run one buffer past it.
                let most = most + chunk as u64 - 1;
                assert!(
                    read.get() <= most,
                    "case {case:?}, chunk {chunk}: read {} bytes, more than {most}",
                    read.get()
                );
            }
            // Through the tar crate, which reads a header block at a time, the
            // guard's error reaches the caller as is, nothing past it read.
            let read = Rc::new(Cell::new(0));
            let counting = Counting {
                inner: input.as_slice(),
                read: read.clone(),
            };
            let err = list(TarGuard::new(counting).max_extension(limit)).expect_err(case);
            assert_eq!(err.to_string(), message, "case {case:?} through tar");
            assert!(
                read.get() <= most,
                "case {case:?} through tar: read {} bytes, more than {most}",
                read.get()
            );
        }
    }

    #[test]
    fn a_refusal_sticks() {
        let mut input = Vec::new();
        raw(
            &mut input,
            ustar(EntryType::XHeader, 2 << 30),
            "x",
            &[0; 4096],
        );
        let mut guard = TarGuard::new(input.as_slice());
        let mut buf = [0; 4096];
        for _ in 0..3 {
            let err = guard.read(&mut buf).expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }
    }

    #[test]
    fn an_invalid_header_is_left_to_the_tar_crate() {
        let mut input = plain();
        // Corrupt the size field of the first file's header.
        input[BLOCK + 124..BLOCK + 136].copy_from_slice(b"zzzzzzzzzzz\0");
        let err = list(TarGuard::new(input.as_slice())).expect_err("invalid header");
        assert!(
            err.to_string().contains("checksum mismatch"),
            "the tar crate reports it: {err}"
        );
        // What follows the invalid header is withheld.
        let mut guard = TarGuard::new(input.as_slice());
        let mut buf = vec![0; 1 << 20];
        assert_eq!(guard.read(&mut buf).unwrap(), 2 * BLOCK);
        let err = guard.read(&mut buf).expect_err("poisoned");
        assert_eq!(
            err.to_string(),
            format!("tar header at offset {BLOCK} is invalid; nothing after it is read")
        );
    }

    #[test]
    fn limits_read_well() {
        let cases = [
            (1u64 << 20, "1 MiB"),
            (64 << 10, "64 KiB"),
            (1000, "1000 bytes"),
            ((1 << 20) + 512, "1049088 bytes"),
            (3 << 30, "3072 MiB"),
        ];
        for (n, expected) in cases {
            assert_eq!(Bytes(n).to_string(), expected, "case {n}");
        }
    }
}
