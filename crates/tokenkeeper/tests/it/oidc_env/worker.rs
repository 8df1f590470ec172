//! Child processes for the shared-FileStore test against the provider.
//!
//! The test binary re-runs itself as the child `oidc_interop::oidc_worker` (through
//! [`crate::child`], like `store_worker` does for the reference server), configured by a
//! [`WorkerConfig`].
//! A worker restores the login the parent stored, refreshes at the provider with the discovered
//! `OAuth2` refresher, sends request loops to the parent's resource server, and prints a
//! [`Summary`].

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokenkeeper::{Event, Session};

use crate::child::{self, Job};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub issuer: String,
    pub client_id: String,
    pub store: PathBuf,
    /// The resource server's origin.
    pub api: String,
    pub tasks: usize,
    pub duration_ms: u64,
    pub pause_ms: u64,
}

impl Job for WorkerConfig {
    const TEST: &'static str = "oidc_interop::oidc_worker";
    const ENV: &'static str = "TK_OIDC_WORKER";
    const REPORT: &'static str = "TK-OIDC-WORKER-SUMMARY ";
    type Report = Summary;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub ok: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// `Event::Refreshed`: refreshes this process made.
    pub refreshed: u64,
    /// `Event::Adopted`: pairs another process refreshed.
    pub adopted: u64,
    pub logouts: u64,
}

/// The body of the ignored `oidc_worker` test: does nothing unless started by [`spawn`].
pub fn child_main() {
    child::main(run);
}

async fn run(config: WorkerConfig) -> Summary {
    let store = tokenkeeper::store::FileStore::open(&config.store).unwrap();
    let session = Session::builder()
        .refresher(super::oauth2(&config.issuer, &config.client_id).await)
        .store(store)
        .attach_to([config.api.as_str()])
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

    let refreshed = Arc::new(AtomicU64::new(0));
    let adopted = Arc::new(AtomicU64::new(0));
    let logouts = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (refreshed, adopted, logouts) = (
            Arc::clone(&refreshed),
            Arc::clone(&adopted),
            Arc::clone(&logouts),
        );
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let counter = match events.recv().await {
                    Ok(Event::Refreshed { .. }) => &refreshed,
                    Ok(Event::Adopted { .. }) => &adopted,
                    Ok(Event::LoggedOut { .. }) => &logouts,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => panic!("lost {n} events"),
                    Err(RecvError::Closed) => break,
                };
                counter.fetch_add(1, Relaxed);
            }
        })
    };

    let deadline = Instant::now() + Duration::from_millis(config.duration_ms);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let tasks: Vec<_> = (0..config.tasks)
        .map(|task| {
            let (client, ok, failed, first_error) = (
                client.clone(),
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&first_error),
            );
            let url = format!("{}/items/{task}", config.api);
            let pause = Duration::from_millis(config.pause_ms);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let error = match client.get(&url).send().await {
                        Ok(response) if response.status().is_success() => None,
                        Ok(response) => Some(format!("status {}", response.status())),
                        Err(error) => Some(error.to_string()),
                    };
                    match error {
                        None => ok.fetch_add(1, Relaxed),
                        Some(error) => {
                            first_error.lock().unwrap().get_or_insert(error);
                            failed.fetch_add(1, Relaxed)
                        }
                    };
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
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
        ok: ok.load(Relaxed),
        failed: failed.load(Relaxed),
        first_error,
        refreshed: refreshed.load(Relaxed),
        adopted: adopted.load(Relaxed),
        logouts: logouts.load(Relaxed),
    }
}

/// A running child.
pub type Worker = child::Child<WorkerConfig>;

/// Starts this test binary again as a worker.
pub fn spawn(config: &WorkerConfig) -> Worker {
    child::spawn(config)
}
