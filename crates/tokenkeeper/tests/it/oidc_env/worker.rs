//! Child processes for the shared-FileStore test against the provider.
//!
//! The test binary re-runs itself as the child `oidc_interop::oidc_worker` (through
//! [`crate::child`], like `store_worker` does for the reference server), configured by a
//! [`WorkerConfig`].
//! A worker restores the login the parent stored, refreshes at the provider with the discovered
//! `OAuth2` refresher, sends request loops to the parent's resource server
//! (`tokenkeeper_testkit::worker::requests_through`, the store worker's loops), and prints a
//! [`Summary`].

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use tokenkeeper::Session;
pub use tokenkeeper_testkit::worker::Summary;
use tokenkeeper_testkit::worker::{Load, requests_through};

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
    let load = Load {
        tasks: config.tasks,
        duration: Duration::from_millis(config.duration_ms),
        pause: Duration::from_millis(config.pause_ms),
        stop_file: None,
    };
    let api = config.api.clone();
    let summary = requests_through(session, &load, move |task, _| format!("{api}/items/{task}"))
        .await
        .expect("the worker's run");
    // The counts are exact or the run fails.
    assert_eq!(summary.lost_events, 0, "lost events: {summary:?}");
    summary
}

/// A running child.
pub type Worker = child::Child<WorkerConfig>;

/// Starts this test binary again as a worker.
pub fn spawn(config: &WorkerConfig) -> Worker {
    child::spawn(config)
}
