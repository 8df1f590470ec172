//! Burst scaling: N concurrent requests meeting an expired token, against the same burst with a
//! valid token.
//!
//! The process may hold at most 20,000 file descriptors, so 10k and 100k concurrent HTTP/1
//! connections are impossible. Every request is inside tokenkeeper's middleware at once; below
//! it, an [`InFlightLimit`](super::client::InFlightLimit) lets at most `connections` of them
//! onto the wire at a time, over that many keep-alive connections.

use super::client;
use super::rss;
use super::server::ServerThread;
use crate::metrics::Latencies;
use anyhow::Context;
use reqwest_middleware::ClientWithMiddleware;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenkeeper::{RefreshMode, Session, SessionStats};
use tokenkeeper_server::{ServerConfig, Stats};

/// How the bursts are run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Burst sizes.
    pub sizes: Vec<usize>,
    /// Requests allowed on the wire at once (= keep-alive connections).
    pub connections: usize,
    /// Access-token lifetime on the server; must outlast the largest burst.
    pub ttl: Duration,
}

/// What the token looked like when the burst started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    /// Fresh token: the baseline.
    Valid,
    /// Expired token, default (proactive) mode: the session knows it expired, every request
    /// waits for the one refresh before it is sent.
    ExpiredProactive,
    /// Expired token, reactive mode: requests go out with it, the server says 401, one refresh,
    /// every request retried once.
    ExpiredReactive,
}

impl Case {
    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Case::Valid => "valid token",
            Case::ExpiredProactive => "expired, default mode",
            Case::ExpiredReactive => "expired, reactive mode",
        }
    }
}

/// One burst's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    /// Requests in the burst.
    pub n: usize,
    /// Token state at the start.
    pub case: Case,
    /// Refresh calls the server received during the burst.
    pub refresh_calls: u64,
    /// Requests that did not end in a 200.
    pub failures: u64,
    /// Reuse detections at the server.
    pub reuse_detections: u64,
    /// Requests the server received (retries included).
    pub wire_requests: u64,
    /// Latency from issuing each request to its answer.
    pub latency: Latencies,
    /// From the first request issued to the last answer, seconds.
    pub elapsed_s: f64,
    /// Peak resident memory during the burst, bytes (the server thread included).
    pub peak_rss: Option<u64>,
    /// (peak − resident before) / N: memory per request in flight across the whole stack.
    pub bytes_per_request: Option<f64>,
    /// The session's counters for the burst.
    #[serde(skip)]
    pub session: SessionStats,
}

/// Runs every burst. Sessions for the expired cases sign in first, together; while their
/// tokens age past the TTL the valid-token bursts run (each with a session signed in just
/// before, so its token stays valid throughout), then `meanwhile` (other work that fits in the
/// wait); then the expired bursts run.
pub async fn measure<T>(
    plan: &Plan,
    meanwhile: impl Future<Output = T>,
) -> anyhow::Result<(Vec<Burst>, T)> {
    let server = ServerThread::start(ServerConfig::default().with_access_ttl(plan.ttl), 1)?;
    let base = server.base_url().to_owned();
    let mut aging = Vec::new();
    for &n in &plan.sizes {
        for (case, mode) in [
            (Case::ExpiredProactive, RefreshMode::default()),
            (Case::ExpiredReactive, RefreshMode::Reactive),
        ] {
            aging.push((n, case, client::signed_in(&base, mode).await?));
        }
    }
    let expired_at = Instant::now() + plan.ttl + Duration::from_millis(200);

    // Warm the server and the loopback path once, so the first measured burst is not also the
    // first thing the server ever does.
    let warm_up = client::signed_in(&base, RefreshMode::default()).await?;
    run(&server, &warm_up, 1_000, Case::Valid, plan.connections).await?;

    let mut results = Vec::new();
    for &n in &plan.sizes {
        let session = client::signed_in(&base, RefreshMode::default()).await?;
        results.push(run(&server, &session, n, Case::Valid, plan.connections).await?);
    }
    let other = meanwhile.await;
    tokio::time::sleep_until(expired_at.into()).await;
    for (n, case, session) in aging {
        results.push(run(&server, &session, n, case, plan.connections).await?);
    }
    server.stop().await;
    Ok((results, other))
}

async fn run(
    server: &ServerThread,
    session: &Session,
    n: usize,
    case: Case,
    connections: usize,
) -> anyhow::Result<Burst> {
    let client = client::through(session, client::http(connections)?, Some(connections));
    let url: Arc<str> = Arc::from(format!("{}/api/items/7", server.base_url()));
    let stats_before = session.stats();
    let before = server.stats();
    let rss_before = rss::current();
    let peak_reset = rss::reset_peak();
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (client.clone(), Arc::clone(&url));
            let issued = Instant::now();
            tokio::spawn(async move { one(&client, &url, issued).await })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    let mut failures = 0u64;
    for handle in handles {
        match handle.await.context("a burst request panicked")? {
            (true, ms) => latencies.push(ms),
            (false, _) => failures += 1,
        }
    }
    let elapsed = started.elapsed();
    let peak = if peak_reset { rss::peak() } else { None };
    let delta = delta(&before, &server.stats());
    Ok(Burst {
        n,
        case,
        refresh_calls: delta.refresh_calls,
        failures,
        reuse_detections: delta.reuse_detections,
        wire_requests: delta.api_ok + delta.api_401_expired + delta.api_401_invalid,
        latency: Latencies::from_millis(latencies),
        elapsed_s: elapsed.as_secs_f64(),
        peak_rss: peak,
        bytes_per_request: match (peak, rss_before) {
            (Some(peak), Some(before)) if n > 0 => {
                Some(peak.saturating_sub(before) as f64 / n as f64)
            }
            _ => None,
        },
        session: minus(session.stats(), stats_before),
    })
}

async fn one(client: &ClientWithMiddleware, url: &str, issued: Instant) -> (bool, f64) {
    let ok = match client.get(url).send().await {
        Ok(response) => {
            let status = response.status();
            if !status.is_success() {
                tracing::debug!(%status, "burst request refused");
            }
            response.bytes().await.is_ok() && status.is_success()
        }
        Err(error) => {
            tracing::debug!(%error, "burst request failed");
            false
        }
    };
    (ok, issued.elapsed().as_secs_f64() * 1000.0)
}

fn delta(before: &Stats, after: &Stats) -> Stats {
    Stats {
        refresh_calls: after.refresh_calls - before.refresh_calls,
        reuse_detections: after.reuse_detections - before.reuse_detections,
        api_ok: after.api_ok - before.api_ok,
        api_401_expired: after.api_401_expired - before.api_401_expired,
        api_401_invalid: after.api_401_invalid - before.api_401_invalid,
        ..Stats::default()
    }
}

fn minus(after: SessionStats, before: SessionStats) -> SessionStats {
    let mut stats = after;
    stats.refreshes = after.refreshes.saturating_sub(before.refreshes);
    stats.refresh_attempts = after
        .refresh_attempts
        .saturating_sub(before.refresh_attempts);
    stats.stale_retries = after.stale_retries.saturating_sub(before.stale_retries);
    stats.retries = after.retries.saturating_sub(before.retries);
    stats.waiters_joined = after.waiters_joined.saturating_sub(before.waiters_joined);
    stats
}
