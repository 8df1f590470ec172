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

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::errors::json_error;
use crate::extract::{self, RawBody, bearer};
use crate::faults::delay;
use crate::state::{AppState, Shared};
use crate::stats::bump;
use crate::tokens::{AccessCheck, AccessClaims, Contract, unix_now};

const REALM: HeaderValue = HeaderValue::from_static("Bearer realm=\"tokenkeeper\"");
const OAUTH2_EXPIRED: &str = "The access token expired";
const OAUTH2_INVALID: &str = "The access token is invalid";

/// What the bearer token of a request is worth.
enum Verdict {
    Ok(AccessClaims),
    Expired(Contract),
    Invalid(Contract),
    Missing,
}

fn verdict(shared: &Shared, headers: &HeaderMap) -> Verdict {
    let Some(token) = headers.get(AUTHORIZATION).and_then(bearer) else {
        return Verdict::Missing;
    };
    match shared.minter.check(token, unix_now()) {
        AccessCheck::Invalid(contract) => Verdict::Invalid(contract),
        AccessCheck::Valid(claims) | AccessCheck::Expired(claims)
            if !shared.families.is_active(&claims.fam) =>
        {
            Verdict::Invalid(claims.sty)
        }
        AccessCheck::Valid(claims) => Verdict::Ok(claims),
        AccessCheck::Expired(claims) => Verdict::Expired(claims.sty),
    }
}

/// The 401 for a token of `contract`, expired or invalid.
fn refused(contract: Contract, expired: bool) -> Response {
    let mut response = match contract {
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
    Expired(Contract),
    Invalid(Contract),
    Missing,
}

impl Refusal {
    fn response(self) -> Response {
        match self {
            Refusal::Expired(contract) => refused(contract, true),
            Refusal::Invalid(contract) => refused(contract, false),
            Refusal::Missing => {
                let mut response = json_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "This request needs an Authorization: Bearer <token> header",
                );
                response.headers_mut().insert(WWW_AUTHENTICATE, REALM);
                response
            }
        }
    }
}

/// Checks the bearer token and counts refusals.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<AccessClaims, Refusal> {
    let counters = &shared.counters;
    match verdict(shared, headers) {
        Verdict::Ok(claims) => Ok(claims),
        Verdict::Expired(contract) => {
            bump(&counters.api_401_expired);
            Err(Refusal::Expired(contract))
        }
        Verdict::Invalid(contract) => {
            bump(&counters.api_401_invalid);
            Err(Refusal::Invalid(contract))
        }
        Verdict::Missing => {
            bump(&counters.api_401_missing);
            Err(Refusal::Missing)
        }
    }
}

/// `GET /api/items/{id}` → `{"id", "name": "item <id>", "owner"}`.
pub(crate) async fn get_item(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let shared = &*state.shared;
    let response = match (authorize(shared, &headers), id) {
        (Err(refusal), _) => refusal.response(),
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
    response
}

/// `POST /api/items` with a JSON body → `{"owner", "item": <body>}`.
pub(crate) async fn create_item(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let shared = &*state.shared;
    let response = match authorize(shared, &headers) {
        Err(refusal) => refusal.response(),
        Ok(claims) => match extract::json::<serde_json::Value>(&headers, body) {
            Ok(item) => {
                bump(&shared.counters.api_ok);
                Json(json!({ "owner": claims.sub, "item": item })).into_response()
            }
            Err(bad) => bad.response(),
        },
    };
    delay(shared.latency.get().api).await;
    response
}
