//! `--output`: where a build's result goes besides the store
//! (`type=docker|oci,dest=FILE`, `type=local,dest=DIR`, `type=tar,dest=FILE`),
//! in buildx's `type=...,dest=...` syntax.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hoist_store::archive::SaveOptions;
use hoist_store::extract::{ApplyOptions, WhiteoutMode, apply_layer};
use hoist_store::{Compression, Image, Store};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `docker load` archive.
    Docker,
    /// An OCI image layout in a tar.
    Oci,
    /// The image's root filesystem in a directory.
    Local,
    /// The image's root filesystem as a tar.
    Tar,
    /// Pushed to a registry (`type=registry[,name=REF]`; the `-t` tags
    /// when no name is given). The build command pushes it.
    Registry,
}

#[derive(Clone, Debug)]
pub struct Output {
    pub kind: Kind,
    /// `-` means stdout (tar-shaped outputs only).
    pub dest: PathBuf,
    /// `name=`: where a registry output goes.
    pub names: Vec<String>,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Docker => "docker",
            Kind::Oci => "oci",
            Kind::Local => "local",
            Kind::Tar => "tar",
            Kind::Registry => return write!(f, "registry {}", self.names.join(",")),
        };
        write!(f, "{kind} {}", self.dest.display())
    }
}

impl Output {
    /// Parses `type=KIND,dest=PATH`; a bare path means `type=local,dest=PATH`
    /// as in buildx.
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        if !spec.contains('=') {
            return Ok(Self {
                kind: if spec == "-" { Kind::Tar } else { Kind::Local },
                dest: crate::globals::absolute(Path::new(spec))?,
                names: Vec::new(),
            });
        }
        let (mut kind, mut dest) = (None, None);
        let mut names = Vec::new();
        for field in spec.split(',') {
            let (key, value) = field.split_once('=').with_context(|| {
                format!("invalid --output {spec:?}: {field:?} is not KEY=VALUE")
            })?;
            match key {
                "type" => {
                    kind = Some(match value {
                        "docker" => Kind::Docker,
                        "oci" => Kind::Oci,
                        "local" => Kind::Local,
                        "tar" => Kind::Tar,
                        "registry" => Kind::Registry,
                        other => bail!(
                            "invalid --output {spec:?}: unsupported type {other:?} \
                             (supported: docker, oci, local, tar, registry)"
                        ),
                    });
                }
                "dest" => dest = Some(PathBuf::from(value)),
                "name" => names.push(value.to_owned()),
                // type=image,push=true is buildx's long form of type=registry.
                "push" if value == "true" => {}
                other => bail!("invalid --output {spec:?}: unknown key {other:?}"),
            }
        }
        let kind = kind.with_context(|| format!("invalid --output {spec:?}: type is required"))?;
        if kind == Kind::Registry {
            for name in &names {
                hoist_store::Reference::parse(name)
                    .with_context(|| format!("invalid --output {spec:?}: name {name:?}"))?;
            }
            return Ok(Self {
                kind,
                dest: PathBuf::new(),
                names,
            });
        }
        let dest = dest.with_context(|| format!("invalid --output {spec:?}: dest is required"))?;
        if kind == Kind::Local && dest == Path::new("-") {
            bail!("invalid --output {spec:?}: type=local needs a directory, not stdout");
        }
        let dest = crate::globals::absolute(&dest)?;
        Ok(Self { kind, dest, names })
    }

    /// Writes the image; `compression` applies to the layers of an OCI
    /// archive (docker archives are always uncompressed).
    pub fn write(
        &self,
        store: &Store,
        image: &Image,
        tags: &[String],
        compression: Compression,
    ) -> anyhow::Result<()> {
        match self.kind {
            Kind::Docker | Kind::Oci => {
                let format = if self.kind == Kind::Docker {
                    hoist_store::archive::ArchiveFormat::Docker
                } else {
                    hoist_store::archive::ArchiveFormat::Oci
                };
                let names: Vec<String> = tags.to_vec();
                crate::commands::save::write_archive(
                    store,
                    &[(image.clone(), names)],
                    format,
                    &SaveOptions {
                        compression: Some(compression),
                    },
                    &self.dest,
                )
            }
            Kind::Local => {
                fs_err::create_dir_all(&self.dest)?;
                flatten_into(store, image, &self.dest)
            }
            Kind::Tar => {
                let temp = tempfile::Builder::new()
                    .prefix("rootfs-")
                    .tempdir_in(store.tmp_dir())?;
                flatten_into(store, image, temp.path())?;
                let out: Box<dyn std::io::Write> = if self.dest == Path::new("-") {
                    Box::new(std::io::stdout().lock())
                } else {
                    Box::new(fs_err::File::create(&self.dest)?)
                };
                let mut tar = tar::Builder::new(out);
                tar.follow_symlinks(false);
                tar.append_dir_all(".", temp.path())
                    .with_context(|| format!("writing {}", self.dest.display()))?;
                tar.into_inner()?.flush()?;
                Ok(())
            }
            // Pushed by the build command, which holds the registry client.
            Kind::Registry => Ok(()),
        }
    }
}

/// Applies every layer in order, whiteouts deleting what they name, into a
/// plain root filesystem.
fn flatten_into(store: &Store, image: &Image, dest: &Path) -> anyhow::Result<()> {
    let options = ApplyOptions {
        whiteouts: WhiteoutMode::Apply,
        ..ApplyOptions::default()
    };
    for layer in image.layers() {
        let reader = store.open_descriptor(&layer.descriptor)?;
        apply_layer(reader, dest, &options)
            .with_context(|| format!("extracting layer {}", layer.descriptor.digest()))?;
    }
    Ok(())
}
