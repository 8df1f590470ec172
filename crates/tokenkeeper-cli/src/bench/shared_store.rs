//! Shared-store figures for `tokenkeeper bench`: P real processes sharing one login through a
//! [`FileStore`] or a [`RedisStore`], against the reference server with rotation and no reuse
//! grace, each sending requests from many concurrent tasks across several token expiries.
//!
//! The processes are this binary again, run as the hidden subcommand
//! [`WORKER_SUBCOMMAND`] (dispatched to [`run_worker`]), so the figures come from separate
//! address spaces, file descriptors and connections, exactly as separate programs would.
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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokenkeeper::store::{FileStore, RedisStore, TokenStore};
use tokenkeeper::{Event, Session, TokenSet, refresh};
use tokenkeeper_server::ServerConfig;

/// The hidden subcommand that runs one worker process.
pub const WORKER_SUBCOMMAND: &str = "__store-worker";

/// The environment variable carrying a worker's [`WorkerConfig`] as JSON.
const WORKER_ENV: &str = "TOKENKEEPER_STORE_WORKER";

/// Which shared store the processes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A [`FileStore`] in a fresh temp directory.
    File,
    /// A [`RedisStore`] at this URL, under a fresh key.
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
            },
        };
        let store = spec.open().await?;
        let first = sign_in(&base_url, Arc::clone(&store)).await?;
        let before = server.stats();

        let config = WorkerConfig {
            store: spec,
            base_url: base_url.clone(),
            tasks: self.tasks_per_process,
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            pause_ms: u64::try_from(self.pause.as_millis()).unwrap_or(u64::MAX),
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
                    Ok(serde_json::from_str::<WorkerSummary>(line)?)
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
        Ok(SharedStoreFigures {
            store: kind.name().to_owned(),
            processes: self.processes,
            tasks_per_process: self.tasks_per_process,
            duration_ms: config.duration_ms,
            access_ttl_ms: u64::try_from(self.access_ttl.as_millis()).unwrap_or(u64::MAX),
            expiries: last.saturating_sub(first),
            refresh_calls: after.refresh_calls - before.refresh_calls,
            rotations: after.rotations - before.rotations,
            reuse_detections: after.reuse_detections - before.reuse_detections,
            refreshed: summaries.iter().map(|s| s.refreshed).sum(),
            adopted: summaries.iter().map(|s| s.adopted).sum(),
            requests_ok: summaries.iter().map(|s| s.ok).sum(),
            requests_failed: summaries.iter().map(|s| s.failed).sum(),
            logouts: summaries.iter().map(|s| s.logouts).sum(),
            logout_reasons: summaries
                .iter()
                .flat_map(|s| s.logout_reasons.iter().cloned())
                .collect(),
            first_error: summaries.iter().find_map(|s| s.first_error.clone()),
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

#[derive(Debug, Clone, Serialize, Deserialize)]
enum StoreSpec {
    File { path: PathBuf },
    Redis { url: String, key: String },
}

impl StoreSpec {
    async fn open(&self) -> anyhow::Result<Arc<dyn TokenStore>> {
        Ok(match self {
            StoreSpec::File { path } => Arc::new(FileStore::open(path)?),
            StoreSpec::Redis { url, key } => Arc::new(RedisStore::connect(url, key.clone()).await?),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WorkerConfig {
    store: StoreSpec,
    base_url: String,
    tasks: usize,
    duration_ms: u64,
    pause_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WorkerSummary {
    ok: u64,
    failed: u64,
    refreshed: u64,
    adopted: u64,
    logouts: u64,
    logout_reasons: Vec<String>,
    first_error: Option<String>,
}

/// Logs in at the reference server (json contract) and signs in through a session over `store`.
async fn sign_in(base_url: &str, store: Arc<dyn TokenStore>) -> anyhow::Result<u64> {
    let login = tokenkeeper_server::client::login(
        &reqwest::Client::new(),
        base_url,
        tokenkeeper_server::Contract::Json,
    )
    .await?
    .body;
    let session = Session::builder()
        .refresher(refresh::Json::new(&format!("{base_url}/refresh/token"))?)
        .store_arc(store)
        .attach_to([base_url])
        .build()?;
    Ok(session
        .sign_in(TokenSet::from_response(&login)?)
        .await?
        .generation())
}

/// The body of [`WORKER_SUBCOMMAND`]: restores the session from the shared store, sends requests
/// from many tasks until the duration is over, and prints a JSON summary on stdout.
pub async fn run_worker() -> anyhow::Result<()> {
    let config: WorkerConfig = serde_json::from_str(
        &std::env::var(WORKER_ENV).context("started by `tokenkeeper bench` only")?,
    )?;
    let store = config.store.open().await?;
    let session = Session::builder()
        .refresher(refresh::Json::new(&format!(
            "{}/refresh/token",
            config.base_url
        ))?)
        .store_arc(store)
        .attach_to([config.base_url.as_str()])
        .build()?;
    let mut events = session.events();
    if !session.restore().await? {
        bail!("nobody signed in to the shared store");
    }
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();

    let counts = Arc::new(Counts::default());
    let watcher = {
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            let mut logout_reasons = Vec::new();
            loop {
                let counter = match events.recv().await {
                    Ok(Event::Refreshed { .. }) => &counts.refreshed,
                    Ok(Event::Adopted { .. }) => &counts.adopted,
                    Ok(Event::LoggedOut { reason }) => {
                        logout_reasons.push(reason.to_string());
                        &counts.logouts
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                counter.fetch_add(1, Relaxed);
            }
            logout_reasons
        })
    };
    let deadline = Instant::now() + Duration::from_millis(config.duration_ms);
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut tasks = Vec::with_capacity(config.tasks);
    for task in 0..config.tasks {
        let client = client.clone();
        let base = config.base_url.clone();
        let counts = Arc::clone(&counts);
        let first_error = Arc::clone(&first_error);
        let pause = Duration::from_millis(config.pause_ms);
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let error = match client
                    .get(format!("{base}/api/items/{task}-{i}"))
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => None,
                    Ok(response) => Some(format!("status {}", response.status())),
                    Err(error) => Some(error.to_string()),
                };
                match error {
                    None => counts.ok.fetch_add(1, Relaxed),
                    Some(error) => {
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert(error);
                        }
                        counts.failed.fetch_add(1, Relaxed)
                    }
                };
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    // A refresh ahead of expiry may still be out: its pair must reach the store before the
    // process exits. Then the event channel closes and the watcher has counted everything.
    session.refreshes_landed().await;
    drop(session);
    drop(client);
    let logout_reasons = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .context("the last refresh did not finish")??;
    let first_error = first_error.lock().ok().and_then(|first| first.clone());
    let summary = WorkerSummary {
        ok: counts.ok.load(Relaxed),
        failed: counts.failed.load(Relaxed),
        refreshed: counts.refreshed.load(Relaxed),
        adopted: counts.adopted.load(Relaxed),
        logouts: counts.logouts.load(Relaxed),
        logout_reasons,
        first_error,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    refreshed: AtomicU64,
    adopted: AtomicU64,
    logouts: AtomicU64,
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
