//! hoist-store's integration tests: one binary, one module per area.

// Helpers outside #[test] functions panic on failure too: that is the point.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod archive;
mod compressed;
mod extract;

mod blobs;
mod common;
mod concurrency;
mod crash;
mod direct;
mod gc;
mod images;
mod layout;
mod unsynced;
