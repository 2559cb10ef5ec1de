//! hoist-builder: the only crate that knows both the parser and the store.
//! It plans a Dockerfile's stages, runs RUN steps in namespaced sandboxes,
//! and commits overlay diffs as layers.

pub mod context;
pub mod copy;
pub mod dockerignore;
pub mod layer;
pub mod sandbox;
pub mod user;
