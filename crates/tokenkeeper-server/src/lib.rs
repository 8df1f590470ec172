//! The tokenkeeper reference auth server.
//!
//! One process serves the four refresh contracts tokenkeeper knows (oauth2,
//! json, header, cookie), a login endpoint, a protected API that answers 401s
//! in the style of the contract that issued the token, and operator endpoints
//! for counters and fault injection. Access tokens are HS256 JWTs with
//! fractional `iat`/`exp`; refresh tokens are opaque, rotate on every use and
//! are grouped in families: presenting an already-used refresh token revokes
//! the whole family (RFC 9700), unless within an optional grace period.
//!
//! Start it in-process (tests, demos) with [`start`], or embed [`router`] in
//! your own axum app. `tokenkeeper serve` runs it from the command line.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokenkeeper_server::ServerError> {
//! let server = tokenkeeper_server::start(Default::default()).await?;
//! println!("log in at {}", server.url("/login"));
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The wire contract of each endpoint is documented on its module and on
//! [`router`].

#![warn(missing_docs)]

mod admin;
mod api;
mod config;
mod contracts;
mod cors;
mod errors;
mod extract;
mod families;
mod faults;
mod login;
mod routes;
mod server;
mod state;
mod stats;
mod tokens;

pub use config::{Latency, ServerConfig};
pub use contracts::cookie::{REFRESH_COOKIE, REFRESH_COOKIE_PATH};
pub use errors::ServerError;
pub use extract::BODY_LIMIT;
pub use faults::FaultSettings;
pub use routes::router;
pub use server::{ServerHandle, start};
pub use state::AppState;
pub use stats::{RejectedCounts, Stats};
pub use tokens::{AccessClaims, Style, UnknownStyle};
