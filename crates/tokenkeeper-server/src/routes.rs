//! The route table: [`router`].

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::Response;
use axum::routing::{get, post};

use crate::errors::json_error;
use crate::extract::BODY_LIMIT;
use crate::state::AppState;
use crate::{access, admin, api, body_deadline, contracts, login};

/// Every operator route starts with this; see [`access::admin`].
pub(crate) const OPERATOR_PREFIX: &str = "/__";
/// The protected API: `POST /api/items` and `GET /api/items/{id}`.
pub(crate) const ITEMS: &str = "/api/items";
/// What a browser app calls besides [`ITEMS`]: the routes that answer CORS for listed origins.
pub(crate) const BROWSER_ROUTES: [&str; 6] = [
    "/login",
    "/logout",
    "/oauth2/token",
    "/refresh/token",
    "/api/refresh-token",
    "/v3/jwt/reissue",
];

/// Every route of the reference server, ready to serve or to nest in your own
/// axum app.
///
/// | route | what |
/// |---|---|
/// | `POST /login` | JSON login, any style |
/// | `POST /logout` | revoke a family |
/// | `POST /oauth2/token` | oauth2: password and refresh_token grants |
/// | `POST /refresh/token` | json refresh |
/// | `POST /api/refresh-token` | header refresh: new tokens raw in the response headers (`Bearer `-prefixed with [`ServerConfig::header_bearer_prefix`](crate::ServerConfig::header_bearer_prefix)) |
/// | `POST /v3/jwt/reissue` | cookie refresh |
/// | `GET /api/items/{id}`, `POST /api/items` | protected API |
/// | `GET /__stats`, `POST /__reset`, `GET|POST /__faults`, `POST /__dpop/rotate-nonce` | operator endpoints |
///
/// With [DPoP](crate::DpopConfig) on, `POST /oauth2/token` and the protected API verify
/// `DPoP` proofs and bind tokens to keys (see [`DpopConfig`](crate::DpopConfig)); the other
/// contracts and `POST /login` stay bearer-only.
///
/// Bodies are limited to [`BODY_LIMIT`] bytes; unknown routes and methods get
/// JSON 404/405s.
///
/// Before any route runs, every request passes three checks (details on each):
/// a `Host` that is not loopback, the bound address or an
/// [allowed host](crate::ServerConfig::allowed_hosts) gets 421 (DNS rebinding); an `Origin`
/// that is not [allowed](crate::ServerConfig::allowed_origins) gets 403, and listed origins
/// get CORS on the login, refresh and API routes only; operator routes (`/__…`) need the
/// header [`ADMIN_HEADER`](crate::ADMIN_HEADER)` : 1`, else 403.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/login", post(login::login))
        .route("/logout", post(login::logout))
        .route("/oauth2/token", post(contracts::oauth2::token))
        .route("/refresh/token", post(contracts::json::refresh))
        .route("/api/refresh-token", post(contracts::header::refresh))
        .route("/v3/jwt/reissue", post(contracts::cookie::reissue))
        .route(ITEMS, post(api::create_item))
        .route("/api/items/{id}", get(api::get_item))
        .route("/__stats", get(admin::stats))
        .route("/__reset", post(admin::reset))
        .route("/__faults", get(admin::get_faults).post(admin::set_faults))
        .route("/__dpop/rotate-nonce", post(admin::rotate_dpop_nonce))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.clone(), body_deadline::deadline))
        // Innermost last: the host check runs first, then the origin check, then the admin
        // header check.
        .layer(from_fn(access::admin::guard))
        .layer(from_fn_with_state(state.clone(), access::origin::guard))
        .layer(from_fn_with_state(state.clone(), access::host::guard))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("There is no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{method} is not allowed on {}", uri.path()),
    )
}
