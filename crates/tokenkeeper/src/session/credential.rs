//! [`Credential`]: the token a request carries, stamped with its generation.

use super::schedule::Schedule;
use crate::TokenSet;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
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
