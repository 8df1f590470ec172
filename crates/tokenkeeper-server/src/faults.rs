//! Live knobs: injected refresh faults and artificial latency, changeable while
//! the server runs (`POST /__faults`, [`ServerHandle`](crate::ServerHandle)
//! setters) without any lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Latency, valid_rate};

/// The fault settings as `POST /__faults` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// Probability (0.0..=1.0) that a refresh request is answered 503.
    pub refresh_failure_rate: f64,
    /// Whether refresh requests hang until shutdown.
    pub refresh_hang: bool,
}

/// Fault injection for the refresh endpoints.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rate_bits: AtomicU64,
    hang: AtomicBool,
}

impl Faults {
    /// Faults as configured at start.
    pub(crate) fn new(rate: f64, hang: bool) -> Self {
        let faults = Self::default();
        faults.set_rate(rate);
        faults.set_hang(hang);
        faults
    }

    /// Sets the failure rate, clamped to 0.0..=1.0 (NaN counts as 0).
    pub(crate) fn set_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        debug_assert!(valid_rate(rate));
        self.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// The current failure rate.
    pub(crate) fn rate(&self) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }

    /// Turns hanging on or off.
    pub(crate) fn set_hang(&self, hang: bool) {
        self.hang.store(hang, Ordering::Relaxed);
    }

    /// Whether refresh requests hang.
    pub(crate) fn hang(&self) -> bool {
        self.hang.load(Ordering::Relaxed)
    }

    /// Rolls the dice: true when this refresh request should fail.
    pub(crate) fn should_fail(&self) -> bool {
        let rate = self.rate();
        rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate)
    }

    /// The current settings.
    pub(crate) fn settings(&self) -> FaultSettings {
        FaultSettings {
            refresh_failure_rate: self.rate(),
            refresh_hang: self.hang(),
        }
    }
}

/// [`Latency`] stored as atomics.
#[derive(Debug, Default)]
pub(crate) struct LiveLatency {
    login: AtomicU64,
    refresh: AtomicU64,
    api: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl LiveLatency {
    /// Live latency starting at `latency`.
    pub(crate) fn new(latency: Latency) -> Self {
        let live = Self::default();
        live.set(latency);
        live
    }

    /// Replaces all three latencies.
    pub(crate) fn set(&self, latency: Latency) {
        self.login.store(nanos(latency.login), Ordering::Relaxed);
        self.refresh
            .store(nanos(latency.refresh), Ordering::Relaxed);
        self.api.store(nanos(latency.api), Ordering::Relaxed);
    }

    /// The current latencies.
    pub(crate) fn get(&self) -> Latency {
        let load = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        Latency {
            login: load(&self.login),
            refresh: load(&self.refresh),
            api: load(&self.api),
        }
    }
}

/// Sleeps for `latency`, skipping the timer entirely when it is zero.
pub(crate) async fn delay(latency: Duration) {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_clamped() {
        let faults = Faults::new(2.0, false);
        assert_eq!(faults.rate(), 1.0);
        assert!(faults.should_fail());
        faults.set_rate(f64::NAN);
        assert_eq!(faults.rate(), 0.0);
        assert!(!faults.should_fail());
        faults.set_rate(-1.0);
        assert_eq!(faults.rate(), 0.0);
    }

    #[test]
    fn latency_round_trips() {
        let latency = Latency {
            login: Duration::from_millis(1),
            refresh: Duration::from_millis(2),
            api: Duration::from_micros(3),
        };
        assert_eq!(LiveLatency::new(latency).get(), latency);
    }
}
