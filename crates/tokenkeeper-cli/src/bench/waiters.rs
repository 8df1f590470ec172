//! What one request waiting for a refresh costs in memory, at the session level.
//!
//! N tasks await `session.token_rejected(&credential)` while the refresher is held (a `from_fn` refresher
//! waiting on a `Notify`); the resident-memory growth divided by N is the cost of one waiting
//! request, tokio task included. The same is measured for N tasks that await a plain `Notify`
//! (the cost of any waiting task), and the difference is what tokenkeeper adds. The idle tasks
//! stay alive while the session waiters are spawned, so the second measurement cannot reuse
//! memory the first one freed.

use super::rss;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokenkeeper::{RefreshMode, Session, TokenSet, refresh};
use tokio::sync::Notify;

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct WaiterCost {
    /// Waiting tasks per measurement.
    pub n: usize,
    /// Bytes per task awaiting a plain `Notify`.
    pub idle_task_bytes: f64,
    /// Bytes per task awaiting `session.token_rejected(&credential)` during a held refresh.
    pub waiting_request_bytes: f64,
    /// The difference: what a waiting request costs beyond any waiting task.
    pub tokenkeeper_bytes: f64,
    /// Refresh calls made for all N waiters (target 1).
    pub refreshes: u64,
}

/// Measures with `n` waiters.
pub async fn measure(n: usize) -> anyhow::Result<WaiterCost> {
    let release = Arc::new(Notify::new());
    let refresher = {
        let release = Arc::clone(&release);
        refresh::from_fn(move |_current: TokenSet| {
            let release = Arc::clone(&release);
            async move {
                release.notified().await;
                Ok(TokenSet::new("fresh-access").with_refresh_token("fresh-refresh"))
            }
        })
    };
    let session = Session::builder()
        .refresher(refresher)
        .attach_to(["http://127.0.0.1"])
        .mode(RefreshMode::Reactive)
        .build()?;
    let credential = session
        .sign_in(TokenSet::new("old-access").with_refresh_token("old-refresh"))
        .await?;

    // Idle tasks: the cost of any task that waits.
    let idle_gate = Arc::new(Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let before_idle = rss::current().unwrap_or(0);
    let idle: Vec<_> = (0..n)
        .map(|_| {
            let (gate, started) = (Arc::clone(&idle_gate), Arc::clone(&started));
            tokio::spawn(async move {
                let notified = gate.notified();
                started.fetch_add(1, Ordering::Relaxed);
                notified.await;
            })
        })
        .collect();
    wait_until(|| started.load(Ordering::Relaxed) >= n).await;
    let after_idle = rss::current().unwrap_or(0);

    // Session waiters: every task is refused with generation g during one held refresh.
    let waiters: Vec<_> = (0..n)
        .map(|_| {
            let session = session.clone();
            let credential = Arc::clone(&credential);
            tokio::spawn(async move { session.token_rejected(&credential).await.is_ok() })
        })
        .collect();
    let joined = n.saturating_sub(1) as u64;
    wait_until(|| session.stats().waiters_joined >= joined).await;
    let after_waiters = rss::current().unwrap_or(0);

    release.notify_one();
    let mut ok = 0usize;
    for waiter in waiters {
        if waiter.await.unwrap_or(false) {
            ok += 1;
        }
    }
    idle_gate.notify_waiters();
    for task in idle {
        let _ = task.await;
    }
    if ok != n {
        anyhow::bail!("{} of {n} waiters did not get the new token", n - ok);
    }
    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / n.max(1) as f64;
    let idle_task_bytes = per(after_idle, before_idle);
    let waiting_request_bytes = per(after_waiters, after_idle);
    Ok(WaiterCost {
        n,
        idle_task_bytes,
        waiting_request_bytes,
        tokenkeeper_bytes: waiting_request_bytes - idle_task_bytes,
        refreshes: session.stats().refresh_attempts,
    })
}

/// Yields until `done` (checked every millisecond), for at most 60 s.
async fn wait_until(done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
