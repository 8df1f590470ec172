//! The protected API: `GET /api/items/{id}` and `POST /api/items`.
//!
//! The bearer token is checked when the request arrives; the API latency is
//! waited after that, so a token that was valid on arrival is served even if
//! it expires meanwhile, and a 401 for an expired token can arrive after the
//! client already refreshed.
//!
//! 401s are worded in the style of the contract that issued the token (its
//! `sty` claim, read without verification for forged tokens, oauth2 when
//! unreadable):
//!
//! | style  | expired | invalid |
//! |--------|---------|---------|
//! | oauth2 | `WWW-Authenticate: Bearer error="invalid_token", error_description="The access token expired"`, JSON `{"error":"invalid_token",...}` | same, `"The access token is invalid"` |
//! | json   | `{"message":"TokenExpiredError"}` | `{"message":"JsonWebTokenError"}` |
//! | header | text/plain `ExpiredToken` | `InvalidToken` |
//! | cookie | `{"result":{"errorCode":"EXPIRED_TOKEN"}}` | `{"result":{"errorCode":"INVALID_TOKEN"}}` |
//!
//! The non-oauth2 styles also send `WWW-Authenticate: Bearer realm="tokenkeeper"`.
//! A request without a bearer token gets 401 with
//! `WWW-Authenticate: Bearer realm="tokenkeeper"` and no error code
//! (RFC 6750 §3.1). A validly signed token whose family was revoked (or
//! forgotten by a reset) is invalid.
//!
//! # DPoP
//!
//! A DPoP-bound token (one with `cnf.jkt`, issued by the oauth2 token endpoint with DPoP on)
//! is accepted only as `Authorization: DPoP <token>` with a `DPoP` proof for this request
//! (`htm`, `htu`, `iat`, a fresh `jti`, `ath` = the token's hash, the current nonce when
//! nonces are on) signed by the key the token is bound to. Refusals are `401` with
//! `WWW-Authenticate: DPoP error="…", error_description="…", algs="ES256 EdDSA"` and the same JSON
//! error as the oauth2 style:
//!
//! | what | `error` |
//! |---|---|
//! | no proof, a bad proof, a replayed `jti`, another key | `invalid_dpop_proof` |
//! | no or stale nonce (nonces on), plus a `DPoP-Nonce` header | `use_dpop_nonce` |
//! | the token expired, is forged or revoked | `invalid_token` |
//! | the token is not DPoP-bound | `invalid_token` |
//! | a DPoP-bound token sent as `Bearer` | `invalid_token` |
//!
//! With DPoP on, a request without credentials is also offered `WWW-Authenticate: DPoP
//! algs="ES256 EdDSA"` beside the bearer challenge, and with nonces on every answer carries the
//! current nonce in `DPoP-Nonce`. Bearer tokens (from the other contracts, or when DPoP is
//! optional) are served as before.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::dpop::{self, Rejection, request_uri};
use crate::errors::json_error;
use crate::extract::{self, RawBody};
use crate::faults::delay;
use crate::state::{AppState, Shared};
use crate::stats::bump;
use crate::tokens::{AccessCheck, AccessClaims, Contract, unix_now};

const REALM: HeaderValue = HeaderValue::from_static("Bearer realm=\"tokenkeeper\"");
const OAUTH2_EXPIRED: &str = "The access token expired";
const OAUTH2_INVALID: &str = "The access token is invalid";

/// The authorization scheme a token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

/// The scheme and token of the `Authorization` header (scheme case-insensitive), or `None`
/// when it is not a non-empty `Bearer` or `DPoP` credential.
fn credential(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((Scheme::Bearer, token))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some((Scheme::Dpop, token))
    } else {
        None
    }
}

/// What the request's credential is worth.
enum Verdict {
    Ok(AccessClaims),
    Refused(Refusal),
}

/// The request as a DPoP proof must name it.
struct Target<'a> {
    method: &'a Method,
    uri: &'a Uri,
}

