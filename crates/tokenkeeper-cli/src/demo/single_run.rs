//! One run: a fresh server, one client, the storm, and the counts that come out of it.

use super::DemoConfig;
use super::call::Failure;
use super::contender::{Contender, Kind};
use super::relogin::ReloginGate;
use super::storm::{self, Live, Sample};
use super::timeline::recorder::{Mark, Marks};
use crate::demo::progress::Progress;
use crate::metrics::{self, Latencies};
use crate::reference_client::ReferenceClient;
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokenkeeper::SessionStats;
use tokenkeeper_server::{Latency, ServerConfig, Stats};

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Which client.
    pub client: Kind,
    /// Its row label.
    pub label: &'static str,
    /// Requests the users sent (each counted once, retries not counted).
    pub requests: u64,
    /// Requests that ended in a 2xx.
    pub ok: u64,
    /// Requests that did not.
    pub failed: u64,
    /// Failed requests by reason.
    pub failures: BTreeMap<Failure, u64>,
    /// API requests the server refused because the token had expired.
    pub expiry_401s: u64,
    /// API requests the server refused because the token was invalid (revoked family).
    pub invalid_401s: u64,
    /// Calls to the refresh endpoint the server received.
    pub refresh_calls: u64,
    /// Of those, the ones that rotated (issued a new pair).
    pub rotations: u64,
    /// The most refresh calls a perfect client of this kind needs (see `metrics::ideal_refreshes`).
    pub ideal_refresh_calls: u64,
    /// Already-rotated refresh tokens presented.
    pub reuse_detections: u64,
    /// Token families the server revoked: sessions killed.
    pub sessions_revoked: u64,
    /// Times the user was sent back to the login screen.
    pub forced_relogins: u64,
    /// Latency of successful requests, as the user waited for them.
    pub latency: Latencies,
    /// From the first sign-in to the last request's answer, in seconds.
    pub elapsed_s: f64,
    /// Successful requests per second over the run.
    pub ok_per_s: f64,
    /// The session's own counters (tokenkeeper only).
    pub session: Option<SessionSummary>,
    /// Why this tokenkeeper run failed its criterion (empty: passed; `None` for baselines).
    pub problems: Option<Vec<String>>,
    /// What the timeline draws.
    #[serde(skip)]
    pub timeline: TimelineData,
}

impl RunReport {
    /// Whether this is a tokenkeeper run that met the criterion.
    pub fn passed(&self) -> Option<bool> {
        self.problems.as_ref().map(Vec::is_empty)
    }
}

/// The tokenkeeper session's counters that matter here.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SessionSummary {
    /// Successful refreshes.
    pub refreshes: u64,
    /// Calls made to the refresher (transient failures included).
    pub refresh_attempts: u64,
    /// Refreshes started ahead of expiry.
    pub proactive_refreshes: u64,
    /// Requests that joined a refresh another request started.
    pub waiters_joined: u64,
    /// Late 401s retried with the newer token, no refresh.
    pub stale_retries: u64,
    /// Requests retried after a refresh.
    pub retries: u64,
}

impl From<SessionStats> for SessionSummary {
    fn from(stats: SessionStats) -> Self {
        Self {
            refreshes: stats.refreshes,
            refresh_attempts: stats.refresh_attempts,
            proactive_refreshes: stats.proactive_refreshes,
            waiters_joined: stats.waiters_joined,
            stale_retries: stats.stale_retries,
            retries: stats.retries,
        }
    }
}

/// The raw material of a timeline panel.
#[derive(Debug, Clone, Default)]
pub struct TimelineData {
    /// Every request.
    pub samples: Vec<Sample>,
    /// 401s, refreshes, re-logins.
    pub marks: Vec<Mark>,
    /// Seconds from the origin to the end of the run.
    pub end: f64,
}

/// The server for one run: the demo's TTL, grace, latencies and faults.
pub fn server_config(config: &DemoConfig) -> ServerConfig {
    ServerConfig::default()
        .with_access_ttl(config.access_ttl)
        .with_grace_period(config.grace)
        .with_latency(Latency {
            login: Duration::ZERO,
            refresh: config.refresh_latency,
            api: config.api_latency,
        })
        .with_refresh_failure_rate(config.refresh_failure_rate)
}

