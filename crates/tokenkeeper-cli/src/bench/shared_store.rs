//! Shared-store figures for `tokenkeeper bench`: P real processes sharing one login through a
//! [`FileStore`](tokenkeeper::store::FileStore) or a
//! [`RedisStore`](tokenkeeper::store::RedisStore), against the reference server with rotation
//! and no reuse grace, each sending requests from many concurrent tasks across several token
//! expiries.
//!
//! The processes are this binary again, run as the hidden subcommand
//! [`WORKER_SUBCOMMAND`] (dispatched to [`run_worker`]), so the figures come from separate
//! address spaces, file descriptors and connections, exactly as separate programs would. What a
//! process does is `tokenkeeper_testkit::worker`'s, the same worker the library's multi-process
//! tests start.
//!
//! What the figures show: every token generation that came due was refreshed by exactly one
//! process (`refresh_calls == expiries`), the others adopted its pair (`adopted`), and nobody
//! presented a rotated refresh token (`reuse_detections == 0`).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use tokenkeeper_cli::bench::shared_store::{SharedStoreBench, StoreKind};
//!
//! let bench = SharedStoreBench::new(std::env::current_exe()?);
//! let figures = bench.run(&StoreKind::File).await?;
//! assert!(figures.passed());
//! # Ok(()) }
//! ```

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokenkeeper_server::ServerConfig;
use tokenkeeper_testkit::worker::{self, StoreSpec, Summary, WorkerConfig, millis};

/// The hidden subcommand that runs one worker process.
pub const WORKER_SUBCOMMAND: &str = "__store-worker";

/// The environment variable carrying a worker's `WorkerConfig` as JSON.
const WORKER_ENV: &str = "TOKENKEEPER_STORE_WORKER";

/// Which shared store the processes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A [`FileStore`](tokenkeeper::store::FileStore) in a fresh temp directory.
    File,
    /// A [`RedisStore`](tokenkeeper::store::RedisStore) at this URL, under a fresh key.
    Redis {
        /// `redis://host:port`
        url: String,
    },
}

impl StoreKind {
    /// `file` or `redis`.
    pub fn name(&self) -> &'static str {
        match self {
            StoreKind::File => "file",
            StoreKind::Redis { .. } => "redis",
        }
    }
}

/// The shape of one shared-store run.
#[derive(Debug, Clone)]
pub struct SharedStoreBench {
    /// How many processes share the login (default 8).
    pub processes: usize,
    /// Concurrent request loops in each process (default 50).
    pub tasks_per_process: usize,
    /// How long the processes send requests (default 6 s).
    pub duration: Duration,
    /// Access-token lifetime on the server (default 1 s).
    pub access_ttl: Duration,
    /// Pause between two requests of one task (default 2 ms).
    pub pause: Duration,
    /// The `tokenkeeper` binary, run as [`WORKER_SUBCOMMAND`] for each process.
    pub worker_exe: PathBuf,
}

impl SharedStoreBench {
    /// The defaults: 8 processes × 50 tasks for 6 s with 1 s tokens (about 8 expiries).
    pub fn new(worker_exe: impl Into<PathBuf>) -> Self {
        Self {
            processes: 8,
            tasks_per_process: 50,
            duration: Duration::from_secs(6),
            access_ttl: Duration::from_secs(1),
            pause: Duration::from_millis(2),
            worker_exe: worker_exe.into(),
        }
    }

