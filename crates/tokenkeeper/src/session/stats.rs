//! Counters a session keeps about itself.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a session's counters, from [`Session::stats`](crate::Session::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Refresh flights started (each is one shared refresh, however many requests waited).
    pub flights: u64,
    /// Successful refreshes (new tokens installed from the refresh endpoint).
    pub refreshes: u64,
    /// Calls made to the refresher, including retried transient failures.
    pub refresh_attempts: u64,
    /// Refresh attempts that failed transiently.
    pub transient_failures: u64,
    /// Flights that adopted a newer pair from a shared store instead of refreshing.
    pub adopted: u64,
    /// Refreshes started ahead of expiry.
    pub proactive_refreshes: u64,
    /// Requests that joined a refresh another request had started.
    pub waiters_joined: u64,
    /// Refused requests that had carried an older generation: retried with the current token,
    /// no refresh needed.
    pub stale_retries: u64,
    /// Requests retried after a refresh (at most once each).
    pub retries: u64,
    /// Refused requests whose body could not be replayed: handed back as they were.
    pub not_replayable: u64,
    /// Times the session ended other than by `sign_out`.
    pub logouts: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) flights: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) refresh_attempts: AtomicU64,
    pub(crate) transient_failures: AtomicU64,
    pub(crate) adopted: AtomicU64,
    pub(crate) proactive_refreshes: AtomicU64,
    pub(crate) waiters_joined: AtomicU64,
    pub(crate) stale_retries: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) not_replayable: AtomicU64,
    pub(crate) logouts: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SessionStats {
        SessionStats {
            flights: self.flights.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            refresh_attempts: self.refresh_attempts.load(Relaxed),
            transient_failures: self.transient_failures.load(Relaxed),
            adopted: self.adopted.load(Relaxed),
            proactive_refreshes: self.proactive_refreshes.load(Relaxed),
            waiters_joined: self.waiters_joined.load(Relaxed),
            stale_retries: self.stale_retries.load(Relaxed),
            retries: self.retries.load(Relaxed),
            not_replayable: self.not_replayable.load(Relaxed),
            logouts: self.logouts.load(Relaxed),
        }
    }
}
