//! `Sessions` over a shared store family in eight real processes, on Redis and on PostgreSQL:
//! every process sends requests for random keys; each key's token is refreshed once per
//! lifetime used up (the stored generations advance by exactly the server's refresh calls), no
//! refresh token is presented twice, no request fails or carries another key's token; and the
//! same with one worker killed with `kill -9` mid-run (its keys go on in the others).
//!
//! Needs `TOKENKEEPER_REDIS_URL` / `TOKENKEEPER_POSTGRES_URL` (`scripts/redis.sh`,
//! `scripts/postgres.sh`): without them these tests fail when `CI` is set, and otherwise skip
//! with a loud message.

#![cfg(any(feature = "redis", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod keyed_env;
mod keyed_worker;
#[cfg(feature = "postgres")]
mod postgres_env;
#[cfg(feature = "redis")]
mod redis_env;

use common::*;
use keyed_env::*;
use keyed_worker::{Family, KeyedSummary, KeyedWorker, KeyedWorkerConfig};
use std::time::Duration;

/// Entry point of the child processes (see `keyed_worker`).
#[test]
#[ignore = "runs only as a child process of the keyed multi-process tests"]
fn keyed_worker() {
    keyed_worker::child_main();
}

/// The multi-process tests load both cores; one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const KEYS: usize = 200;
const PROCESSES: usize = 8;
const LOCK_TTL_MS: u64 = 2_000;

/// Generations stored per key, in key order.
async fn generations(family: &Family) -> Vec<u64> {
    let stores = family.open(Duration::from_millis(LOCK_TTL_MS)).await;
    let mut generations = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let store = stores.store_for(&user(i)).unwrap();
        let stored = store
            .load()
            .await
            .unwrap()
            .expect("every key stays signed in");
        generations.push(stored.generation);
    }
    generations
}

async fn eight_processes(family: Family, kill_one: bool) {
    let _heavy = HEAVY.lock().await;
    let server = server_with_users(
        KEYS,
        ServerConfig::default()
            .with_access_ttl(ms(2_000))
            // A refresh the killed worker sent may have rotated: its successor presents the
            // previous token, which a grace period accepts (as providers with rotation do).
            .with_grace_period(if kill_one {
                Duration::from_secs(10)
            } else {
                Duration::ZERO
            }),
    )
    .await;
    let parent = keyed_worker::sessions(
        &server.base_url(),
        family.open(Duration::from_millis(LOCK_TTL_MS)).await,
        KEYS as u64,
    );
    let http = reqwest::Client::new();
    for i in 0..KEYS {
        let tokens = login_as(&http, &server, &user(i)).await;
        parent.sign_in(user(i), tokens).await.unwrap();
    }
    let first = generations(&family).await;
    let before = server.stats();

    let config = KeyedWorkerConfig {
        family: family.clone(),
        lock_ttl_ms: LOCK_TTL_MS,
        base_url: server.base_url(),
        keys: KEYS,
        // Below the keys: every worker also evicts and restores all the time.
        capacity: (KEYS / 2) as u64,
        tasks: 8,
        duration_ms: 7_000,
        pause_ms: 2,
    };
    let mut workers: Vec<KeyedWorker> = (0..PROCESSES)
        .map(|_| keyed_worker::spawn(&config))
        .collect();
    if kill_one {
        // Somewhere in the middle of the run, whatever the victim is doing then.
        tokio::time::sleep(ms(3_000)).await;
        workers.remove(0).kill();
    }
    let summaries: Vec<KeyedSummary> =
        tokio::task::spawn_blocking(move || workers.into_iter().map(KeyedWorker::finish).collect())
            .await
            .unwrap();

    let stats = delta(&before, &server.stats());
    let last = generations(&family).await;
    let advanced: u64 = first.iter().zip(&last).map(|(a, b)| b - a).sum();
    let (ok, failed, crossed) = summaries.iter().fold((0, 0, 0), |t, s| {
        (t.0 + s.ok, t.1 + s.failed, t.2 + s.crossed)
    });
    let unavailable: u64 = summaries.iter().map(|s| s.unavailable).sum();
    eprintln!(
        "{PROCESSES} processes x {KEYS} keys over {family:?} (kill one: {kill_one}): {ok} ok, \
         {failed} failed, {crossed} crossed, {unavailable} tried again after RefreshUnavailable; server: {} refresh calls, {} rotations, {} reuse \
         detections, {} grace hits; stored generations advanced by {advanced}",
        stats.refresh_calls, stats.rotations, stats.reuse_detections, stats.grace_hits
    );
    let first_error = summaries.iter().find_map(|s| s.first_error.clone());
    assert_eq!(crossed, 0, "{first_error:?}");
    assert_eq!(failed, 0, "first error: {first_error:?}");
    assert!(summaries.iter().all(|s| s.ok > 0), "{summaries:?}");
    assert_eq!(stats.reuse_detections, 0);
    // A refresh with the previous token within the grace period answers with a pair too.
    assert_eq!(stats.refresh_calls, stats.rotations + stats.grace_hits);
    if !kill_one {
        assert_eq!(
            unavailable, 0,
            "no refresh waits out a lease when nobody dies"
        );
    }
    if kill_one {
        // Refreshes the victim sent whose answers died with it: at most one per task of it.
        let lost = stats.refresh_calls - advanced;
        assert!(lost <= config.tasks as u64, "{lost} refreshes not stored");
    } else {
        assert_eq!(
            stats.refresh_calls, advanced,
            "one refresh per lifetime used up"
        );
    }
    assert!(
        stats.refresh_calls >= KEYS as u64,
        "tokens expired during the run"
    );
    server.shutdown().await;
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;

    fn family(name: &str) -> Option<Family> {
        let url = redis_env::redis_url()?;
        let prefix = format!("{}:", redis_env::unique_key(name));
        Some(Family::Redis { url, prefix })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eight_processes_share_200_keys_through_redis() {
        let Some(family) = family("keyed-eight") else {
            return;
        };
        eight_processes(family, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eight_processes_share_200_keys_through_redis_with_one_killed() {
        let Some(family) = family("keyed-kill") else {
            return;
        };
        eight_processes(family, true).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    fn family(name: &str) -> Option<Family> {
        let url = postgres_env::postgres_url()?;
        let prefix = format!("{}:", postgres_env::unique_key(name));
        Some(Family::Postgres { url, prefix })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eight_processes_share_200_keys_through_postgres() {
        let Some(family) = family("keyed-eight") else {
            return;
        };
        eight_processes(family, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eight_processes_share_200_keys_through_postgres_with_one_killed() {
        let Some(family) = family("keyed-kill") else {
            return;
        };
        eight_processes(family, true).await;
    }
}
