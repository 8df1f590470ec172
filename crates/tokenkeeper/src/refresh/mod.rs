//! How new tokens are obtained: the [`Refresher`] trait and the built-in strategies.
//!
//! | strategy | contract |
//! |---|---|
//! | [`OAuth2`] | RFC 6749 §6: form `grant_type=refresh_token` to the token URL |
//! | [`ClientCredentials`] | RFC 6749 §4.4: machine-to-machine, a new grant each time, no sign-in |
//! | [`Json`] | `POST {"refreshToken": …}` → `{"accessToken", "refreshToken"}` |
//! | [`Header`] | `Authorization-refresh: Bearer …` → tokens in the response headers |
//! | [`Cookie`] | refresh token in an HttpOnly cookie → `{"accessToken"}` + `Set-Cookie` |
//! | [`from_fn`] | anything else, as an async closure |
//!
//! Strategies send with their own plain `reqwest::Client`, never through the session's
//! middleware, so a refresh can never queue behind itself.
//!
//! ## OAuth 2.0 and OpenID Connect providers
//! [`OAuth2::discover`] reads a provider's discovery document ([`ProviderMetadata`]) and takes
//! the token endpoint and the client authentication methods from it; the client authenticates
//! by `client_secret_basic`, `client_secret_post` or `private_key_jwt` ([`ClientAuth`];
//! `ClientKey` with feature `private-key-jwt`). [`ClientCredentials`] wraps the same endpoint
//! and client for machine-to-machine tokens.
//!
//! ## Why there is no token-exchange strategy
//! RFC 8693 token exchange has the shape of a grant (a form to the token endpoint, a token
//! response), but not the shape of a refresh. Its input is a *subject token* the client holds
//! from somewhere else (a user's session, a workload identity), and what the exchange may do
//! depends on that token's own lifecycle: an expired or revoked subject token must be renewed
//! at its source before the exchange is retried, and a subject that signed out must end the
//! exchanged session too. A [`Refresher`] sees only the exchanged tokens, so a built-in strategy
//! would either hide those decisions (guessing which failures are whose) or need a second
//! session-like interface for the source. The response also differs in ways that matter for
//! safety: `issued_token_type` is required, and `token_type` may be `N_A` for a token that is
//! not an access token, which must never be attached as a bearer token. [`from_fn`] covers a
//! concrete exchange in a few lines, with the subject token taken from wherever the
//! application keeps it (for example another session's `access_token()`), and the failure
//! mapping written down where the application can see it.

#[cfg(feature = "reqwest")]
mod client_auth;
#[cfg(feature = "reqwest")]
mod client_credentials;
#[cfg(feature = "reqwest")]
mod cookie;
#[cfg(feature = "reqwest")]
mod discovery;
#[cfg(feature = "reqwest")]
mod header;
#[cfg(feature = "reqwest")]
mod http;
#[cfg(feature = "reqwest")]
mod json;
#[cfg(feature = "reqwest")]
mod oauth2;
#[cfg(feature = "reqwest")]
mod token_endpoint;

#[cfg(feature = "reqwest")]
pub use client_auth::ClientAuth;
#[cfg(feature = "private-key-jwt")]
pub use client_auth::assertion::{ClientKey, KeyAlgorithm};
#[cfg(feature = "reqwest")]
pub use client_credentials::ClientCredentials;
#[cfg(feature = "reqwest")]
pub use cookie::Cookie;
#[cfg(feature = "reqwest")]
pub use discovery::{DiscoveryError, ProviderMetadata};
#[cfg(feature = "reqwest")]
pub use header::Header;
#[cfg(feature = "reqwest")]
pub use json::Json;
#[cfg(feature = "reqwest")]
pub use oauth2::OAuth2;

use crate::TokenSet;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// Exchanges the current tokens for new ones.
///
/// Implementations report *what kind* of failure happened; the session decides what to do
/// (terminal: log out; transient: keep the tokens and retry with backoff).
///
/// ```
/// use tokenkeeper::refresh::{RefreshError, Refresher};
/// use tokenkeeper::TokenSet;
///
/// struct Static;
///
/// #[tokenkeeper::async_trait]
/// impl Refresher for Static {
///     async fn refresh(&self, _current: &TokenSet) -> Result<TokenSet, RefreshError> {
///         Ok(TokenSet::new("new-access").with_refresh_token("new-refresh"))
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Refresher: Send + Sync + 'static {
    /// Obtains a new token set. `current` carries the refresh token to present.
    ///
    /// A strategy whose server omits the refresh token in its answer (allowed by RFC 6749)
    /// returns a set without one; the session then keeps the old refresh token.
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError>;

    /// Whether this strategy obtains tokens with no login at all (machine-to-machine grants
    /// such as [`ClientCredentials`]). When it does, a session nobody signed in to obtains the
    /// first token on its first request, by calling [`refresh`](Self::refresh) with an empty
    /// placeholder token set, instead of failing with `LoginRequired`. Default: `false`.
    fn obtains_without_login(&self) -> bool {
        false
    }
}

/// Why a refresh failed, split by what the session should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The server refused the refresh token (RFC 6749 `invalid_grant`, or a 400/401/403).
    /// Terminal: the session logs out.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The server answered success but without usable tokens. Terminal: the server is wrong.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// There is no refresh token to present. Terminal.
    #[error("no refresh token")]
    NoRefreshToken,
    /// Unreachable, timed out, 5xx, 429. The tokens are kept and the refresh is retried.
    #[error("transient: {reason}")]
    Transient {
        /// What happened, without secrets.
        reason: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
}

impl RefreshError {
    /// A transient failure without a `Retry-After` hint.
    pub fn transient(reason: impl Into<String>) -> Self {
        RefreshError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// Whether this failure ends the session.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, RefreshError::Transient { .. })
    }
}

/// A [`Refresher`] from an async closure, for contracts the built-in strategies do not cover.
///
/// ```
/// use tokenkeeper::{refresh, TokenSet};
///
/// let refresher = refresh::from_fn(|current: TokenSet| async move {
///     let _refresh_token = current.refresh_token().ok_or(refresh::RefreshError::NoRefreshToken)?;
///     // ... call your endpoint ...
///     Ok(TokenSet::new("new-access"))
/// });
/// # let _ = refresher;
/// ```
pub fn from_fn<F, Fut>(f: F) -> FromFn<F>
where
    F: Fn(TokenSet) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TokenSet, RefreshError>> + Send + 'static,
{
    FromFn { f }
}

/// See [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

#[async_trait::async_trait]
impl<F, Fut> Refresher for FromFn<F>
where
    F: Fn(TokenSet) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TokenSet, RefreshError>> + Send + 'static,
{
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        (self.f)(current.clone()).await
    }
}
