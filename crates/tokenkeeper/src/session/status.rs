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

#[cfg(test)]
mod tests {
    use crate::{Session, TokenSet, refresh};
    use std::sync::{Arc, Barrier};

    /// The status channel is made on the first subscription. Subscribers that arrive together
    /// with the first one (a burst of refusals, each waiting for "this login is over") must
    /// never see a value other than the session's state: a moment of "signed out" would
    /// release every waiter of the refresh with the old token (a retry bound to be refused,
    /// handed back as a 401). One round lets four threads subscribe at once to a session that
    /// is signed in; the channel was once made with "signed out" and corrected a moment later.
    #[test]
    fn the_first_subscribers_see_the_state_as_it_is() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for round in 0..3_000 {
            let session = Session::builder()
                .refresher(refresh::from_fn(|_| async { Ok(TokenSet::new("unused")) }))
                .attach_to(["https://api.example.com"])
                .build()
                .unwrap();
            runtime
                .block_on(session.sign_in(TokenSet::new("access").with_refresh_token("r")))
                .unwrap();
            let start = Arc::new(Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (session, start) = (session.clone(), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        session.status().borrow().clone()
                    })
                })
                .collect();
            for thread in threads {
                let seen = thread.join().unwrap();
                assert!(seen.is_signed_in(), "round {round}: {seen:?}");
            }
        }
    }
}
