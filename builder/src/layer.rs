//! Overlay upperdir -> OCI layer.
//!
//! The upperdir of a RUN (or COPY) step is already a diff in overlayfs form.
//! This walks it in sorted order, converts overlay whiteouts to OCI ones
//! (<https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts>)
//! and writes a tar stream, hashing the uncompressed tar (the diff_id) and
//! the compressed blob (the digest) in the same pass.
//!
//! Entries are written the way BuildKit/containerd write them: USTAR headers,
//! PAX records for long names, large ids and xattrs, directories named with
//! a trailing `/`, and no entry for the root.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hoist_store::compress::compress;
pub use hoist_store::compress::{Compression, InvalidCompression};
use hoist_store::digest::{DiffId, Digest, HashingWriter};
use oci_spec::image::MediaType;
use tar::{EntryType, Header};

/// The OCI whiteout prefix and opaque-directory marker.
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Options for [`write_layer`].
#[derive(Clone, Debug, Default)]
pub struct LayerOptions {
    /// SOURCE_DATE_EPOCH: mtimes later than this are clamped to it.
    pub mtime_clamp: Option<u64>,
}

/// What [`write_layer`] wrote.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    pub diff_id: DiffId,
    pub digest: Digest,
    pub size: u64,
    pub media_type: MediaType,
    /// The upperdir held nothing: the caller records an `empty_layer`
    /// history entry instead of a layer.
    pub empty: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing layer: {0}")]
    Write(#[source] io::Error),
    #[error(transparent)]
    BadCompression(#[from] InvalidCompression),
}

/// Writes the overlay upperdir `upperdir` as an OCI layer to `out`.
pub fn write_layer(
    upperdir: &Path,
    out: impl Write,
    compression: Compression,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    let mut out = HashingWriter::new(BufWriter::with_capacity(256 << 10, out));
    if compression == Compression::Uncompressed {
        // The blob is the diff: one hash gives both digests.
        let (out, empty) = write_layer_tar(upperdir, out, opts)?;
        return finish(out, None, compression, empty);
    }
    // The store's compressor, so that a layer made here is byte for byte
    // the one a push or a save of the same diff makes. It reads, so the tar
    // is written into a pipe on a thread of its own.
    let (tar_out, tar_in) = io::pipe().map_err(LayerError::Write)?;
    std::thread::scope(|scope| {
        let tar = scope.spawn(move || {
            let (pipe, diff_id, empty) = write_tar(upperdir, tar_in, opts)?;
            drop(pipe);
            Ok::<_, LayerError>((diff_id, empty))
        });
        let compressed = compress(tar_out, &mut out, compression).map_err(LayerError::Write);
        let written = tar
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // The compressor's error first: when it stops, the tar's writes
        // fail with a broken pipe, which would hide the cause.
        compressed?;
        let (diff_id, empty) = written?;
        finish(out, Some(diff_id), compression, empty)
    })
}

/// `diff_id` is `None` for an uncompressed layer, whose digest it is.
fn finish<W: Write>(
    out: HashingWriter<BufWriter<W>>,
    diff_id: Option<DiffId>,
    compression: Compression,
    empty: bool,
) -> Result<LayerInfo, LayerError> {
    let (mut buffered, digest, size) = out.finish().map_err(LayerError::Write)?;
    buffered.flush().map_err(LayerError::Write)?;
    Ok(LayerInfo {
        diff_id: diff_id.unwrap_or_else(|| DiffId::new(&digest)),
        digest,
        size,
        media_type: compression.media_type(),
        empty,
    })
}

/// Writes the tar into `out` (the compressor's input), hashing it for the
/// diff_id. Returns `out` for the caller to finish.
fn write_tar<W: Write>(
    upperdir: &Path,
    out: W,
    opts: &LayerOptions,
) -> Result<(W, DiffId, bool), LayerError> {
    let (hashing, empty) = write_layer_tar(upperdir, HashingWriter::new(out), opts)?;
    let (out, digest, _) = hashing.finish().map_err(LayerError::Write)?;
    Ok((out, DiffId::new(&digest), empty))
}

/// Writes the upperdir's diff as a plain tar into `out`, with no hashing
/// of its own: for writers that hash already (a store blob writer, whose
/// digest is then the diff ID). Returns `out` and whether the diff was
/// empty.
pub fn write_layer_tar<W: Write>(
    upperdir: &Path,
    out: W,
    opts: &LayerOptions,
) -> Result<(W, bool), LayerError> {
    let mut tar = tar::Builder::new(BufWriter::with_capacity(256 << 10, out));
    let mut writer = TarWriter {
        upperdir,
        opts,
        links: HashMap::new(),
        entries: 0,
    };
    writer.walk(&mut tar)?;
    let buffered = tar.into_inner().map_err(LayerError::Write)?;
    let out = buffered
        .into_inner()
        .map_err(|err| LayerError::Write(err.into_error()))?;
    Ok((out, writer.entries == 0))
}

struct TarWriter<'a> {
    upperdir: &'a Path,
    opts: &'a LayerOptions,
    /// (dev, ino) of files with several links -> the first path written.
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: u64,
}

