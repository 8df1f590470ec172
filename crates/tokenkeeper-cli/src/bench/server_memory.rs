//! The reference server's memory per login and per refresh, with pruning off (the baseline:
//! every family kept until a reset, as before pruning existed) and on, in the same run.
//!
//! Measured by `cargo bench -p tokenkeeper-cli --bench server_memory`, a separate process whose
//! global allocator counts live heap bytes (a counting allocator would slow every other figure
//! of `tokenkeeper bench`, so it lives in its own binary). That binary writes its figures to
//! [`results_path`]; `tokenkeeper bench` reads them into BENCHMARKS.md's section 6, the way it
//! reads criterion's.
//!
//! One round, for each setting: a server on this process's runtime, one keep-alive client
//! sending one request at a time, so between requests the only heap that grows is the server's
//! state. Live bytes are read (1) before, (2) after R refreshes of one session, (3) after N
//! logins, (4) once every session has died (refresh TTL passed) and a login let the server
//! prune. Bytes per refresh = (2 − 1) / R; bytes per login = (3 − 2) / N while the sessions
//! live and (4 − 2) / N once they are dead. The hash table's spare capacity is included
//! (amortised): it is memory the server holds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokenkeeper_server::{Contract, ServerConfig, ServerHandle};

/// Sizes of a measurement.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Logins per round.
    pub logins: usize,
    /// Refreshes of one session per round.
    pub refreshes: usize,
    /// Refresh-token lifetime of the measured servers: longer than the login phase, so no
    /// session dies while logins are counted.
    pub refresh_ttl: Duration,
    /// Rounds per setting; figures are medians.
    pub rounds: usize,
}

impl Plan {
    /// The full run (about a minute).
    pub fn full() -> Self {
        Self {
            logins: 10_000,
            refreshes: 10_000,
            refresh_ttl: Duration::from_secs(6),
            rounds: 3,
        }
    }

    /// A smoke run for tests.
    pub fn quick() -> Self {
        Self {
            logins: 200,
            refreshes: 200,
            refresh_ttl: Duration::from_secs(2),
            rounds: 1,
        }
    }
}

/// One setting's figures: medians over the rounds, and each round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// Heap bytes per login while the sessions live.
    pub login_bytes_live: f64,
    /// Heap bytes per login still held once every session is dead.
    pub login_bytes_dead: f64,
    /// Heap bytes per refresh of a live session.
    pub refresh_bytes: f64,
    /// Families the server held once every session was dead (last round).
    pub families_left: u64,
    /// Every round's figures, in order: (per login live, per login dead, per refresh).
    pub rounds: Vec<[f64; 3]>,
}

/// Pruning off vs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMemory {
    /// Logins per round.
    pub logins: usize,
    /// Refreshes per round.
    pub refreshes: usize,
    /// Refresh-token lifetime, seconds.
    pub refresh_ttl_s: f64,
    /// `prune_families: false`: every family kept until a reset (the baseline).
    pub pruning_off: Setting,
    /// `prune_families: true` (the default), retention zero.
    pub pruning_on: Setting,
    /// CPU, logical CPUs and OS of the machine that measured it.
    pub machine: String,
    /// When, UTC.
    pub date: String,
    /// The command that produced it.
    pub command: String,
}

/// Where the bench binary writes its figures: `$CARGO_TARGET_DIR/tokenkeeper-bench`, else the
/// workspace's `target/tokenkeeper-bench`.
pub fn results_path() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    target.join("tokenkeeper-bench").join("server-memory.json")
}

/// The figures at `path`, if the bench was run.
pub fn read(path: &Path) -> Option<ServerMemory> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Writes `figures` to `path`, creating its directory.
pub fn write(path: &Path, figures: &ServerMemory) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(figures)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Measures `plan` with `live_bytes` reading the heap bytes allocated and not yet freed.
pub async fn measure(
    plan: &Plan,
    live_bytes: impl Fn() -> i64,
    command: String,
) -> anyhow::Result<ServerMemory> {
    let mut off = Vec::new();
    let mut on = Vec::new();
    // Alternate the settings, so a drift in the process (allocator caches, the runtime)
    // weighs on both alike.
    for _ in 0..plan.rounds.max(1) {
        off.push(
            round(plan, false, &live_bytes)
                .await
                .context("pruning off")?,
        );
        on.push(round(plan, true, &live_bytes).await.context("pruning on")?);
    }
    let machine = super::machine::Machine::detect();
    Ok(ServerMemory {
        logins: plan.logins,
        refreshes: plan.refreshes,
        refresh_ttl_s: plan.refresh_ttl.as_secs_f64(),
        pruning_off: setting(&off),
        pruning_on: setting(&on),
        machine: format!(
            "{}, {} logical CPUs, {}",
            machine.cpu, machine.cores, machine.os
        ),
        date: machine.date,
        command,
    })
}

/// One round's figures.
#[derive(Debug, Clone, Copy)]
struct Round {
    per_login_live: f64,
    per_login_dead: f64,
    per_refresh: f64,
    families_left: u64,
}

