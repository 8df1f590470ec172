//! Child processes for the shared-store tests.
//!
//! The test binary re-runs *itself* as the child:
//! `current_exe() store_worker::store_worker --exact --ignored`, with the worker's configuration
//! as JSON in `TK_STORE_WORKER`; that ignored test, declared below, calls [`child_main`]. This
//! works in any `cargo test` invocation on a fresh clone: no extra binary or example needs to be
//! built first.
//!
//! Two kinds of worker:
//! - [`Mode::Hammer`]: restores a session from the shared store (the parent signed in), runs
//!   `tasks` concurrent request loops against the reference server for `duration_ms`, and prints a
//!   [`Summary`].
//! - [`Mode::Churn`]: no server; rewrites the store as fast as it can under its lock (load,
//!   generation + 1, save), so a `kill -9` lands mid-write often.

#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokenkeeper::store::{StoredTokens, TokenStore};
use tokenkeeper::{Event, Session, TokenSet, refresh};
use tokenkeeper_server::Contract;

const ENV: &str = "TK_STORE_WORKER";
const SUMMARY_PREFIX: &str = "TK-WORKER-SUMMARY ";

/// Which shared store a worker opens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StoreSpec {
    File {
        path: PathBuf,
    },
    Redis {
        url: String,
        key: String,
        lock_ttl_ms: u64,
    },
    Postgres {
        url: String,
        key: String,
        lock_ttl_ms: u64,
    },
}

impl StoreSpec {
    pub async fn open(&self) -> Arc<dyn TokenStore> {
        match self {
            StoreSpec::File { path } => {
                Arc::new(tokenkeeper::store::FileStore::open(path).expect("open the file store"))
            }
            #[cfg(feature = "redis")]
            StoreSpec::Redis {
                url,
                key,
                lock_ttl_ms,
            } => Arc::new(
                tokenkeeper::store::RedisStore::connect(url, key.clone())
                    .await
                    .expect("connect to Redis")
                    .lock_ttl(Duration::from_millis(*lock_ttl_ms)),
            ),
            #[cfg(not(feature = "redis"))]
            StoreSpec::Redis { .. } => panic!("built without the `redis` feature"),
            #[cfg(feature = "postgres")]
            StoreSpec::Postgres {
                url,
                key,
                lock_ttl_ms,
            } => Arc::new(
                tokenkeeper::store::PostgresStore::connect(url, key.clone())
                    .await
                    .expect("connect to PostgreSQL")
                    .lock_ttl(Duration::from_millis(*lock_ttl_ms)),
            ),
            #[cfg(not(feature = "postgres"))]
            StoreSpec::Postgres { .. } => panic!("built without the `postgres` feature"),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Mode {
    Hammer,
    Churn,
}

/// What a child is told to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub store: StoreSpec,
    pub mode: Mode,
    /// The reference server (Hammer).
    pub base_url: String,
    pub tasks: usize,
    pub duration_ms: u64,
    /// Pause between two requests of one task.
    pub pause_ms: u64,
    /// Stop early once this file exists (the parent decides when the run ends).
    pub stop_file: Option<PathBuf>,
}

/// What a child reports on stdout when it finishes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub ok: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// `Event::Refreshed` seen: refreshes this process made.
    pub refreshed: u64,
    /// `Event::Adopted` seen: pairs another process refreshed, adopted instead of refreshing.
    pub adopted: u64,
    pub store_failures: u64,
    pub logouts: u64,
    /// Churn: saves made.
    pub saves: u64,
}

/// Entry point of the child processes the shared-store tests start ([`spawn`]).
#[test]
#[ignore = "runs only as a child process of the shared-store tests"]
fn store_worker() {
    child_main();
}

/// The body of the ignored `store_worker` test: does nothing unless started by [`spawn`].
pub fn child_main() {
    let Ok(config) = std::env::var(ENV) else {
        return;
    };
    let config: WorkerConfig = serde_json::from_str(&config).expect("worker config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let summary = runtime.block_on(async move {
        match config.mode {
            Mode::Hammer => hammer(&config).await,
            Mode::Churn => churn(&config).await,
        }
    });
    use std::io::Write as _;
    let line = format!(
        "\n{SUMMARY_PREFIX}{}\n",
        serde_json::to_string(&summary).unwrap()
    );
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes()).unwrap();
    stdout.flush().unwrap();
}

