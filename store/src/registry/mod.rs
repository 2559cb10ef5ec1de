//! The distribution API client: pull and push over HTTP(S), with Docker's
//! authentication flows. Blobs stream straight into the store's verified
//! writer ([`crate::blob`]); nothing here holds a whole layer in memory.
//!
//! Shape:
//! - [`credentials`]: what to authenticate with, per registry host
//!   (`~/.docker/config.json`, credential helpers). Secrets never reach
//!   `Debug`, `Display`, errors or logs.
//! - [`settings`]: per-host transport settings (plain HTTP, extra CAs,
//!   mirrors), from hoist's config and `/etc/docker/daemon.json`.

pub mod credentials;
pub mod docker_config;
pub mod settings;

pub use credentials::{Credential, CredentialError, CredentialSource, StaticCredentials};
pub use docker_config::DockerConfig;
pub use settings::{HostSettings, RegistrySettings, SettingsError, SettingsFiles};
