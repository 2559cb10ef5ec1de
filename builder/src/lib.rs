//! hoist-builder: the only crate that knows both the parser and the store.
//! It plans a Dockerfile's stages, runs RUN steps in namespaced sandboxes,
//! and commits overlay diffs as layers.

#![forbid(unsafe_code)]

pub mod args;
pub mod build;
pub mod cache;
pub mod cache_export;
mod cache_mount;
pub mod checks;
pub mod config;
pub mod context;
pub mod context_memo;
pub mod copy;
mod copy_step;
pub mod dockerignore;
pub mod error;
mod http_source;
pub mod layer;
pub mod native;
pub mod progress;
mod pull;
pub mod rootfs;
mod run_step;
mod schedule;
pub mod secrets;
mod stage;
pub mod user;

pub use build::{BuildRequest, Builder, Built, SandboxOptions};
pub use error::{BuildError, StepError};
pub mod run_image;
