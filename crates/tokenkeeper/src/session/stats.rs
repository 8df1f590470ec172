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
    /// Refusals of a token from another login (a request sent before a sign-in or sign-out):
    /// handed back to their callers, nothing retried, refreshed or ended.
    pub other_login_refusals: u64,
    /// Refusals from a route that had already refused a token at least as fresh right after a
    /// refresh: delivered as that route's answer, without a refresh.
    pub route_refusals: u64,
    /// Requests that needed a refresh while a `Retry-After` (or an answer that was no verdict)
    /// held refreshes back: failed at once with `RefreshUnavailable`, nothing sent.
    pub held_back: u64,
    /// Refreshed tokens that expired no later than the ones they replaced (a caching server or
    /// proxy): not renewed ahead of expiry, so no refresh loop.
    pub non_renewing_tokens: u64,
    /// Retries of a save that failed after a rotation.
    pub save_retries: u64,
    /// Requests sent once more because the API demanded a DPoP nonce (feature `dpop`): no
    /// refresh, no refusal counted.
    pub dpop_nonce_retries: u64,
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
    pub(crate) other_login_refusals: AtomicU64,
    pub(crate) route_refusals: AtomicU64,
    pub(crate) held_back: AtomicU64,
    pub(crate) non_renewing_tokens: AtomicU64,
    pub(crate) save_retries: AtomicU64,
    pub(crate) dpop_nonce_retries: AtomicU64,
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
            other_login_refusals: self.other_login_refusals.load(Relaxed),
            route_refusals: self.route_refusals.load(Relaxed),
            held_back: self.held_back.load(Relaxed),
            non_renewing_tokens: self.non_renewing_tokens.load(Relaxed),
            save_retries: self.save_retries.load(Relaxed),
            dpop_nonce_retries: self.dpop_nonce_retries.load(Relaxed),
        }
    }
}
