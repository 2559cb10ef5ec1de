//! hoist-parser's integration tests: one binary, one module per area.
mod golden;
mod issue10;
mod perf;
mod robustness;
