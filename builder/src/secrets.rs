//! `RUN --mount=type=secret` and `type=ssh`: what `--secret` and `--ssh`
//! give a build, and how a RUN sees it.
//!
//! A secret's bytes live in memory and, for the length of one RUN, in a
//! private directory on a tmpfs (`/dev/shm`), bind-mounted read-only into
//! the sandbox. They never enter a layer, a cache key (the key holds the
//! flag's text, as BuildKit's does), the image's history, progress output
//! or an error message. `Debug` shows no content.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hoist_parser::{MountType, RunMount};
use hoist_sandbox::{Mount, MountKind};

use crate::error::StepError;

/// BuildKit's cap on a secret's size.
pub const MAX_SECRET_BYTES: usize = 500 * 1024;

/// Where secret files are staged for a RUN: a tmpfs, so they never touch
/// the store's disk.
const SECRET_TMPFS: &str = "/dev/shm";

/// A secret's content. Shown as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "{} bytes is more than the {} KiB a secret may hold",
                bytes.len(),
                MAX_SECRET_BYTES / 1024
            ));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `--secret` and `--ssh` values, by id.
#[derive(Clone, Debug, Default)]
pub struct BuildSecrets {
    pub secrets: BTreeMap<String, SecretValue>,
    /// Agent sockets, by id (`default` unless named).
    pub ssh: BTreeMap<String, PathBuf>,
}

/// The secret and ssh mounts of one RUN, staged. Dropping it removes the
/// staged secret files.
#[derive(Default)]
pub(crate) struct RunSecrets {
    pub mounts: Vec<Mount>,
    /// `env=` secrets and `SSH_AUTH_SOCK`.
    pub env: Vec<(String, String)>,
    staged: Option<tempfile::TempDir>,
}

impl RunSecrets {
    /// Stages every secret and ssh mount of a RUN. A missing secret or
    /// agent fails the step when the mount is `required`, and is left out
    /// otherwise (BuildKit's rule).
    pub fn prepare(
        mounts: &[RunMount],
        workdir: &str,
        given: &BuildSecrets,
    ) -> Result<Self, StepError> {
        let mut out = RunSecrets::default();
        let mut ssh_index = 0;
        for mount in mounts {
            match mount.kind {
                MountType::Secret => out.secret(mount, workdir, given)?,
                MountType::Ssh => {
                    out.ssh(mount, workdir, given, ssh_index)?;
                    ssh_index += 1;
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn secret(
        &mut self,
        mount: &RunMount,
        workdir: &str,
        given: &BuildSecrets,
    ) -> Result<(), StepError> {
        let id = match (&mount.id, &mount.target) {
            (Some(id), _) => id.clone(),
            (None, Some(target)) => Path::new(target)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        if id.is_empty() {
            return Err(StepError::SecretId {
                mount: mount.raw.clone(),
            });
        }
        let Some(value) = given.secrets.get(&id) else {
            if mount.required {
                return Err(StepError::SecretNotFound { id });
            }
            return Ok(());
        };
        if let Some(name) = &mount.env {
            let text =
                String::from_utf8(value.0.clone()).map_err(|source| StepError::SecretNotUtf8 {
                    id: id.clone(),
                    env: name.clone(),
                    source,
                })?;
            self.env.push((name.clone(), text));
            if mount.target.is_none() {
                return Ok(());
            }
        }
        let target = match &mount.target {
            Some(target) => crate::copy::join_workdir(workdir, target),
            None => format!("/run/secrets/{id}"),
        };
        let dir = self.staging_dir()?;
        let file = dir.join(format!("secret{}", self.mounts.len()));
        let io = StepError::io("staging a secret");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .map_err(io)?;
        out.write_all(&value.0)
            .map_err(StepError::io("staging a secret"))?;
        drop(out);
        std::os::unix::fs::chown(
            &file,
            Some(mount.uid.unwrap_or(0)),
            Some(mount.gid.unwrap_or(0)),
        )
        .map_err(StepError::io("chown of a secret"))?;
        std::fs::set_permissions(
            &file,
            std::fs::Permissions::from_mode(mount.mode.unwrap_or(0o400)),
        )
        .map_err(StepError::io("chmod of a secret"))?;
        self.mounts.push(Mount {
            target,
            kind: MountKind::Bind {
                source: file,
                read_only: true,
            },
        });
        Ok(())
    }

    fn ssh(
        &mut self,
        mount: &RunMount,
        workdir: &str,
        given: &BuildSecrets,
        index: usize,
    ) -> Result<(), StepError> {
        let id = mount.id.clone().unwrap_or_else(|| "default".to_owned());
        let Some(socket) = given.ssh.get(&id) else {
            if mount.required {
                return Err(StepError::SshNotFound { id });
            }
            return Ok(());
        };
        let target = match &mount.target {
            Some(target) => crate::copy::join_workdir(workdir, target),
            None => format!("/run/buildkit/ssh_agent.{index}"),
        };
        self.env.push(("SSH_AUTH_SOCK".to_owned(), target.clone()));
        self.mounts.push(Mount {
            target,
            kind: MountKind::Bind {
                source: socket.clone(),
                read_only: true,
            },
        });
        Ok(())
    }

    fn staging_dir(&mut self) -> Result<PathBuf, StepError> {
        if self.staged.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("hoist-secrets-")
                .tempdir_in(SECRET_TMPFS)
                .map_err(StepError::io(format!(
                    "creating a directory for secrets in {SECRET_TMPFS}"
                )))?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(StepError::io("chmod of the secrets directory"))?;
            self.staged = Some(dir);
        }
        Ok(self
            .staged
            .as_ref()
            .map(|d| d.path().to_owned())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_show_in_debug() {
        let secrets = BuildSecrets {
            secrets: [(
                "tok".to_owned(),
                SecretValue::new(b"hunter2".to_vec()).unwrap(),
            )]
            .into(),
            ssh: BTreeMap::new(),
        };
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(SecretValue::new(vec![0; MAX_SECRET_BYTES + 1]).is_err());
    }
}
