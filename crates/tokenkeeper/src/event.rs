//! [`Event`]s a session broadcasts: one per state transition.

use crate::error::LogoutReason;

/// A session's state transitions, from [`Session::events`](crate::Session::events).
///
/// Each transition is sent once, however many requests were waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// [`Session::sign_in`](crate::Session::sign_in) or a restore from the store installed tokens.
    SignedIn {
        /// Generation of the installed tokens.
        generation: u64,
    },
    /// A refresh installed new tokens.
    Refreshed {
        /// Generation of the new tokens.
        generation: u64,
    },
    /// Newer tokens written to a shared store by another process were adopted instead of refreshing.
    Adopted {
        /// Generation of the adopted tokens.
        generation: u64,
    },
    /// A refresh attempt failed. `transient` failures keep the tokens and are retried.
    RefreshFailed {
        /// `true` for network errors, timeouts, 5xx and 429; `false` for rejections.
        transient: bool,
        /// What went wrong, without secrets.
        reason: String,
    },
    /// The token store could not save or clear; the in-memory tokens are still used.
    StoreFailed {
        /// What went wrong, without secrets.
        reason: String,
    },
    /// The session ended; requests now fail with [`Error::LoginRequired`](crate::Error::LoginRequired).
    LoggedOut {
        /// Why.
        reason: LogoutReason,
    },
}