async fn hammer(config: &WorkerConfig) -> Summary {
    let store = config.store.open().await;
    let session = Session::builder()
        .refresher(refresh::Json::new(&format!("{}/refresh/token", config.base_url)).unwrap())
        .store_arc(store)
        .attach_to([config.base_url.as_str()])
        .build()
        .unwrap();
    let mut events = session.events();
    assert!(
        session.restore().await.unwrap(),
        "the parent signs in first"
    );
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();

    let counted = Arc::new(Counts::default());
    let watcher = {
        let counted = Arc::clone(&counted);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let counter = match events.recv().await {
                    Ok(Event::Refreshed { .. }) => &counted.refreshed,
                    Ok(Event::Adopted { .. }) => &counted.adopted,
                    Ok(Event::StoreFailed { .. }) => &counted.store_failures,
                    Ok(Event::LoggedOut { .. }) => &counted.logouts,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => panic!("lost {n} events"),
                    Err(RecvError::Closed) => break,
                };
                counter.fetch_add(1, Relaxed);
            }
        })
    };

    let running = Arc::new(AtomicBool::new(true));
    let stopper = stop_when(config, Arc::clone(&running));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for task in 0..config.tasks {
        let client = client.clone();
        let base = config.base_url.clone();
        let counted = Arc::clone(&counted);
        let first_error = Arc::clone(&first_error);
        let pause = Duration::from_millis(config.pause_ms);
        let running = Arc::clone(&running);
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while running.load(Relaxed) {
                i += 1;
                let url = format!("{base}/api/items/{task}-{i}");
                let error = match client.get(url).send().await {
                    Ok(response) if response.status().is_success() => None,
                    Ok(response) => Some(format!("status {}", response.status())),
                    Err(error) => Some(error.to_string()),
                };
                match error {
                    None => counted.ok.fetch_add(1, Relaxed),
                    Some(error) => {
                        first_error.lock().unwrap().get_or_insert(error);
                        counted.failed.fetch_add(1, Relaxed)
                    }
                };
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    stopper.abort();
    // A refresh may still be in flight; it holds the session, so the event channel closes (and
    // the watcher ends) only once it finished and its event was counted.
    drop(session);
    drop(client);
    tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("the last refresh finishes")
        .unwrap();
    let first_error = first_error.lock().unwrap().clone();
    Summary {
        ok: counted.ok.load(Relaxed),
        failed: counted.failed.load(Relaxed),
        first_error,
        refreshed: counted.refreshed.load(Relaxed),
        adopted: counted.adopted.load(Relaxed),
        store_failures: counted.store_failures.load(Relaxed),
        logouts: counted.logouts.load(Relaxed),
        saves: 0,
    }
}

/// Clears `running` after the configured duration, or once the stop file exists.
fn stop_when(config: &WorkerConfig, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let deadline = Instant::now() + Duration::from_millis(config.duration_ms);
    let stop_file = config.stop_file.clone();
    tokio::spawn(async move {
        while Instant::now() < deadline && !stop_file.as_ref().is_some_and(|f| f.exists()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.store(false, Relaxed);
    })
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    refreshed: AtomicU64,
    adopted: AtomicU64,
    store_failures: AtomicU64,
    logouts: AtomicU64,
}

/// Rewrites the store under its lock as fast as it can, with tokens of random length so a torn
/// write would show.
async fn churn(config: &WorkerConfig) -> Summary {
    let store = config.store.open().await;
    let running = Arc::new(AtomicBool::new(true));
    let stopper = stop_when(config, Arc::clone(&running));
    let mut saves = 0;
    while running.load(Relaxed) {
        let _lock = store.lock().await.unwrap();
        let generation = store.load().await.unwrap().map_or(0, |s| s.generation) + 1;
        store
            .save(&StoredTokens {
                tokens: random_tokens(),
                generation,
                login: None,
            })
            .await
            .unwrap();
        saves += 1;
    }
    stopper.abort();
    Summary {
        saves,
        ..Summary::default()
    }
}

/// A pair with random secrets of random length (up to a few KiB, so a write spans pages).
pub fn random_tokens() -> TokenSet {
    use rand::Rng as _;
    let mut rng = rand::rng();
    let mut secret = |max: usize| -> String {
        let len = rng.random_range(1..max);
        (0..len)
            .map(|_| char::from(rng.random_range(0x21u8..0x7f)))
            .collect()
    };
    TokenSet::new(secret(6000))
        .with_refresh_token(secret(200))
        .with_expires_in(Duration::from_secs(60))
}

/// A running child.
pub struct Worker {
    pub child: Child,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the child and parses its summary; panics with its output if it failed.
    pub fn finish(self) -> Summary {
        let output = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let summary = stdout
            .lines()
            .find_map(|line| line.split_once(SUMMARY_PREFIX).map(|(_, json)| json))
            .unwrap_or_else(|| {
                panic!(
                    "worker printed no summary ({}):\n{stdout}\n{stderr}",
                    output.status
                )
            });
        serde_json::from_str(summary).unwrap()
    }
}

/// Starts this test binary again as a worker.
pub fn spawn(config: &WorkerConfig) -> Worker {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store_worker::store_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, serde_json::to_string(config).unwrap())
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Worker { child }
}

/// Logs in at the reference server in the json contract's style and signs in through a session
/// over `store`, so the children can restore from it. Returns the generation signed in.
pub async fn sign_in(base_url: &str, store: Arc<dyn TokenStore>) -> u64 {
    let login =
        tokenkeeper_server::client::login(&reqwest::Client::new(), base_url, Contract::Json)
            .await
            .expect("login");
    let tokens = TokenSet::from_response(&login.body).unwrap();
    let session = Session::builder()
        .refresher(refresh::Json::new(&format!("{base_url}/refresh/token")).unwrap())
        .store_arc(store)
        .attach_to([base_url])
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap().generation()
}

/// The process that holds a `flock` on `path`, from `/proc/locks` (Linux).
pub fn flock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(path).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 12345 fd:01:123456 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") || fields.get(3) != Some(&"WRITE") {
            return None;
        }
        let file_inode = fields.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
        (file_inode == inode).then(|| fields.get(4)?.parse().ok())?
    })
}
