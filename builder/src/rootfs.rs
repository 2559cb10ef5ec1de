//! A stage's root filesystem as a stack of layers, each served by a
//! snapshot (one extracted layer diff in overlay format, keyed by chain ID)
//! so that a stack mounts as overlay lowerdirs without copying anything.

use std::path::{Path, PathBuf};

use hoist_store::digest::{ChainId, DiffId};
use hoist_store::snapshot::{commit_snapshot, ensure_snapshot, snapshot_options};
use hoist_store::{ExpectedBlob, Layer, Store};
use oci_spec::image::Descriptor;

use crate::error::StepError;
use crate::layer::{Compression, LayerOptions, write_layer, write_layer_tar};
use crate::native::{NativeRoot, Snapshotter};
use hoist_sandbox::{MountGuard, mount_overlay};

/// The layers of a stage so far, bottom first, with their chain IDs.
#[derive(Clone, Debug, Default)]
pub struct LayerStack {
    layers: Vec<Layer>,
    chain: Vec<ChainId>,
}

impl LayerStack {
    pub fn from_layers(layers: Vec<Layer>) -> Self {
        let diff_ids: Vec<_> = layers.iter().map(|l| l.diff_id.clone()).collect();
        Self {
            chain: ChainId::chain(&diff_ids),
            layers,
        }
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    pub fn descriptors(&self) -> Vec<Descriptor> {
        self.layers.iter().map(|l| l.descriptor.clone()).collect()
    }

    /// The chain ID of the whole stack; `None` for an empty filesystem.
    pub fn top(&self) -> Option<&ChainId> {
        self.chain.last()
    }

    pub fn push(&mut self, layer: Layer) {
        let chain = ChainId::child(self.chain.last(), &layer.diff_id);
        self.chain.push(chain);
        self.layers.push(layer);
    }

    /// Makes sure every layer has its snapshot (extracting the missing ones
    /// from their blobs) and returns the snapshot directories top-most
    /// first, as overlay's `lowerdir` wants them.
    pub fn lowerdirs(&self, store: &Store) -> Result<Vec<PathBuf>, StepError> {
        let mut dirs = Vec::with_capacity(self.layers.len());
        let options = snapshot_options();
        for (layer, chain) in self.layers.iter().zip(&self.chain) {
            dirs.push(ensure_snapshot(store, chain, layer, &options)?);
        }
        dirs.reverse();
        Ok(dirs)
    }
}

/// A fresh upperdir and overlay workdir in the store's temp space (the same
/// filesystem as the snapshots, so the upperdir can be renamed into one).
pub struct Scratch {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub mountpoint: PathBuf,
    /// How [`Scratch::mount_merged`] and RUN make the step's root.
    pub snapshotter: Snapshotter,
    root: PathBuf,
    /// The store's trash, where [`Drop`] moves what is left.
    trash: PathBuf,
}

impl Scratch {
    pub fn new(store: &Store) -> Result<Self, StepError> {
        let root = store.temp_path("step");
        let scratch = Self {
            upper: root.join("upper"),
            work: root.join("work"),
            mountpoint: root.join("merged"),
            snapshotter: Snapshotter::Overlayfs,
            root,
            trash: store.trash_dir(),
        };
        for dir in [
            &scratch.root,
            &scratch.upper,
            &scratch.work,
            &scratch.mountpoint,
        ] {
            fs_err::create_dir(dir).map_err(StepError::io("creating step directories"))?;
        }
        // The upperdir becomes the root of the layer; Docker roots are 0755.
        set_mode(&scratch.upper, 0o755)?;
        Ok(scratch)
    }

    /// The merged view of `lowerdirs` (top first) plus this step's
    /// upperdir, for the builder to write into: an overlay mounted at
    /// [`Scratch::mountpoint`], or with the native snapshotter a copied
    /// root whose changes go to the upperdir at [`Merged::unmount`].
    pub fn mount_merged(&self, lowerdirs: &[PathBuf]) -> Result<Merged, StepError> {
        match self.snapshotter {
            Snapshotter::Overlayfs => Ok(Merged::Overlay(mount_overlay(
                lowerdirs,
                &self.upper,
                &self.work,
                &self.mountpoint,
            )?)),
            Snapshotter::Native => Ok(Merged::Native {
                root: self.native_root(lowerdirs)?,
                upper: self.upper.clone(),
            }),
        }
    }

    /// A root directory filled from `lowerdirs` (top first), for the
    /// native snapshotter.
    pub fn native_root(&self, lowerdirs: &[PathBuf]) -> Result<NativeRoot, StepError> {
        let dir = self.side_dir("rootfs")?;
        set_mode(&dir, 0o755)?;
        let bottom_first: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
        NativeRoot::fill(&dir, &bottom_first)
    }

