//! Child processes for the keyed multi-process tests (started through [`crate::child`], like
//! `store_worker`): the test binary re-runs itself as `keyed_worker::keyed_worker`, configured by
//! a [`KeyedWorkerConfig`].
//!
//! A worker holds a `Sessions<String>` over a shared store family (Redis or PostgreSQL, the
//! store's key as the prefix), and runs `tasks` request loops that each pick a random key per
//! request and check that the server saw that key's user in the token.

#![allow(dead_code)]

use crate::keyed_env::user;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokenkeeper::keyed::Key;
use tokenkeeper::store::KeyedStore;
use tokenkeeper::{Session, Sessions, refresh};

use crate::child::{self, Job};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Family {
    Redis { url: String, prefix: String },
    Postgres { url: String, prefix: String },
}

impl Family {
    pub async fn open(&self, lock_ttl: Duration) -> Arc<dyn KeyedStore<String>> {
        match self {
            #[cfg(feature = "redis")]
            Family::Redis { url, prefix } => Arc::new(
                tokenkeeper::store::RedisStore::connect(url, prefix.clone())
                    .await
                    .expect("connect to Redis")
                    .lock_ttl(lock_ttl),
            ),
            #[cfg(not(feature = "redis"))]
            Family::Redis { .. } => panic!("built without the `redis` feature"),
            #[cfg(feature = "postgres")]
            Family::Postgres { url, prefix } => {
                let store = tokenkeeper::store::PostgresStore::connect(url, prefix.clone())
                    .await
                    .expect("connect to PostgreSQL")
                    .lock_ttl(lock_ttl);
                store.migrate().await.expect("migrate");
                Arc::new(store)
            }
            #[cfg(not(feature = "postgres"))]
            Family::Postgres { .. } => panic!("built without the `postgres` feature"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyedWorkerConfig {
    pub family: Family,
    pub lock_ttl_ms: u64,
    pub base_url: String,
    pub keys: usize,
    /// Sessions kept in memory (below `keys` makes the worker evict and restore).
    pub capacity: u64,
    pub tasks: usize,
    pub duration_ms: u64,
    pub pause_ms: u64,
}

impl Job for KeyedWorkerConfig {
    const TEST: &'static str = "keyed_worker::keyed_worker";
    const ENV: &'static str = "TK_KEYED_WORKER";
    const REPORT: &'static str = "TK-KEYED-SUMMARY ";
    type Report = KeyedSummary;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyedSummary {
    pub ok: u64,
    pub failed: u64,
    /// Answers that named another key's user: a token served for the wrong key.
    pub crossed: u64,
    /// `RefreshUnavailable` answers, each tried again (for as long as a dead holder of the
    /// key's lease can keep it).
    pub unavailable: u64,
    pub first_error: Option<String>,
}

/// The sessions of a worker (and of the parent, which signs every key in).
pub fn sessions(
    base_url: &str,
    stores: Arc<dyn KeyedStore<String>>,
    capacity: u64,
) -> Sessions<String> {
    Sessions::builder()
        .session(
            Session::builder()
                .refresher(
                    refresh::OAuth2::new(&format!("{base_url}/oauth2/token"))
                        .unwrap()
                        .client_id("tests"),
                )
                .attach_to([base_url]),
        )
        .store(stores)
        .capacity(capacity)
        .build()
        .unwrap()
}

/// Entry point of the child processes the keyed multi-process tests start ([`spawn`]).
#[test]
#[ignore = "runs only as a child process of the keyed multi-process tests"]
fn keyed_worker() {
    child_main();
}

/// The body of the ignored `keyed_worker` test: does nothing unless started by [`spawn`].
pub fn child_main() {
    child::main(|config: KeyedWorkerConfig| async move { run(&config).await });
}

async fn run(config: &KeyedWorkerConfig) -> KeyedSummary {
    let stores = config
        .family
        .open(Duration::from_millis(config.lock_ttl_ms))
        .await;
    let logins = sessions(&config.base_url, stores, config.capacity);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(logins.middleware())
        .build();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let crossed = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let running = Arc::new(AtomicBool::new(true));
    let deadline = Instant::now() + Duration::from_millis(config.duration_ms);
    let mut tasks = Vec::new();
    for task in 0..config.tasks {
        let (client, base) = (client.clone(), config.base_url.clone());
        let (ok, failed, crossed) = (ok.clone(), failed.clone(), crossed.clone());
        let unavailable = unavailable.clone();
        let (first_error, running) = (first_error.clone(), running.clone());
        let (keys, pause) = (config.keys, Duration::from_millis(config.pause_ms));
        let lock_ttl_ms = config.lock_ttl_ms;
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while running.load(Relaxed) && Instant::now() < deadline {
                i += 1;
                let key = user(rand::random_range(0..keys));
                let mut sent = client
                    .get(format!("{base}/api/items/{task}-{i}"))
                    .with_extension(Key(key.clone()))
                    .send()
                    .await;
                // What an application does with `RefreshUnavailable` (the tokens are kept):
                // try again. It happens while a killed worker's lease on the key runs out: a
                // wait for the key's lock ends after the refresh timeout (3/4 of the lease), the
                // lease frees up to a whole lease after the kill, and then the process that
                // takes it over still has to refresh and save before the others can adopt. So
                // tries go on until a lease and a refresh timeout beyond the first have passed,
                // the longest a dead holder can keep a key; past that, it is a failure.
                let patience = Duration::from_millis(lock_ttl_ms * 2 + lock_ttl_ms * 3 / 4);
                let first_try = Instant::now();
                while let Err(error) = &sent
                    && matches!(
                        crate::common::tk_error(error),
                        Some(tokenkeeper::Error::RefreshUnavailable(_))
                    )
                    && first_try.elapsed() < patience
                {
                    unavailable.fetch_add(1, Relaxed);
                    sent = client
                        .get(format!("{base}/api/items/{task}-{i}"))
                        .with_extension(Key(key.clone()))
                        .send()
                        .await;
                }
                let outcome = match sent {
                    Ok(response) if response.status().is_success() => {
                        match response.json::<serde_json::Value>().await {
                            Ok(body) if body["owner"] == key.as_str() => Ok(()),
                            Ok(body) => {
                                crossed.fetch_add(1, Relaxed);
                                Err(format!("{key} answered as {}", body["owner"]))
                            }
                            Err(error) => Err(error.to_string()),
                        }
                    }
                    Ok(response) => Err(format!("status {}", response.status())),
                    Err(error) => Err(error.to_string()),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Relaxed),
                    Err(error) => {
                        first_error.lock().unwrap().get_or_insert(error);
                        failed.fetch_add(1, Relaxed)
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
    running.store(false, Relaxed);
    // A refresh ahead of expiry may still be out: exiting before its pair is stored would lose
    // a rotation the server made (the next user of the key would present a used token).
    logins.refreshes_landed().await;
    let first_error = first_error.lock().unwrap().clone();
    KeyedSummary {
        ok: ok.load(Relaxed),
        failed: failed.load(Relaxed),
        crossed: crossed.load(Relaxed),
        unavailable: unavailable.load(Relaxed),
        first_error,
    }
}

/// A running child.
pub type KeyedWorker = child::Child<KeyedWorkerConfig>;

/// Starts this test binary again as a keyed worker.
pub fn spawn(config: &KeyedWorkerConfig) -> KeyedWorker {
    child::spawn(config)
}
