//! OCI whiteouts (<https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts>):
//! `.wh.NAME` and the opaque marker `.wh..wh..opq`, turned into overlayfs
//! form or applied by deleting.

use std::io::{self, Read};
use std::os::fd::AsFd;

use rustix::fs::{FileType, Mode};

use super::apply::{Applier, join, timespec};
use super::{ExtractError, WhiteoutMode};
use crate::inroot::ops::{self, os};

pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
impl Applier<'_> {
    pub(super) fn apply_whiteout<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        raw: &[u8],
        parent_parts: &[&[u8]],
        name: &[u8],
    ) -> Result<(), ExtractError> {
        let invalid = |reason: &str| ExtractError::Whiteout {
            path: String::from_utf8_lossy(raw).into_owned(),
            reason: reason.into(),
        };
        if entry.size() != 0 {
            return Err(invalid("a whiteout has no content"));
        }
        if entry.header().entry_type().is_dir() {
            return Err(invalid("a whiteout cannot be a directory"));
        }
        self.stats.whiteouts += 1;
        if name == OPAQUE_MARKER {
            let parent = self.open_dir(parent_parts, true, raw)?;
            return match self.opts.whiteouts {
                WhiteoutMode::Overlay => {
                    let key = self.overlay_xattr("opaque");
                    match ops::set_xattr_at(&parent, os(b"."), key.as_ref(), b"y") {
                        Err(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP) => {
                            self.oci_whiteout(&parent, OPAQUE_MARKER, entry, raw)
                        }
                        other => other.map_err(|err| self.io_err(raw, err)),
                    }
                }
                WhiteoutMode::Apply => {
                    let dir_path = join(parent_parts);
                    let prefix = if parent_parts.is_empty() {
                        Vec::new()
                    } else {
                        dir_path.clone()
                    };
                    let children = self.list_dir(&parent, raw)?;
                    for child in children {
                        let mut child_path = prefix.clone();
                        if !child_path.is_empty() {
                            child_path.push(b'/');
                        }
                        child_path.extend_from_slice(&child);
                        if !self.unpacked.contains(&child_path) {
                            self.remove_all(&parent, &child, raw)?;
                        }
                    }
                    Ok(())
                }
            };
        }
        if name.starts_with(b".wh..wh.") {
            // Other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): ignored, as Docker does.
            return Ok(());
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(invalid("whiteout names no file"));
        }
        let parent = match self.opts.whiteouts {
            WhiteoutMode::Overlay => self.open_dir(parent_parts, true, raw)?,
            WhiteoutMode::Apply => match self.open_dir(parent_parts, false, raw) {
                Ok(parent) => parent,
                // Nothing there to delete.
                Err(ExtractError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    return Ok(());
                }
                Err(err) => return Err(err),
            },
        };
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                self.remove_existing(&parent, target, raw)?;
                match rustix::fs::mknodat(
                    &parent,
                    os(target),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                ) {
                    // A filesystem that cannot hold overlay's whiteout (an
                    // overlay itself: the native snapshotter's case) keeps
                    // the OCI form, which the native snapshotter reads.
                    Err(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP) => {
                        return self.oci_whiteout(&parent, name, entry, raw);
                    }
                    other => other.map_err(|err| self.io_err(raw, err))?,
                }
                let mtime = timespec(entry.header().mtime().map_err(ExtractError::Read)?);
                self.utimes_at(parent.as_fd(), target, mtime, raw)
            }
            WhiteoutMode::Apply => self.remove_all(&parent, target, raw),
        }
    }

    /// `.wh.NAME` or the opaque marker as an empty file of mode 0 owned by
    /// root, with the entry's mtime.
    fn oci_whiteout<R: Read>(
        &self,
        parent: &rustix::fd::OwnedFd,
        name: &[u8],
        entry: &tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<(), ExtractError> {
        self.remove_existing(parent, name, raw)?;
        let file = ops::create_file(parent, os(name)).map_err(|err| self.io_err(raw, err))?;
        rustix::fs::fchmod(&file, Mode::empty()).map_err(|err| self.io_err(raw, err))?;
        let mtime = timespec(entry.header().mtime().map_err(ExtractError::Read)?);
        self.utimes_at(parent.as_fd(), name, mtime, raw)
    }

    fn overlay_xattr(&self, what: &str) -> String {
        let prefix = if self.opts.userxattr {
            "user"
        } else {
            "trusted"
        };
        format!("{prefix}.overlay.{what}")
    }
}
