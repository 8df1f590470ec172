//! Operator endpoints: `GET /__stats`, `POST /__reset`, `GET|POST /__faults`,
//! `POST /__dpop/rotate-nonce`.
//!
//! Every one needs the header `X-Tokenkeeper-Admin: 1` and is never answered to a browser
//! origin ([`crate::access`]).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::config::valid_rate;
use crate::extract::{self, BadBody, RawBody};
use crate::state::AppState;

/// `GET /__stats` → the [`Stats`](crate::Stats) counters as JSON.
pub(crate) async fn stats(State(state): State<AppState>) -> Response {
    Json(state.stats()).into_response()
}

/// `POST /__reset` → zero the counters, forget every family → 204.
pub(crate) async fn reset(State(state): State<AppState>) -> Response {
    state.reset();
    tracing::info!("state reset: counters zeroed, families forgotten");
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /__dpop/rotate-nonce` → makes every DPoP nonce handed out so far stale → 204;
/// `409 {"error":"dpop_nonces_off"}` unless DPoP nonces are on.
pub(crate) async fn rotate_dpop_nonce(State(state): State<AppState>) -> Response {
    if state.rotate_dpop_nonce() {
        tracing::info!("DPoP nonce rotated");
        StatusCode::NO_CONTENT.into_response()
    } else {
        crate::errors::json_error(
            StatusCode::CONFLICT,
            "dpop_nonces_off",
            "DPoP nonces are not on (start the server with DPoP nonces)",
        )
    }
}

/// `GET /__faults` → the current fault settings.
pub(crate) async fn get_faults(State(state): State<AppState>) -> Response {
    Json(state.faults()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsUpdate {
    #[serde(default)]
    refresh_failure_rate: Option<f64>,
    #[serde(default)]
    refresh_hang: Option<bool>,
}

/// `POST /__faults` `{"refresh_failure_rate"?, "refresh_hang"?}` → updates the
/// live fault settings and answers with the current ones.
pub(crate) async fn set_faults(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let update: FaultsUpdate = match extract::json(&headers, body) {
        Ok(update) => update,
        Err(bad) => return bad.response(),
    };
    if let Some(rate) = update.refresh_failure_rate {
        if !valid_rate(rate) {
            return BadBody::Malformed(format!(
                "`refresh_failure_rate` must be within 0.0..=1.0, got {rate}"
            ))
            .response();
        }
        state.set_refresh_failure_rate(rate);
    }
    if let Some(hang) = update.refresh_hang {
        state.set_refresh_hang(hang);
    }
    let settings = state.faults();
    tracing::info!(
        refresh_failure_rate = settings.refresh_failure_rate,
        refresh_hang = settings.refresh_hang,
        "fault settings changed"
    );
    Json(settings).into_response()
}
