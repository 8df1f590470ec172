//! Heap bytes per idle session of a `Sessions` collection with 100,000 keys, and after
//! eviction; the idle collection's CPU: `cargo bench -p tokenkeeper-cli --bench keyed_memory`.
//!
//! A binary of its own because its global allocator counts every allocation: the figures go to
//! `target/tokenkeeper-bench/keyed-memory.json`, which `tokenkeeper bench` renders as
//! BENCHMARKS.md's section 7; the section is printed here too. `--quick` runs a small smoke
//! measurement.

mod counting;

use tokenkeeper_cli::bench::{keyed_memory, markdown};

fn main() -> anyhow::Result<()> {
    let run = counting::Run::from_args("keyed_memory");
    let plan = if run.quick {
        keyed_memory::Plan::quick()
    } else {
        keyed_memory::Plan::full()
    };
    let figures = counting::on_one_thread(keyed_memory::measure(
        &plan,
        counting::live_bytes,
        run.command,
    ))?;
    let mut text = String::new();
    markdown::keyed_memory(&mut text, Some(&figures));
    print!("{text}");
    if !run.quick {
        let path = keyed_memory::results_path();
        keyed_memory::write(&path, &figures)?;
        println!("written to {}", path.display());
    }
    Ok(())
}
