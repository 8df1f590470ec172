//! What to do after a response to a token-bearing request: the verdicts every adapter
//! (reqwest middleware, tower layer) acts on, decided here once so the adapters only move
//! requests and bodies.
//!
//! Every hook an adapter calls is here, in the order it calls them: [`Session::decide`]
//! (whether a request gets the token), [`Session::credential_now`] (which token, without
//! awaiting; in `credential.rs`, beside the credential it reads), [`Session::classifier`] (how
//! to read the response), then [`Session::after_response`], [`Session::after_retry`] and
//! [`Session::note_accepted`]. They are crate-private: a public "write your own adapter" API
//! would fix the shape of [`AfterResponse`], the route key and the origin decision before a
//! third adapter has shown what it needs; the two adapters and the tonic interceptor are
//! their callers.
//!
//! The rules, in order:
//! 1. An accepted response ends nothing and costs one atomic load.
//! 2. A refusal of a credential from another login is handed back as it is: no retry, no
//!    refresh, no logout (DESIGN.md §3.7). One from an ended login fails with the reason.
//! 3. A refusal of an older generation of the current login is retried with the current token;
//!    nothing is refreshed (the late-401 rule, §3.1).
//! 4. A refusal from a route that already refused a token at least as fresh after a refresh is
//!    that route's answer: delivered, nothing refreshed, nothing counted (§3.8).
//! 5. Otherwise one refresh decides: refresh (once for everyone) and retry once. An "invalid"
//!    verdict ends the session at once only under [`InvalidTokenPolicy::EndSession`].
//! 6. A retry that is refused too marks its route; refusals that span routes and refreshed
//!    tokens end the session.
//!
//! A retry never goes out with a token already past its deadline (a stall longer than the
//! token's lifetime): that token is refreshed first.

use super::builder::InvalidTokenPolicy;
use super::routes::RouteKey;
use super::{Credential, Session, Standing};
use crate::classify::{Classifier, Verdict};
use crate::error::{Error, LogoutReason};
use crate::origin::Decision;
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
    /// Whether a request to `url` gets the token: the origins given to `attach_to`, and plain
    /// http only to loopback unless allowed.
    pub(crate) fn decide(&self, url: &url::Url) -> Decision {
        self.inner.origins.decide(url)
    }

    /// How responses are read.
    pub(crate) fn classifier(&self) -> &Classifier {
        &self.inner.classifier
    }

    /// The first response to a request that carried `credential`. `replayable` says whether the
    /// adapter kept a copy of the request; `already_retried` whether this request was retried
    /// before (by us, under another layer that replays it). `route` names the request's route
    /// (method and path); it is only computed when needed.
    pub(crate) async fn after_response(
        &self,
        credential: &Credential,
        verdict: Verdict,
        replayable: bool,
        already_retried: bool,
        route: impl FnOnce() -> RouteKey,
    ) -> AfterResponse {
        if verdict == Verdict::Accept {
            self.note_accepted(route);
            return AfterResponse::Deliver;
        }
        if already_retried {
            return match self.after_retry(credential, verdict, route).await {
                Ok(()) => AfterResponse::Deliver,
                Err(error) => AfterResponse::Fail(error),
            };
        }
        let inner = &self.inner;
        match inner.standing(credential) {
            Standing::OtherLogin => {
                Counters::bump(&inner.counters.other_login_refusals);
                AfterResponse::Deliver
            }
            Standing::Ended(reason) => AfterResponse::Fail(Error::SessionExpired(reason)),
            Standing::Stale(current) if !current.is_expired() => {
                Counters::bump(&inner.counters.stale_retries);
                inner.meter.stale_retry();
                self.retry_with(current, replayable)
            }
            Standing::Stale(current) => match inner.refresh_from(&current).await {
                // Nobody refreshed the newer token while this request was out: do it first.
                Err(error) => AfterResponse::Fail(error),
                Ok(fresh) if fresh.login() != credential.login() => AfterResponse::Deliver,
                Ok(fresh) => self.retry_with(fresh, replayable),
            },
            Standing::Current => {
                let route = route();
                // A route that refuses even fresh tokens gets its answer delivered, unless the
                // token is past its deadline by now: then the refusal is explained by expiry
                // (a stalled request on a busy machine), not by the route.
                if !credential.is_expired()
                    && inner.routes.is_broken(route, credential.generation())
                {
                    Counters::bump(&inner.counters.route_refusals);
                    return AfterResponse::Deliver;
                }
                if verdict == Verdict::Invalid
                    && inner.limits.invalid_token == InvalidTokenPolicy::EndSession
                {
                    return AfterResponse::Fail(self.token_invalid(credential).await);
                }
                match inner.refresh_from(credential).await {
                    Err(error) => AfterResponse::Fail(error),
                    // A sign-in overtook the refresh: the new login must not send this request.
                    Ok(fresh) if fresh.login() != credential.login() => {
                        Counters::bump(&inner.counters.other_login_refusals);
                        AfterResponse::Deliver
                    }
                    Ok(fresh) => {
                        if replayable {
                            inner.routes.retrying(route, fresh.generation());
                        }
                        self.retry_with(fresh, replayable)
                    }
                }
            }
        }
    }

    fn retry_with(&self, fresh: Arc<Credential>, replayable: bool) -> AfterResponse {
        if !replayable {
            // The body is gone. The refresh happened (or was not needed), so the caller's next
            // attempt succeeds; this one gets the original refusal.
            Counters::bump(&self.counters().not_replayable);
            return AfterResponse::Deliver;
        }
        Counters::bump(&self.counters().retries);
        AfterResponse::Retry(fresh)
    }

    /// The response to the retry, which carried `fresh`: never retried again. A refusal is the
    /// route's answer and is delivered; refusals spanning routes end the session.
    pub(crate) async fn after_retry(
        &self,
        fresh: &Credential,
        verdict: Verdict,
        route: impl FnOnce() -> RouteKey,
    ) -> Result<(), Error> {
        if verdict == Verdict::Accept {
            self.note_accepted(route);
            return Ok(());
        }
        let inner = &self.inner;
        if !inner.is_active_login(fresh.login()) {
            // The login ended or changed meanwhile: nothing to account to the current one.
            return Ok(());
        }
        if verdict == Verdict::Invalid
            && inner.limits.invalid_token == InvalidTokenPolicy::EndSession
            && inner.is_current(fresh.generation())
        {
            return Err(self.token_invalid(fresh).await);
        }
        if fresh.is_expired() {
            // The fresh token ran out while the retry was on its way (the machine or the network
            // stalled longer than its lifetime): that says nothing about the route, nor about
            // the token everywhere. The caller gets this refusal (one retry only); nothing is
            // counted against the route or the session.
            return Ok(());
        }
        let routes = inner
            .routes
            .refused_after_refresh(route(), fresh.generation());
        let limit = inner.limits.max_unauthorized_after_refresh as usize;
        if routes >= limit {
            let count = u32::try_from(routes).unwrap_or(u32::MAX);
            inner
                .invalidate(
                    fresh.generation(),
                    LogoutReason::RepeatedUnauthorized(count),
                )
                .await;
        }
        Ok(())
    }

    /// A response was accepted: the refusals do not span every route, and its route works.
    pub(crate) fn note_accepted(&self, route: impl FnOnce() -> RouteKey) {
        let routes = &self.inner.routes;
        if routes.is_tracking() {
            routes.accepted(route());
        }
    }

    async fn token_invalid(&self, credential: &Credential) -> Error {
        self.invalidate(credential.generation()).await;
        Error::SessionExpired(LogoutReason::TokenInvalid)
    }
}
