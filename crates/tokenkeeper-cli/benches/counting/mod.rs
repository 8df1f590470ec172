//! What the memory benches share: the global allocator that counts every allocation (each
//! bench is a binary of its own for it), the live heap it reads, and how a run is started.

use std::alloc::System;
use std::future::Future;

use anyhow::Context as _;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes allocated and not yet freed, process-wide. (`stats_alloc` already adds a
/// realloc's growth to `bytes_allocated` and its shrinking to `bytes_deallocated`;
/// `bytes_reallocated` is the same change again, not to be added.)
pub fn live_bytes() -> i64 {
    let stats = ALLOCATOR.stats();
    let signed = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
    signed(stats.bytes_allocated) - signed(stats.bytes_deallocated)
}

/// How the bench was asked to run: `--quick` (a small smoke measurement) or in full, and the
/// command that reproduces it.
pub struct Run {
    pub quick: bool,
    pub command: String,
}

impl Run {
    /// From the arguments `cargo bench` passes (`--bench`, then perhaps a filter or `--quick`).
    pub fn from_args(bench: &str) -> Self {
        let quick = std::env::args().any(|arg| arg == "--quick");
        let mut command = format!("cargo bench -p tokenkeeper-cli --bench {bench}");
        if quick {
            command.push_str(" -- --quick");
        }
        Self { quick, command }
    }
}

/// Runs `measurement` on one thread: nothing allocates behind its back while live bytes are
/// read (a client and a server in it take turns).
pub fn on_one_thread<T>(measurement: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?
        .block_on(measurement)
}
