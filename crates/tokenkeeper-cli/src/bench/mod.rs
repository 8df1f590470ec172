//! `tokenkeeper bench`: the figures in BENCHMARKS.md, each measured in one run next to its
//! baseline.
//!
//! 1. [`instructions`]: instructions and allocations per request (callgrind, client process
//!    only) for bare reqwest, the empty middleware stack, a hand-written bearer middleware and
//!    tokenkeeper; [`overhead`]: their throughput, the secondary figure.
//! 2. [`burst`]: N concurrent requests meeting an expired token vs a valid one; peak memory;
//!    [`waiters`]: bytes per request waiting for a refresh.
//! 3. [`steady`]: steady load across K expiries, reactive vs proactive.
//! 4. [`criterion`]: the attach micro-benchmark, read from criterion's output.
//! 5. [`shared_store`]: P processes sharing one login through a file (or Redis) store.
//! 6. [`server_memory`]: the reference server's heap per login and per refresh, pruning off vs
//!    on, read from `cargo bench -p tokenkeeper-cli --bench server_memory`'s output.

pub mod bearer;
pub mod burst;
pub mod callgrind;
pub mod client;
pub mod contenders;
pub mod cpu;
pub mod criterion;
pub mod instructions;
pub mod keyed_memory;
pub mod machine;
pub mod markdown;
pub mod overhead;
pub mod report;
pub mod rss;
pub mod server;
pub mod server_memory;
pub mod server_process;
pub mod shared_store;
pub mod steady;
pub mod waiters;

pub use report::BenchReport;

use crate::demo::progress::Progress;
use anyhow::Context;
use clap::Args;
use shared_store::{SharedStoreBench, StoreKind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `tokenkeeper bench`: overhead, burst scaling, memory per waiting request, steady load;
/// writes BENCHMARKS.md and prints the same.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// A short smoke run for CI (under 30 s): smaller bursts, fewer rounds. Writes nothing
    /// unless --output is given.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the report (default BENCHMARKS.md for a full run).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
    /// Also measure P processes sharing one login through Redis at this URL (`redis://…`).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Only the instruction counts (callgrind): prints their section (or, with --json, the
    /// figures, which --instructions-before reads back).
    #[arg(long)]
    pub instructions_only: bool,
    /// Instruction figures of an earlier build (the JSON of `bench --instructions-only --json`),
    /// shown beside this run's.
    #[arg(long, value_name = "FILE")]
    pub instructions_before: Option<PathBuf>,
    /// What the earlier build was, for the table (e.g. a commit).
    #[arg(long, value_name = "TEXT", default_value = "before")]
    pub instructions_before_label: String,
}

/// Sizes of every part of the bench.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Instruction counts.
    pub instructions: instructions::Plan,
    /// Throughput rounds.
    pub overhead: overhead::Plan,
    /// Bursts.
    pub burst: burst::Plan,
    /// Waiting tasks for the memory figure.
    pub waiters: usize,
    /// Steady load.
    pub steady: steady::Plan,
    /// Processes sharing one login, and for how long.
    pub shared_processes: usize,
    /// How long the shared-store processes send requests.
    pub shared_duration: Duration,
}

impl Plan {
    /// The full run (about 4 minutes).
    pub fn full() -> Self {
        Self {
            instructions: instructions::Plan {
                requests: 3000,
                warm_up: 300,
                // Counts move by a few hundred instructions per request between runs (glibc's
                // allocator takes its slow path for some blocks in some runs): five runs keep
                // a ratio of medians steady to a few tenths of a percent.
                runs: 5,
            },
            overhead: overhead::Plan {
                concurrency: 64,
                round: Duration::from_millis(250),
                rounds: 40,
            },
            burst: burst::Plan {
                sizes: vec![1_000, 10_000, 100_000],
                connections: 256,
                ttl: Duration::from_secs(30),
            },
            waiters: 100_000,
            steady: steady::Plan {
                expiries: 5,
                ttl: Duration::from_secs(1),
                users: 32,
            },
            shared_processes: 8,
            shared_duration: Duration::from_secs(6),
        }
    }

