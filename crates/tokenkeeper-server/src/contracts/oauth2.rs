//! The oauth2 contract (RFC 6749): `POST /oauth2/token`, form-encoded,
//! `grant_type=password` (login), `grant_type=refresh_token` (refresh) and
//! `grant_type=client_credentials` (§4.4, machine to machine).
//!
//! Success (§5.1): `200 {"access_token","token_type":"Bearer","expires_in",
//! "refresh_token"}` (no `refresh_token` for client credentials, §4.4.3). Client credentials
//! need the client authenticated as one of the configured users (client id = user name,
//! secret = password), by HTTP Basic (RFC 6749 §2.3.1, form-encoded parts) or
//! `client_id`/`client_secret` in the body; otherwise `401 invalid_client`. Its token belongs
//! to a session that ends when the token expires. Errors (§5.2): `400 invalid_request` (bad content type,
//! missing or repeated parameters), `400 unsupported_grant_type`,
//! `400 invalid_grant` (wrong password; used, expired, revoked or unknown
//! refresh token). Injected faults, and a password or client credentials grant while the
//! session table is full:
//! `503 temporarily_unavailable`. Every answer
//! carries `Cache-Control: no-store` and `Pragma: no-cache`. Client
//! authentication (`client_id` in the body or HTTP Basic) is accepted and not
//! required.
//!
//! With DPoP on ([`ServerConfig::dpop`](crate::ServerConfig::dpop)), every grant verifies the
//! request's `DPoP` proof (`htm` POST, `htu` this endpoint) and a valid proof binds what is
//! issued to its key: `token_type: "DPoP"`, `cnf.jkt` in the access token, and a session
//! whose refresh tokens are redeemed only with proofs by the same key (another key, or no
//! proof: `400 invalid_grant`, the session untouched). A bad proof gets
//! `400 invalid_dpop_proof`; a proof without the current nonce (when nonces are on)
//! `400 use_dpop_nonce` with the nonce in `DPoP-Nonce`, and every answer then carries the
//! current nonce. A grant without a proof gets `400 invalid_dpop_proof` when DPoP is
//! [required](crate::DpopConfig::required), bearer tokens otherwise.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::{Refreshed, run_refresh};
use crate::dpop::{self, Proof, Refusal, Rejection, request_uri};
use crate::errors::json_error;
use crate::extract::{self, BadBody, RawBody};
use crate::families::RejectReason;
use crate::login::{LoginFailure, authenticate, authenticate_client, with_retry_after};
use crate::state::{AppState, Shared};
use crate::stats::bump;
use crate::tokens::{Contract, IssuedPair, seconds_json};

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
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
    respond(shared, pair, Some(&pair.refresh_token))
}

