//! The `tokenkeeper` command's building blocks: `demo` (hand-written refresh interceptors and
//! tokenkeeper under the same storm, side by side) and `bench` (the figures in BENCHMARKS.md).
//!
//! The binary in `main.rs` only parses the command line and calls in here, so the integration
//! tests can drive the same code.

pub mod baseline;
pub mod bench;
pub mod demo;
pub mod metrics;
pub mod progress;
pub mod report;
pub mod shared_store;
pub mod table;
pub mod timeline;
pub mod wire;
