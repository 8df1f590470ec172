//! [`Credential`]: the token a request carries, stamped with its generation.

use super::Session;
use super::schedule::Schedule;
use crate::TokenSet;
use crate::error::Error;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// The current access token, ready to attach, with the generation it belongs to.
///
/// Adapters record the generation a request carried; when that request is refused they hand it
/// back to [`Session::token_rejected`](crate::Session::token_rejected), which refreshes only if
/// that generation is still current.
#[derive(Clone)]
pub struct Credential {
    generation: u64,
    tokens: TokenSet,
    header: HeaderValue,
    pub(crate) schedule: Schedule,
}

impl Credential {
    pub(crate) fn new(tokens: TokenSet, generation: u64, schedule: Schedule) -> Option<Self> {
        let mut header =
            HeaderValue::try_from(format!("Bearer {}", tokens.access_token().expose_secret()))
                .ok()?;
        header.set_sensitive(true);
        Some(Self {
            generation,
            tokens,
            header,
            schedule,
        })
    }

    /// The generation: grows by one per refresh.
    pub fn generation(&self) -> u64 {
        self.generation
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
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

// Only the reqwest adapter has a use for it so far.
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
impl Session {
    /// [`Session::credential`] without awaiting: `Ok(Some(_))` is what it would return at once
    /// (past the soft deadline this also starts the background refresh), `Ok(None)` means it
    /// would wait for a refresh, so the caller awaits `credential()` instead. Adapters call this
    /// on every request so that the refresh's future is not part of theirs.
    pub(crate) fn credential_now(&self) -> Result<Option<Arc<Credential>>, Error> {
        let current = self.inner.current().ok_or(Error::LoginRequired)?;
        let now = Instant::now();
        if current.schedule.is_past_hard(now) {
            return Ok(None);
        }
        if current.schedule.is_past_soft(now) {
            self.inner.refresh_in_background(&current);
        }
        Ok(Some(current))
    }
}
