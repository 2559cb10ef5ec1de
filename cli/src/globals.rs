//! Options shared by every verb.

use std::path::PathBuf;

use anyhow::Context;
use hoist_store::Store;

#[derive(Debug, clap::Args)]
pub struct Globals {
    /// The store's root directory (default: /var/lib/hoist for root,
    /// $XDG_DATA_HOME/hoist otherwise)
    #[arg(long, global = true, env = "HOIST_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}

impl Globals {
    /// The store root: `--root`, else `$HOIST_ROOT`, else the default for
    /// this user.
    pub fn store_root(&self) -> anyhow::Result<PathBuf> {
        match self.root.as_ref().filter(|r| !r.as_os_str().is_empty()) {
            Some(root) => Ok(root.clone()),
            None => Ok(hoist_store::default_root()?),
        }
    }

    /// Opens (creating if needed) the store at [`Globals::store_root`].
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let root = self.store_root()?;
        Store::open(&root).with_context(|| format!("cannot open the store at {}", root.display()))
    }
}
