//! Counters: lock-free atomics on the hot paths, [`Stats`] snapshots for
//! `GET /__stats` and [`ServerHandle::stats`](crate::ServerHandle::stats).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::dpop::Rejection;
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
    /// The refresh token is DPoP-bound and the request's proof was signed by another key (or
    /// there was no proof). The family is left untouched.
    pub wrong_key: u64,
}

/// DPoP proofs refused, by reason (RFC 9449 §4.3). All zero means every proof the server
/// saw was valid.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DpopRejectedCounts {
    /// No `DPoP` header where one was required (token endpoint with
    /// [`DpopConfig::required`](crate::DpopConfig::required), or `Authorization: DPoP`).
    pub missing: u64,
    /// Several `DPoP` headers, not a JWT, bad base64 or JSON, a claim missing or mistyped.
    pub malformed: u64,
    /// `typ` not `dpop+jwt`.
    pub typ: u64,
    /// `alg` not ES256 or EdDSA (`none`, `HS256`, ...).
    pub alg: u64,
    /// `jwk` missing, not a public key for `alg` (P-256, Ed25519), or carrying private key
    /// material.
    pub jwk: u64,
    /// Bad signature.
    pub signature: u64,
    /// `htm` not the request's method.
    pub htm: u64,
    /// `htu` not the request's URI.
    pub htu: u64,
    /// `iat` outside the window (or no newer than a full replay cache's floor).
    pub iat: u64,
    /// `ath` missing or wrong on a resource request.
    pub ath: u64,
    /// A `jti` seen before: a replayed proof.
    pub replay: u64,
    /// Signed by another key than the one the token is bound to.
    pub wrong_key: u64,
}

/// DPoP counters (all zero while DPoP is off).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DpopStats {
    /// Proofs that passed every check, at the token endpoint and the API.
    pub proofs_accepted: u64,
    /// Proofs refused, by reason. A nonce challenge is not a refusal: it is counted in
    /// [`DpopStats::nonce_challenges`] only.
    pub proofs_rejected: DpopRejectedCounts,
    /// Requests answered `use_dpop_nonce` (no nonce, or a stale one), token endpoint and API.
    pub nonce_challenges: u64,
    /// Replayed proofs (`jti` seen before); the same count as `proofs_rejected.replay`.
    pub jti_replays: u64,
    /// DPoP-bound access tokens presented as `Authorization: Bearer` (refused).
    pub bearer_downgrades: u64,
    /// `Authorization: DPoP` with an access token that is not DPoP-bound (refused).
    pub unbound_tokens: u64,
    /// `jti`s held in the replay cache now (a gauge).
    pub replay_cache_len: u64,
    /// `jti`s forgotten because the replay cache was full
    /// ([`DpopConfig::replay_capacity`](crate::DpopConfig::replay_capacity)).
    pub replay_cache_evictions: u64,
}

/// A snapshot of every counter the server keeps.
///
/// Counters are read one by one, so a snapshot taken under load is not a
/// single instant; once the server is quiet it is exact.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Successful logins (`POST /login`, oauth2 `grant_type=password` and
    /// `grant_type=client_credentials`).
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
    /// DPoP proofs, nonces and bound tokens.
    pub dpop: DpopStats,
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
    pub(crate) rejected_wrong_key: AtomicU64,
    pub(crate) dpop_accepted: AtomicU64,
    /// Indexed by [`Rejection`] in declaration order.
    pub(crate) dpop_rejected: [AtomicU64; Rejection::COUNT],
    pub(crate) dpop_nonce_challenges: AtomicU64,
    pub(crate) dpop_bearer_downgrades: AtomicU64,
    pub(crate) dpop_unbound_tokens: AtomicU64,
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
            RejectReason::WrongKey => &self.rejected_wrong_key,
        });
    }

    /// Counts a refused DPoP proof under its reason.
    pub(crate) fn proof_rejected(&self, reason: Rejection) {
        bump(&self.dpop_rejected[reason as usize]);
    }

    fn all(&self) -> impl Iterator<Item = &AtomicU64> {
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
            &self.rejected_wrong_key,
            &self.dpop_accepted,
            &self.dpop_nonce_challenges,
            &self.dpop_bearer_downgrades,
            &self.dpop_unbound_tokens,
        ]
        .into_iter()
        .chain(&self.dpop_rejected)
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
                wrong_key: get(&self.rejected_wrong_key),
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
            dpop: self.dpop_snapshot(),
        }
    }

    fn dpop_snapshot(&self) -> DpopStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rejected = |reason: Rejection| get(&self.dpop_rejected[reason as usize]);
        DpopStats {
            proofs_accepted: get(&self.dpop_accepted),
            proofs_rejected: DpopRejectedCounts {
                missing: rejected(Rejection::Missing),
                malformed: rejected(Rejection::Malformed),
                typ: rejected(Rejection::Typ),
                alg: rejected(Rejection::Alg),
                jwk: rejected(Rejection::Jwk),
                signature: rejected(Rejection::Signature),
                htm: rejected(Rejection::Htm),
                htu: rejected(Rejection::Htu),
                iat: rejected(Rejection::Iat),
                ath: rejected(Rejection::Ath),
                replay: rejected(Rejection::Replay),
                wrong_key: rejected(Rejection::WrongKey),
            },
            nonce_challenges: get(&self.dpop_nonce_challenges),
            jti_replays: rejected(Rejection::Replay),
            bearer_downgrades: get(&self.dpop_bearer_downgrades),
            unbound_tokens: get(&self.dpop_unbound_tokens),
            // Read from the replay cache by `AppState::stats`.
            replay_cache_len: 0,
            replay_cache_evictions: 0,
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
