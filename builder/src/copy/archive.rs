//! ADD's in-process archive extraction: a tar, plain or compressed with
//! gzip, bzip2, xz or zstd (told apart by magic bytes, never by the name),
//! is unpacked into the destination with the same in-root discipline as
//! COPY. No binary from the image is ever run.
//!
//! hoist-store's layer extractor applies OCI whiteouts, which ADD must not
//! (a `.wh.` file in a user's archive is just a file), so this is a separate,
//! smaller extractor; both detect compression and touch the root through
//! the same `hoist_store` code (`extract::decompress`, `inroot`).

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use hoist_store::extract::decompress::{Format, MAGIC_LEN, decoder, detect, read_full};
use hoist_store::inroot::root_relative;
use hoist_store::tar_guard::TarGuard;
use rustix::fs::FileType;

use super::write::{Meta, Writer};

/// Whether `file` is a tar archive (after decompression): its first header
/// block must carry a valid checksum, BuildKit's test too. Returns its
/// compression.
pub fn archive_kind(file: &mut File) -> io::Result<Option<Format>> {
    let mut magic = [0u8; MAGIC_LEN];
    let n = read_full(file, &mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    let kind = detect(&magic[..n]);
    let mut block = [0u8; 512];
    let got = {
        let mut reader = decoder(kind, BufReader::new(&mut *file))?;
        read_full(&mut reader, &mut block).unwrap_or(0)
    };
    file.seek(SeekFrom::Start(0))?;
    Ok((got == 512 && valid_tar_header(&block)).then_some(kind))
}

fn valid_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                *b as u32
            }
        })
        .sum();
    sum == want
}

/// Extracts the archive into `dest_dir` (a path relative to the writer's
/// root, created by the caller). Entry paths are cleaned and kept inside
/// `dest_dir`; hardlink targets too.
pub fn extract(
    file: File,
    kind: Format,
    dest_dir: &Path,
    writer: &mut Writer<'_>,
) -> io::Result<()> {
    let reader = decoder(kind, BufReader::new(file))?;
    // Caps the extension headers the tar crate reads whole into memory.
    let mut archive = tar::Archive::new(TarGuard::new(reader));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header();
        let raw_path = entry.path()?.into_owned();
        let rel = root_relative(&raw_path);
        if rel.as_os_str().is_empty() {
            continue;
        }
        let dest = dest_dir.join(&rel);
        let mtime = header.mtime().unwrap_or(0) as i64;
        let meta = Meta {
            // Go's tar reads an empty numeric field as 0, and so do we.
            mode: header.mode().unwrap_or(0o644),
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            mtime: (mtime, 0),
        };
        if let Some(parent) = dest.parent() {
            writer.root.mkdir_all(parent, Some(writer.parent_owner()))?;
        }
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Directory => writer.dir(&dest, meta, true)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                writer.file(&dest, &mut entry, meta)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                writer.symlink(&dest, &target, meta)?;
            }
            tar::EntryType::Link => {
                let target: PathBuf = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                writer.hardlink(&dest, &dest_dir.join(root_relative(&target)))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major()?.unwrap_or(0);
                let minor = header.device_minor()?.unwrap_or(0);
                let rdev = rustix::fs::makedev(major, minor);
                writer.node(&dest, file_type, rdev, meta)?;
            }
            // PAX and GNU long-name records are consumed by the tar crate;
            // anything else (sockets, unknown types) is skipped like Docker.
            _ => {}
        }
    }
    Ok(())
}
