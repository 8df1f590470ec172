//! The reference server in a process of its own: this binary run as the hidden subcommand
//! [`SUBCOMMAND`]. Client figures measured in the bench process (CPU time per request) or in a
//! client process under callgrind (instructions) then count the client alone; the server's
//! work lands in another process and on the scheduler's other core.
//!
//! The server prints its base URL as its first line on stdout and runs until its stdin closes,
//! so it also ends when the bench dies without stopping it.

use anyhow::{Context, bail};
use clap::Args;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;
use tokenkeeper_server::{DpopConfig, ServerConfig};

/// The hidden subcommand that runs [`run`].
pub const SUBCOMMAND: &str = "__bench-server";

/// Flags of [`SUBCOMMAND`].
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Access-token lifetime, milliseconds.
    #[arg(long, default_value_t = 3_600_000)]
    pub access_ttl_ms: u64,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// DPoP offered, not required: a grant with a proof gets DPoP-bound tokens whose requests
    /// the API verifies; grants without one get bearer tokens as usual.
    #[arg(long)]
    pub dpop: bool,
}

/// A reference server running in a child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Closing it tells the server to stop.
    stdin: Option<ChildStdin>,
    base_url: String,
}

impl ServerProcess {
    /// Starts `exe` (this binary) as [`SUBCOMMAND`] with tokens valid for `access_ttl` (and
    /// DPoP offered when `dpop`), and waits for its address.
    pub fn start(exe: &Path, access_ttl: Duration, dpop: bool) -> anyhow::Result<Self> {
        let mut command = Command::new(exe);
        command
            .arg(SUBCOMMAND)
            .arg("--access-ttl-ms")
            .arg(access_ttl.as_millis().to_string());
        if dpop {
            command.arg("--dpop");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} {SUBCOMMAND}", exe.display()))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout)
                .read_line(&mut line)
                .context("reading the server's address")?;
        }
        let base_url = line.trim().to_owned();
        let mut server = Self {
            child,
            stdin,
            base_url,
        };
        if !server.base_url.starts_with("http://") {
            let status = server.child.try_wait().ok().flatten();
            bail!("the server process did not print its address (exit status {status:?})");
        }
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Asks the server to stop and waits for it (killing it after five seconds).
    pub fn stop(mut self) {
        self.stdin.take();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Drop kills it.
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stdin.take();
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The server process: starts the reference server on 127.0.0.1:0, prints its base URL, and
/// serves until stdin closes.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .context("the server's runtime")?;
    runtime.block_on(async {
        let mut config =
            ServerConfig::default().with_access_ttl(Duration::from_millis(args.access_ttl_ms));
        if args.dpop {
            config = config.with_dpop(DpopConfig::default().with_required(false));
        }
        let server = tokenkeeper_server::start(config)
            .await
            .context("starting the reference server")?;
        println!("{}", server.base_url());
        // Waits for EOF on stdin (the bench closed it, or died) on a blocking thread.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().lock().read_to_end(&mut sink);
        })
        .await;
        server.shutdown().await;
        anyhow::Ok(())
    })
}
