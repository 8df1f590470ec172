//! Child processes for the shared-store tests (started through [`crate::child`]: the test binary
//! re-runs itself as `store_worker::store_worker`, configured by a [`WorkerConfig`]).
//!
//! Three kinds of worker:
//! - [`Mode::Hammer`]: restores a session from the shared store (the parent signed in), runs
//!   `tasks` concurrent request loops against the reference server for `duration_ms`, and prints a
//!   [`Summary`].
//! - [`Mode::Churn`]: no server; rewrites the store as fast as it can under its lock (load,
//!   generation + 1, save), so a `kill -9` lands mid-write often.
//! - [`Mode::Hold`]: no server; takes the lock, saves the next generation under it, and keeps
//!   the lock until killed (or `duration_ms` passed): the lock holder the conformance suite's
//!   `kill -9` test kills.

#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokenkeeper::store::{StoredTokens, TokenStore};
use tokenkeeper::{Event, Session, TokenSet, refresh};
use tokenkeeper_server::Contract;

use crate::child::{self, Job};

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
            } => {
                let store = tokenkeeper::store::PostgresStore::connect(url, key.clone())
                    .await
                    .expect("connect to PostgreSQL")
                    .lock_ttl(Duration::from_millis(*lock_ttl_ms));
                // Idempotent, and safe from every process at once.
                store.migrate().await.expect("migrate");
                Arc::new(store)
            }
            #[cfg(not(feature = "postgres"))]
            StoreSpec::Postgres { .. } => panic!("built without the `postgres` feature"),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Mode {
    Hammer,
    Churn,
    Hold,
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

impl Job for WorkerConfig {
    const TEST: &'static str = "store_worker::store_worker";
    const ENV: &'static str = "TK_STORE_WORKER";
    const REPORT: &'static str = "TK-WORKER-SUMMARY ";
    type Report = Summary;
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

impl Summary {
    /// The sum of several workers' summaries (the first error seen kept).
    pub fn total(summaries: &[Summary]) -> Summary {
        let mut total = Summary::default();
        for s in summaries {
            total.ok += s.ok;
            total.failed += s.failed;
            total.refreshed += s.refreshed;
            total.adopted += s.adopted;
            total.store_failures += s.store_failures;
            total.logouts += s.logouts;
            total.saves += s.saves;
            if total.first_error.is_none() {
                total.first_error.clone_from(&s.first_error);
            }
        }
        total
    }
}

/// Entry point of the child processes the shared-store tests start ([`spawn`]).
#[test]
#[ignore = "runs only as a child process of the shared-store tests"]
fn store_worker() {
    child_main();
}

/// The body of the ignored `store_worker` test: does nothing unless started by [`spawn`].
pub fn child_main() {
    child::main(|config: WorkerConfig| async move {
        match config.mode {
            Mode::Hammer => hammer(&config).await,
            Mode::Churn => churn(&config).await,
            Mode::Hold => hold(&config).await,
        }
    });
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
    // A refresh ahead of expiry may still be out: the process must not exit before its pair is
    // stored (the server has rotated). Then the event channel closes and the watcher ends.
    session.refreshes_landed().await;
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

/// Saves the next generation with random secrets (the caller holds the lock).
async fn save_next(store: &dyn TokenStore) {
    let generation = store.load().await.unwrap().map_or(0, |s| s.generation) + 1;
    store
        .save(&StoredTokens {
            tokens: random_tokens(),
            generation,
            login: None,
        })
        .await
        .unwrap();
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
        save_next(&*store).await;
        saves += 1;
    }
    stopper.abort();
    Summary {
        saves,
        ..Summary::default()
    }
}

/// Takes the lock, saves the next generation (random secrets) under it and holds the lock until
/// killed; a run that is not killed lets go after `duration_ms`.
async fn hold(config: &WorkerConfig) -> Summary {
    let store = config.store.open().await;
    let held = store.lock().await.unwrap();
    save_next(&*store).await;
    tokio::time::sleep(Duration::from_millis(config.duration_ms)).await;
    drop(held);
    Summary {
        saves: 1,
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
pub type Worker = child::Child<WorkerConfig>;

/// Starts this test binary again as a worker.
pub fn spawn(config: &WorkerConfig) -> Worker {
    child::spawn(config)
}

/// Eight processes of 50 request loops each share one login through the store `spec` names
/// (1 s tokens, 6 s, no grace period at the server): each expiry is refreshed exactly once,
/// whichever process does it, and the others adopt the pair; no request fails, no refresh token
/// is presented twice. The one test every shared store's `*_processes` module runs.
pub async fn eight_processes_share_one_login_and_refresh_once_per_expiry(spec: StoreSpec) {
    use crate::common::{ServerConfig, delta, ms, start};
    // Eight processes load both cores: no other heavy test or burst meanwhile.
    let _heavy = crate::heavy().await;
    let server = start(
        ServerConfig::default()
            .with_access_ttl(ms(1000))
            .with_grace_period(Duration::ZERO),
    )
    .await;
    let store = spec.open().await;
    let first = sign_in(&server.base_url(), Arc::clone(&store)).await;
    let before = server.stats();

    let config = WorkerConfig {
        store: spec.clone(),
        mode: Mode::Hammer,
        base_url: server.base_url(),
        tasks: 50,
        duration_ms: 6_000,
        pause_ms: 2,
        stop_file: None,
    };
    let workers: Vec<Worker> = (0..8).map(|_| spawn(&config)).collect();
    let summaries = child::finish_all(workers).await;

    let stats = delta(&before, &server.stats());
    let last = store
        .load()
        .await
        .unwrap()
        .expect("tokens still stored")
        .generation;
    let total = Summary::total(&summaries);
    let through = match &spec {
        StoreSpec::File { .. } => "a file",
        StoreSpec::Redis { .. } => "Redis",
        StoreSpec::Postgres { .. } => "PostgreSQL",
    };
    eprintln!(
        "8 processes x 50 tasks through {through}: {} ok, {} failed; server: {} refresh calls, {} \
         rotations, {} reuse detections; store generations {first}..{last}; refreshed {} / \
         adopted {} by the processes",
        total.ok,
        total.failed,
        stats.refresh_calls,
        stats.rotations,
        stats.reuse_detections,
        total.refreshed,
        total.adopted
    );
    assert_eq!(total.failed, 0, "first error: {:?}", total.first_error);
    assert!(summaries.iter().all(|s| s.ok > 0), "{summaries:?}");
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(total.logouts, 0, "{summaries:?}");
    assert_eq!(total.store_failures, 0, "{summaries:?}");
    // Every refresh call rotated, and each rotation is exactly one new generation in the store:
    // one refresh per expiry, whichever process made it.
    assert_eq!(stats.refresh_calls, stats.rotations);
    assert_eq!(stats.refresh_calls, last - first);
    assert_eq!(total.refreshed, stats.refresh_calls);
    assert!(
        stats.refresh_calls >= 5,
        "only {} expiries",
        stats.refresh_calls
    );
    // The other processes adopted what one of them refreshed.
    assert!(total.adopted > 0);
    assert_eq!(stats.api_401_invalid, 0);
    store.clear().await.unwrap();
    server.shutdown().await;
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
