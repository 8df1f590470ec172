//! Overhead: requests per second and latency through tokenkeeper's middleware vs bare reqwest,
//! same client settings, valid token, keep-alive, loopback, rounds interleaved.

use super::client;
use super::cpu;
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
    /// Median CPU time (client + server, whole process) per request, microseconds.
    pub cpu_us_per_request: Option<f64>,
    /// Requests per second of every round, in order.
    pub rounds: Vec<f64>,
}

/// The overhead figures.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Bare reqwest.
    pub bare: Side,
    /// reqwest through `reqwest-middleware` with no middleware, header attached by hand: the
    /// cost of the middleware stack itself, which any reqwest-middleware adapter pays.
    pub stack: Side,
    /// reqwest through tokenkeeper.
    pub tokenkeeper: Side,
    /// tokenkeeper's requests/s over bare's: the median of the per-round ratios (rounds run
    /// back to back, so each ratio compares like with like on a noisy machine).
    pub ratio: f64,
    /// The same for the bare middleware stack.
    pub stack_ratio: f64,
    /// tokenkeeper's process CPU per request over bare's: median of the per-round ratios.
    pub cpu_ratio: Option<f64>,
    /// The same for the bare middleware stack.
    pub stack_cpu_ratio: Option<f64>,
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
    Stack {
        client: ClientWithMiddleware,
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
            Client::Stack { client, header } => client
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
    /// CPU time the whole process (client and server) used during the round.
    cpu: Option<Duration>,
}

async fn round(client: &Client, url: &Arc<str>, plan: &Plan) -> Round {
    let cpu_before = cpu::process();
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
        cpu: cpu::process()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before)),
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
        cpu_us_per_request: metrics::median(
            &rounds
                .iter()
                .filter_map(cpu_per_request)
                .collect::<Vec<_>>(),
        ),
        rounds: rps,
    }
}

/// Measures the overhead: a server on its own thread (token TTL one hour, no latency); a bare
/// client, a bare `reqwest-middleware` stack and a tokenkeeper client, all of the same
/// settings, warmed up; then rounds in which each runs once, in an order that rotates and
/// reverses from round to round, so drift hits all alike. Medians per side; ratios are medians
/// of the per-round ratios.
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
    let clients = [
        Client::Bare {
            http: client::http(plan.concurrency)?,
            header: header.clone(),
        },
        Client::Stack {
            client: reqwest_middleware::ClientBuilder::new(client::http(plan.concurrency)?).build(),
            header,
        },
        Client::Tokenkeeper(client::through(
            &session,
            client::http(plan.concurrency)?,
            None,
        )),
    ];
    let url: Arc<str> = Arc::from(format!("{base}/api/items/1"));
    let warm_up = Plan {
        round: Duration::from_millis(500),
        ..plan.clone()
    };
    for client in &clients {
        round(client, &url, &warm_up).await;
    }

    let mut rounds: [Vec<Round>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..plan.rounds {
        let mut order = [0, 1, 2];
        order.rotate_left(i % 3);
        if i % 2 == 1 {
            order.reverse();
        }
        for index in order {
            rounds[index].push(round(&clients[index], &url, plan).await);
        }
    }
    server.stop().await;
    let failures = rounds.iter().flatten().map(|r| r.failures).sum();
    let [bare, stack, keeper] = &rounds;
    Ok(Overhead {
        ratio: pairwise_ratio(keeper, bare),
        stack_ratio: pairwise_ratio(stack, bare),
        cpu_ratio: pairwise_cpu_ratio(keeper, bare),
        stack_cpu_ratio: pairwise_cpu_ratio(stack, bare),
        bare: side(bare),
        stack: side(stack),
        tokenkeeper: side(keeper),
        failures,
        concurrency: plan.concurrency,
        round_s: plan.round.as_secs_f64(),
    })
}

/// The median over rounds of `sides`'s requests/s over `base`'s in the same round.
fn pairwise_ratio(side: &[Round], base: &[Round]) -> f64 {
    let ratios: Vec<f64> = side
        .iter()
        .zip(base)
        .filter(|(_, b)| b.requests > 0)
        .map(|(s, b)| rate(s) / rate(b))
        .collect();
    metrics::median(&ratios).unwrap_or(0.0)
}

/// The median over rounds of `side`'s CPU per request over `base`'s in the same round.
fn pairwise_cpu_ratio(side: &[Round], base: &[Round]) -> Option<f64> {
    let ratios: Vec<f64> = side
        .iter()
        .zip(base)
        .filter_map(|(s, b)| Some(cpu_per_request(s)? / cpu_per_request(b)?))
        .collect();
    metrics::median(&ratios)
}

/// Microseconds of process CPU per request in a round.
fn cpu_per_request(round: &Round) -> Option<f64> {
    let cpu = round.cpu?;
    (round.requests > 0 && !cpu.is_zero()).then(|| cpu.as_secs_f64() * 1e6 / round.requests as f64)
}

fn rate(round: &Round) -> f64 {
    round.requests as f64 / round.elapsed.as_secs_f64().max(1e-9)
}
