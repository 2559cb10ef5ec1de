//! hoist-sandbox's integration tests: one binary, one module per area.

mod resources;
mod sandbox;
mod security;