impl TarWriter<'_> {
    /// Entries go in batches: their metadata and xattrs are read and their
    /// files opened on every core (a path walk each, most of the work for
    /// small files), then they are written in order.
    fn walk<W: Write>(&mut self, tar: &mut tar::Builder<W>) -> Result<(), LayerError> {
        let walker = walkdir::WalkDir::new(self.upperdir)
            .min_depth(1)
            .follow_links(false)
            .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
        let mut batch = Vec::with_capacity(BATCH);
        for item in walker {
            let item = item.map_err(|err| {
                let path = err.path().unwrap_or(self.upperdir).to_owned();
                LayerError::Read {
                    path,
                    source: err.into(),
                }
            })?;
            batch.push(item.into_path());
            if batch.len() == BATCH {
                self.write_batch(tar, &mut batch)?;
            }
        }
        self.write_batch(tar, &mut batch)
    }

    fn write_batch<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        batch: &mut Vec<PathBuf>,
    ) -> Result<(), LayerError> {
        use rayon::prelude::*;
        let found: Vec<io::Result<Found>> = batch.par_iter().map(|path| find(path)).collect();
        for (path, found) in batch.drain(..).zip(found) {
            let found = found.map_err(|source| LayerError::Read {
                path: path.clone(),
                source,
            })?;
            let rel = path.strip_prefix(self.upperdir).unwrap_or(&path);
            self.write_entry(tar, &path, rel, found)?;
        }
        Ok(())
    }

    fn write_entry<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        path: &Path,
        rel: &Path,
        found: Found,
    ) -> Result<(), LayerError> {
        let read_err = |source: io::Error| LayerError::Read {
            path: path.to_owned(),
            source,
        };
        let Found { meta, xattrs, file } = found;
        let file_type = meta.file_type();
        let raw_name = rel.as_os_str().as_bytes();

        if is_whiteout(&meta) {
            // An overlay whiteout: `dir/name` (0/0 char device) -> `dir/.wh.name`.
            let whiteout = with_base_prefix(raw_name, WHITEOUT_PREFIX);
            let mut header = self.header(&meta, EntryType::Regular);
            header.set_mode(0);
            header.set_uid(0);
            header.set_gid(0);
            return self.append(tar, header, &whiteout, None, &[], io::empty());
        }

        let opaque = xattrs.iter().any(|(key, value)| {
            (key == b"trusted.overlay.opaque" || key == b"user.overlay.opaque") && value == b"y"
        });
        let xattrs: Vec<_> = xattrs
            .into_iter()
            .filter(|(key, _)| !is_overlay_xattr(key))
            .collect();

        if file_type.is_dir() {
            let mut dir_name = raw_name.to_vec();
            dir_name.push(b'/');
            let header = self.header(&meta, EntryType::Directory);
            self.append(tar, header, &dir_name, None, &xattrs, io::empty())?;
            if opaque {
                let mut marker = raw_name.to_vec();
                marker.push(b'/');
                marker.extend_from_slice(OPAQUE_MARKER.as_bytes());
                let mut header = self.header(&meta, EntryType::Regular);
                header.set_mode(0);
                header.set_uid(0);
                header.set_gid(0);
                self.append(tar, header, &marker, None, &[], io::empty())?;
            }
        } else if file_type.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    let target = first.clone();
                    let mut header = self.header(&meta, EntryType::Link);
                    header.set_size(0);
                    return self.append(tar, header, raw_name, Some(&target), &xattrs, io::empty());
                }
                self.links.insert(key, raw_name.to_vec());
            }
            let file = file.ok_or_else(|| read_err(io::Error::other("not opened")))?;
            let mut header = self.header(&meta, EntryType::Regular);
            header.set_size(meta.len());
            // Guard against a file that changed size since stat: the tar
            // must carry exactly the size in its header.
            let data = io::Read::take(file, meta.len());
            self.append(tar, header, raw_name, None, &xattrs, data)?;
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(path).map_err(read_err)?;
            let header = self.header(&meta, EntryType::Symlink);
            self.append(
                tar,
                header,
                raw_name,
                Some(target.as_os_str().as_bytes()),
                &xattrs,
                io::empty(),
            )?;
        } else if file_type.is_char_device() || file_type.is_block_device() || file_type.is_fifo() {
            let kind = if file_type.is_char_device() {
                EntryType::Char
            } else if file_type.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            let mut header = self.header(&meta, kind);
            if kind != EntryType::Fifo {
                let rdev = meta.rdev();
                header
                    .set_device_major(libc::major(rdev))
                    .map_err(LayerError::Write)?;
                header
                    .set_device_minor(libc::minor(rdev))
                    .map_err(LayerError::Write)?;
            }
            self.append(tar, header, raw_name, None, &xattrs, io::empty())?;
        }
        // Sockets are not part of a layer (as in Docker).
        Ok(())
    }

    fn header(&self, meta: &std::fs::Metadata, kind: EntryType) -> Header {
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let mtime = match self.opts.mtime_clamp {
            Some(clamp) if mtime > clamp => clamp,
            _ => mtime,
        };
        header.set_mtime(mtime);
        header.set_size(0);
        header
    }

    /// Appends one entry, preceded by a PAX header when the name, link
    /// target or ids do not fit USTAR or when there are xattrs.
    fn append<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        mut header: Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data: impl io::Read,
    ) -> Result<(), LayerError> {
        let mut pax = Vec::new();
        if !fits_ustar_path(name) || set_path_bytes(&mut header, name).is_err() {
            pax_record(&mut pax, b"path", name);
            set_path_bytes(&mut header, &truncate_name(name)).map_err(LayerError::Write)?;
        }
        if let Some(link) = link {
            if link.len() > 100 {
                pax_record(&mut pax, b"linkpath", link);
                header
                    .set_link_name_literal(&link[..100])
                    .map_err(LayerError::Write)?;
            } else {
                header
                    .set_link_name_literal(link)
                    .map_err(LayerError::Write)?;
            }
        }
        for (key, id) in [
            (b"uid".as_slice(), header.uid().unwrap_or(0)),
            (b"gid".as_slice(), header.gid().unwrap_or(0)),
        ] {
            // USTAR's 7 octal digits.
            if id > 0o7777777 {
                pax_record(&mut pax, key, id.to_string().as_bytes());
            }
        }
        let mut sorted: Vec<_> = xattrs.iter().collect();
        sorted.sort();
        for (key, value) in sorted {
            let mut record_key = b"SCHILY.xattr.".to_vec();
            record_key.extend_from_slice(key);
            pax_record(&mut pax, &record_key, value);
        }
        if !pax.is_empty() {
            let mut pax_header = Header::new_ustar();
            pax_header.set_entry_type(EntryType::XHeader);
            let mut pax_name = b"PaxHeaders.0/".to_vec();
            pax_name.extend_from_slice(base_name(name));
            set_path_bytes(&mut pax_header, &truncate_name(&pax_name))
                .map_err(LayerError::Write)?;
            pax_header.set_mode(0o644);
            pax_header.set_mtime(header.mtime().unwrap_or(0));
            pax_header.set_size(pax.len() as u64);
            pax_header.set_cksum();
            tar.append(&pax_header, pax.as_slice())
                .map_err(LayerError::Write)?;
        }
        header.set_cksum();
        tar.append(&header, data).map_err(LayerError::Write)?;
        self.entries += 1;
        Ok(())
    }
}

