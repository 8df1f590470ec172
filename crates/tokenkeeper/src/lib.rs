//! # tokenkeeper
//!
//! Keeps an HTTP client authenticated through access-token expiry.
//!
//! Attach `Authorization: Bearer …` to the origins you allow; when the token expires, refresh it
//! **once** for every request that needs it (a single flight, safe with refresh-token rotation),
//! retry each refused request at most once, refresh ahead of expiry so steady traffic never sees
//! a 401, keep the tokens through network blips, and end the session exactly once, promptly, when
//! the refresh token is dead.
//!
//! ```no_run
//! use tokenkeeper::{refresh, Session, TokenSet};
//!
//! # async fn example(login_response: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let session = Session::builder()
//!     .refresher(refresh::OAuth2::new("https://auth.example.com/oauth2/token")?.client_id("app"))
//!     .attach_to(["https://api.example.com"])
//!     .build()?;
//! session.sign_in(TokenSet::from_response(login_response)?).await?;
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(session.middleware())
//!     .build();
//! let item = client.get("https://api.example.com/items/1").send().await?;
//! # let _ = item; Ok(()) }
//! ```
//!
//! ## How it fits together
//! - [`Session`]: the one place that decides when to refresh; knows nothing of any HTTP client.
//! - [`Sessions`]: many logins (one session per user, tenant or audience), restored lazily
//!   from per-key stores and evicted when idle; see [`keyed`].
//! - [`refresh`]: how new tokens are obtained ([`refresh::OAuth2`], with OpenID discovery and
//!   every common client authentication method; [`refresh::ClientCredentials`] for
//!   machine-to-machine tokens; [`refresh::Json`], [`refresh::Header`], [`refresh::Cookie`],
//!   [`refresh::from_fn`]).
//! - [`classify`]: how a response tells "expired" from "invalid" from "not ours".
//! - [`store`]: where tokens live; shared stores ([`store::FileStore`], [`store::RedisStore`]
//!   with feature `redis`) coordinate refreshes across processes and machines.
//! - [`adapter`]: the thin adapters, side by side:
//!   [`adapter::reqwest::AuthMiddleware`] for [`reqwest_middleware`] (feature `reqwest`,
//!   default) and [`adapter::tower::AuthLayer`], the same semantics as a tower `Layer`, for
//!   hyper and tonic clients (feature `tower`; feature `tonic` adds the gRPC body and a
//!   synchronous interceptor).
//!
//! ## Semantics
//! - **Generation stamping.** Every token set has a generation. A 401 for a generation that is no
//!   longer current is retried with the current token; no refresh happens.
//! - **Single flight, owned by nobody's future.** The refresh runs in a spawned task; dropping
//!   waiting requests never cancels it half-way.
//! - **Persist before publish.** New tokens are saved before any request sees them.
//! - **Retry at most once**; a streamed body is not retried, but the refresh still happens.
//! - **Failure policy.** A rejected refresh token ends the session ([`Error::SessionExpired`],
//!   one [`Event::LoggedOut`]); network errors, timeouts, 5xx and 429 keep the tokens and retry
//!   with backoff ([`Error::RefreshUnavailable`] only once the token is expired and the refresh
//!   timeout passed).
//! - **Secrets stay secret.** Tokens live in [`secrecy`] types and the header is marked sensitive:
//!   no token reaches `Debug`, `Display`, logs or errors.
//!
//! ## Features
//! - `reqwest` (default): [`adapter::reqwest::AuthMiddleware`] and the built-in HTTP refresh
//!   strategies.
//! - `redis`: [`store::RedisStore`].
//! - `dpop`: DPoP (RFC 9449) sender-constrained tokens: `dpop::DpopKey`, proofs on the token
//!   endpoint and on every request, the key stored with the pair.
//! - `tower`: [`adapter::tower::AuthLayer`], for any `tower::Service<http::Request<B>>`.
//! - `tonic` (implies `tower`): replayable unary gRPC calls, a synchronous interceptor.
//! - `metrics`: refresh, logout and store metrics through the `metrics` facade; the
//!   `metrics` module lists the names. Nothing is recorded per request.
//!
// Links to items behind features that are off point at what is always there (the docs of a
// build without them still render, and say which feature adds the item).
#![cfg_attr(feature = "redis", doc = "[`store::RedisStore`]: store::RedisStore")]
#![cfg_attr(not(feature = "redis"), doc = "[`store::RedisStore`]: #features")]
#![cfg_attr(
    not(feature = "tower"),
    doc = "[`adapter::tower::AuthLayer`]: #features"
)]
#![cfg_attr(
    not(any(feature = "reqwest", feature = "tower")),
    doc = "[`adapter`]: #features"
)]
#![cfg_attr(
    not(feature = "reqwest"),
    doc = "[`adapter::reqwest::AuthMiddleware`]: #features\n\n[`reqwest_middleware`]: #features\n\n\
           [`refresh::OAuth2`]: #features\n\n[`refresh::Json`]: #features\n\n\
           [`refresh::Header`]: #features\n\n[`refresh::Cookie`]: #features"
)]
// Feature badges on docs.rs (`--cfg docsrs`, nightly): `doc_cfg` labels every item gated by a
// feature (it took over what `doc_auto_cfg` did).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
// Without an adapter, the hooks adapters call into the session have no caller.
#![cfg_attr(not(any(feature = "reqwest", feature = "tower")), allow(dead_code))]

#[cfg(any(feature = "reqwest", feature = "tower"))]
pub mod adapter;
pub mod classify;
mod config_error;
#[cfg(feature = "dpop")]
pub mod dpop;
mod error;
mod event;
mod extensions;
mod jwt;
pub mod keyed;
#[cfg(feature = "metrics")]
pub mod metrics;
mod origin;
pub mod refresh;
mod session;
pub mod store;
mod token;
mod untrusted;

pub use config_error::ConfigError;
pub use error::{Error, LogoutReason};
pub use event::Event;
pub use extensions::NoAuth;
pub use keyed::Sessions;
pub use session::{
    Credential, InvalidTokenPolicy, Proactive, RefreshMode, Session, SessionBuilder, SessionStats,
    Status,
};
pub use token::{TokenError, TokenSet};

/// Re-exported so users name the same secret type the crate uses.
pub use secrecy;

/// Re-exported for implementing [`refresh::Refresher`] and [`store::TokenStore`] without adding
/// the dependency yourself: `#[tokenkeeper::async_trait]`.
pub use async_trait::async_trait;
