//! [`Mode::Requests`](super::Mode::Requests): a session restored from the shared store, many
//! request loops through it, and a count of what the session reported meanwhile.

use super::{Summary, WorkerConfig, WorkerError, session, stop_when};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenkeeper::store::TokenStore;
use tokenkeeper::{Event, Session};
use tokio::sync::broadcast;

/// How a worker's request loops run.
#[derive(Debug, Clone, Default)]
pub struct Load {
    /// Concurrent request loops.
    pub tasks: usize,
    /// How long they run at the most.
    pub duration: Duration,
    /// Pause between two requests of one loop.
    pub pause: Duration,
    /// Stop early once this file exists.
    pub stop_file: Option<PathBuf>,
}

/// A [`Mode::Requests`](super::Mode::Requests) worker: the reference server's session over
/// `store`, its requests to `/api/items/<task>-<n>`.
pub(super) async fn run(
    config: &WorkerConfig,
    store: Arc<dyn TokenStore>,
) -> Result<Summary, WorkerError> {
    let session = session(&config.base_url, store)?;
    let base = config.base_url.clone();
    requests_through(session, &config.load(), move |task, i| {
        format!("{base}/api/items/{task}-{i}")
    })
    .await
}

/// Restores `session` from its store (someone signed in before), sends GET requests to
/// `url(task, n)` from `load.tasks` loops until `load` says stop, waits until the session's last
/// refresh landed, and sums up what happened: requests that succeeded (2xx) or failed, and the
/// session's events. For a worker whose session is not the reference server's (another
/// refresher, another API).
pub async fn requests_through(
    session: Session,
    load: &Load,
    url: impl Fn(usize, u64) -> String + Send + Sync + 'static,
) -> Result<Summary, WorkerError> {
    let url = Arc::new(url);
    let events = session.events();
    if !session.restore().await? {
        return Err(WorkerError::NotSignedIn);
    }
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();

    let counts = Arc::new(Counts::default());
    let watcher = tokio::spawn(count_events(events, Arc::clone(&counts)));
    let running = Arc::new(AtomicBool::new(true));
    let stopper = stop_when(load, Arc::clone(&running));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut tasks = Vec::with_capacity(load.tasks);
    for task in 0..load.tasks {
        let client = client.clone();
        let url = Arc::clone(&url);
        let counts = Arc::clone(&counts);
        let first_error = Arc::clone(&first_error);
        let pause = load.pause;
        let running = Arc::clone(&running);
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while running.load(Relaxed) {
                i += 1;
                let error = match client.get(url(task, i)).send().await {
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
    stopper.abort();
    // A refresh ahead of expiry may still be out: the process must not exit before its pair is
    // stored (the server has rotated). Then the event channel closes and the watcher has
    // counted everything.
    session.refreshes_landed().await;
    let session_stats = Some(format!("{:?}", session.stats()));
    drop(session);
    drop(client);
    let logout_reasons = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .map_err(|_| WorkerError::RefreshStillOut)??;
    let first_error = first_error.lock().ok().and_then(|first| first.clone());
    Ok(Summary {
        ok: counts.ok.load(Relaxed),
        failed: counts.failed.load(Relaxed),
        first_error,
        refreshed: counts.refreshed.load(Relaxed),
        adopted: counts.adopted.load(Relaxed),
        store_failures: counts.store_failures.load(Relaxed),
        logouts: counts.logouts.load(Relaxed),
        logout_reasons,
        lost_events: counts.lost_events.load(Relaxed),
        saves: 0,
        session_stats,
    })
}

/// Counts the session's events until its channel closes; returns the logout reasons.
async fn count_events(mut events: broadcast::Receiver<Event>, counts: Arc<Counts>) -> Vec<String> {
    let mut logout_reasons = Vec::new();
    loop {
        let (counter, by) = match events.recv().await {
            Ok(Event::Refreshed { .. }) => (&counts.refreshed, 1),
            Ok(Event::Adopted { .. }) => (&counts.adopted, 1),
            Ok(Event::StoreFailed { .. }) => (&counts.store_failures, 1),
            Ok(Event::LoggedOut { reason }) => {
                logout_reasons.push(reason.to_string());
                (&counts.logouts, 1)
            }
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(missed)) => (&counts.lost_events, missed),
            Err(broadcast::error::RecvError::Closed) => break,
        };
        counter.fetch_add(by, Relaxed);
    }
    logout_reasons
}

#[derive(Debug, Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    refreshed: AtomicU64,
    adopted: AtomicU64,
    store_failures: AtomicU64,
    logouts: AtomicU64,
    lost_events: AtomicU64,
}