fn base_name(name: &[u8]) -> &[u8] {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(pos) => &trimmed[pos + 1..],
        None => trimmed,
    }
}

/// `dir/name` -> `dir/<prefix>name`.
fn with_base_prefix(name: &[u8], prefix: &str) -> Vec<u8> {
    let base = base_name(name);
    let mut out = name[..name.len() - base.len()].to_vec();
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(base);
    out
}

/// Whether `name` can be stored in USTAR's name (100) + prefix (155).
fn fits_ustar_path(name: &[u8]) -> bool {
    if name.len() <= 100 {
        return true;
    }
    name.len() <= 256
        && name
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0)
}

/// Sets the header path from raw bytes, splitting into USTAR's prefix.
fn set_path_bytes(header: &mut Header, name: &[u8]) -> io::Result<()> {
    let Some(ustar) = header.as_ustar_mut() else {
        return Err(io::Error::other("not a ustar header"));
    };
    let (prefix, rest) = if name.len() <= 100 {
        (&b""[..], name)
    } else {
        let split = name
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'/' && i > 0 && i <= 155 && name.len() - i - 1 <= 100)
            .map(|(i, _)| i)
            .next()
            .ok_or_else(|| io::Error::other("name too long for ustar"))?;
        (&name[..split], &name[split + 1..])
    };
    ustar.name = [0; 100];
    ustar.name[..rest.len()].copy_from_slice(rest);
    ustar.prefix = [0; 155];
    ustar.prefix[..prefix.len()].copy_from_slice(prefix);
    Ok(())
}

