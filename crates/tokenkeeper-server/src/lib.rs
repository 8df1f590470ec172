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
//! It is safe to leave running on a developer's machine:
//!
//! - **No web page can drive it.** Only loopback `Host` names are served (421 otherwise:
//!   DNS rebinding); requests from a browser origin that is not listed in
//!   [`ServerConfig::allowed_origins`] are refused (403) and listed ones get CORS on the
//!   login, refresh and API routes only; the operator routes (`/__stats`, `/__reset`,
//!   `/__faults`) never answer CORS and need the header [`ADMIN_HEADER`]` : 1`.
//! - **Memory is bounded.** A refresh token is a signed (family, generation), so nothing is
//!   stored per refresh; a family is pruned [`ServerConfig::family_retention`] after it died
//!   (revoked, or all its tokens expired), and at most [`ServerConfig::max_families`] are
//!   held: when all are live, new logins get 503 with `Retry-After`, and no live session is
//!   ever evicted.
//! - **Slow clients cannot hold connections.** Each connection gets
//!   [`ServerConfig::header_read_timeout`] to send a request's headers (also while idle
//!   between requests) and as long again for its body, and at most [`ServerConfig::max_connections`] are served at once;
//!   more wait in the listen backlog.
//!
//! With [`ServerConfig::dpop`] it also speaks DPoP (RFC 9449) on the oauth2 token endpoint
//! and the protected API: proofs verified, tokens bound to the client's key, optional nonces,
//! and counters in [`Stats::dpop`] that let a client's tests assert that every proof was
//! valid. See [`DpopConfig`].
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
//! [`router`]. With the feature `client`, the `client` module is the other side of
//! it: the demo user's login and a refresh call in any contract, for tests,
//! benchmarks and examples.

#![warn(missing_docs)]
// Feature badges on docs.rs (`--cfg docsrs`, nightly): the `client` module is marked as needing
// its feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod access;
mod admin;
mod api;
mod body_deadline;
#[cfg(feature = "client")]
pub mod client;
mod config;
mod connections;
mod contracts;
mod dpop;
mod errors;
mod extract;
mod families;
mod faults;
mod login;
mod refresh_tokens;
mod routes;
mod server;
mod state;
mod stats;
mod tokens;

pub use access::{ADMIN_HEADER, ADMIN_HEADER_VALUE};
pub use config::{DpopConfig, Latency, ServerConfig};
pub use contracts::cookie::{REFRESH_COOKIE, REFRESH_COOKIE_PATH};
pub use errors::ServerError;
pub use extract::BODY_LIMIT;
pub use faults::FaultSettings;
pub use routes::router;
pub use server::{ServerHandle, start};
pub use state::AppState;
pub use stats::{DpopRejectedCounts, DpopStats, RejectedCounts, Stats};
pub use tokens::{AccessClaims, Confirmation, Contract, UnknownContract};
