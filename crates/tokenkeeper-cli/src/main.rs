//! `tokenkeeper`: the command-line face of tokenkeeper.
//!
//! Each subcommand lives in its own module with a clap `Args` struct and an
//! async `run` function; `main` only parses, sets up logging and dispatches.

mod serve;

use std::io::IsTerminal as _;

use clap::{Parser, Subcommand};
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
    Demo(tokenkeeper_cli::demo::DemoArgs),
    /// Measure overhead, burst scaling, memory and steady load; write BENCHMARKS.md.
    Bench(tokenkeeper_cli::bench::BenchArgs),
    /// Internal: one process of the shared-store benchmark, started by `bench`.
    #[command(name = "__store-worker", hide = true)]
    StoreWorker,
}

impl Command {
    /// The log filter when RUST_LOG is not set. `demo` and `bench` keep the terminal for their
    /// own output: only warnings.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Serve(_) => "warn,tokenkeeper=info,tokenkeeper_server=info",
            Command::Demo(_) | Command::Bench(_) => "warn",
            Command::StoreWorker => "error",
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.command.default_log_filter());
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Demo(args) => tokenkeeper_cli::demo::command::execute(args).await,
        Command::Bench(args) => tokenkeeper_cli::bench::execute(args).await,
        Command::StoreWorker => tokenkeeper_cli::shared_store::worker_main().await,
    }
}
