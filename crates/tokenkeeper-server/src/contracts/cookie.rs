//! The cookie contract: `POST /v3/jwt/reissue`; the refresh token travels in
//! the `tk_refresh` cookie (HttpOnly, SameSite=Strict, Path=/v3/jwt), set by
//! `POST /login` and by every reissue.
//!
//! Success: `200 {"accessToken"}` and `Set-Cookie` with the rotated refresh
//! token. Rejection: `401 {"result":{"errorCode":"EXPIRED_REFRESH_TOKEN"}}`
//! when the refresh token expired, `INVALID_REFRESH_TOKEN` otherwise
//! (including a missing cookie), with a `Set-Cookie` that clears the cookie.
//! Injected faults: `503 {"error":"unavailable"}`, cookie untouched.

use axum::Json;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Refreshed, run_refresh};
use crate::extract::cookie;
use crate::families::RejectReason;
use crate::state::AppState;
use crate::tokens::Contract;

/// Name of the refresh cookie.
pub const REFRESH_COOKIE: &str = "tk_refresh";
/// Path the refresh cookie is scoped to: only the reissue endpoint gets it.
pub const REFRESH_COOKIE_PATH: &str = "/v3/jwt";

/// `Set-Cookie` value carrying `refresh_token`.
pub(crate) fn set_refresh_cookie(refresh_token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={refresh_token}; HttpOnly; SameSite=Strict; Path={REFRESH_COOKIE_PATH}"
    ))
    .ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `Set-Cookie` value that deletes the refresh cookie.
pub(crate) fn clear_refresh_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "tk_refresh=; HttpOnly; SameSite=Strict; Path=/v3/jwt; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    )
}

fn rejected(code: &str) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "result": { "errorCode": code } })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, clear_refresh_cookie());
    response
}

/// `POST /v3/jwt/reissue`.
pub(crate) async fn reissue(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = cookie(&headers, REFRESH_COOKIE).ok_or(());
    match run_refresh(&state.shared, token, Contract::Cookie, None).await {
        Refreshed::Issued(pair) => {
            let Some(set_cookie) = set_refresh_cookie(&pair.refresh_token) else {
                return super::internal();
            };
            let mut response = Json(json!({ "accessToken": pair.access_token })).into_response();
            response.headers_mut().insert(SET_COOKIE, set_cookie);
            response
        }
        Refreshed::Rejected(RejectReason::Expired) => rejected("EXPIRED_REFRESH_TOKEN"),
        Refreshed::Rejected(_) | Refreshed::BadInput(()) => rejected("INVALID_REFRESH_TOKEN"),
        Refreshed::Unavailable => super::unavailable(),
        Refreshed::Internal => super::internal(),
    }
}
