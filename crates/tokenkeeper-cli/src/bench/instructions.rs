//! Instructions and heap allocations per request, counted by callgrind in the client process
//! only: the figure issue 12 §3 sets tokenkeeper's target in (≤ 1.01 × the hand-written bearer
//! middleware, and no more allocations than it).
//!
//! How: the reference server runs in a process of its own ([`ServerProcess`]). Each contender
//! runs in a fresh client process (this binary as [`CLIENT_SUBCOMMAND`], see [`run_client`])
//! under callgrind: it signs in, warms up (connection open, pool and caches filled), then sends
//! one `GET` at a time on a current-thread runtime inside [`callgrind_measured_requests`], the
//! only function during which callgrind counts (`--toggle-collect`). Sign-in, warm-up, start-up
//! and exit are not counted; the server's work is in another process. Callgrind's call counts
//! (and so the allocation counts) ignore the toggle for code that also runs while counting (the
//! warm-up's calls are in them), so each contender also runs once with a third of the requests,
//! and allocations per request are the difference between the two runs over the difference in
//! requests. Every contender runs `runs` times, in a shuffled order per run, and the median is
//! reported (the counts barely move between runs).

use super::callgrind::{self, Profile};
use super::contenders::{Client, Contender, Login};
use super::server_process::ServerProcess;
use crate::metrics;
use anyhow::{Context, bail};
use clap::Args;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hidden subcommand that runs one measured client ([`run_client`]).
pub const CLIENT_SUBCOMMAND: &str = "__bench-client";

/// The function callgrind counts in; its name appears nowhere else in the binary.
const TOGGLE: &str = "callgrind_measured_requests";

/// How much is measured.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Requests counted per run.
    pub requests: usize,
    /// Requests sent before counting starts.
    pub warm_up: usize,
    /// Runs per contender.
    pub runs: usize,
}

impl Plan {
    /// Requests counted per run of `contender` (see [`Contender::request_divisor`]).
    pub fn requests_of(&self, contender: Contender) -> usize {
        self.requests / contender.request_divisor()
    }

    /// Requests `contender` sends before counting starts.
    pub fn warm_up_of(&self, contender: Contender) -> usize {
        self.warm_up / contender.request_divisor()
    }
}

/// One contender's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContenderFigures {
    /// Which client.
    pub contender: Contender,
    /// Median over runs of instructions per request.
    pub instructions_per_request: f64,
    /// Median over runs of new heap blocks (`malloc`, `calloc`, `posix_memalign` calls) per
    /// request.
    pub allocations_per_request: f64,
    /// Median over runs of `realloc` calls per request.
    pub reallocations_per_request: f64,
    /// Instructions per request of every run.
    pub instruction_runs: Vec<f64>,
}

/// The figures of every contender, from one run of the bench.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instructions {
    /// `valgrind --version`.
    pub valgrind: String,
    /// Requests counted per run.
    pub requests: usize,
    /// Requests sent before counting.
    pub warm_up: usize,
    /// Runs per contender.
    pub runs: usize,
    /// In [`Contender::COUNTED`] order.
    pub contenders: Vec<ContenderFigures>,
}

impl Instructions {
    /// The figures of `contender`, if measured.
    pub fn of(&self, contender: Contender) -> Option<&ContenderFigures> {
        self.contenders.iter().find(|c| c.contender == contender)
    }

    /// tokenkeeper's instructions per request over the hand-written middleware's.
    pub fn ratio_to_bearer(&self) -> Option<f64> {
        let keeper = self.of(Contender::Tokenkeeper)?.instructions_per_request;
        let bearer = self.of(Contender::Bearer)?.instructions_per_request;
        (bearer > 0.0).then(|| keeper / bearer)
    }

    /// The keyed middleware's instructions per request over the single-session middleware's.
    pub fn keyed_ratio(&self) -> Option<f64> {
        let keyed = self.of(Contender::Keyed)?.instructions_per_request;
        let single = self.of(Contender::Tokenkeeper)?.instructions_per_request;
        (single > 0.0).then(|| keyed / single)
    }

    /// The lowest and highest ratio of `numerator`'s instructions per request to
    /// `denominator`'s within one round (every contender runs once per round), as a measure of
    /// how far a ratio of medians could move.
    pub fn round_ratio_range(
        &self,
        numerator: Contender,
        denominator: Contender,
    ) -> Option<(f64, f64)> {
        let top = &self.of(numerator)?.instruction_runs;
        let bottom = &self.of(denominator)?.instruction_runs;
        let ratios: Vec<f64> = top
            .iter()
            .zip(bottom)
            .filter(|&(_, &b)| b > 0.0)
            .map(|(t, b)| t / b)
            .collect();
        let low = ratios.iter().copied().reduce(f64::min)?;
        let high = ratios.iter().copied().reduce(f64::max)?;
        Some((low, high))
    }

