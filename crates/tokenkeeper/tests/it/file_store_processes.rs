//! `FileStore` shared by real child processes: one refresh per expiry across eight processes,
//! and crash safety under `kill -9`.

use crate::common;
use crate::store_worker;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use store_worker::{Mode, StoreSpec, Summary, Worker, WorkerConfig};
use tokenkeeper::store::{FileStore, TokenStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_share_one_login_and_refresh_once_per_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    store_worker::eight_processes_share_one_login_and_refresh_once_per_expiry(StoreSpec::File {
        path,
    })
    .await;
}

/// Processes that rewrite the file as fast as they can, killed with SIGKILL at random instants:
/// the file always holds a whole pair, and generations never go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_write_never_leaves_a_torn_file() {
    let _heavy = crate::heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let store = FileStore::open(&path).unwrap();
    let config = WorkerConfig {
        store: StoreSpec::File { path: path.clone() },
        mode: Mode::Churn,
        base_url: String::new(),
        tasks: 0,
        duration_ms: 60_000,
        pause_ms: 0,
        stop_file: None,
    };
    let mut workers: Vec<Worker> = (0..3).map(|_| store_worker::spawn(&config)).collect();
    let mut highest = 0;
    let mut kills = 0;
    while kills < 60 {
        tokio::time::sleep(ms(rand::random_range(2..25))).await;
        let victim = workers.swap_remove(rand::random_range(0..workers.len()));
        crate::child::kill(victim).await;
        kills += 1;
        match store.load().await {
            Ok(Some(stored)) => {
                assert!(stored.generation >= highest, "generation went back");
                highest = stored.generation;
            }
            Ok(None) => assert_eq!(highest, 0, "the file disappeared"),
            Err(error) => panic!("after kill {kills}: {error}"),
        }
        workers.push(store_worker::spawn(&config));
    }
    for worker in workers {
        crate::child::kill(worker).await;
    }
    let stored = store.load().await.unwrap().unwrap();
    eprintln!(
        "{kills} kills; the file went through {} generations",
        stored.generation
    );
    assert!(stored.generation >= highest);
    assert!(highest > 0, "the workers never wrote");
}

/// Sessions in four processes, and the process holding the file lock (mid-refresh) killed over
/// and over: the file always holds a valid pair, and the survivors keep serving requests.
///
/// The server has a grace period here: a process killed after the server rotated but before it
/// saved takes the new refresh token with it, which no client-side store can prevent; the grace
/// period lets the next process present the old one once more.
///
/// That replay answers with the pair the killed process obtained, so its access token is already
/// as old as the time from the kill to the takeover: measured under `scripts/test-under-load.sh`,
/// up to 150 ms, and the retries it serves reach the server up to another 150 ms later. With the
/// 200 ms tokens this test used, the server sometimes refused the replayed pair on its first use
/// (a refused retry, handed to the caller). The tokens live long enough here for a takeover on a
/// saturated machine; a refusal now means the survivors did something wrong.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_refreshing_process_keeps_the_file_whole_and_the_others_working() {
    let _heavy = crate::heavy().await;
    let server = start(
        ServerConfig::default()
            .with_access_ttl(ms(600))
            .with_grace_period(Duration::from_secs(5))
            .with_latency(Latency {
                refresh: ms(20),
                ..Latency::default()
            }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let file_store = FileStore::open(&path).unwrap();
    let lock_path = file_store.lock_path().to_path_buf();
    let store: Arc<dyn TokenStore> = Arc::new(file_store);
    let mut highest = store_worker::sign_in(&server.base_url(), Arc::clone(&store)).await;

    let stop_file = dir.path().join("stop");
    let config = WorkerConfig {
        store: StoreSpec::File { path: path.clone() },
        mode: Mode::Requests,
        base_url: server.base_url(),
        tasks: 10,
        duration_ms: 60_000,
        pause_ms: 5,
        stop_file: Some(stop_file.clone()),
    };
    let mut workers: Vec<Worker> = (0..4).map(|_| store_worker::spawn(&config)).collect();
    let mut kills = 0;
    let mut mid_refresh = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while kills < 25 {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        // Wait for a process to take the lock for a refresh past the last kill's generation
        // (killing two holders of one generation would exhaust the server's grace).
        let generation = store.load().await.unwrap().unwrap().generation;
        assert!(generation >= highest);
        if generation == highest && kills > 0 {
            tokio::time::sleep(ms(2)).await;
            continue;
        }
        let Some(holder) = store_worker::flock_holder(&lock_path) else {
            tokio::time::sleep(ms(1)).await;
            continue;
        };
        let Some(index) = workers.iter().position(|w| w.pid() == holder) else {
            tokio::time::sleep(ms(1)).await;
            continue;
        };
        highest = generation;
        tokio::time::sleep(ms(rand::random_range(0..30))).await;
        if store_worker::flock_holder(&lock_path) == Some(holder) {
            mid_refresh += 1;
        }
        let victim = workers.swap_remove(index);
        crate::child::kill(victim).await;
        kills += 1;
        let stored = store
            .load()
            .await
            .expect("a whole pair after every kill")
            .unwrap();
        assert!(stored.generation >= highest);
        workers.push(store_worker::spawn(&config));
    }
    // The last ones run on a while after the last kill, then stop and report.
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&stop_file, b"").unwrap();
    let summaries = crate::child::finish_all(workers).await;
    let total = Summary::total(&summaries);
    let stats = server.stats();
    eprintln!(
        "{kills} kills ({mid_refresh} still holding the lock); survivors: {} ok, {} failed; \
         server: {} refresh calls, {} rotations, {} grace hits, {} reuse detections",
        total.ok,
        total.failed,
        stats.refresh_calls,
        stats.rotations,
        stats.grace_hits,
        stats.reuse_detections
    );
    assert!(total.ok > 0);
    assert_eq!(total.failed, 0, "first error: {:?}", total.first_error);
    assert_eq!(total.logouts, 0);
    assert_eq!(stats.reuse_detections, 0);
    assert!(total.refreshed > 0, "the survivors refreshed");
    server.shutdown().await;
}
