//! The storm: N virtual users sending requests with small random think times for D seconds.

use super::call::{ApiCall, Failure, Outcome};
use super::contender::Contender;
use super::relogin::ReloginGate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Storm {
    /// Virtual users, each with one request in flight at a time.
    pub users: usize,
    /// How long users keep starting requests.
    pub duration: Duration,
    /// Each user waits a uniformly random time up to this between requests.
    pub think_max: Duration,
    /// Fraction of requests that are `POST /api/items` with a JSON body.
    pub post_ratio: f64,
    /// Seed for the users' random choices (each user derives its own).
    pub seed: u64,
}

/// One finished request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was sent, in seconds since the run's origin.
    pub sent_at: f64,
    /// How long the user waited for it (refreshes and the retry included), in milliseconds.
    pub latency_ms: f64,
    /// How it ended.
    pub outcome: Outcome,
}

/// Counters the progress display reads while the storm runs.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests finished.
    pub requests: AtomicU64,
    /// Requests that failed.
    pub failed: AtomicU64,
}

impl Live {
    fn record(&self, outcome: Outcome) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs the storm against `contender` (already signed in) and returns every request's sample.
/// `origin` is the run's clock origin; users stop starting requests `storm.duration` after the
/// call and the function returns once every user's last request finished.
pub async fn run(
    storm: &Storm,
    contender: Arc<Contender>,
    gate: Arc<ReloginGate>,
    live: Arc<Live>,
    origin: Instant,
) -> Vec<Sample> {
    let deadline = Instant::now() + storm.duration;
    let users: Vec<_> = (0..storm.users)
        .map(|user| {
            let user_loop = User {
                id: user,
                storm: storm.clone(),
                contender: Arc::clone(&contender),
                gate: Arc::clone(&gate),
                live: Arc::clone(&live),
                origin,
                deadline,
            };
            tokio::spawn(user_loop.run())
        })
        .collect();
    let mut samples = Vec::new();
    for user in users {
        match user.await {
            Ok(mut mine) => samples.append(&mut mine),
            Err(error) => tracing::error!(%error, "a virtual user stopped abnormally"),
        }
    }
    samples.sort_by(|a, b| a.sent_at.total_cmp(&b.sent_at));
    samples
}

/// One virtual user.
struct User {
    id: usize,
    storm: Storm,
    contender: Arc<Contender>,
    gate: Arc<ReloginGate>,
    live: Arc<Live>,
    origin: Instant,
    deadline: Instant,
}

impl User {
    async fn run(self) -> Vec<Sample> {
        let seed = self
            .storm
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(self.id as u64);
        let mut rng = StdRng::seed_from_u64(seed);
        let think_max = u64::try_from(self.storm.think_max.as_micros()).unwrap_or(u64::MAX);
        let mut samples = Vec::new();
        // Users start spread over the first think time, not all in the same instant.
        tokio::time::sleep(Duration::from_micros(rng.random_range(0..=think_max))).await;
        let mut sequence = 0u64;
        while Instant::now() < self.deadline {
            let epoch = self.gate.epoch();
            let call = ApiCall::random(&mut rng, self.id, sequence, self.storm.post_ratio);
            sequence += 1;
            let sent = Instant::now();
            let outcome = self.contender.send(&call).await;
            samples.push(Sample {
                sent_at: sent.duration_since(self.origin).as_secs_f64(),
                latency_ms: sent.elapsed().as_secs_f64() * 1000.0,
                outcome,
            });
            self.live.record(outcome);
            if outcome == Err(Failure::LoggedOut)
                && let Err(error) = self.gate.relogin(epoch, &self.contender).await
            {
                tracing::warn!(%error, "signing in again failed");
            }
            let think = Duration::from_micros(rng.random_range(0..=think_max));
            tokio::time::sleep(think).await;
        }
        samples
    }
}