fn setting(rounds: &[Round]) -> Setting {
    let median = |pick: fn(&Round) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    Setting {
        login_bytes_live: median(|r| r.per_login_live),
        login_bytes_dead: median(|r| r.per_login_dead),
        refresh_bytes: median(|r| r.per_refresh),
        families_left: rounds.last().map_or(0, |r| r.families_left),
        rounds: rounds
            .iter()
            .map(|r| [r.per_login_live, r.per_login_dead, r.per_refresh])
            .collect(),
    }
}

async fn round(plan: &Plan, prune: bool, live_bytes: &impl Fn() -> i64) -> anyhow::Result<Round> {
    let config = ServerConfig::default()
        .with_access_ttl(Duration::from_millis(500))
        .with_refresh_ttl(plan.refresh_ttl)
        .with_family_retention(Duration::ZERO)
        .with_prune_families(prune);
    let server = tokenkeeper_server::start(config)
        .await
        .context("starting the server")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .context("building the client")?;
    // Warm up: the connection, the runtime's and both sides' first buffers.
    let mut refresh = login(&client, &server).await?;
    refresh = refresh_once(&client, &server, &refresh).await?;

    let start = live_bytes();
    for _ in 0..plan.refreshes {
        refresh = refresh_once(&client, &server, &refresh).await?;
    }
    let after_refreshes = live_bytes();

    let logins_started = Instant::now();
    for _ in 0..plan.logins {
        login(&client, &server).await?;
    }
    let after_logins = live_bytes();
    let families = server.stats().families;
    let expected = plan.logins as u64 + 1;
    if families != expected {
        bail!(
            "{families} families after the logins instead of {expected}: sessions died while \
             logins were counted (the login phase took {:?}; the refresh TTL is {:?})",
            logins_started.elapsed(),
            plan.refresh_ttl
        );
    }

    // Every session dies a refresh TTL after its last login or refresh; then one more login
    // lets the server prune (pruning runs on logins and refreshes).
    tokio::time::sleep(plan.refresh_ttl + Duration::from_millis(200)).await;
    login(&client, &server).await?;
    let after_death = live_bytes();
    let families_left = server.stats().families;
    drop(client);
    server.shutdown().await;

    let per = |after: i64, before: i64, n: usize| (after - before) as f64 / n.max(1) as f64;
    Ok(Round {
        per_refresh: per(after_refreshes, start, plan.refreshes),
        per_login_live: per(after_logins, after_refreshes, plan.logins),
        per_login_dead: per(after_death, after_refreshes, plan.logins),
        families_left,
    })
}

/// Logs in (json contract) and returns the refresh token; the rest of the answer is dropped.
async fn login(client: &reqwest::Client, server: &ServerHandle) -> anyhow::Result<String> {
    let answer: serde_json::Value = client
        .post(server.url("/login"))
        .json(&serde_json::json!({
            "username": "demo",
            "password": "demo",
            "style": Contract::Json.as_str(),
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    refresh_token(&answer)
}

/// Refreshes (json contract) and returns the new refresh token.
async fn refresh_once(
    client: &reqwest::Client,
    server: &ServerHandle,
    refresh: &str,
) -> anyhow::Result<String> {
    let answer: serde_json::Value = client
        .post(server.url("/refresh/token"))
        .json(&serde_json::json!({ "refreshToken": refresh }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    refresh_token(&answer)
}

fn refresh_token(answer: &serde_json::Value) -> anyhow::Result<String> {
    answer["refreshToken"]
        .as_str()
        .map(str::to_owned)
        .context("no refreshToken in the answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_rounds() {
        let round = |live, dead, refresh| Round {
            per_login_live: live,
            per_login_dead: dead,
            per_refresh: refresh,
            families_left: 1,
        };
        let setting = setting(&[
            round(300.0, 10.0, 0.5),
            round(320.0, 0.0, 0.0),
            round(310.0, 5.0, 2.0),
        ]);
        assert_eq!(setting.login_bytes_live, 310.0);
        assert_eq!(setting.login_bytes_dead, 5.0);
        assert_eq!(setting.refresh_bytes, 0.5);
        assert_eq!(setting.rounds.len(), 3);
    }

    #[test]
    fn figures_round_trip_through_their_file() {
        let path = std::env::temp_dir()
            .join(format!("tk-server-memory-{}", std::process::id()))
            .join("server-memory.json");
        let figures = ServerMemory {
            logins: 10,
            refreshes: 20,
            refresh_ttl_s: 6.0,
            pruning_off: Setting::default(),
            pruning_on: Setting {
                login_bytes_live: 300.0,
                ..Setting::default()
            },
            machine: "test".into(),
            date: "now".into(),
            command: "cargo bench".into(),
        };
        write(&path, &figures).unwrap();
        assert_eq!(read(&path), Some(figures));
        assert_eq!(read(&path.with_extension("missing")), None);
        if let Some(dir) = path.parent() {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    /// The measurement runs end to end against the real server (allocations are not counted
    /// here: the figures are whatever the closure says, zero).
    #[tokio::test]
    async fn a_quick_measurement_completes_and_prunes() {
        let figures = measure(&Plan::quick(), || 0, "test".into()).await.unwrap();
        assert_eq!(figures.pruning_on.families_left, 1);
        assert_eq!(figures.pruning_off.families_left, 200 + 2);
    }
}
