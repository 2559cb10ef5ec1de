//! Options shared by every verb.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use hoist_store::Store;
use hoist_store::registry::{
    Client, CredentialSource, DockerConfig, RegistrySettings, SettingsFiles,
};

#[derive(Debug, clap::Args)]
pub struct Globals {
    /// The store's root directory (default: /var/lib/hoist for root,
    /// $XDG_DATA_HOME/hoist otherwise)
    #[arg(long, global = true, env = "HOIST_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Let a registry be reached over plain HTTP or with an unverified
    /// certificate (a HOST[:PORT] or a CIDR); loopback hosts always are
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

impl Globals {
    /// The store root: `--root`, else `$HOIST_ROOT`, else the default for
    /// this user.
    /// Always absolute: overlay options, the sandbox and a re-executed
    /// copy of hoist all need the same, absolute, path.
    pub fn store_root(&self) -> anyhow::Result<PathBuf> {
        match self.root.as_ref().filter(|r| !r.as_os_str().is_empty()) {
            Some(root) => absolute(root),
            None => Ok(hoist_store::default_root()?),
        }
    }

    /// Opens (creating if needed) the store at [`Globals::store_root`],
    /// warning about the images a machine crash cost.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let root = self.store_root()?;
        let store = Store::open(&root)
            .with_context(|| format!("cannot open the store at {}", root.display()))?;
        for image in store.lost_in_crash() {
            eprintln!(
                "hoist: {image} was lost in a crash before its layers reached the disk; \
                 build it again"
            );
        }
        if let Some(err) = store.unfinished_recovery() {
            eprintln!(
                "hoist: warning: cannot finish checking the blobs a machine crash may have cut \
                 short ({err}); the next command tries again"
            );
        }
        Ok(store)
    }

    /// Per-host registry settings: daemon.json, certs.d, hoist's config
    /// files, then `--insecure-registry`.
    pub fn registry_settings(&self) -> anyhow::Result<RegistrySettings> {
        let mut settings = RegistrySettings::load(&SettingsFiles::standard())
            .context("reading registry settings")?;
        for host in &self.insecure_registries {
            settings.allow_insecure(host)?;
        }
        Ok(settings)
    }

    /// Registry credentials from Docker's config.json (`$DOCKER_CONFIG`
    /// or `~/.docker`), its credential helpers included.
    pub fn credentials(&self) -> anyhow::Result<Arc<dyn CredentialSource>> {
        Ok(Arc::new(DockerConfig::from_env()?))
    }

    /// A registry client with [`Globals::credentials`] and
    /// [`Globals::registry_settings`].
    pub fn registry_client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(self.credentials()?, self.registry_settings()?))
    }
}

/// A path option made absolute against the current directory, at the edge,
/// so nothing further in needs to care (`-` for stdin/stdout is kept).
/// Symlinks are not resolved and the path need not exist yet.
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path == Path::new("-") {
        return Ok(path.to_owned());
    }
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}
