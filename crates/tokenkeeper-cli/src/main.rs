//! `tokenkeeper`: the command-line face of tokenkeeper.
//!
//! Each subcommand lives in its own folder of the library with a clap `Args` struct and a
//! `run(args)` entry point; `main` only parses, sets up logging and dispatches.

use std::io::IsTerminal as _;

use clap::{Parser, Subcommand};
use tokenkeeper_cli::{bench, demo, serve};
use tracing_subscriber::EnvFilter;

/// Keeps HTTP clients authenticated through access-token expiry: demo, serve,
/// bench.
#[derive(Debug, Parser)]
#[command(name = "tokenkeeper", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference auth server: four refresh contracts, rotating
    /// refresh tokens, reuse detection, fault injection.
    #[command(long_about = serve::LONG_ABOUT)]
    Serve(serve::ServeArgs),
    /// The same storm of requests against hand-written refresh interceptors and tokenkeeper,
    /// side by side, on an in-process reference server with rotation and reuse detection on.
    Demo(demo::DemoArgs),
    /// Measure overhead, burst scaling, memory and steady load; write BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Internal: one process of the shared-store benchmark, started by `bench`.
    #[command(name = "__store-worker", hide = true)]
    StoreWorker,
    /// Internal: the reference server in its own process, started by `bench`.
    #[command(name = "__bench-server", hide = true)]
    BenchServer(bench::server_process::ServerArgs),
    /// Internal: one measured client process (run under callgrind), started by `bench`.
    #[command(name = "__bench-client", hide = true)]
    BenchClient(bench::instructions::ClientArgs),
}

impl Command {
    /// The log filter when RUST_LOG is not set. `demo` and `bench` keep the terminal for their
    /// own output: only warnings.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Serve(_) => "warn,tokenkeeper=info,tokenkeeper_server=info",
            Command::Demo(_) | Command::Bench(_) => "warn",
            Command::StoreWorker | Command::BenchServer(_) | Command::BenchClient(_) => "error",
        }
    }
}

fn init_tracing(default_filter: &str) {
    // RUST_LOG wins; otherwise the subcommand's default.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.command.default_log_filter());
    match cli.command {
        Command::Serve(args) => runtime()?.block_on(serve::run(args)),
        Command::Demo(args) => runtime()?.block_on(demo::command::run(args)),
        Command::Bench(args) => runtime()?.block_on(bench::run(args)),
        Command::StoreWorker => runtime()?.block_on(bench::shared_store::run_worker()),
        // These build their own runtimes: the measured client needs a current-thread one, so
        // that all of its work runs on the one thread callgrind counts.
        Command::BenchServer(args) => bench::server_process::run(args),
        Command::BenchClient(args) => bench::instructions::run_client(args),
    }
}

/// What `#[tokio::main]` would build.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
