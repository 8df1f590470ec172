//! The header contract: `POST /api/refresh-token` with the request header
//! `Authorization-refresh: Bearer <refresh>`.
//!
//! Success: `200`, body `{}`, new tokens in the response headers
//! `Authorization` and `Authorization-refresh`, **raw** by default
//! (`Authorization: <access>`), as the header-contract article's server sends
//! them; `Bearer `-prefixed with
//! [`ServerConfig::header_bearer_prefix`](crate::ServerConfig::header_bearer_prefix).
//! Rejection: `401` text/plain `ExpiredRefreshToken` when the refresh token
//! expired, `InvalidRefreshToken` otherwise (including a missing or
//! non-bearer header). Injected faults: `503 {"error":"unavailable"}`.

use axum::Json;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Refreshed, run_refresh};
use crate::extract::bearer;
use crate::families::RejectReason;
use crate::state::AppState;
use crate::tokens::Contract;

/// The request and response header carrying the refresh token.
pub(crate) const AUTHORIZATION_REFRESH: HeaderName =
    HeaderName::from_static("authorization-refresh");

/// `token` as a response header value: raw, or `Bearer <token>` when `prefixed`.
fn token_value(token: &str, prefixed: bool) -> Option<HeaderValue> {
    let mut value = if prefixed {
        HeaderValue::from_str(&format!("Bearer {token}"))
    } else {
        HeaderValue::from_str(token)
    }
    .ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn rejected(text: &'static str) -> Response {
    (StatusCode::UNAUTHORIZED, text).into_response()
}

/// `POST /api/refresh-token`.
pub(crate) async fn refresh(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(&AUTHORIZATION_REFRESH)
        .and_then(bearer)
        .ok_or(());
    match run_refresh(&state.shared, token, Contract::Header, None).await {
        Refreshed::Issued(pair) => {
            let prefixed = state.shared.header_bearer_prefix;
            let (Some(access), Some(refresh)) = (
                token_value(&pair.access_token, prefixed),
                token_value(&pair.refresh_token, prefixed),
            ) else {
                // Our tokens are base64url and JWTs: always valid header values.
                return super::internal();
            };
            let mut response = Json(serde_json::json!({})).into_response();
            response.headers_mut().insert(AUTHORIZATION, access);
            response
                .headers_mut()
                .insert(AUTHORIZATION_REFRESH, refresh);
            response
        }
        Refreshed::Rejected(RejectReason::Expired) => rejected("ExpiredRefreshToken"),
        Refreshed::Rejected(_) | Refreshed::BadInput(()) => rejected("InvalidRefreshToken"),
        Refreshed::Unavailable => super::unavailable(),
        Refreshed::Internal => super::internal(),
    }
}