fn verdict(shared: &Shared, headers: &HeaderMap, target: &Target<'_>) -> Verdict {
    let credential = credential(headers);
    let dpop = shared.dpop.as_ref();
    let (scheme, token) = match credential {
        // Without DPoP on, the DPoP scheme is as unknown as any other.
        Some((Scheme::Dpop, _)) if dpop.is_none() => return Verdict::Refused(Refusal::Missing),
        Some(credential) => credential,
        None => return Verdict::Refused(Refusal::Missing),
    };
    let proof = match (scheme, dpop) {
        (Scheme::Dpop, Some(dpop)) => {
            let uri = request_uri(headers, target.uri);
            match dpop.check(&shared.counters, headers, target.method, &uri, Some(token)) {
                Ok(Some(proof)) => Some(proof),
                Ok(None) => {
                    shared.counters.proof_rejected(Rejection::Missing);
                    let missing = dpop::Refusal::Proof(Rejection::Missing);
                    return Verdict::Refused(Refusal::Dpop(missing));
                }
                Err(refusal) => return Verdict::Refused(Refusal::Dpop(refusal)),
            }
        }
        _ => None,
    };
    let (claims, expired) = match shared.minter.check(token, unix_now()) {
        AccessCheck::Invalid(style) => {
            if proof.is_some() {
                bump(&shared.counters.dpop_accepted);
            }
            return Verdict::Refused(Refusal::Invalid(style, scheme));
        }
        AccessCheck::Valid(claims) => (claims, false),
        AccessCheck::Expired(claims) => (claims, true),
    };
    match (&proof, &claims.cnf) {
        (None, Some(_)) => return Verdict::Refused(Refusal::Downgrade),
        (Some(_), None) => {
            // The proof itself was good; the token is what is wrong.
            bump(&shared.counters.dpop_accepted);
            return Verdict::Refused(Refusal::Unbound);
        }
        (Some(proof), Some(cnf)) if proof.jkt != cnf.jkt => {
            shared.counters.proof_rejected(Rejection::WrongKey);
            let wrong = dpop::Refusal::Proof(Rejection::WrongKey);
            return Verdict::Refused(Refusal::Dpop(wrong));
        }
        (Some(_), Some(_)) => bump(&shared.counters.dpop_accepted),
        (None, None) => {}
    }
    if !shared.families.is_active(&claims.fam) {
        Verdict::Refused(Refusal::Invalid(claims.sty, scheme))
    } else if expired {
        Verdict::Refused(Refusal::Expired(claims.sty, scheme))
    } else {
        Verdict::Ok(claims)
    }
}

/// The 401 for a token of `style`, expired or invalid.
fn refused(style: Contract, expired: bool) -> Response {
    let mut response = match style {
        Contract::OAuth2 => {
            let description = if expired {
                OAUTH2_EXPIRED
            } else {
                OAUTH2_INVALID
            };
            let mut response = json_error(StatusCode::UNAUTHORIZED, "invalid_token", description);
            let challenge = HeaderValue::from_static(if expired {
                "Bearer error=\"invalid_token\", error_description=\"The access token expired\""
            } else {
                "Bearer error=\"invalid_token\", error_description=\"The access token is invalid\""
            });
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
            return response;
        }
        Contract::Json => {
            let message = if expired {
                "TokenExpiredError"
            } else {
                "JsonWebTokenError"
            };
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "message": message })),
            )
                .into_response()
        }
        Contract::Header => {
            let text = if expired {
                "ExpiredToken"
            } else {
                "InvalidToken"
            };
            (StatusCode::UNAUTHORIZED, text).into_response()
        }
        Contract::Cookie => {
            let code = if expired {
                "EXPIRED_TOKEN"
            } else {
                "INVALID_TOKEN"
            };
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "result": { "errorCode": code } })),
            )
                .into_response()
        }
    };
    response.headers_mut().insert(WWW_AUTHENTICATE, REALM);
    response
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Expired(Contract, Scheme),
    Invalid(Contract, Scheme),
    Missing,
    /// A bad DPoP proof, or a nonce challenge.
    Dpop(dpop::Refusal),
    /// A DPoP-bound token sent as `Bearer`.
    Downgrade,
    /// `Authorization: DPoP` with a token that is not DPoP-bound.
    Unbound,
}

