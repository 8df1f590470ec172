//! Throughput through each contender (bare reqwest, the empty middleware stack, the hand-written
//! bearer middleware, tokenkeeper), the secondary overhead figure beside the instruction counts
//! of [`super::instructions`].
//!
//! The reference server runs in its own process, so the CPU time this process spends is the
//! clients' alone. Rounds are short and many; in each round every contender runs once, in a
//! freshly shuffled order, so drift and other work on the machine hit all alike. A ratio is
//! reported with the interquartile range of its per-round values, and called *resolved* only
//! when that range lies entirely on one side of 1: on a small shared machine throughput swings
//! by more than the few percent the contenders differ by, and then the figure says so.

use super::contenders::{Client, Contender, Login};
use super::cpu;
use super::server_process::ServerProcess;
use crate::metrics::{self, Latencies};
use rand::seq::SliceRandom;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the throughput is measured.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Concurrent request loops.
    pub concurrency: usize,
    /// Length of one round.
    pub round: Duration,
    /// Rounds per contender.
    pub rounds: usize,
}

/// One contender's medians over its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Which client.
    pub contender: Contender,
    /// Median requests per second.
    pub requests_per_s: f64,
    /// Median of the rounds' p50 latency, microseconds.
    pub p50_us: f64,
    /// Median of the rounds' p99 latency, microseconds.
    pub p99_us: f64,
    /// Median CPU time of this (client-only) process per request, microseconds.
    pub cpu_us_per_request: Option<f64>,
    /// Requests per second of every round, in order.
    pub rounds: Vec<f64>,
}

/// A ratio between two contenders over the rounds: the median of the per-round ratios and the
/// interquartile range around it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Ratio {
    /// Median of the per-round ratios.
    pub median: f64,
    /// 25th percentile.
    pub p25: f64,
    /// 75th percentile.
    pub p75: f64,
}

impl Ratio {
    /// The ratio of per-round values; `None` without rounds.
    pub fn of(ratios: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = ratios.iter().copied().filter(|r| r.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            median: metrics::percentile(&sorted, 50.0)?,
            p25: metrics::percentile(&sorted, 25.0)?,
            p75: metrics::percentile(&sorted, 75.0)?,
        })
    }

    /// Whether the spread is smaller than the effect: the middle half of the per-round ratios
    /// lies on one side of 1.
    pub fn resolved(&self) -> bool {
        self.p25 > 1.0 || self.p75 < 1.0
    }
}

/// Ratios of one contender to a baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The contender.
    pub contender: Contender,
    /// What it is compared with.
    pub baseline: Contender,
    /// Requests per second, contender over baseline.
    pub throughput: Option<Ratio>,
    /// CPU per request, contender over baseline.
    pub cpu: Option<Ratio>,
}

/// The throughput figures.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Each contender, in [`Contender::ALL`] order.
    pub sides: Vec<Side>,
    /// tokenkeeper vs the hand-written middleware, tokenkeeper vs bare, stack vs bare.
    pub comparisons: Vec<Comparison>,
    /// Requests that did not get a 200 (any contender).
    pub failures: u64,
    /// Concurrency used.
    pub concurrency: usize,
    /// Seconds per round.
    pub round_s: f64,
    /// Rounds per contender.
    pub rounds: usize,
}

impl Overhead {
    /// The figures of `contender`.
    pub fn side(&self, contender: Contender) -> Option<&Side> {
        self.sides.iter().find(|s| s.contender == contender)
    }
}

struct Round {
    requests: u64,
    failures: u64,
    latencies_us: Vec<f64>,
    elapsed: Duration,
    /// CPU time this process used during the round.
    cpu: Option<Duration>,
}

async fn round(client: &Client, url: &Arc<str>, plan: &Plan) -> Round {
    let cpu_before = cpu::threads();
    let started = Instant::now();
    let deadline = started + plan.round;
    let loops: Vec<_> = (0..plan.concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), Arc::clone(url));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    if !client.get(&url).await {
                        failures += 1;
                    }
                    latencies.push(sent.elapsed().as_secs_f64() * 1e6);
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut failures = 0;
    for handle in loops {
        if let Ok((mut latencies, failed)) = handle.await {
            all.append(&mut latencies);
            failures += failed;
        }
    }
    Round {
        requests: all.len() as u64,
        failures,
        latencies_us: all,
        elapsed: started.elapsed(),
        cpu: cpu::threads()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before)),
    }
}

