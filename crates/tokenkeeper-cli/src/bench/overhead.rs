//! Overhead: requests per second and latency through tokenkeeper's middleware vs bare reqwest,
//! same client settings, valid token, keep-alive, loopback, rounds interleaved.

use super::client;
use super::server::ServerThread;
use crate::metrics::{self, Latencies};
use anyhow::Context;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest_middleware::ClientWithMiddleware;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenkeeper::RefreshMode;
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper_server::ServerConfig;

/// How the overhead is measured.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Concurrent request loops.
    pub concurrency: usize,
    /// Length of one round.
    pub round: Duration,
    /// Rounds per client (bare and tokenkeeper alternate).
    pub rounds: usize,
}

/// One client's medians over its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Median requests per second.
    pub requests_per_s: f64,
    /// Median of the rounds' p50 latency, microseconds.
    pub p50_us: f64,
    /// Median of the rounds' p99 latency, microseconds.
    pub p99_us: f64,
    /// Requests per second of every round, in order.
    pub rounds: Vec<f64>,
}

/// The overhead figures.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Bare reqwest.
    pub bare: Side,
    /// reqwest through tokenkeeper.
    pub tokenkeeper: Side,
    /// tokenkeeper's median requests/s over bare's.
    pub ratio: f64,
    /// Requests that did not get a 200 (either side).
    pub failures: u64,
    /// Concurrency used.
    pub concurrency: usize,
    /// Seconds per round.
    pub round_s: f64,
}

#[derive(Clone)]
enum Client {
    Bare {
        http: reqwest::Client,
        header: HeaderValue,
    },
    Tokenkeeper(ClientWithMiddleware),
}

impl Client {
    /// Sends one GET and reads the answer; whether it was a 200.
    async fn get(&self, url: &str) -> bool {
        let response = match self {
            Client::Bare { http, header } => http
                .get(url)
                .header(AUTHORIZATION, header.clone())
                .send()
                .await
                .ok(),
            Client::Tokenkeeper(client) => client.get(url).send().await.ok(),
        };
        match response {
            Some(response) => {
                let ok = response.status().is_success();
                response.bytes().await.is_ok() && ok
            }
            None => false,
        }
    }
}

struct Round {
    requests: u64,
    failures: u64,
    latencies_us: Vec<f64>,
    elapsed: Duration,
}

async fn round(client: &Client, url: &Arc<str>, plan: &Plan) -> Round {
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
    }
}

fn side(rounds: &[Round]) -> Side {
    let rps: Vec<f64> = rounds
        .iter()
        .map(|r| r.requests as f64 / r.elapsed.as_secs_f64())
        .collect();
    let summaries: Vec<Latencies> = rounds
        .iter()
        .map(|r| Latencies::from_millis(r.latencies_us.clone()))
        .collect();
    let p50: Vec<f64> = summaries.iter().map(|s| s.p50_ms).collect();
    let p99: Vec<f64> = summaries.iter().map(|s| s.p99_ms).collect();
    Side {
        requests_per_s: metrics::median(&rps).unwrap_or(0.0),
        p50_us: metrics::median(&p50).unwrap_or(0.0),
        p99_us: metrics::median(&p99).unwrap_or(0.0),
        rounds: rps,
    }
}

/// Measures the overhead: a server on its own thread (token TTL one hour, no latency), a bare
/// client and a tokenkeeper client of the same settings, warmed up, then rounds alternating
/// bare/tokenkeeper (ABBA order, so drift hits both alike); medians per side.
pub async fn measure(plan: &Plan) -> anyhow::Result<Overhead> {
    let server = ServerThread::start(
        ServerConfig::default().with_access_ttl(Duration::from_secs(3600)),
        1,
    )?;
    let base = server.base_url().to_owned();
    let session = client::signed_in(&base, RefreshMode::default()).await?;
    let token = session.access_token().await?;
    let header = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
        .context("the access token is not a header value")?;
    let bare = Client::Bare {
        http: client::http(plan.concurrency)?,
        header,
    };
    let keeper = Client::Tokenkeeper(client::through(
        &session,
        client::http(plan.concurrency)?,
        None,
    ));
    let url: Arc<str> = Arc::from(format!("{base}/api/items/1"));
    let warm_up = Plan {
        round: Duration::from_millis(500),
        ..plan.clone()
    };
    round(&bare, &url, &warm_up).await;
    round(&keeper, &url, &warm_up).await;

    let (mut bare_rounds, mut keeper_rounds) = (Vec::new(), Vec::new());
    for i in 0..plan.rounds {
        if i % 2 == 0 {
            bare_rounds.push(round(&bare, &url, plan).await);
            keeper_rounds.push(round(&keeper, &url, plan).await);
        } else {
            keeper_rounds.push(round(&keeper, &url, plan).await);
            bare_rounds.push(round(&bare, &url, plan).await);
        }
    }
    server.stop().await;
    let failures = bare_rounds
        .iter()
        .chain(&keeper_rounds)
        .map(|r| r.failures)
        .sum();
    let (bare, tokenkeeper) = (side(&bare_rounds), side(&keeper_rounds));
    let ratio = if bare.requests_per_s > 0.0 {
        tokenkeeper.requests_per_s / bare.requests_per_s
    } else {
        0.0
    };
    Ok(Overhead {
        bare,
        tokenkeeper,
        ratio,
        failures,
        concurrency: plan.concurrency,
        round_s: plan.round.as_secs_f64(),
    })
}
