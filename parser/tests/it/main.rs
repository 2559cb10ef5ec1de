//! hoist-parser's integration tests: one binary, one module per area.
mod golden;
mod perf;
mod robustness;
