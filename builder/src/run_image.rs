//! `hoist run`: one command in a fresh sandbox of an image, with the
//! image's entrypoint, cmd, env, workdir and user, and a throwaway upperdir.
//! It shares the sandbox and the user resolution with RUN.

use std::path::PathBuf;
use std::process::ExitStatus;

use hoist_store::image_config::ImageConfig;
use hoist_store::{Image, Store};

use crate::config::{get_env, set_env};
use crate::error::StepError;
use crate::native::Snapshotter;
use crate::rootfs::{LayerStack, Scratch};
use crate::run_step::resolve_user;
use hoist_sandbox::{
    DEFAULT_PATH, EtcFiles, Mount, MountKind, Network, Rootfs, RunIo, RunSpec, Sandbox,
};

/// What `hoist run` was asked for, on top of the image's config.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Replaces the image's CMD when not empty.
    pub command: Vec<String>,
    /// Replaces the image's ENTRYPOINT when set (`--entrypoint`).
    pub entrypoint: Option<String>,
    /// `-e KEY=VALUE`, applied over the image's env.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub network: Option<Network>,
    /// `-v SRC:DST[:ro]`.
    pub volumes: Vec<(PathBuf, String, bool)>,
    pub hostname: Option<String>,
    /// `--security-opt`: seccomp and no_new_privs; Docker's by default.
    pub security: hoist_sandbox::Security,
}

/// Runs a container of `image` to completion and returns its exit status.
pub fn run_image(
    store: &Store,
    sandbox: &dyn Sandbox,
    image: &Image,
    options: &RunOptions,
    io: &mut dyn RunIo,
) -> Result<ExitStatus, StepError> {
    let config: ImageConfig =
        serde_json::from_value(image.config_json().clone()).map_err(|source| {
            StepError::ImageConfig {
                what: "image config".into(),
                source,
            }
        })?;
    let runtime = &config.config;
    let mut argv: Vec<String> = match &options.entrypoint {
        Some(entrypoint) if entrypoint.is_empty() => Vec::new(),
        Some(entrypoint) => vec![entrypoint.clone()],
        None => runtime.entrypoint.clone().unwrap_or_default(),
    };
    if options.command.is_empty() {
        // Docker drops the image's CMD when --entrypoint is given.
        if options.entrypoint.is_none() {
            argv.extend(runtime.cmd.clone().unwrap_or_default());
        }
    } else {
        argv.extend(options.command.iter().cloned());
    }
    if argv.is_empty() {
        return Err(StepError::NoCommand);
    }

    let mut env = runtime.env.clone().unwrap_or_default();
    if get_env(&env, "PATH").is_none() {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    for entry in &options.env {
        match entry.split_once('=') {
            Some((key, value)) => {
                set_env(&mut env, key, value);
            }
            // `-e KEY` takes KEY from hoist's own environment, as Docker does.
            None => {
                if let Ok(value) = std::env::var(entry) {
                    set_env(&mut env, entry, &value);
                }
            }
        }
    }
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| image.id().to_string()["sha256:".len()..][..12].to_owned());
    if get_env(&env, "HOSTNAME").is_none() {
        env.insert(1.min(env.len()), format!("HOSTNAME={hostname}"));
    }

    let stack = LayerStack::from_layers(image.layers());
    let scratch = Scratch::new(store)?;
    let mut lowerdirs = stack.lowerdirs(store)?;
    if lowerdirs.is_empty() {
        lowerdirs.push(scratch.empty_lower()?);
    }
    let user_spec = options
        .user
        .clone()
        .or_else(|| runtime.user.clone())
        .unwrap_or_default();
    // The native snapshotter's root is a copy, thrown away with the
    // scratch space. (`hoist run` has no progress to show the fallback
    // warning on; a build in the same store shows it.)
    let native = match crate::native::select(store)?.0 {
        Snapshotter::Overlayfs => None,
        Snapshotter::Native => Some(scratch.native_root(&lowerdirs)?),
    };
    let root_dirs = match &native {
        Some(root) => vec![root.path().to_owned()],
        None => lowerdirs.clone(),
    };
    let user = resolve_user(&root_dirs, &user_spec, &scratch.mountpoint, Some(&mut env))?;
    let network = options.network.unwrap_or(Network::Host);
    let rootfs = match &native {
        Some(root) => Rootfs::Directory {
            path: root.path().to_owned(),
        },
        None => Rootfs::Ephemeral {
            lowerdirs,
            read_only: false,
        },
    };
    let mut spec = RunSpec::new(rootfs, argv);
    spec.env = env.into_iter().map(Into::into).collect();
    spec.cwd = options
        .workdir
        .clone()
        .or_else(|| runtime.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    spec.user = user;
    spec.network = network;
    spec.hostname = hostname.clone();
    let mut etc = EtcFiles::generated(&hostname, network);
    etc.read_only = false;
    spec.etc = etc;
    spec.security = options.security.clone();
    spec.mounts = options
        .volumes
        .iter()
        .map(|(source, target, read_only)| Mount {
            target: target.clone(),
            kind: MountKind::Bind {
                source: source.clone(),
                read_only: *read_only,
            },
        })
        .collect();
    Ok(sandbox.run(&spec, io)?)
}
