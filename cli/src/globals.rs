//! Options shared by every verb.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Globals {
    /// The store's root directory (default: /var/lib/hoist for root,
    /// $XDG_DATA_HOME/hoist otherwise)
    #[arg(long, global = true, env = "HOIST_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}