    /// Runs the processes against a fresh in-process reference server and collects the figures.
    pub async fn run(&self, kind: &StoreKind) -> anyhow::Result<SharedStoreFigures> {
        let server = tokenkeeper_server::start(
            ServerConfig::default()
                .with_access_ttl(self.access_ttl)
                .with_grace_period(Duration::ZERO),
        )
        .await
        .context("starting the reference server")?;
        let base_url = server.base_url();
        let scratch = Scratch::new()?;
        let spec = match kind {
            StoreKind::File => StoreSpec::File {
                path: scratch.dir.join("tokens.json"),
            },
            StoreKind::Redis { url } => StoreSpec::Redis {
                url: url.clone(),
                key: format!("tokenkeeper-bench:{:016x}", rand::random::<u64>()),
                lock_ttl_ms: None,
            },
        };
        let store = spec.open().await?;
        let first = worker::sign_in(&base_url, Arc::clone(&store)).await?;
        let before = server.stats();

        let config = WorkerConfig {
            tasks: self.tasks_per_process,
            duration_ms: millis(self.duration),
            pause_ms: millis(self.pause),
            ..WorkerConfig::requests(spec, &base_url)
        };
        let config_json = serde_json::to_string(&config)?;
        let mut children = Vec::with_capacity(self.processes);
        for _ in 0..self.processes {
            let child = Command::new(&self.worker_exe)
                .arg(WORKER_SUBCOMMAND)
                .env(WORKER_ENV, &config_json)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {}", self.worker_exe.display()))?;
            children.push(child);
        }
        let summaries = tokio::task::spawn_blocking(move || {
            children
                .into_iter()
                .map(|child| {
                    let output = child.wait_with_output()?;
                    let stdout = String::from_utf8_lossy(&output.stdout);
                    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
                        bail!(
                            "a worker process reported nothing ({}): {}",
                            output.status,
                            String::from_utf8_lossy(&output.stderr)
                        );
                    };
                    Ok(serde_json::from_str::<Summary>(line)?)
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await??;

        let after = server.stats();
        let last = store
            .load()
            .await?
            .map_or(first, |stored| stored.generation);
        store.clear().await.ok();
        server.shutdown().await;
        let total = Summary::total(&summaries);
        Ok(SharedStoreFigures {
            store: kind.name().to_owned(),
            processes: self.processes,
            tasks_per_process: self.tasks_per_process,
            duration_ms: config.duration_ms,
            access_ttl_ms: millis(self.access_ttl),
            expiries: last.saturating_sub(first),
            refresh_calls: after.refresh_calls - before.refresh_calls,
            rotations: after.rotations - before.rotations,
            reuse_detections: after.reuse_detections - before.reuse_detections,
            refreshed: total.refreshed,
            adopted: total.adopted,
            requests_ok: total.ok,
            requests_failed: total.failed,
            logouts: total.logouts,
            logout_reasons: total.logout_reasons,
            first_error: total.first_error,
        })
    }
}

/// What one shared-store run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SharedStoreFigures {
    /// `file` or `redis`.
    pub store: String,
    /// Processes sharing the login.
    pub processes: usize,
    /// Concurrent request loops per process.
    pub tasks_per_process: usize,
    /// How long they sent requests.
    pub duration_ms: u64,
    /// Access-token lifetime.
    pub access_ttl_ms: u64,
    /// Token generations that came due during the run (each needed exactly one refresh): the
    /// generations the shared store went through.
    pub expiries: u64,
    /// Refresh requests the server received, from all processes together.
    pub refresh_calls: u64,
    /// Refresh requests that rotated the pair.
    pub rotations: u64,
    /// Rotated refresh tokens presented again (each revokes the login).
    pub reuse_detections: u64,
    /// Refreshes the processes made (`Event::Refreshed`).
    pub refreshed: u64,
    /// Pairs the processes adopted from the store instead of refreshing (`Event::Adopted`).
    pub adopted: u64,
    /// Requests answered 2xx.
    pub requests_ok: u64,
    /// Requests that failed (error or non-2xx).
    pub requests_failed: u64,
    /// Sessions that ended.
    pub logouts: u64,
    /// Why they ended, one entry per logout (`LogoutReason`'s text), so a failed run says which
    /// process gave up first and why.
    pub logout_reasons: Vec<String>,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl SharedStoreFigures {
    /// One refresh per expiry, no reuse, no failed request, nobody logged out.
    pub fn passed(&self) -> bool {
        self.expiries > 0
            && self.refresh_calls == self.expiries
            && self.rotations == self.refresh_calls
            && self.reuse_detections == 0
            && self.requests_failed == 0
            && self.logouts == 0
    }
}

/// The body of [`WORKER_SUBCOMMAND`]: restores the session from the shared store, sends requests
/// from many tasks until the duration is over, and prints its `Summary` as JSON on stdout.
pub async fn run_worker() -> anyhow::Result<()> {
    let config: WorkerConfig = serde_json::from_str(
        &std::env::var(WORKER_ENV).context("started by `tokenkeeper bench` only")?,
    )?;
    let summary = worker::run(&config).await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// A private temp directory, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "tokenkeeper-bench-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
