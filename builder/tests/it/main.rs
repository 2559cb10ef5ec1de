//! hoist-builder's integration tests: one binary, one module per area.

mod context;
mod copy;
mod layer;
mod orchestration;
mod schedule;
