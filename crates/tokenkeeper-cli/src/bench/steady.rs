//! Steady load across K expiries: reactive vs proactive, with the demo's storm machinery.

use crate::demo::progress::Progress;
use crate::demo::single_run::{RunReport, run_one};
use crate::demo::{DemoConfig, Kind};
use serde::Serialize;
use std::time::Duration;

/// How the steady load is run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Expiries to cross.
    pub expiries: u32,
    /// Access-token lifetime.
    pub ttl: Duration,
    /// Virtual users.
    pub users: usize,
}

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    /// Which client.
    pub client: Kind,
    /// Token expiries the run was sized to cross.
    pub expiries: u32,
    /// Refresh calls at the server.
    pub refresh_calls: u64,
    /// The ideal bound for this client (see the demo's definition).
    pub ideal_refresh_calls: u64,
    /// Failed requests.
    pub failures: u64,
    /// Expiry 401s the server sent.
    pub expiry_401s: u64,
    /// Reuse detections.
    pub reuse_detections: u64,
    /// Requests sent.
    pub requests: u64,
}

impl From<(&RunReport, u32)> for Steady {
    fn from((run, expiries): (&RunReport, u32)) -> Self {
        Self {
            client: run.client,
            expiries,
            refresh_calls: run.refresh_calls,
            ideal_refresh_calls: run.ideal_refresh_calls,
            failures: run.failed,
            expiry_401s: run.expiry_401s,
            reuse_detections: run.reuse_detections,
            requests: run.requests,
        }
    }
}

/// Runs `users` users for K × TTL + TTL/2 (so exactly K tokens expire for a reactive client,
/// whose tokens live a TTL plus one 401 round trip) in reactive and in proactive mode.
pub async fn measure(plan: &Plan) -> anyhow::Result<Vec<Steady>> {
    let mut config = DemoConfig::default();
    config.storm.users = plan.users;
    config.storm.duration = plan.ttl * plan.expiries + plan.ttl / 2;
    config.storm.think_max = Duration::from_millis(10);
    config.access_ttl = plan.ttl;
    config.api_latency = Duration::from_millis(5);
    config.refresh_latency = Duration::from_millis(5);
    let mut rows = Vec::new();
    for kind in [Kind::TokenkeeperReactive, Kind::Tokenkeeper] {
        let run = run_one(&config, kind, &Progress::hidden()).await?;
        rows.push(Steady::from((&run, plan.expiries)));
    }
    Ok(rows)
}