fn side(contender: Contender, rounds: &[Round]) -> Side {
    let rps: Vec<f64> = rounds.iter().map(rate).collect();
    let summaries: Vec<Latencies> = rounds
        .iter()
        .map(|r| Latencies::from_millis(r.latencies_us.clone()))
        .collect();
    let p50: Vec<f64> = summaries.iter().map(|s| s.p50_ms).collect();
    let p99: Vec<f64> = summaries.iter().map(|s| s.p99_ms).collect();
    let cpu: Vec<f64> = rounds.iter().filter_map(cpu_per_request).collect();
    Side {
        contender,
        requests_per_s: metrics::median(&rps).unwrap_or(0.0),
        p50_us: metrics::median(&p50).unwrap_or(0.0),
        p99_us: metrics::median(&p99).unwrap_or(0.0),
        cpu_us_per_request: metrics::median(&cpu),
        rounds: rps,
    }
}

/// Measures the throughput: a reference server in its own process (`exe` run as
/// [`super::server_process::SUBCOMMAND`], token valid for an hour, no latency), the four
/// contenders on the same client settings and token, each warmed up; then `plan.rounds` rounds
/// in which every contender runs once, in a shuffled order.
pub async fn measure(plan: &Plan, exe: &Path) -> anyhow::Result<Overhead> {
    let server = ServerProcess::start(exe, Duration::from_secs(3600), false)?;
    let base = server.base_url().to_owned();
    let login = Login::new(&base).await?;
    let clients = Contender::ALL
        .iter()
        .map(|&contender| Ok((contender, Client::new(contender, &login, plan.concurrency)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let url: Arc<str> = Arc::from(format!("{base}/api/items/1"));
    let warm_up = Plan {
        round: Duration::from_millis(300),
        ..plan.clone()
    };
    for (_, client) in &clients {
        round(client, &url, &warm_up).await;
    }

    let mut rounds: Vec<Vec<Round>> = clients.iter().map(|_| Vec::new()).collect();
    let mut order: Vec<usize> = (0..clients.len()).collect();
    for _ in 0..plan.rounds {
        order.shuffle(&mut rand::rng());
        for &index in &order {
            rounds[index].push(round(&clients[index].1, &url, plan).await);
        }
    }
    drop(clients);
    tokio::task::spawn_blocking(move || server.stop()).await?;

    let failures = rounds.iter().flatten().map(|r| r.failures).sum();
    let of = |contender: Contender| {
        let index = Contender::ALL.iter().position(|&c| c == contender);
        index.map_or(&[][..], |i| &rounds[i][..])
    };
    let compare = |contender, baseline| Comparison {
        contender,
        baseline,
        throughput: Ratio::of(&per_round(of(contender), of(baseline), |r| Some(rate(r)))),
        cpu: Ratio::of(&per_round(of(contender), of(baseline), cpu_per_request)),
    };
    Ok(Overhead {
        comparisons: vec![
            compare(Contender::Tokenkeeper, Contender::Bearer),
            compare(Contender::Tokenkeeper, Contender::Bare),
            compare(Contender::Bearer, Contender::Bare),
            compare(Contender::Stack, Contender::Bare),
        ],
        sides: Contender::ALL
            .iter()
            .map(|&contender| side(contender, of(contender)))
            .collect(),
        failures,
        concurrency: plan.concurrency,
        round_s: plan.round.as_secs_f64(),
        rounds: plan.rounds,
    })
}

/// `value(side) / value(base)` for every round both measured (round i of each ran in the same
/// shuffled group).
fn per_round(side: &[Round], base: &[Round], value: impl Fn(&Round) -> Option<f64>) -> Vec<f64> {
    side.iter()
        .zip(base)
        .filter_map(|(s, b)| {
            let base = value(b)?;
            (base > 0.0).then_some(value(s)? / base)
        })
        .collect()
}

/// Microseconds of process CPU per request in a round.
fn cpu_per_request(round: &Round) -> Option<f64> {
    let cpu = round.cpu?;
    (round.requests > 0 && !cpu.is_zero()).then(|| cpu.as_secs_f64() * 1e6 / round.requests as f64)
}

fn rate(round: &Round) -> f64 {
    round.requests as f64 / round.elapsed.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_is_resolved_only_when_its_middle_half_is_on_one_side_of_one() {
        let clear = Ratio::of(&[0.90, 0.92, 0.93, 0.95, 0.97]).unwrap();
        assert_eq!(clear.median, 0.93);
        assert!(clear.resolved());
        let noisy = Ratio::of(&[0.80, 0.95, 0.98, 1.04, 1.20]).unwrap();
        assert!(!noisy.resolved(), "{noisy:?}");
        assert!(Ratio::of(&[]).is_none());
        assert!(Ratio::of(&[1.1, 1.2, f64::NAN, 1.3]).unwrap().resolved());
    }
}
