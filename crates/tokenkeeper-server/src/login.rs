//! Starting and ending sessions: `POST /login` and `POST /logout`.
//!
//! `POST /login` takes JSON `{"username","password","style"?}` (style
//! `oauth2|json|header|cookie`, default `json`) and answers
//! `200 {"accessToken","refreshToken","expiresIn"}` plus the `tk_refresh`
//! cookie for the cookie contract; wrong credentials get
//! `401 {"error":"invalid_credentials"}`.
//!
//! When the session table is full of live sessions
//! ([`ServerConfig::max_families`](crate::ServerConfig::max_families)), a login gets
//! `503 {"error":"too_many_sessions"}` with `Retry-After` (seconds until the first session
//! dies) when that is known.
//!
//! `POST /logout` takes `{"refreshToken"}` (or the `tk_refresh` cookie) and
//! revokes that token's whole family; `204` whether or not the token was known
//! (RFC 7009 style), and the cookie is cleared.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::contracts::cookie::{REFRESH_COOKIE, clear_refresh_cookie, set_refresh_cookie};
use crate::errors::json_error;
use crate::extract::{self, BadBody, RawBody};
use crate::families::LoginOutcome;
use crate::faults::delay;
use crate::state::{AppState, Shared};
use crate::stats::bump;
use crate::tokens::{Contract, IssuedPair, seconds_json};

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginFailure {
    /// Unknown user or wrong password.
    InvalidCredentials,
    /// The session table is full of live sessions; one dies after `retry_after` (when known).
    Full {
        /// Time until a place frees up, if it ever does without a reset.
        retry_after: Option<Duration>,
    },
    /// Signing failed (never expected).
    Internal,
}

/// Checks credentials, starts a family, counts the login and waits the login
/// latency (failures wait too).
///
/// `jkt` (the thumbprint of a DPoP proof's key) binds the new session to that key.
pub(crate) async fn authenticate(
    shared: &Shared,
    username: &str,
    password: &str,
    style: Contract,
    jkt: Option<&str>,
) -> Result<IssuedPair, LoginFailure> {
    start(shared, username, password, style, jkt, true).await
}

/// [`authenticate`] for the client credentials grant: the pair's refresh token is never
/// handed out and the session ends with its access token.
pub(crate) async fn authenticate_client(
    shared: &Shared,
    client_id: &str,
    secret: &str,
    jkt: Option<&str>,
) -> Result<IssuedPair, LoginFailure> {
    start(shared, client_id, secret, Contract::OAuth2, jkt, false).await
}

async fn start(
    shared: &Shared,
    username: &str,
    password: &str,
    style: Contract,
    jkt: Option<&str>,
    with_refresh: bool,
) -> Result<IssuedPair, LoginFailure> {
    let result = if shared.check_credentials(username, password) {
        let families = &shared.families;
        let now = Instant::now();
        let started = if with_refresh {
            families.login(username, style, &shared.minter, now, jkt)
        } else {
            families.login_without_refresh(username, style, &shared.minter, now, jkt)
        };
        match started {
            Ok(LoginOutcome::Issued(pair)) => {
                bump(&shared.counters.logins);
                tracing::debug!(%style, "login");
                Ok(pair)
            }
            Ok(LoginOutcome::Full { retry_after }) => {
                bump(&shared.counters.logins_refused);
                tracing::warn!(?retry_after, "login refused: the session table is full");
                Err(LoginFailure::Full { retry_after })
            }
            Err(error) => {
                tracing::error!(%error, "cannot sign an access token");
                Err(LoginFailure::Internal)
            }
        }
    } else {
        tracing::debug!("login refused: invalid credentials");
        Err(LoginFailure::InvalidCredentials)
    };
    delay(shared.latency.get().login).await;
    result
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    style: Option<Contract>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginResponse<'a> {
    access_token: &'a str,
    refresh_token: &'a str,
    expires_in: serde_json::Value,
}

/// `POST /login`.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let shared = &*state.shared;
    let request: LoginRequest = match extract::json(&headers, body) {
        Ok(request) => request,
        Err(bad) => return bad.response(),
    };
    let style = request.style.unwrap_or(Contract::Json);
    match authenticate(shared, &request.username, &request.password, style, None).await {
        Ok(pair) => {
            let mut response = Json(LoginResponse {
                access_token: &pair.access_token,
                refresh_token: &pair.refresh_token,
                expires_in: seconds_json(shared.minter.access_ttl()),
            })
            .into_response();
            if let Some(cookie) = set_refresh_cookie(&pair.refresh_token) {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            response
        }
        Err(LoginFailure::InvalidCredentials) => json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "The username or password is incorrect",
        ),
        Err(LoginFailure::Full { retry_after }) => with_retry_after(
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_sessions",
                "The server holds as many live sessions as it may; try again later",
            ),
            retry_after,
        ),
        Err(LoginFailure::Internal) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server could not issue a token",
        ),
    }
}

/// Adds `Retry-After: <whole seconds, rounded up, at least 1>` when the wait is known.
pub(crate) fn with_retry_after(mut response: Response, retry_after: Option<Duration>) -> Response {
    if let Some(wait) = retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogoutRequest {
    refresh_token: String,
}

/// `POST /logout`.
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let shared = &*state.shared;
    let has_body = body.as_ref().map_or(true, |bytes| !bytes.is_empty());
    let token = if has_body {
        match extract::json::<LogoutRequest>(&headers, body) {
            Ok(request) => request.refresh_token,
            Err(bad) => return bad.response(),
        }
    } else {
        match extract::cookie(&headers, REFRESH_COOKIE) {
            Some(token) => token.to_owned(),
            None => {
                return BadBody::Malformed(
                    "Send {\"refreshToken\": \"…\"} or the tk_refresh cookie".to_owned(),
                )
                .response();
            }
        }
    };
    if shared.families.revoke(&token, Instant::now()) == Some(true) {
        bump(&shared.counters.families_revoked);
        tracing::debug!("logout: family revoked");
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, clear_refresh_cookie());
    response
}
