//! Errors: [`ServerError`] for starting the server, and the JSON error bodies
//! every endpoint shares.

use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be bound (port in use, no permission...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The bound socket did not report its local address.
    #[error("cannot read the listening address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// The shape of every generic JSON error:
/// `{"error": "<code>", "error_description": "<human text>"}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub(crate) error: &'a str,
    pub(crate) error_description: &'a str,
}

/// A response with status `status` and the generic JSON error body.
pub(crate) fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: code,
            error_description: description,
        }),
    )
        .into_response()
}