/// Runs the storm once against a fresh server with a client of `kind`.
pub async fn run_one(
    config: &DemoConfig,
    kind: Kind,
    progress: &Progress,
) -> anyhow::Result<RunReport> {
    let server = tokenkeeper_server::start(server_config(config))
        .await
        .context("starting the reference server")?;
    let marks = Arc::new(Marks::new());
    let wire = ReferenceClient::new(config.style, &server.base_url())?;
    let contender = Arc::new(Contender::new(kind, wire, Arc::clone(&marks))?);
    let gate = Arc::new(ReloginGate::new(config.relogin_delay, Arc::clone(&marks)));
    gate.sign_in_first(&contender)
        .await
        .context("the first sign-in failed")?;

    let live = Arc::new(Live::default());
    let bar = progress.run_bar(kind.label(), config.storm.duration);
    let ticker = {
        let (bar, live, state) = (bar.clone(), Arc::clone(&live), server.state().clone());
        tokio::spawn(async move {
            loop {
                bar.update(&live, state.stats().refresh_calls);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let samples = storm::run(
        &config.storm,
        Arc::clone(&contender),
        Arc::clone(&gate),
        Arc::clone(&live),
        marks.origin(),
    )
    .await;
    ticker.abort();
    let end = marks.now();
    let stats = server.stats();
    bar.finish(&live, stats.refresh_calls);
    server.shutdown().await;

    let session = contender.session_stats().map(SessionSummary::from);
    let ideal = metrics::ideal_refreshes(
        &metrics::signed_in_segments(&gate.sign_ins(), end),
        metrics::min_generation_life(config.access_ttl, kind.proactive().as_ref()),
    );
    let mut report = summarise(kind, &samples, &stats, ideal, gate.forced(), end, session);
    report.timeline = TimelineData {
        samples,
        marks: marks.take(),
        end,
    };
    if kind.is_tokenkeeper() {
        report.problems = Some(judge(&report));
    }
    Ok(report)
}

/// Counts a run's samples and server counters into a report (no timeline, no judgement).
pub fn summarise(
    kind: Kind,
    samples: &[Sample],
    stats: &Stats,
    ideal_refresh_calls: u64,
    forced_relogins: u64,
    end: f64,
    session: Option<SessionSummary>,
) -> RunReport {
    let mut failures = BTreeMap::new();
    let mut ok_latencies = Vec::with_capacity(samples.len());
    for sample in samples {
        match sample.outcome {
            Ok(()) => ok_latencies.push(sample.latency_ms),
            Err(failure) => *failures.entry(failure).or_insert(0) += 1,
        }
    }
    let ok = ok_latencies.len() as u64;
    RunReport {
        client: kind,
        label: kind.label(),
        requests: samples.len() as u64,
        ok,
        failed: samples.len() as u64 - ok,
        failures,
        expiry_401s: stats.api_401_expired,
        invalid_401s: stats.api_401_invalid,
        refresh_calls: stats.refresh_calls,
        rotations: stats.rotations,
        ideal_refresh_calls,
        reuse_detections: stats.reuse_detections,
        sessions_revoked: stats.families_revoked,
        forced_relogins,
        latency: Latencies::from_millis(ok_latencies),
        elapsed_s: end,
        ok_per_s: if end > 0.0 { ok as f64 / end } else { 0.0 },
        session,
        problems: None,
        timeline: TimelineData::default(),
    }
}

/// tokenkeeper's pass criterion; returns what was not met.
///
/// - no failed request, no forced re-login;
/// - no reuse detection, no revoked session;
/// - no wasted refresh call: every call the server received is one the session made
///   (server calls = session attempts) and every success became the session's generation
///   (server rotations = session refreshes);
/// - successful refreshes within the ideal bound.
pub fn judge(report: &RunReport) -> Vec<String> {
    let mut problems = Vec::new();
    if report.failed > 0 {
        problems.push(format!("{} requests failed", report.failed));
    }
    if report.forced_relogins > 0 {
        problems.push(format!("{} forced re-logins", report.forced_relogins));
    }
    if report.reuse_detections > 0 || report.sessions_revoked > 0 {
        problems.push(format!(
            "{} reuse detections, {} sessions revoked",
            report.reuse_detections, report.sessions_revoked
        ));
    }
    let Some(session) = report.session else {
        problems.push("no session counters".into());
        return problems;
    };
    if report.refresh_calls != session.refresh_attempts {
        problems.push(format!(
            "the server received {} refresh calls, the session made {}",
            report.refresh_calls, session.refresh_attempts
        ));
    }
    if report.rotations != session.refreshes {
        problems.push(format!(
            "the server rotated {} times, the session installed {} refreshes",
            report.rotations, session.refreshes
        ));
    }
    if session.refreshes > report.ideal_refresh_calls {
        problems.push(format!(
            "{} refreshes, more than the ideal {}",
            session.refreshes, report.ideal_refresh_calls
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(outcome: Result<(), Failure>, latency_ms: f64) -> Sample {
        Sample {
            sent_at: 0.0,
            latency_ms,
            outcome,
        }
    }

    fn session(refreshes: u64) -> SessionSummary {
        SessionSummary {
            refreshes,
            refresh_attempts: refreshes,
            proactive_refreshes: refreshes,
            waiters_joined: 0,
            stale_retries: 0,
            retries: 0,
        }
    }

    #[test]
    fn summaries_count_failures_by_reason() {
        let samples = [
            sample(Ok(()), 10.0),
            sample(Ok(()), 30.0),
            sample(Err(Failure::LoggedOut), 5.0),
            sample(Err(Failure::LoggedOut), 5.0),
            sample(Err(Failure::Unauthorized), 5.0),
        ];
        let report = summarise(Kind::Naive, &samples, &Stats::default(), 5, 2, 10.0, None);
        assert_eq!((report.requests, report.ok, report.failed), (5, 2, 3));
        assert_eq!(report.failures.get(&Failure::LoggedOut), Some(&2));
        assert_eq!(report.failures.get(&Failure::Unauthorized), Some(&1));
        assert_eq!(report.latency.p50_ms, 10.0);
        assert_eq!(report.latency.max_ms, 30.0);
        assert!((report.ok_per_s - 0.2).abs() < 1e-9);
    }

    #[test]
    fn a_clean_tokenkeeper_run_passes() {
        let stats = Stats {
            refresh_calls: 6,
            rotations: 6,
            ..Stats::default()
        };
        let report = summarise(
            Kind::Tokenkeeper,
            &[sample(Ok(()), 1.0)],
            &stats,
            7,
            0,
            10.0,
            Some(session(6)),
        );
        assert!(judge(&report).is_empty(), "{:?}", judge(&report));
    }

    #[test]
    fn wasted_calls_reuse_and_failures_fail_the_criterion() {
        let stats = Stats {
            refresh_calls: 9,
            rotations: 7,
            reuse_detections: 1,
            families_revoked: 1,
            ..Stats::default()
        };
        let report = summarise(
            Kind::Tokenkeeper,
            &[sample(Err(Failure::LoggedOut), 1.0)],
            &stats,
            7,
            1,
            10.0,
            Some(session(8)),
        );
        let problems = judge(&report);
        assert_eq!(problems.len(), 6, "{problems:?}");
    }
}