    /// Whether issue 12's target holds: ≤ 1.01 × the hand-written middleware's instructions and
    /// no more allocations per request.
    ///
    /// Allocations are compared as whole numbers per request: a request allocates a whole number
    /// of blocks, and the fraction in the figure is what start-up and warm-up leave over after
    /// the subtraction of the shorter run (a few blocks over thousands of requests, e.g. 47.003
    /// printed as 47.00). Compared as floats, that remainder alone could miss the target.
    pub fn target_met(&self) -> Option<bool> {
        let ratio = self.ratio_to_bearer()?;
        let keeper = self.of(Contender::Tokenkeeper)?.allocations_per_request;
        let bearer = self.of(Contender::Bearer)?.allocations_per_request;
        Some(ratio <= 1.01 && keeper.round() <= bearer.round())
    }
}

/// The instruction figures, or why there are none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Measured.
    Measured(Instructions),
    /// Not measured, and why (no valgrind).
    Skipped(String),
}

/// Measures every contender under callgrind against a server in its own process, or skips
/// (with the reason) when valgrind is not installed.
pub async fn measure(plan: &Plan, exe: &Path) -> anyhow::Result<Outcome> {
    let Some(valgrind) = callgrind::version() else {
        return Ok(Outcome::Skipped(
            "valgrind is not installed (`bash scripts/valgrind.sh` installs it from Debian's \
packages)"
                .to_owned(),
        ));
    };
    let (plan, exe) = (plan.clone(), exe.to_owned());
    // Everything here waits on child processes: keep it off the runtime's threads.
    tokio::task::spawn_blocking(move || measure_blocking(&plan, &exe, valgrind))
        .await
        .context("the callgrind runs panicked")?
        .map(Outcome::Measured)
}

fn measure_blocking(plan: &Plan, exe: &Path, valgrind: String) -> anyhow::Result<Instructions> {
    // DPoP offered (not required) for the DPoP contender; the others sign in without a proof
    // and get bearer tokens as before.
    let server = ServerProcess::start(exe, Duration::from_secs(3600), true)?;
    let scratch = Scratch::new()?;
    // The same process with fewer requests: the allocations of start-up, sign-in and warm-up
    // that the call counts include cancel out in the difference.
    let mut baselines: Vec<(Contender, Profile)> = Vec::new();
    for contender in Contender::COUNTED {
        let profile = measure_client(
            contender,
            plan.requests_of(contender) / 3,
            plan,
            exe,
            server.base_url(),
            &scratch.0,
            "base",
        )?;
        baselines.push((contender, profile));
    }
    let mut profiles: Vec<(Contender, Profile)> = Vec::new();
    let mut order = Contender::COUNTED;
    for run in 0..plan.runs {
        order.shuffle(&mut rand::rng());
        for contender in order {
            let requests = plan.requests_of(contender);
            let profile = measure_client(
                contender,
                requests,
                plan,
                exe,
                server.base_url(),
                &scratch.0,
                &run.to_string(),
            )?;
            profiles.push((contender, profile));
        }
    }
    server.stop();
    let contenders = Contender::COUNTED
        .iter()
        .map(|&contender| {
            let requests = plan.requests_of(contender);
            let per_request = |count: u64| count as f64 / requests.max(1) as f64;
            let per_extra_request =
                |count: u64| count as f64 / requests.saturating_sub(requests / 3).max(1) as f64;
            let base = baselines
                .iter()
                .find(|(c, _)| *c == contender)
                .map(|(_, p)| *p)
                .unwrap_or_default();
            let runs: Vec<&Profile> = profiles
                .iter()
                .filter(|(c, _)| *c == contender)
                .map(|(_, p)| p)
                .collect();
            let instruction_runs: Vec<f64> =
                runs.iter().map(|p| per_request(p.instructions)).collect();
            let allocations: Vec<f64> = runs
                .iter()
                .map(|p| per_extra_request(p.allocations.saturating_sub(base.allocations)))
                .collect();
            let reallocations: Vec<f64> = runs
                .iter()
                .map(|p| per_extra_request(p.reallocations.saturating_sub(base.reallocations)))
                .collect();
            ContenderFigures {
                contender,
                instructions_per_request: metrics::median(&instruction_runs).unwrap_or(0.0),
                allocations_per_request: metrics::median(&allocations).unwrap_or(0.0),
                reallocations_per_request: metrics::median(&reallocations).unwrap_or(0.0),
                instruction_runs,
            }
        })
        .collect();
    Ok(Instructions {
        valgrind,
        requests: plan.requests,
        warm_up: plan.warm_up,
        runs: plan.runs,
        contenders,
    })
}

