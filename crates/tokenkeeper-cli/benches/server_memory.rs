//! The reference server's heap per login and per refresh, pruning off vs on:
//! `cargo bench -p tokenkeeper-cli --bench server_memory`.
//!
//! A binary of its own because its global allocator counts every allocation (slowing all of
//! them a little): the figures go to `target/tokenkeeper-bench/server-memory.json`, which
//! `tokenkeeper bench` renders as BENCHMARKS.md's section 6; the section is printed here too.
//! `--quick` runs a small smoke measurement.

use std::alloc::System;

use anyhow::Context as _;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokenkeeper_cli::bench::{markdown, server_memory};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes allocated and not yet freed, process-wide. (`stats_alloc` already adds a
/// realloc's growth to `bytes_allocated` and its shrinking to `bytes_deallocated`;
/// `bytes_reallocated` is the same change again, not to be added.)
fn live_bytes() -> i64 {
    let stats = ALLOCATOR.stats();
    let signed = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
    signed(stats.bytes_allocated) - signed(stats.bytes_deallocated)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter or `--quick` may follow.
    let quick = std::env::args().any(|arg| arg == "--quick");
    let plan = if quick {
        server_memory::Plan::quick()
    } else {
        server_memory::Plan::full()
    };
    let command = if quick {
        "cargo bench -p tokenkeeper-cli --bench server_memory -- --quick"
    } else {
        "cargo bench -p tokenkeeper-cli --bench server_memory"
    };
    // One thread: the client and the server take turns, nothing allocates behind our back
    // while live bytes are read.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let figures = runtime.block_on(server_memory::measure(&plan, live_bytes, command.into()))?;
    let mut text = String::new();
    markdown::server_memory(&mut text, Some(&figures));
    print!("{text}");
    if !quick {
        let path = server_memory::results_path();
        server_memory::write(&path, &figures)?;
        println!("written to {}", path.display());
    }
    Ok(())
}
