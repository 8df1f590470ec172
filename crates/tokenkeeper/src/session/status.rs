//! [`Status`]: where a session stands, as a value that cannot be missed.
//!
//! [`Session::events`](crate::Session::events) is a broadcast channel: a slow subscriber can lag
//! and lose events. The status is a `watch` value instead: a subscriber always sees the latest
//! state, so a sign-out is never missed.

use crate::error::LogoutReason;

/// Where a session stands, from [`Session::status`](crate::Session::status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Nobody is signed in.
    SignedOut {
        /// Why the last login ended; `None` before the first sign-in.
        reason: Option<LogoutReason>,
    },
    /// Signed in.
    SignedIn {
        /// The login (see [`Credential::login`](crate::Credential::login)).
        login: u64,
        /// The generation of the current tokens.
        generation: u64,
    },
}

impl Status {
    /// Whether someone is signed in.
    pub fn is_signed_in(&self) -> bool {
        matches!(self, Status::SignedIn { .. })
    }
}
