//! Heap bytes per idle session of a `Sessions` collection with 100,000 keys, and after
//! eviction; the idle collection's CPU: `cargo bench -p tokenkeeper-cli --bench keyed_memory`.
//!
//! A binary of its own because its global allocator counts every allocation: the figures go to
//! `target/tokenkeeper-bench/keyed-memory.json`, which `tokenkeeper bench` renders as
//! BENCHMARKS.md's section 7; the section is printed here too. `--quick` runs a small smoke
//! measurement.

use std::alloc::System;

use anyhow::Context as _;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokenkeeper_cli::bench::{keyed_memory, markdown};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes allocated and not yet freed, process-wide.
fn live_bytes() -> i64 {
    let stats = ALLOCATOR.stats();
    let signed = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
    signed(stats.bytes_allocated) - signed(stats.bytes_deallocated)
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (plan, command) = if quick {
        (
            keyed_memory::Plan::quick(),
            "cargo bench -p tokenkeeper-cli --bench keyed_memory -- --quick",
        )
    } else {
        (
            keyed_memory::Plan::full(),
            "cargo bench -p tokenkeeper-cli --bench keyed_memory",
        )
    };
    // One thread: nothing allocates behind our back while live bytes are read.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let figures = runtime.block_on(keyed_memory::measure(&plan, live_bytes, command.into()))?;
    let mut text = String::new();
    markdown::keyed_memory(&mut text, Some(&figures));
    print!("{text}");
    if !quick {
        let path = keyed_memory::results_path();
        keyed_memory::write(&path, &figures)?;
        println!("written to {}", path.display());
    }
    Ok(())
}
