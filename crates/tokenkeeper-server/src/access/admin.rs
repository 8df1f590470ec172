//! Operator routes (`/__…`) need the header `X-Tokenkeeper-Admin: 1`.
//!
//! A browser sends a custom header to another origin only after a successful CORS preflight,
//! and operator routes answer no preflight; a page cannot add headers to a navigation or a
//! form post at all. So no web page can reach them, whatever else goes wrong.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::RouteKind;
use crate::errors::json_error;

/// The header every operator request (`/__stats`, `/__reset`, `/__faults`, …) must carry,
/// with the value [`ADMIN_HEADER_VALUE`].
///
/// ```
/// assert_eq!(tokenkeeper_server::ADMIN_HEADER, "x-tokenkeeper-admin");
/// assert_eq!(tokenkeeper_server::ADMIN_HEADER_VALUE, "1");
/// // curl -H 'x-tokenkeeper-admin: 1' http://127.0.0.1:8080/__stats
/// ```
pub const ADMIN_HEADER: &str = "x-tokenkeeper-admin";

/// The value [`ADMIN_HEADER`] must have.
pub const ADMIN_HEADER_VALUE: &str = "1";

/// Refuses operator requests without the admin header; other routes pass.
pub(crate) async fn guard(request: Request, next: Next) -> Response {
    if RouteKind::of(request.uri().path()) != RouteKind::Operator
        || request
            .headers()
            .get(ADMIN_HEADER)
            .is_some_and(|value| value == ADMIN_HEADER_VALUE)
    {
        return next.run(request).await;
    }
    tracing::debug!(
        path = request.uri().path(),
        "operator request without the admin header refused"
    );
    json_error(
        StatusCode::FORBIDDEN,
        "admin_header_required",
        "Operator endpoints need the header X-Tokenkeeper-Admin: 1",
    )
}