impl Refusal {
    fn response(self, shared: &Shared) -> Response {
        match self {
            Refusal::Expired(_, Scheme::Dpop) => dpop::challenge("invalid_token", OAUTH2_EXPIRED),
            Refusal::Invalid(_, Scheme::Dpop) => dpop::challenge("invalid_token", OAUTH2_INVALID),
            Refusal::Expired(style, Scheme::Bearer) => refused(style, true),
            Refusal::Invalid(style, Scheme::Bearer) => refused(style, false),
            Refusal::Downgrade => dpop::challenge(
                "invalid_token",
                "This access token is DPoP-bound: send it as Authorization: DPoP with a DPoP proof",
            ),
            Refusal::Unbound => dpop::challenge(
                "invalid_token",
                "This access token is not DPoP-bound: send it as Authorization: Bearer",
            ),
            Refusal::Dpop(refusal) => dpop::resource_refusal(refusal),
            Refusal::Missing => {
                let mut response = json_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "This request needs an Authorization: Bearer <token> header",
                );
                let headers = response.headers_mut();
                headers.insert(WWW_AUTHENTICATE, REALM);
                if shared.dpop.is_some() {
                    headers.append(WWW_AUTHENTICATE, dpop::BARE_CHALLENGE);
                }
                response
            }
        }
    }
}

/// Checks the request's credential (and DPoP proof) and counts refusals.
fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    target: &Target<'_>,
) -> Result<AccessClaims, Refusal> {
    let counters = &shared.counters;
    let refusal = match verdict(shared, headers, target) {
        Verdict::Ok(claims) => return Ok(claims),
        Verdict::Refused(refusal) => refusal,
    };
    match refusal {
        Refusal::Expired(..) => bump(&counters.api_401_expired),
        Refusal::Invalid(..) => bump(&counters.api_401_invalid),
        Refusal::Missing => bump(&counters.api_401_missing),
        Refusal::Downgrade => {
            bump(&counters.api_401_invalid);
            bump(&counters.dpop_bearer_downgrades);
        }
        Refusal::Unbound => {
            bump(&counters.api_401_invalid);
            bump(&counters.dpop_unbound_tokens);
        }
        // Counted by the proof check.
        Refusal::Dpop(_) => {}
    }
    Err(refusal)
}

/// Adds the current DPoP nonce, when nonces are on.
fn with_nonce(shared: &Shared, response: Response) -> Response {
    match &shared.dpop {
        Some(dpop) => dpop.with_nonce(response),
        None => response,
    }
}

/// `GET /api/items/{id}` → `{"id", "name": "item <id>", "owner"}`.
pub(crate) async fn get_item(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let shared = &*state.shared;
    let target = Target {
        method: &method,
        uri: &uri,
    };
    let response = match (authorize(shared, &headers, &target), id) {
        (Err(refusal), _) => refusal.response(shared),
        (Ok(_), Err(_)) => json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The item id is not valid",
        ),
        (Ok(claims), Ok(Path(id))) => {
            bump(&shared.counters.api_ok);
            Json(json!({ "id": id, "name": format!("item {id}"), "owner": claims.sub }))
                .into_response()
        }
    };
    delay(shared.latency.get().api).await;
    with_nonce(shared, response)
}

/// `POST /api/items` with a JSON body → `{"owner", "item": <body>}`.
pub(crate) async fn create_item(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let shared = &*state.shared;
    let target = Target {
        method: &method,
        uri: &uri,
    };
    let response = match authorize(shared, &headers, &target) {
        Err(refusal) => refusal.response(shared),
        Ok(claims) => match extract::json::<serde_json::Value>(&headers, body) {
            Ok(item) => {
                bump(&shared.counters.api_ok);
                Json(json!({ "owner": claims.sub, "item": item })).into_response()
            }
            Err(bad) => bad.response(),
        },
    };
    delay(shared.latency.get().api).await;
    with_nonce(shared, response)
}
