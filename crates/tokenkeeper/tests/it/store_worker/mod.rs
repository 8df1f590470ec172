//! Child processes for the shared-store tests (started through [`crate::child`]: the test binary
//! re-runs itself as `store_worker::store_worker`, configured by a [`WorkerConfig`]). What a
//! worker does is `tokenkeeper_testkit::worker`'s, the same worker the `tokenkeeper bench`
//! command runs; this module starts it and opens the store it names with the features this
//! test binary is built with.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokenkeeper::store::TokenStore;
pub use tokenkeeper_testkit::worker::{Mode, StoreSpec, Summary, WorkerConfig};

use crate::child::{self, Job};

impl Job for WorkerConfig {
    const TEST: &'static str = "store_worker::store_worker";
    const ENV: &'static str = "TK_STORE_WORKER";
    const REPORT: &'static str = "TK-WORKER-SUMMARY ";
    type Report = Summary;
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
        let store = open(&config.store).await;
        let summary = tokenkeeper_testkit::worker::run_on(&config, store)
            .await
            .expect("the worker's run");
        // The counts are exact or the run fails.
        assert_eq!(summary.lost_events, 0, "lost events: {summary:?}");
        summary
    });
}

/// Opens the store `spec` names. The testkit opens what its own features allow; the Redis and
/// PostgreSQL stores are opened here, where the library's features say whether they exist.
pub async fn open(spec: &StoreSpec) -> Arc<dyn TokenStore> {
    match spec {
        #[cfg(feature = "redis")]
        StoreSpec::Redis {
            url,
            key,
            lock_ttl_ms,
        } => {
            let store = tokenkeeper::store::RedisStore::connect(url, key.clone())
                .await
                .expect("connect to Redis");
            Arc::new(match lock_ttl_ms {
                Some(ms) => store.lock_ttl(Duration::from_millis(*ms)),
                None => store,
            })
        }
        #[cfg(feature = "postgres")]
        StoreSpec::Postgres {
            url,
            key,
            lock_ttl_ms,
        } => {
            // Connected and migrated (idempotent, and safe from every process at once).
            let store = crate::postgres_env::store(url, key).await;
            Arc::new(match lock_ttl_ms {
                Some(ms) => store.lock_ttl(Duration::from_millis(*ms)),
                None => store,
            })
        }
        other => other.open().await.expect("open the store"),
    }
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
    let store = open(&spec).await;
    let first = sign_in(&server.base_url(), Arc::clone(&store)).await;
    let before = server.stats();

    // 50 tasks for 6 s, 2 ms between two requests of a task.
    let config = WorkerConfig::requests(spec.clone(), &server.base_url());
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
    let through = spec.backend_name();
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
    let failing: Vec<&Summary> = summaries.iter().filter(|s| s.failed > 0).collect();
    assert_eq!(
        total.failed, 0,
        "first error: {:?}; the failing processes: {failing:#?}",
        total.first_error
    );
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
    tokenkeeper_testkit::worker::sign_in(base_url, store)
        .await
        .expect("sign in")
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
