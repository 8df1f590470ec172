//! How new tokens are obtained: the [`Refresher`] trait and the built-in strategies.
//!
//! | strategy | contract |
//! |---|---|
//! | [`OAuth2`] | RFC 6749 §6: form `grant_type=refresh_token` to the token URL |
//! | [`Json`] | `POST {"refreshToken": …}` → `{"accessToken", "refreshToken"}` |
//! | [`Header`] | `Authorization-refresh: Bearer …` → tokens in the response headers, raw or `Bearer `-prefixed |
//! | [`Cookie`] | refresh token in an HttpOnly cookie → `{"accessToken"}` + `Set-Cookie`; sign in through its jar ([`Cookie::login`]) or seed it ([`Cookie::seed_refresh_cookie`]) |
//! | [`from_fn`] | anything else, as an async closure |
//!
//! Strategies send with their own plain `reqwest::Client`, never through the session's
//! middleware, so a refresh can never queue behind itself.

#[cfg(feature = "reqwest")]
mod cookie;
#[cfg(feature = "reqwest")]
mod cookie_syntax;
#[cfg(feature = "reqwest")]
mod header;
#[cfg(feature = "reqwest")]
mod http;
#[cfg(feature = "reqwest")]
mod json;
#[cfg(feature = "reqwest")]
mod oauth2;

#[cfg(feature = "reqwest")]
pub use cookie::{Cookie, CookieError};
#[cfg(feature = "reqwest")]
pub use header::Header;
#[cfg(feature = "reqwest")]
pub use json::Json;
#[cfg(feature = "reqwest")]
pub use oauth2::{ClientAuth, OAuth2};

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

    /// Whether this strategy obtains tokens with no prior login (client credentials). When
    /// `true` and nobody is signed in, the session's first request starts a flight that calls
    /// [`refresh`](Self::refresh) with an empty placeholder set, shared by every caller.
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