fn respond(shared: &Shared, pair: &IssuedPair, refresh_token: Option<&str>) -> Response {
    no_store(
        Json(TokenResponse {
            access_token: &pair.access_token,
            token_type: if pair.dpop_bound { "DPoP" } else { "Bearer" },
            expires_in: seconds_json(shared.minter.access_ttl()),
            refresh_token,
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
    uri: Uri,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let shared = &*state.shared;
    let response = grant(shared, &uri, &headers, body).await;
    match &shared.dpop {
        Some(dpop) => dpop.with_nonce(response),
        None => response,
    }
}

/// The request's DPoP proof: `Ok(None)` when DPoP is off (a `DPoP` header is then ignored,
/// as a server without DPoP does) or when there is no proof and none is required.
fn dpop_proof(shared: &Shared, uri: &Uri, headers: &HeaderMap) -> Result<Option<Proof>, Refusal> {
    let Some(dpop) = &shared.dpop else {
        return Ok(None);
    };
    let checked = dpop.check(
        &shared.counters,
        headers,
        &Method::POST,
        &request_uri(headers, uri),
        None,
    );
    match checked {
        Ok(None) if dpop.required() => {
            shared.counters.proof_rejected(Rejection::Missing);
            Err(Refusal::Proof(Rejection::Missing))
        }
        checked => checked,
    }
}

async fn grant(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: RawBody) -> Response {
    let params = match params(headers, body) {
        Ok(params) => params,
        Err(BadBody::TooLarge) => {
            let bad = BadBody::TooLarge;
            return error(bad.status(), "invalid_request", &bad.description());
        }
        Err(bad) => return invalid_request(&bad.description()),
    };
    let grant = match params.get("grant_type").map(String::as_str) {
        None => return invalid_request("The parameter `grant_type` is missing"),
        Some("password") => Grant::Password,
        Some("refresh_token") => Grant::RefreshToken,
        Some("client_credentials") => Grant::ClientCredentials,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!(
                    "The grant type `{other}` is not supported; use password, refresh_token or client_credentials"
                ),
            );
        }
    };
    let proof = match dpop_proof(shared, uri, headers) {
        Ok(proof) => proof,
        Err(refusal) => return no_store(dpop::token_endpoint_refusal(refusal)),
    };
    let jkt = proof.as_ref().map(|proof| proof.jkt.as_str());
    let (response, wrong_key) = match grant {
        Grant::RefreshToken => refresh_grant(shared, &params, jkt).await,
        Grant::Password => (password_grant(shared, &params, jkt).await, false),
        Grant::ClientCredentials => (
            client_credentials_grant(shared, headers, &params, jkt).await,
            false,
        ),
    };
    if proof.is_some() {
        // Counted once the grant knows which key its refresh token is bound to.
        if wrong_key {
            shared.counters.proof_rejected(Rejection::WrongKey);
        } else {
            bump(&shared.counters.dpop_accepted);
        }
    }
    response
}

/// The grants `POST /oauth2/token` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Password,
    RefreshToken,
    ClientCredentials,
}

/// The client id and secret of a request: HTTP Basic (each part form-encoded, RFC 6749
/// §2.3.1) or `client_id` and `client_secret` in the body. `None` when neither is complete.
fn client_secret(
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Option<(String, String)> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = STANDARD.decode(encoded.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let form_decode = |part: &str| {
            // A part with a raw `&` or `=` is not form-encoded: refused, not guessed at.
            let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={part}"));
            match pairs.ok()?.as_slice() {
                [(_, value)] if !part.contains('=') => Some(value.clone()),
                _ => None,
            }
        };
        return Some((form_decode(id)?, form_decode(secret)?));
    }
    Some((
        params.get("client_id")?.clone(),
        params.get("client_secret")?.clone(),
    ))
}

async fn client_credentials_grant(
    shared: &Shared,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    jkt: Option<&str>,
) -> Response {
    let Some((id, secret)) = client_secret(headers, params) else {
        return invalid_client();
    };
    match authenticate_client(shared, &id, &secret, jkt).await {
        Ok(pair) => respond(shared, &pair, None),
        Err(LoginFailure::InvalidCredentials) => invalid_client(),
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

/// `401 invalid_client` (RFC 6749 §5.2), with the Basic challenge the RFC asks for.
fn invalid_client() -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "Client authentication failed: send a configured user as HTTP Basic or client_id and client_secret",
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"tokenkeeper\""),
    );
    response
}

async fn password_grant(
    shared: &Shared,
    params: &HashMap<String, String>,
    jkt: Option<&str>,
) -> Response {
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        return invalid_request("The parameters `username` and `password` are required");
    };
    match authenticate(shared, username, password, Contract::OAuth2, jkt).await {
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

/// The answer, and whether the refresh token was refused for being bound to another key.
async fn refresh_grant(
    shared: &Shared,
    params: &HashMap<String, String>,
    jkt: Option<&str>,
) -> (Response, bool) {
    let token = params.get("refresh_token").map(String::as_str).ok_or(());
    let refreshed = run_refresh(shared, token, Contract::OAuth2, jkt).await;
    let wrong_key = matches!(refreshed, Refreshed::Rejected(RejectReason::WrongKey));
    let response = match refreshed {
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
    };
    (response, wrong_key)
}

fn internal() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "The server could not issue a token",
    )
}