/// A USTAR-sized stand-in for a name carried in a PAX record.
fn truncate_name(name: &[u8]) -> Vec<u8> {
    name[..name.len().min(100)].to_vec()
}

/// Appends a PAX record: `"<len> <key>=<value>\n"`, where len counts itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// How many entries [`TarWriter::walk`] reads ahead of the one it writes
/// (each a file open at most).
const BATCH: usize = 128;

/// What an entry of the upperdir is, read ahead of writing it: its
/// metadata, its xattrs (none for a whiteout) and, for a regular file, the
/// file opened for reading.
struct Found {
    meta: std::fs::Metadata,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    file: Option<File>,
}

fn find(path: &Path) -> io::Result<Found> {
    let meta = std::fs::symlink_metadata(path)?;
    if is_whiteout(&meta) {
        return Ok(Found {
            meta,
            xattrs: Vec::new(),
            file: None,
        });
    }
    let xattrs = read_xattrs(path)?;
    let file = if meta.file_type().is_file() {
        Some(
            File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)?,
        )
    } else {
        None
    };
    Ok(Found { meta, xattrs, file })
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_overlay_xattr(key: &[u8]) -> bool {
    key.starts_with(b"trusted.overlay.") || key.starts_with(b"user.overlay.")
}

fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(err) if err.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut out = Vec::new();
    for name in names {
        if let Some(value) = xattr::get(path, &name)? {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let cases: &[(&[u8], &[u8], &str)] = &[
            (b"path", b"a", "9 path=a\n"),
            (b"uid", b"12345678", "16 uid=12345678\n"),
            (b"k", &[b'x'; 93], ""),
        ];
        for (key, value, expected) in cases {
            let mut out = Vec::new();
            pax_record(&mut out, key, value);
            let text = String::from_utf8(out.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "case {key:?}");
            if !expected.is_empty() {
                assert_eq!(text, *expected, "case {key:?}");
            }
        }
    }

    #[test]
    fn whiteout_names() {
        let cases = [
            ("a", ".wh.a"),
            ("dir/a", "dir/.wh.a"),
            ("x/y/z", "x/y/.wh.z"),
        ];
        for (input, expected) in cases {
            let got = with_base_prefix(input.as_bytes(), WHITEOUT_PREFIX);
            assert_eq!(got, expected.as_bytes(), "case {input}");
        }
    }

    #[test]
    fn ustar_paths() {
        let long_dir = "d".repeat(120);
        let cases = [
            ("short".to_string(), true),
            (format!("{long_dir}/file"), true),
            ("x".repeat(101), false),
            (format!("{}/{}", "a".repeat(10), "b".repeat(101)), false),
        ];
        for (name, fits) in cases {
            assert_eq!(fits_ustar_path(name.as_bytes()), fits, "case {name}");
        }
    }
}
