//! The oauth2 contract (RFC 6749): `POST /oauth2/token`, form-encoded,
//! `grant_type=password` (login) and `grant_type=refresh_token` (refresh).
//!
//! Success (§5.1): `200 {"access_token","token_type":"Bearer","expires_in",
//! "refresh_token"}`. Errors (§5.2): `400 invalid_request` (bad content type,
//! missing or repeated parameters), `400 unsupported_grant_type`,
//! `400 invalid_grant` (wrong password; used, expired, revoked or unknown
//! refresh token). Injected faults, and a password grant while the session table is full:
//! `503 temporarily_unavailable`. Every answer
//! carries `Cache-Control: no-store` and `Pragma: no-cache`. Client
//! authentication (`client_id` in the body or HTTP Basic) is accepted and not
//! required.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, PRAGMA};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{Refreshed, run_refresh};
use crate::errors::json_error;
use crate::extract::{self, BadBody, RawBody};
use crate::login::{LoginFailure, authenticate, with_retry_after};
use crate::state::{AppState, Shared};
use crate::tokens::{Contract, IssuedPair, seconds_json};

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: serde_json::Value,
    refresh_token: &'a str,
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    no_store(json_error(status, code, description))
}

fn invalid_request(description: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn success(shared: &Shared, pair: &IssuedPair) -> Response {
    no_store(
        Json(TokenResponse {
            access_token: &pair.access_token,
            token_type: "Bearer",
            expires_in: seconds_json(shared.minter.access_ttl()),
            refresh_token: &pair.refresh_token,
        })
        .into_response(),
    )
}

/// Form parameters, empty values dropped (RFC 6749 §3.2), repeats refused.
/// Every failure is an `invalid_request` (413 for an oversized body, 400
/// otherwise).
fn params(headers: &HeaderMap, body: RawBody) -> Result<HashMap<String, String>, BadBody> {
    let pairs = extract::form(headers, body)?;
    let mut seen = HashSet::new();
    let mut params = HashMap::new();
    for (key, value) in pairs {
        if !seen.insert(key.clone()) {
            return Err(BadBody::Malformed(format!(
                "The parameter `{key}` is included more than once"
            )));
        }
        if !value.is_empty() {
            params.insert(key, value);
        }
    }
    Ok(params)
}

/// `POST /oauth2/token`.
pub(crate) async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let shared = &*state.shared;
    let params = match params(&headers, body) {
        Ok(params) => params,
        Err(BadBody::TooLarge) => {
            let bad = BadBody::TooLarge;
            return error(bad.status(), "invalid_request", &bad.description());
        }
        Err(bad) => return invalid_request(&bad.description()),
    };
    match params.get("grant_type").map(String::as_str) {
        None => invalid_request("The parameter `grant_type` is missing"),
        Some("password") => password_grant(shared, &params).await,
        Some("refresh_token") => refresh_grant(shared, &params).await,
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("The grant type `{other}` is not supported; use password or refresh_token"),
        ),
    }
}

async fn password_grant(shared: &Shared, params: &HashMap<String, String>) -> Response {
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        return invalid_request("The parameters `username` and `password` are required");
    };
    match authenticate(shared, username, password, Contract::OAuth2).await {
        Ok(pair) => success(shared, &pair),
        Err(LoginFailure::InvalidCredentials) => error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The username or password is incorrect",
        ),
        Err(LoginFailure::Full { retry_after }) => with_retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The server holds as many live sessions as it may; try again later",
            ),
            retry_after,
        ),
        Err(LoginFailure::Internal) => internal(),
    }
}

async fn refresh_grant(shared: &Shared, params: &HashMap<String, String>) -> Response {
    let token = params.get("refresh_token").map(String::as_str).ok_or(());
    match run_refresh(shared, token, Contract::OAuth2).await {
        Refreshed::Issued(pair) => success(shared, &pair),
        Refreshed::Rejected(reason) => error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            reason.description(),
        ),
        Refreshed::BadInput(()) => invalid_request("The parameter `refresh_token` is missing"),
        Refreshed::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The token endpoint is temporarily unavailable; try again later",
        ),
        Refreshed::Internal => internal(),
    }
}

fn internal() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "The server could not issue a token",
    )
}
