//! The `tokenkeeper` command's building blocks, one folder per subcommand: `demo`
//! (hand-written refresh interceptors and tokenkeeper under the same storm, side by side),
//! `serve` (the reference server on 127.0.0.1) and `bench` (the figures in BENCHMARKS.md).
//! Each owns what only it uses and imports nothing from above; what several use sits beside
//! them (`reference_client`, `metrics`, `table`), and `bench` borrows the demo's storm.
//!
//! The binary in `main.rs` only parses the command line and calls each subcommand's
//! `run(args)`, so the integration tests can drive the same code.

pub mod bench;
pub mod demo;
pub mod metrics;
pub mod reference_client;
pub mod serve;
pub mod table;
