//! The four refresh contracts. Each module parses its own request shape and
//! words its own answers; [`run_refresh`] is the part they share: counting,
//! fault injection, the family decision and the refresh latency.

pub(crate) mod cookie;
pub(crate) mod header;
pub(crate) mod json;
pub(crate) mod oauth2;

use std::sync::Arc;
use std::time::Instant;

use crate::families::{RefreshOutcome, RejectReason};
use crate::faults::delay;
use crate::state::Shared;
use crate::stats::bump;
use crate::tokens::{Contract, IssuedPair};

/// How a refresh request ended, for the contract to word.
#[derive(Debug)]
pub(crate) enum Refreshed<E> {
    /// New tokens (a rotation, or a grace replay of one).
    Issued(Arc<IssuedPair>),
    /// The refresh token was refused.
    Rejected(RejectReason),
    /// The request carried no usable refresh token; counted as `malformed`.
    BadInput(E),
    /// Injected failure, or a hang released by shutdown: answer 503.
    Unavailable,
    /// Signing failed (never expected): answer 500.
    Internal,
}

/// Runs one refresh request: counts it, applies faults (before looking at
/// the token, so a failed or hung request never touches the family), decides,
/// then waits the refresh latency.
///
/// `jkt` is the thumbprint of the key of the request's DPoP proof, if it had one.
pub(crate) async fn run_refresh<E>(
    shared: &Shared,
    token: Result<&str, E>,
    style: Contract,
    jkt: Option<&str>,
) -> Refreshed<E> {
    let counters = &shared.counters;
    bump(&counters.refresh_calls);
    if shared.faults.hang() {
        bump(&counters.refresh_hangs);
        tracing::debug!(%style, "refresh request left hanging (fault injection)");
        shared.shutdown_signal().await;
        return Refreshed::Unavailable;
    }
    if shared.faults.should_fail() {
        bump(&counters.refresh_failures_injected);
        tracing::debug!(%style, "refresh request failed (fault injection)");
        delay(shared.latency.get().refresh).await;
        return Refreshed::Unavailable;
    }
    let result = match token {
        Err(bad) => {
            counters.rejected(RejectReason::Malformed);
            Refreshed::BadInput(bad)
        }
        Ok(token) => decide(shared, token, style, jkt),
    };
    delay(shared.latency.get().refresh).await;
    result
}

fn decide<E>(shared: &Shared, token: &str, style: Contract, jkt: Option<&str>) -> Refreshed<E> {
    let counters = &shared.counters;
    match shared
        .families
        .refresh(token, style, &shared.minter, Instant::now(), jkt)
    {
        Ok(RefreshOutcome::Rotated(pair)) => {
            bump(&counters.rotations);
            tracing::debug!(%style, "refresh token rotated");
            Refreshed::Issued(pair)
        }
        Ok(RefreshOutcome::Grace(pair)) => {
            bump(&counters.grace_hits);
            tracing::debug!(%style, "previous refresh token accepted within the grace period");
            Refreshed::Issued(pair)
        }
        Ok(RefreshOutcome::Rejected {
            reason,
            revoked_family,
        }) => {
            counters.rejected(reason);
            if reason == RejectReason::Reuse {
                bump(&counters.reuse_detections);
            }
            if revoked_family {
                bump(&counters.families_revoked);
                tracing::info!(%style, "refresh token reuse detected: family revoked");
            } else {
                tracing::debug!(%style, ?reason, "refresh rejected");
            }
            Refreshed::Rejected(reason)
        }
        Err(error) => {
            tracing::error!(%error, "cannot sign an access token");
            Refreshed::Internal
        }
    }
}

/// 503 for an injected refresh failure, in the JSON error shape the json, header and cookie
/// contracts share (oauth2 answers `temporarily_unavailable` in its own shape).
pub(super) fn unavailable() -> axum::response::Response {
    crate::errors::json_error(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "The refresh endpoint is temporarily unavailable; try again later",
    )
}

/// 500 when a token could not be signed (never expected: the key is ours).
pub(super) fn internal() -> axum::response::Response {
    crate::errors::json_error(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "The server could not issue a token",
    )
}
