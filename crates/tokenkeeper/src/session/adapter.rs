//! The steps every adapter (reqwest middleware, tower layer) takes after a response, so that the
//! policy lives here once and the adapters only move requests and bodies.

use super::{Credential, Session};
use crate::classify::Verdict;
use crate::error::{Error, LogoutReason};
use crate::session::stats::Counters;
use std::sync::Arc;

/// What an adapter does with the response to a token-bearing request.
#[derive(Debug)]
#[cfg_attr(not(any(feature = "reqwest", feature = "tower")), allow(dead_code))]
pub(crate) enum AfterResponse {
    /// Hand the response to the caller.
    Deliver,
    /// Fail the call with this error (the response is dropped).
    Fail(Error),
    /// Send the request again, once, with this credential.
    Retry(Arc<Credential>),
}

#[cfg_attr(not(any(feature = "reqwest", feature = "tower")), allow(dead_code))]
impl Session {
    /// The first response to a request that carried `credential`. `replayable` says whether the
    /// adapter kept a copy of the request; `already_retried` whether this request was retried
    /// before (by us, under another layer that replays it).
    pub(crate) async fn after_response(
        &self,
        credential: &Credential,
        verdict: Verdict,
        replayable: bool,
        already_retried: bool,
    ) -> AfterResponse {
        match verdict {
            Verdict::Accept => {
                self.note_accepted();
                AfterResponse::Deliver
            }
            Verdict::Invalid => AfterResponse::Fail(self.token_invalid(credential).await),
            Verdict::Refresh if already_retried => {
                self.note_refused_after_refresh(credential.generation())
                    .await;
                AfterResponse::Deliver
            }
            Verdict::Refresh => match self.token_rejected(credential.generation()).await {
                Err(error) => AfterResponse::Fail(error),
                Ok(_) if !replayable => {
                    // The body is gone. The refresh happened, so the caller's next attempt
                    // succeeds; this one gets the original refusal.
                    Counters::bump(&self.counters().not_replayable);
                    AfterResponse::Deliver
                }
                Ok(fresh) => {
                    Counters::bump(&self.counters().retries);
                    AfterResponse::Retry(fresh)
                }
            },
        }
    }

    /// The response to the retry, which carried `fresh`: never retried again.
    pub(crate) async fn after_retry(
        &self,
        fresh: &Credential,
        verdict: Verdict,
    ) -> Result<(), Error> {
        match verdict {
            Verdict::Accept => self.note_accepted(),
            Verdict::Invalid => return Err(self.token_invalid(fresh).await),
            Verdict::Refresh => self.note_refused_after_refresh(fresh.generation()).await,
        }
        Ok(())
    }

    async fn token_invalid(&self, credential: &Credential) -> Error {
        self.invalidate(credential.generation()).await;
        Error::SessionExpired(LogoutReason::TokenInvalid)
    }
}
