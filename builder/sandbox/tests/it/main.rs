//! hoist-sandbox's integration tests: one binary, one module per area.

mod sandbox;
mod security;
