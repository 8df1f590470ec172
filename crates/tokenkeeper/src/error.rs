//! The errors a caller can see. None of them ever carries a token.

use crate::config_error::ConfigError;
use crate::refresh::RefreshError;
use crate::store::StoreError;
use std::sync::Arc;

/// Why a session ended. Carried by [`Error::SessionExpired`] and [`Event::LoggedOut`](crate::Event::LoggedOut).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutReason {
    /// The refresh endpoint rejected the refresh token (revoked, expired, reused).
    #[error("the refresh token was rejected: {0}")]
    RefreshRejected(String),
    /// The refresh endpoint answered success without usable tokens.
    #[error("the refresh endpoint answered without usable tokens: {0}")]
    InvalidRefreshResponse(String),
    /// There is no refresh token to refresh with.
    #[error("there is no refresh token")]
    NoRefreshToken,
    /// The API said the access token is invalid (not merely expired), by a configured rule.
    #[error("the API rejected the access token as invalid")]
    TokenInvalid,
    /// Requests kept failing with 401 right after a successful refresh: this many refreshed
    /// tokens in a row were refused, on routes that had not refused before.
    #[error("{0} refreshed tokens in a row were refused")]
    RepeatedUnauthorized(u32),
    /// Another process or machine sharing the store signed out.
    #[error("the shared token store was cleared")]
    ClearedElsewhere,
    /// [`Session::sign_out`](crate::Session::sign_out) was called.
    #[error("signed out")]
    SignedOut,
}

/// What a request through tokenkeeper can fail with, besides the HTTP client's own errors.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No one is signed in: send the user to login. Nothing was sent.
    #[error("login required: no tokens")]
    LoginRequired,
    /// The session ended (the refresh token is dead, or the API said the token is invalid).
    /// The tokens were cleared; send the user to login.
    #[error("session expired: {0}")]
    SessionExpired(LogoutReason),
    /// The access token is expired and the refresh endpoint could not be reached in time.
    /// The tokens were kept; trying again later can succeed.
    #[error("refresh unavailable: {0}")]
    RefreshUnavailable(Arc<RefreshError>),
    /// Refused to send a token over plain http to a host that is not loopback.
    #[error("refusing to send a token over plain http to {origin}")]
    InsecureTransport {
        /// The origin the request was for.
        origin: String,
    },
    /// The token store failed.
    #[error("token store: {0}")]
    Store(Arc<StoreError>),
    /// The session, a refresh strategy or an adapter was configured with something it cannot
    /// use (see [`ConfigError`]).
    #[error("configuration: {0}")]
    Config(ConfigError),
    /// The refused request was sent under an earlier login (a sign-in or sign-out happened
    /// while it was in flight). Its refusal is not retried with the current login's token.
    /// Adapters hand such refusals back as responses; only [`Session::token_rejected`] returns
    /// this error.
    ///
    /// [`Session::token_rejected`]: crate::Session::token_rejected
    #[error("the request was sent under an earlier login")]
    LoginChanged,
    /// A request to an origin that gets tokens went through a [`Sessions`](crate::Sessions)
    /// adapter without a [`Key`](crate::keyed::Key) extension naming its login. Nothing was
    /// sent: a request is never sent with another key's token.
    #[error("the request names no login: add a tokenkeeper::keyed::Key extension")]
    NoKey,
    /// The refresh task ended without an outcome (the runtime is shutting down).
    #[error("the refresh task was cancelled")]
    RefreshCancelled,
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        Error::Config(error)
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::Store(Arc::new(error))
    }
}
