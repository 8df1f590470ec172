//! `tokenkeeper demo`: the same storm of concurrent requests, crossing several token expiries
//! with rotation and reuse detection on, against hand-written refresh interceptors and against
//! tokenkeeper, side by side.
//!
//! Each run gets a fresh in-process reference server on 127.0.0.1 (new families, zeroed
//! counters), signs in, and lets N virtual users send a mix of `GET /api/items/{id}` and
//! `POST /api/items` with small random think times for D seconds. The server decides each API
//! request when it arrives and answers after its latency, so 401s arrive in flight and late.
//! A client that gets logged out sends its user back to the login screen (a forced re-login,
//! `--relogin-delay` long) and the storm goes on, so the cost is visible.

pub mod args;
pub mod baseline;
pub mod call;
pub mod command;
pub mod contender;
pub mod progress;
pub mod relogin;
pub mod report;
pub mod single_run;
pub mod storm;
pub mod timeline;
pub mod tokenkeeper_contender;

pub use args::DemoArgs;
pub use contender::Kind;
pub use single_run::RunReport;

use crate::demo::progress::Progress;
use serde::Serialize;
use std::time::Duration;
use tokenkeeper_server::Contract;

/// Everything a demo run is configured by.
#[derive(Debug, Clone, Serialize)]
pub struct DemoConfig {
    /// The refresh contract every client speaks.
    #[serde(serialize_with = "serialize_style")]
    pub style: Contract,
    /// The load.
    #[serde(skip)]
    pub storm: storm::Storm,
    /// Access-token lifetime on the server.
    #[serde(rename = "access_ttl_ms", serialize_with = "millis")]
    pub access_ttl: Duration,
    /// Reuse grace period on the server (0: any second presentation is reuse).
    #[serde(rename = "grace_ms", serialize_with = "millis")]
    pub grace: Duration,
    /// Server latency on the protected API, applied after the request was decided.
    #[serde(rename = "api_latency_ms", serialize_with = "millis")]
    pub api_latency: Duration,
    /// Server latency on the refresh endpoints.
    #[serde(rename = "refresh_latency_ms", serialize_with = "millis")]
    pub refresh_latency: Duration,
    /// Probability that the server answers a refresh with 503.
    pub refresh_failure_rate: f64,
    /// How long the user takes at the login screen after a logout.
    #[serde(rename = "relogin_delay_ms", serialize_with = "millis")]
    pub relogin_delay: Duration,
    /// Which clients run, in order.
    pub clients: Vec<Kind>,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

fn serialize_style<S: serde::Serializer>(
    style: &Contract,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(style.as_str())
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            style: Contract::Json,
            storm: storm::Storm {
                users: 200,
                duration: Duration::from_secs(10),
                think_max: Duration::from_millis(50),
                post_ratio: 0.3,
                seed: 1,
            },
            access_ttl: Duration::from_secs(2),
            grace: Duration::ZERO,
            api_latency: Duration::from_millis(75),
            refresh_latency: Duration::from_millis(10),
            refresh_failure_rate: 0.0,
            relogin_delay: Duration::from_secs(1),
            clients: vec![Kind::Naive, Kind::SharedFuture, Kind::Tokenkeeper],
        }
    }
}

/// The whole demo's results.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// How it was configured.
    pub config: DemoConfig,
    /// Users and duration (not in `config`'s serialization).
    pub users: usize,
    /// Seconds each storm ran.
    pub duration_s: f64,
    /// One per client, in order.
    pub runs: Vec<RunReport>,
    /// Whether every tokenkeeper run met its criterion.
    pub passed: bool,
}

/// Runs the storm once per configured client, one after another, and judges tokenkeeper's runs.
pub async fn run(config: &DemoConfig, progress: &Progress) -> anyhow::Result<DemoReport> {
    let mut runs = Vec::with_capacity(config.clients.len());
    for &kind in &config.clients {
        tracing::info!(client = kind.label(), "storm starting");
        runs.push(single_run::run_one(config, kind, progress).await?);
    }
    let passed = runs.iter().all(|r| r.passed().unwrap_or(true))
        && runs.iter().any(|r| r.client.is_tokenkeeper());
    Ok(DemoReport {
        config: config.clone(),
        users: config.storm.users,
        duration_s: config.storm.duration.as_secs_f64(),
        runs,
        passed,
    })
}
