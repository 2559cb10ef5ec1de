//! hoist-parser: turns Dockerfile text into typed instructions and a graph
//! of stages. Pure: `&str` in, values out; no filesystem, no processes.
pub mod expand;
