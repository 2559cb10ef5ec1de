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
//! - [`client`]: connections per host, retries with backoff, redirects
//!   followed without credentials; [`auth`]: challenges and the token flow.
//! - [`manifest`]: media types, size limits, platform choice.
//! - [`pull`] and [`push`]: the transfers, reported through
//!   [`TransferProgress`].

pub mod artifact;
pub mod auth;
pub mod client;
pub mod credentials;
pub mod docker_config;
mod error;
mod login;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod settings;

pub use artifact::RegistryBlobs;
pub use client::{Client, RetryPolicy};
pub use credentials::{Credential, CredentialError, CredentialSource, StaticCredentials};
pub use docker_config::DockerConfig;
pub use error::RegistryError;
pub use manifest::Platform;
pub use progress::{NoProgress, TransferProgress};
pub use pull::{PullOptions, Pulled};
pub use push::{PushOptions, Pushed};
pub use settings::{HostSettings, RegistrySettings, SettingsError, SettingsFiles};
