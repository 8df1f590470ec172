//! A request's body must arrive within the header read timeout too.
//!
//! hyper's header read timeout ([`crate::connections`]) ends once the headers are in; a client
//! could then send a `Content-Length` and trickle the body a byte at a time, holding its
//! connection (and one of the limited slots) for as long as it likes, while the handler waits.
//! This layer reads the body first, at most [`BODY_LIMIT`] + 1 bytes, within the same timeout
//! counted from when the headers were read: a body that is late gets **408** and the connection
//! is closed. What it read is handed on unchanged, so handlers still word a too-large or
//! malformed body in their own contract's shape (a body past the limit is cut at limit + 1
//! bytes, which the handlers' limit still refuses with 413). A client that breaks off
//! mid-body gets the generic 400 for an unreadable body.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt as _;

use crate::errors::json_error;
use crate::extract::{BODY_LIMIT, BadBody};
use crate::state::AppState;

/// Reads `body` until its end or until more than `limit` bytes arrived.
async fn read_at_most(mut body: Body, limit: usize) -> Result<Bytes, axum::Error> {
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            read.extend_from_slice(&data);
            if read.len() > limit {
                break;
            }
        }
    }
    Ok(Bytes::from(read))
}

/// Reads the request body under the deadline, then runs the route with it.
pub(crate) async fn deadline(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if HttpBody::is_end_stream(&body) {
        // No body (most GETs): nothing to wait for.
        return next.run(Request::from_parts(parts, body)).await;
    }
    let timeout = state.shared.body_read_timeout;
    let body = match tokio::time::timeout(timeout, read_at_most(body, BODY_LIMIT + 1)).await {
        Ok(Ok(bytes)) => Body::from(bytes),
        Ok(Err(error)) => {
            // The client broke off mid-body; it will hardly read the answer.
            tracing::debug!(%error, "request body unreadable");
            return BadBody::Unreadable.response();
        }
        Err(_) => {
            tracing::debug!(path = parts.uri.path(), "request body too slow: 408");
            let mut response = json_error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The request body did not arrive in time",
            );
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    next.run(Request::from_parts(parts, body)).await
}