/// One client process under callgrind, counting `requests` requests.
fn measure_client(
    contender: Contender,
    requests: usize,
    plan: &Plan,
    exe: &Path,
    base_url: &str,
    scratch: &Path,
    run: &str,
) -> anyhow::Result<Profile> {
    let name = format!("{}-{run}", contender.arg());
    let args = [
        CLIENT_SUBCOMMAND.to_owned(),
        "--client".to_owned(),
        contender.arg().to_owned(),
        "--base-url".to_owned(),
        base_url.to_owned(),
        "--requests".to_owned(),
        requests.to_string(),
        "--warm-up".to_owned(),
        plan.warm_up_of(contender).to_string(),
    ];
    let (profile, output) = callgrind::run(
        exe,
        &args,
        TOGGLE,
        &scratch.join(format!("{name}.callgrind")),
        &scratch.join(format!("{name}.log")),
    )
    .with_context(|| format!("{} under callgrind", contender.label()))?;
    let report: ClientReport = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{}: the client process's report", contender.label()))?;
    if report.ok != requests || report.requests != requests {
        bail!(
            "{}: {} of {} measured requests succeeded",
            contender.label(),
            report.ok,
            report.requests
        );
    }
    if requests > 0 && profile.instructions == 0 {
        bail!(
            "{}: callgrind counted nothing (was `{TOGGLE}` inlined or renamed?)",
            contender.label()
        );
    }
    Ok(profile)
}

/// A directory for callgrind's files, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "tokenkeeper-callgrind-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Flags of [`CLIENT_SUBCOMMAND`].
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Which client to measure.
    #[arg(long, value_enum)]
    pub client: Contender,
    /// The reference server (`http://127.0.0.1:PORT`).
    #[arg(long)]
    pub base_url: String,
    /// Requests to count.
    #[arg(long, default_value_t = 3000)]
    pub requests: usize,
    /// Requests to send first, uncounted.
    #[arg(long, default_value_t = 300)]
    pub warm_up: usize,
}

/// What a client process prints (one JSON line on stdout).
#[derive(Debug, Serialize, Deserialize)]
struct ClientReport {
    requests: usize,
    ok: usize,
}

/// The client process: signs in, warms up, then sends the counted requests one at a time
/// inside [`callgrind_measured_requests`] on a current-thread runtime (so every instruction of
/// the client, connection tasks included, runs on the counted thread).
pub fn run_client(args: ClientArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the client's runtime")?;
    let client = runtime.block_on(async {
        let mut login = Login::new(&args.base_url).await?;
        if args.client == Contender::Dpop {
            login = login.with_dpop(&args.base_url).await?;
        }
        Client::new(args.client, &login, 1)
    })?;
    let url = format!("{}/api/items/1", args.base_url);
    let warmed = runtime.block_on(send(&client, &url, args.warm_up));
    if warmed != args.warm_up {
        bail!("{warmed} of {} warm-up requests succeeded", args.warm_up);
    }
    let ok = callgrind_measured_requests(&runtime, &client, &url, args.requests);
    println!(
        "{}",
        serde_json::to_string(&ClientReport {
            requests: args.requests,
            ok
        })?
    );
    Ok(())
}

/// The counted part: `count` requests, one at a time. Never inlined, so callgrind can toggle
/// collection on its entry and exit.
#[inline(never)]
pub fn callgrind_measured_requests(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    url: &str,
    count: usize,
) -> usize {
    runtime.block_on(send(client, url, count))
}

async fn send(client: &Client, url: &str, count: usize) -> usize {
    let mut ok = 0;
    for _ in 0..count {
        if client.get(url).await {
            ok += 1;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(contender: Contender, runs: &[f64]) -> ContenderFigures {
        ContenderFigures {
            contender,
            instructions_per_request: metrics::median(runs).unwrap_or(0.0),
            allocations_per_request: 47.0,
            reallocations_per_request: 8.0,
            instruction_runs: runs.to_vec(),
        }
    }

    #[test]
    fn ratios_pair_the_runs_of_one_round() {
        let instructions = Instructions {
            valgrind: "valgrind-3.19.0".to_owned(),
            requests: 3000,
            warm_up: 300,
            runs: 3,
            contenders: vec![
                figures(Contender::Bearer, &[100.0, 200.0, 100.0]),
                figures(Contender::Tokenkeeper, &[101.0, 202.0, 103.0]),
                figures(Contender::Keyed, &[102.01, 206.0, 103.0]),
            ],
        };
        let (low, high) = instructions
            .round_ratio_range(Contender::Tokenkeeper, Contender::Bearer)
            .unwrap();
        assert!((low - 1.01).abs() < 1e-9 && (high - 1.03).abs() < 1e-9);
        let (low, high) = instructions
            .round_ratio_range(Contender::Keyed, Contender::Tokenkeeper)
            .unwrap();
        assert!((low - 1.0).abs() < 1e-9 && (high - 206.0 / 202.0).abs() < 1e-9);
        assert!((instructions.keyed_ratio().unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(
            instructions.round_ratio_range(Contender::Bare, Contender::Bearer),
            None
        );
    }
}
