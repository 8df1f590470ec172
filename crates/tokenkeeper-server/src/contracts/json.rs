//! The json contract: `POST /refresh/token` with `{"refreshToken": "…"}`.
//!
//! Success: `200 {"accessToken","refreshToken"}` (no `expiresIn`: clients read
//! the JWT's `exp`/`iat`). Rejection: `401 {"message":"RefreshTokenExpiredError"}`
//! when the refresh token expired, `401 {"message":"InvalidRefreshTokenError"}`
//! otherwise (reuse, unknown, revoked). A body that is not usable (malformed
//! JSON, wrong content type, missing or empty `refreshToken`, too large) gets
//! 400/415/413 with `{"error","error_description","message":"InvalidRefreshTokenError"}`.
//! Injected faults: `503 {"error":"unavailable"}`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{Refreshed, run_refresh};
use crate::extract::{self, BadBody, RawBody};
use crate::families::RejectReason;
use crate::state::AppState;
use crate::tokens::Contract;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefreshResponse<'a> {
    access_token: &'a str,
    refresh_token: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

#[derive(Serialize)]
struct BadInput<'a> {
    error: &'a str,
    error_description: &'a str,
    message: &'a str,
}

fn token(headers: &HeaderMap, body: RawBody) -> Result<String, BadBody> {
    let request: RefreshRequest = extract::json(headers, body)?;
    if request.refresh_token.is_empty() {
        return Err(BadBody::Malformed("`refreshToken` is empty".to_owned()));
    }
    Ok(request.refresh_token)
}

/// `POST /refresh/token`.
pub(crate) async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: RawBody,
) -> Response {
    let token = token(&headers, body);
    match run_refresh(
        &state.shared,
        token.as_deref().map_err(Clone::clone),
        Contract::Json,
        None,
    )
    .await
    {
        Refreshed::Issued(pair) => Json(RefreshResponse {
            access_token: &pair.access_token,
            refresh_token: &pair.refresh_token,
        })
        .into_response(),
        Refreshed::Rejected(reason) => {
            let message = if reason == RejectReason::Expired {
                "RefreshTokenExpiredError"
            } else {
                "InvalidRefreshTokenError"
            };
            (StatusCode::UNAUTHORIZED, Json(Message { message })).into_response()
        }
        Refreshed::BadInput(bad) => (
            bad.status(),
            Json(BadInput {
                error: bad.code(),
                error_description: &bad.description(),
                message: "InvalidRefreshTokenError",
            }),
        )
            .into_response(),
        Refreshed::Unavailable => super::unavailable(),
        Refreshed::Internal => super::internal(),
    }
}
