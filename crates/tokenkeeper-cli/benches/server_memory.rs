//! The reference server's heap per login and per refresh, pruning off vs on:
//! `cargo bench -p tokenkeeper-cli --bench server_memory`.
//!
//! A binary of its own because its global allocator counts every allocation (slowing all of
//! them a little): the figures go to `target/tokenkeeper-bench/server-memory.json`, which
//! `tokenkeeper bench` renders as BENCHMARKS.md's section 6; the section is printed here too.
//! `--quick` runs a small smoke measurement.

mod counting;

use tokenkeeper_cli::bench::{markdown, server_memory};

fn main() -> anyhow::Result<()> {
    let run = counting::Run::from_args("server_memory");
    let plan = if run.quick {
        server_memory::Plan::quick()
    } else {
        server_memory::Plan::full()
    };
    let figures = counting::on_one_thread(server_memory::measure(
        &plan,
        counting::live_bytes,
        run.command,
    ))?;
    let mut text = String::new();
    markdown::server_memory(&mut text, Some(&figures));
    print!("{text}");
    if !run.quick {
        let path = server_memory::results_path();
        server_memory::write(&path, &figures)?;
        println!("written to {}", path.display());
    }
    Ok(())
}
