//! [`Credential`]: the token a request carries, stamped with its generation.

use super::Session;
use super::schedule::Schedule;
use crate::error::Error;
use crate::token::TokenSet;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// The current access token, ready to attach, with the generation it belongs to.
///
/// Adapters record the generation a request carried; when that request is refused they hand it
/// back to [`Session::token_rejected`](crate::Session::token_rejected), which refreshes only if
/// that generation is still current (and never for a credential of another login).
#[derive(Clone)]
pub struct Credential {
    generation: u64,
    /// The generation as the store knows it. Equal to `generation` unless this session's own
    /// generations ran ahead of the store's (earlier logins): store comparisons use this one.
    pub(crate) store_generation: u64,
    login: u64,
    /// The login's tag as the store knows it ([`StoredTokens::login`]): what tells another
    /// process's sign-in from a refresh of this login when a stored pair is adopted.
    ///
    /// [`StoredTokens::login`]: crate::store::StoredTokens::login
    pub(crate) store_login: Option<u64>,
    tokens: TokenSet,
    header: HeaderValue,
    pub(crate) schedule: Schedule,
}

impl Credential {
    pub(crate) fn new(
        tokens: TokenSet,
        generation: u64,
        store_generation: u64,
        login: u64,
        store_login: Option<u64>,
        schedule: Schedule,
    ) -> Option<Self> {
        let mut header =
            HeaderValue::try_from(format!("Bearer {}", tokens.access_token().expose_secret()))
                .ok()?;
        header.set_sensitive(true);
        Some(Self {
            generation,
            store_generation,
            login,
            store_login,
            tokens,
            header,
            schedule,
        })
    }

    /// The generation: grows with every refresh and every sign-in, and never repeats within a
    /// session's lifetime (also across sign-out and sign-in).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The login these tokens belong to: the generation of the sign-in (or restore) that
    /// started it. Refreshes keep it. A refusal of a token from another login is handed back
    /// to its caller as it is: it never retries, refreshes or ends the current login.
    pub fn login(&self) -> u64 {
        self.login
    }

    /// `Bearer <access token>`, marked sensitive so HTTP stacks and `Debug` do not print it.
    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// The access token.
    pub fn access_token(&self) -> &SecretString {
        self.tokens.access_token()
    }

    /// The whole token set.
    pub fn tokens(&self) -> &TokenSet {
        &self.tokens
    }

    /// Whether the access token is known to have expired (by the local clock, with a safety
    /// margin for the request's transit).
    pub fn is_expired(&self) -> bool {
        self.schedule.is_past_hard(Instant::now())
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("generation", &self.generation)
            .field("login", &self.login)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// [`Session::credential`] without awaiting: `Ok(Some(_))` is what it would return at once
    /// (past the soft deadline this also starts the background refresh), `Ok(None)` means it
    /// would wait for a refresh, so the caller awaits `credential()` instead. Adapters call this
    /// on every request so that the refresh's future is not part of theirs.
    pub(crate) fn credential_now(&self) -> Result<Option<Arc<Credential>>, Error> {
        let Some(current) = self.inner.current() else {
            // A refresher that needs no login obtains the first token: that is a wait.
            if self.inner.refresher.obtains_without_login() {
                return Ok(None);
            }
            return Err(Error::LoginRequired);
        };
        let (past_soft, past_hard) = current.schedule.deadlines_passed();
        if past_hard {
            return Ok(None);
        }
        if past_soft {
            self.inner.refresh_in_background(&current);
        }
        Ok(Some(current))
    }
}
