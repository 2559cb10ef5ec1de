//! End-to-end tests of the `hoist` binary: real builds in real sandboxes on
//! a busybox base made locally, checked with hoist's own verbs and with
//! independent tools (skopeo, umoci).

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

mod breakout;
mod build;
mod cache;
mod common;
mod docker;
mod durability;
mod environment;
mod hostile;
mod inputs;
mod issue10;
mod native;
mod parallel;
mod perf;
mod realworld;
mod registry;
mod reuse;
mod rootless;
mod run;
