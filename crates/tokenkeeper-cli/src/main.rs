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
}

fn init_tracing() {
    // RUST_LOG wins; otherwise info for tokenkeeper, warnings for the rest.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,tokenkeeper=info,tokenkeeper_server=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
    }
}
