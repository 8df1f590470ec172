//! The arithmetic behind the tables: percentiles, rates and the "ideal" refresh count.

use serde::Serialize;
use std::time::Duration;
use tokenkeeper::Proactive;

/// The `p`-th percentile (0–100) of `sorted` by the nearest-rank method: the smallest value
/// with at least `p` % of the values at or below it. `None` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// The median of `values` (upper median for an even count), sorting them first.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latencies {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latencies {
    /// Summarises `millis` (sorted here). All zero for no values.
    pub fn from_millis(mut millis: Vec<f64>) -> Self {
        millis.sort_by(f64::total_cmp);
        let at = |p| percentile(&millis, p).unwrap_or(0.0);
        Self {
            p50_ms: at(50.0),
            p95_ms: at(95.0),
            p99_ms: at(99.0),
            max_ms: millis.last().copied().unwrap_or(0.0),
        }
    }
}

/// The shortest time a token generation can be in use before a client of this kind replaces
/// it: its whole lifetime for a reactive client (it refreshes only once the token expired),
/// the earliest refresh point for a proactive one (`refresh_at` of the lifetime, less the
/// largest jitter).
pub fn min_generation_life(ttl: Duration, proactive: Option<&Proactive>) -> Duration {
    match proactive {
        None => ttl,
        Some(config) => {
            let fraction = (config.refresh_at - config.jitter.clamp(0.0, 0.5)).clamp(0.0, 1.0);
            let ahead = ttl.mul_f64(1.0 - fraction);
            // A long-lived token is refreshed at most `max_ahead` early.
            let ahead = ahead.min(config.max_ahead + ttl.mul_f64(config.jitter.clamp(0.0, 0.5)));
            ttl.saturating_sub(ahead)
        }
    }
}

/// How long each sign-in lasted: from each sign-in to the next, the last one to `end`
/// (all in seconds since the run began).
pub fn signed_in_segments(sign_ins: &[f64], end: f64) -> Vec<f64> {
    let mut starts = sign_ins.to_vec();
    starts.sort_by(f64::total_cmp);
    let ends = starts.iter().skip(1).copied().chain(std::iter::once(end));
    starts
        .iter()
        .zip(ends)
        .map(|(start, end)| (end - start).max(0.0))
        .collect()
}

/// The ideal number of refresh calls: one per token generation used up during the run.
///
/// A generation is used up when it has been in use for `min_life` (see
/// [`min_generation_life`]); a sign-in starts a fresh generation without a refresh. So within
/// a signed-in stretch of `s` seconds a perfect client needs at most `floor(s / min_life)`
/// refreshes, and any call beyond that bound, or any call that did not produce a generation
/// the client then used, is waste.
pub fn ideal_refreshes(segments: &[f64], min_life: Duration) -> u64 {
    let life = min_life.as_secs_f64();
    if life <= 0.0 {
        return 0;
    }
    segments
        .iter()
        .map(|segment| (segment / life + 1e-9).floor().max(0.0) as u64)
        .sum()
}

/// Events per second in consecutive bins of `bin` seconds from 0 to `end`.
pub fn rate(times: impl IntoIterator<Item = f64>, bin: f64, end: f64) -> Vec<f64> {
    let bins = ((end / bin).ceil().max(1.0)) as usize;
    let mut counts = vec![0u64; bins];
    for at in times {
        if at >= 0.0 {
            let index = ((at / bin) as usize).min(bins - 1);
            counts[index] += 1;
        }
    }
    counts.into_iter().map(|c| c as f64 / bin).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn medians_sort_first() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn latencies_summarise() {
        let summary = Latencies::from_millis((1..=1000).rev().map(f64::from).collect());
        assert_eq!(summary.p50_ms, 500.0);
        assert_eq!(summary.p99_ms, 990.0);
        assert_eq!(summary.max_ms, 1000.0);
        assert_eq!(Latencies::from_millis(Vec::new()), Latencies::default());
    }

    #[test]
    fn reactive_generations_last_a_whole_ttl() {
        let ttl = Duration::from_secs(2);
        assert_eq!(min_generation_life(ttl, None), ttl);
        // 10.5 s signed in, 2 s tokens: 5 expiries.
        assert_eq!(ideal_refreshes(&[10.5], ttl), 5);
        assert_eq!(ideal_refreshes(&[10.0], ttl), 5);
        assert_eq!(ideal_refreshes(&[1.9], ttl), 0);
    }

    #[test]
    fn proactive_generations_end_at_the_earliest_refresh_point() {
        let ttl = Duration::from_secs(2);
        let life = min_generation_life(ttl, Some(&Proactive::default()));
        // refresh at 75 % less up to 5 % jitter: 70 % of 2 s.
        assert!((life.as_secs_f64() - 1.4).abs() < 1e-9, "{life:?}");
        assert_eq!(ideal_refreshes(&[10.2], life), 7);
    }

    #[test]
    fn long_lifetimes_refresh_at_most_max_ahead_early() {
        let ttl = Duration::from_secs(24 * 3600);
        let life = min_generation_life(ttl, Some(&Proactive::default()));
        let early = ttl - life;
        assert!(early <= Duration::from_secs(300) + ttl.mul_f64(0.05));
    }

    #[test]
    fn segments_run_from_sign_in_to_sign_in() {
        assert_eq!(
            signed_in_segments(&[0.0, 4.0, 7.5], 10.0),
            vec![4.0, 3.5, 2.5]
        );
        assert_eq!(signed_in_segments(&[0.0], 10.0), vec![10.0]);
        assert_eq!(ideal_refreshes(&[4.0, 3.5, 2.5], Duration::from_secs(2)), 4);
    }

    #[test]
    fn rates_are_per_second() {
        let rates = rate([0.05, 0.06, 0.15, 0.99, 5.0], 0.1, 1.0);
        assert_eq!(rates.len(), 10);
        assert!((rates[0] - 20.0).abs() < 1e-9);
        assert!((rates[1] - 10.0).abs() < 1e-9);
        // Past the end lands in the last bin.
        assert!((rates[9] - 20.0).abs() < 1e-9);
    }
}