    /// A directory of the step's own beside the upperdir (for files the
    /// step mounts into the sandbox); removed with the scratch space.
    pub fn side_dir(&self, name: &str) -> Result<PathBuf, StepError> {
        let dir = self.root.join(name);
        fs_err::create_dir_all(&dir).map_err(StepError::io("creating a step directory"))?;
        Ok(dir)
    }

    /// An empty directory to stand in as the only lowerdir of `FROM scratch`
    /// (overlayfs needs at least one).
    pub fn empty_lower(&self) -> Result<PathBuf, StepError> {
        let dir = self.root.join("empty");
        fs_err::create_dir_all(&dir).map_err(StepError::io("creating an empty lowerdir"))?;
        set_mode(&dir, 0o755)?;
        Ok(dir)
    }
}

/// A step's writable root: see [`Scratch::mount_merged`].
pub enum Merged {
    Overlay(MountGuard),
    Native { root: NativeRoot, upper: PathBuf },
}

impl Merged {
    pub fn target(&self) -> &Path {
        match self {
            Merged::Overlay(guard) => guard.target(),
            Merged::Native { root, .. } => root.path(),
        }
    }

    /// Unmounts the overlay, or moves the native root's changes into the
    /// upperdir; either way the upperdir then holds the step's diff.
    pub fn unmount(self) -> Result<(), StepError> {
        match self {
            Merged::Overlay(guard) => Ok(guard.unmount()?),
            Merged::Native { root, upper } => root.diff_into(&upper),
        }
    }
}

impl Drop for Scratch {
    /// The upperdir is gone when it became a snapshot; the rest (the
    /// overlay's workdir, the mount point, a failed step's upperdir) goes
    /// to the store's trash in one rename, deleted off the critical path
    /// ([`hoist_store::trash`]): removing the workdir's directories
    /// cost a RUN step several milliseconds of journal waits.
    fn drop(&mut self) {
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let (Some(session), Some(step)) = (self.root.parent().and_then(name), name(&self.root))
        else {
            let _ = std::fs::remove_dir_all(&self.root);
            return;
        };
        let _ = hoist_store::trash::move_in(&self.trash, &self.root, &format!("{session}-{step}"));
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(StepError::io("setting a directory's mode"))
}

/// What committing an upperdir produced.
#[allow(clippy::large_enum_variant)] // short-lived, never stored in bulk
pub enum Committed {
    /// The diff was empty: no layer, only an `empty_layer` history entry.
    Empty,
    Layer(Layer),
}

/// Turns an upperdir into a layer blob (diff_id and digest in one pass),
/// then keeps the upperdir itself as that layer's snapshot. An uncompressed
/// layer (the default) is written straight into the blob writer, whose one
/// hash gives both.
///
/// The blob is committed without waiting for the disk
/// ([`hoist_store::BlobWriter::commit_unsynced`]): the build returns while
/// the kernel writes the layer back, and a machine crash in the next 30 s
/// or so costs the layer (and the tags and cache entries that need it), a
/// rebuild rather than a corrupt store.
pub fn commit_upper(
    store: &Store,
    stack: &mut LayerStack,
    upper: &Path,
    compression: Compression,
    options: &LayerOptions,
) -> Result<Committed, StepError> {
    // No early write-back: blocks allocated now would make ext4's next
    // journal commit (the records' fsyncs) wait for the whole layer. Direct
    // writes leave nothing for it to wait for, and keep the layer, a copy
    // of the upperdir that nothing reads during the build, out of the page
    // cache.
    let mut writer = store.blob_writer()?;
    writer.write_direct();
    let layer = if compression == Compression::Uncompressed {
        let (_, empty) = write_layer_tar(upper, &mut writer, options)?;
        if empty {
            return Ok(Committed::Empty);
        }
        let (digest, size) = writer.commit_unsynced(None)?;
        Layer {
            diff_id: DiffId::new(&digest),
            descriptor: Descriptor::new(compression.media_type(), size, digest),
        }
    } else {
        let info = write_layer(upper, &mut writer, compression, options)?;
        if info.empty {
            return Ok(Committed::Empty);
        }
        let (digest, size) = writer.commit_unsynced(Some(&ExpectedBlob::from(&info.digest)))?;
        Layer {
            descriptor: Descriptor::new(info.media_type, size, digest),
            diff_id: info.diff_id,
        }
    };
    let chain = ChainId::child(stack.top(), &layer.diff_id);
    commit_snapshot(store, &chain, upper)?;
    stack.push(layer.clone());
    Ok(Committed::Layer(layer))
}