    /// The CI smoke run (under 30 s, plus a few seconds of callgrind where valgrind is
    /// installed).
    pub fn quick() -> Self {
        Self {
            instructions: instructions::Plan {
                requests: 90,
                warm_up: 10,
                runs: 1,
            },
            overhead: overhead::Plan {
                concurrency: 64,
                round: Duration::from_millis(200),
                rounds: 3,
            },
            burst: burst::Plan {
                sizes: vec![1_000, 10_000],
                connections: 256,
                ttl: Duration::from_secs(4),
            },
            waiters: 10_000,
            steady: steady::Plan {
                expiries: 2,
                ttl: Duration::from_secs(1),
                users: 16,
            },
            shared_processes: 4,
            shared_duration: Duration::from_secs(3),
        }
    }
}

/// Runs every part of `plan`, memory first (while the heap is still small). The shared-store
/// processes are this binary run as its hidden worker subcommand, once per store in `stores`.
pub async fn run_plan(
    plan: &Plan,
    quick: bool,
    command: String,
    stores: &[StoreKind],
    progress: &Progress,
) -> anyhow::Result<BenchReport> {
    let started = Instant::now();
    let exe = std::env::current_exe().context("finding this binary for the bench processes")?;
    let step = progress.step("memory per waiting request");
    let waiters = waiters::measure(plan.waiters)
        .await
        .context("waiter memory")?;
    step.finish_and_clear();
    let step = progress.step("instructions per request (callgrind)");
    let instructions = instructions::measure(&plan.instructions, &exe)
        .await
        .context("instructions")?;
    step.finish_and_clear();
    let step = progress.step("throughput: four clients, shuffled rounds");
    let overhead = overhead::measure(&plan.overhead, &exe)
        .await
        .context("overhead")?;
    step.finish_and_clear();
    let step = progress.step("bursts, and steady load across expiries while tokens age");
    let (bursts, steady) = burst::measure(&plan.burst, steady::measure(&plan.steady))
        .await
        .context("bursts")?;
    let steady = steady.context("steady load")?;
    step.finish_and_clear();
    let mut shared_stores = Vec::new();
    for store in stores {
        let step = progress.step(&format!(
            "{} processes sharing a {} store",
            plan.shared_processes,
            store.name()
        ));
        let mut bench = SharedStoreBench::new(exe.clone());
        bench.processes = plan.shared_processes;
        bench.duration = plan.shared_duration;
        shared_stores.push(
            bench
                .run(store)
                .await
                .with_context(|| format!("{} store", store.name()))?,
        );
        step.finish_and_clear();
    }
    Ok(BenchReport {
        machine: machine::Machine::detect(),
        command,
        quick,
        waiters,
        instructions,
        instructions_before: None,
        overhead,
        bursts,
        burst_connections: plan.burst.connections,
        steady,
        shared_stores,
        attach: criterion::read(&criterion::directory()),
        server_memory: server_memory::read(&server_memory::results_path()),
        keyed_memory: keyed_memory::read(&keyed_memory::results_path()),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// `tokenkeeper bench` from flags to printed (and written) report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let command = std::iter::once("tokenkeeper".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let before = match &args.instructions_before {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let figures: instructions::Instructions =
                serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is not `bench --instructions-only --json` output",
                        path.display()
                    )
                })?;
            Some((args.instructions_before_label.clone(), figures))
        }
        None => None,
    };
    let progress = Progress::new(!args.quiet && !args.json);
    if args.instructions_only {
        let exe = std::env::current_exe().context("finding this binary for the bench processes")?;
        let step = progress.step("instructions per request (callgrind)");
        let outcome = instructions::measure(&plan.instructions, &exe).await?;
        step.finish_and_clear();
        let text = markdown::instructions_only(&outcome, before.as_ref(), &command);
        if args.json {
            match &outcome {
                instructions::Outcome::Measured(figures) => {
                    println!("{}", serde_json::to_string_pretty(figures)?);
                }
                instructions::Outcome::Skipped(why) => anyhow::bail!("not measured: {why}"),
            }
        } else {
            print!("{text}");
        }
        if let Some(path) = &args.output {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(());
    }
    let mut stores = vec![StoreKind::File];
    if let Some(url) = &args.redis {
        stores.push(StoreKind::Redis { url: url.clone() });
    }
    let mut report = run_plan(&plan, args.quick, command, &stores, &progress).await?;
    report.instructions_before = before;
    let text = markdown::render(&report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{text}");
    }
    let output = match (&args.output, args.quick) {
        (Some(path), _) => Some(path.clone()),
        (None, false) => Some(PathBuf::from("BENCHMARKS.md")),
        (None, true) => None,
    };
    if let Some(path) = output {
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        if !args.json {
            println!("\nwritten to {}", path.display());
        }
    }
    Ok(())
}
