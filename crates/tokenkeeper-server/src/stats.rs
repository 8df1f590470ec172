//! Counters: lock-free atomics on the hot paths, [`Stats`] snapshots for
//! `GET /__stats` and [`ServerHandle::stats`](crate::ServerHandle::stats).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::families::RejectReason;

/// Refresh rejections, by reason.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RejectedCounts {
    /// An already-rotated refresh token was presented (outside any grace).
    pub reuse: u64,
    /// The refresh token was never issued (or was forgotten by a reset).
    pub unknown: u64,
    /// The refresh token outlived the refresh TTL.
    pub expired: u64,
    /// The current refresh token of a revoked family was presented.
    pub revoked: u64,
    /// The request carried no usable refresh token (missing field, header or
    /// cookie, bad body, wrong content type, oversized body).
    pub malformed: u64,
}

/// A snapshot of every counter the server keeps.
///
/// Counters are read one by one, so a snapshot taken under load is not a
/// single instant; once the server is quiet it is exact.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Successful logins (`POST /login` and oauth2 `grant_type=password`).
    pub logins: u64,
    /// Logins refused with 503 because the session table was full of live sessions
    /// ([`ServerConfig::max_families`](crate::ServerConfig::max_families)).
    pub logins_refused: u64,
    /// Refresh-token families (sessions) held now, live and dead (a gauge, not a counter).
    pub families: u64,
    /// Dead families forgotten since start or the last reset (see
    /// [`ServerConfig::family_retention`](crate::ServerConfig::family_retention)).
    pub families_pruned: u64,
    /// Requests to any refresh endpoint, whatever their outcome (including
    /// rejected, failed and hung ones).
    pub refresh_calls: u64,
    /// Successful rotations (new pair issued).
    pub rotations: u64,
    /// Refresh rejections by reason.
    pub refresh_rejected: RejectedCounts,
    /// Presentations of already-rotated refresh tokens (every one counts).
    pub reuse_detections: u64,
    /// Families revoked (counted once per family, by reuse or by logout).
    pub families_revoked: u64,
    /// Presentations of the previous refresh token accepted within the grace
    /// period.
    pub grace_hits: u64,
    /// Refresh requests answered 503 by fault injection.
    pub refresh_failures_injected: u64,
    /// Refresh requests left hanging by fault injection.
    pub refresh_hangs: u64,
    /// Protected API requests answered 200.
    pub api_ok: u64,
    /// Protected API requests refused because the access token expired.
    pub api_401_expired: u64,
    /// Protected API requests refused because the access token was invalid
    /// (forged, garbage, revoked or unknown family).
    pub api_401_invalid: u64,
    /// Protected API requests that carried no bearer token.
    pub api_401_missing: u64,
}

/// One atomic per [`Stats`] field.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) logins: AtomicU64,
    pub(crate) logins_refused: AtomicU64,
    pub(crate) refresh_calls: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) rejected_reuse: AtomicU64,
    pub(crate) rejected_unknown: AtomicU64,
    pub(crate) rejected_expired: AtomicU64,
    pub(crate) rejected_revoked: AtomicU64,
    pub(crate) rejected_malformed: AtomicU64,
    pub(crate) reuse_detections: AtomicU64,
    pub(crate) families_revoked: AtomicU64,
    pub(crate) grace_hits: AtomicU64,
    pub(crate) refresh_failures_injected: AtomicU64,
    pub(crate) refresh_hangs: AtomicU64,
    pub(crate) api_ok: AtomicU64,
    pub(crate) api_401_expired: AtomicU64,
    pub(crate) api_401_invalid: AtomicU64,
    pub(crate) api_401_missing: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Counts a refresh rejection under its reason.
    pub(crate) fn rejected(&self, reason: RejectReason) {
        bump(match reason {
            RejectReason::Reuse => &self.rejected_reuse,
            RejectReason::Unknown => &self.rejected_unknown,
            RejectReason::Expired => &self.rejected_expired,
            RejectReason::Revoked => &self.rejected_revoked,
            RejectReason::Malformed => &self.rejected_malformed,
        });
    }

    fn all(&self) -> [&AtomicU64; 18] {
        [
            &self.logins,
            &self.logins_refused,
            &self.refresh_calls,
            &self.rotations,
            &self.rejected_reuse,
            &self.rejected_unknown,
            &self.rejected_expired,
            &self.rejected_revoked,
            &self.rejected_malformed,
            &self.reuse_detections,
            &self.families_revoked,
            &self.grace_hits,
            &self.refresh_failures_injected,
            &self.refresh_hangs,
            &self.api_ok,
            &self.api_401_expired,
            &self.api_401_invalid,
            &self.api_401_missing,
        ]
    }

    /// Sets every counter back to zero.
    pub(crate) fn reset(&self) {
        for counter in self.all() {
            counter.store(0, Ordering::Relaxed);
        }
    }

    /// Reads every counter.
    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            logins: get(&self.logins),
            logins_refused: get(&self.logins_refused),
            // Read from the family table by `AppState::stats`.
            families: 0,
            families_pruned: 0,
            refresh_calls: get(&self.refresh_calls),
            rotations: get(&self.rotations),
            refresh_rejected: RejectedCounts {
                reuse: get(&self.rejected_reuse),
                unknown: get(&self.rejected_unknown),
                expired: get(&self.rejected_expired),
                revoked: get(&self.rejected_revoked),
                malformed: get(&self.rejected_malformed),
            },
            reuse_detections: get(&self.reuse_detections),
            families_revoked: get(&self.families_revoked),
            grace_hits: get(&self.grace_hits),
            refresh_failures_injected: get(&self.refresh_failures_injected),
            refresh_hangs: get(&self.refresh_hangs),
            api_ok: get(&self.api_ok),
            api_401_expired: get(&self.api_401_expired),
            api_401_invalid: get(&self.api_401_invalid),
            api_401_missing: get(&self.api_401_missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_zeroes_everything() {
        let counters = Counters::default();
        for counter in counters.all() {
            bump(counter);
        }
        assert_ne!(counters.snapshot(), Stats::default());
        counters.reset();
        assert_eq!(counters.snapshot(), Stats::default());
    }
}
