//! How new tokens are obtained: the [`Refresher`] trait and the built-in strategies.
//!
//! | strategy | contract |
//! |---|---|
//! | [`OAuth2`] | RFC 6749 §6: form `grant_type=refresh_token` to the token URL |
//! | [`ClientCredentials`] | RFC 6749 §4.4: machine-to-machine, a new grant each time, no sign-in |
//! | [`Json`] | `POST {"refreshToken": …}` → `{"accessToken", "refreshToken"}` |
//! | [`Header`] | `Authorization-refresh: Bearer …` → tokens in the response headers, raw or `Bearer `-prefixed |
//! | [`Cookie`] | refresh token in an HttpOnly cookie → `{"accessToken"}` + `Set-Cookie`; sign in through its jar ([`Cookie::login`]) or seed it ([`Cookie::seed_refresh_cookie`]) |
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
//! RFC 8693 token exchange is a grant at the same token endpoint, but it is not a refresh: its
//! input is a *subject token* that belongs to another lifecycle (a user's session, a workload
//! identity), and the right reaction to a failure depends on that lifecycle. An expired subject
//! token must be renewed at its source and the exchange retried; a revoked one must end the
//! exchanged session too. A [`Refresher`] sees only its own tokens, so a built-in strategy would
//! need a second, session-like interface for the source and would have to guess whose failure
//! each error is. The answer differs as well: `issued_token_type` is required and `token_type`
//! may be `N_A`, for a token that must never be attached as a bearer token. Finally, the
//! certified provider the interop suite runs against (oidc-provider) has no token exchange, so a
//! built-in strategy could only be tested against a server written here. [`from_fn`] expresses a
//! concrete exchange in a few lines, with the failure mapping where the application can see it:
//!
//! ```no_run
//! use tokenkeeper::refresh::{self, RefreshError};
//! use tokenkeeper::secrecy::ExposeSecret;
//! use tokenkeeper::{Error, Session, TokenSet};
//!
//! # fn example(user: Session) {
//! // `user` is the signed-in user's session; the exchanged token is for the billing API.
//! let exchange = refresh::from_fn(move |_current: TokenSet| {
//!     let user = user.clone();
//!     async move {
//!         let subject = user.access_token().await.map_err(|e| match e {
//!             Error::RefreshUnavailable(_) => RefreshError::transient(e.to_string()),
//!             other => RefreshError::Rejected(other.to_string()),
//!         })?;
//!         let response = reqwest::Client::new()
//!             .post("https://id.example.com/token")
//!             .form(&[
//!                 ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
//!                 ("subject_token", subject.expose_secret()),
//!                 ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
//!                 ("audience", "billing-api"),
//!                 ("client_id", "gateway"),
//!             ])
//!             .send()
//!             .await
//!             .map_err(|e| RefreshError::transient(e.without_url().to_string()))?;
//!         if !response.status().is_success() {
//!             return Err(RefreshError::Rejected(format!("HTTP {}", response.status())));
//!         }
//!         let body: serde_json::Value = response
//!             .json()
//!             .await
//!             .map_err(|_| RefreshError::InvalidResponse("not JSON".into()))?;
//!         if body["token_type"].as_str().is_none_or(|t| !t.eq_ignore_ascii_case("bearer")) {
//!             return Err(RefreshError::InvalidResponse("not a bearer token".into()));
//!         }
//!         TokenSet::from_json(&body).map_err(|e| RefreshError::InvalidResponse(e.to_string()))
//!     }
//! });
//! # let _ = exchange; }
//! ```

#[cfg(feature = "reqwest")]
mod client_auth;
#[cfg(feature = "reqwest")]
mod client_credentials;
#[cfg(feature = "reqwest")]
mod cookie;
#[cfg(feature = "reqwest")]
mod cookie_syntax;
#[cfg(feature = "reqwest")]
mod discovery;
#[cfg(feature = "reqwest")]
mod endpoint;
#[cfg(feature = "reqwest")]
mod header;
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
pub use cookie::{Cookie, CookieError};
#[cfg(feature = "reqwest")]
pub use discovery::{DiscoveryError, ProviderMetadata};
#[cfg(feature = "reqwest")]
pub use header::Header;
#[cfg(feature = "reqwest")]
pub use json::Json;
#[cfg(feature = "reqwest")]
pub use oauth2::OAuth2;

use crate::token::TokenSet;
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

    /// Whether this strategy obtains tokens with no prior login (machine-to-machine grants such
    /// as [`ClientCredentials`]). When `true` and nobody is signed in, the session's first
    /// request starts a flight that calls [`refresh`](Self::refresh) with an empty placeholder
    /// set, shared by every caller, instead of failing with `LoginRequired`. Default: `false`.
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
    /// The endpoint's answer says nothing about the refresh token: a redirect, 404, 405, 407,
    /// 409, 421 or another 4xx that is not a rejection, or a 200 that is HTML or empty (a
    /// misrouted gateway, a proxy, a captive portal). The tokens are kept, nothing is retried
    /// at once, and requests get `RefreshUnavailable` while the token is expired.
    #[error("not a verdict on the refresh token: {0}")]
    Inconclusive(String),
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
        !matches!(
            self,
            RefreshError::Transient { .. } | RefreshError::Inconclusive(_)
        )
    }

    /// The same failure with every text made safe: `tokens`' secrets replaced, control
    /// characters escaped, length bounded. The session applies it to every refresher's error
    /// (built-in or not) before the error reaches an event, a log line or a caller.
    pub(crate) fn redacted(self, tokens: &TokenSet) -> Self {
        let safe = |text: String| crate::untrusted::redact(&text, tokens);
        match self {
            RefreshError::Rejected(reason) => RefreshError::Rejected(safe(reason)),
            RefreshError::InvalidResponse(reason) => RefreshError::InvalidResponse(safe(reason)),
            RefreshError::Inconclusive(reason) => RefreshError::Inconclusive(safe(reason)),
            RefreshError::Transient {
                reason,
                retry_after,
            } => RefreshError::Transient {
                reason: safe(reason),
                retry_after,
            },
            RefreshError::NoRefreshToken => RefreshError::NoRefreshToken,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RefreshError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
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
