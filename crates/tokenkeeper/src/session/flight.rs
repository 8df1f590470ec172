//! A refresh *flight*: one refresh shared by every request that needs it.
//!
//! The order inside a flight is what makes rotation safe:
//! 1. take the store's lock (a no-op for in-process stores, a file or Redis lock for shared ones);
//! 2. re-read the store and adopt a newer pair someone else wrote, instead of refreshing again;
//! 3. call the refresher, retrying transient failures with backoff within the refresh timeout;
//! 4. save the new pair (persist before publish), release the lock;
//! 5. publish: install the credential, then wake the waiters.
//!
//! The flight runs in a spawned task, so no waiter's cancellation can interrupt it between 3
//! and 4, where a rotated refresh token would otherwise be lost.

use super::{Credential, Inner, State};
use crate::TokenSet;
use crate::error::{Error, LogoutReason};
use crate::event::Event;
use crate::refresh::RefreshError;
use crate::session::stats::Counters;
use crate::store::{StoreError, StoredTokens};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// What every waiter of a flight receives.
pub(super) type Outcome = Result<Arc<Credential>, Error>;

/// The flight in progress, if any, and when a failed one may be retried proactively.
#[derive(Default)]
pub(super) struct FlightSlot {
    flight: Option<Flight>,
    cooldown_until: Option<Instant>,
}

impl FlightSlot {
    /// Forgets the flight in progress: a sign-in or sign-out superseded it. It runs to its end
    /// but will not install its result.
    pub(super) fn abandon_all(&mut self) {
        self.flight = None;
        self.cooldown_until = None;
    }

    fn finished(&mut self, from: u64) {
        if self.flight.as_ref().is_some_and(|f| f.from == from) {
            self.flight = None;
        }
    }
}

struct Flight {
    /// The generation this flight replaces.
    from: u64,
    outcome: Shared<BoxFuture<'static, Outcome>>,
}

enum Joined {
    Ready(Outcome),
    Wait(Shared<BoxFuture<'static, Outcome>>),
}

enum Obtained {
    Refreshed(Arc<Credential>),
    Adopted(Arc<Credential>),
}

enum Failure {
    /// A sign-in or sign-out replaced the tokens this flight was for before it started.
    Superseded,
    Terminal(LogoutReason),
    Transient(RefreshError),
    Store(StoreError),
}

impl Inner {
    /// Waits for the refresh that replaces `from`, starting it if nobody has.
    pub(super) async fn refresh_from(self: &Arc<Self>, from: &Arc<Credential>) -> Outcome {
        let joined = {
            let mut slot = self.slot();
            self.join_or_start(&mut slot, from, false)
        };
        match joined {
            Joined::Ready(outcome) => outcome,
            Joined::Wait(outcome) => outcome.await,
        }
    }

    /// Starts a refresh of `from` without waiting for it (proactive refresh).
    pub(super) fn refresh_in_background(self: &Arc<Self>, from: &Arc<Credential>) {
        let generation = from.generation();
        if self.proactive_for.load(Relaxed) == generation {
            return;
        }
        let mut slot = self.slot();
        if slot
            .cooldown_until
            .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        if self.proactive_for.swap(generation, Relaxed) == generation {
            return;
        }
        tracing::debug!(generation, "refreshing ahead of expiry");
        // The flight runs on its own; nobody needs to await it here.
        drop(self.join_or_start(&mut slot, from, true));
    }

    fn join_or_start(
        self: &Arc<Self>,
        slot: &mut FlightSlot,
        from: &Arc<Credential>,
        proactive: bool,
    ) -> Joined {
        match &**self.state.load() {
            State::SignedOut { .. } => return Joined::Ready(Err(Error::LoginRequired)),
            State::Active(current) if current.generation() != from.generation() => {
                return Joined::Ready(Ok(Arc::clone(current)));
            }
            State::Active(_) => {}
        }
        if let Some(flight) = slot.flight.as_ref().filter(|f| f.from == from.generation()) {
            if !proactive {
                Counters::bump(&self.counters.waiters_joined);
            }
            return Joined::Wait(flight.outcome.clone());
        }
        Counters::bump(&self.counters.flights);
        if proactive {
            Counters::bump(&self.counters.proactive_refreshes);
        }
        let task = tokio::spawn(Arc::clone(self).fly(Arc::clone(from)));
        let outcome = async move { task.await.unwrap_or(Err(Error::RefreshCancelled)) }
            .boxed()
            .shared();
        slot.flight = Some(Flight {
            from: from.generation(),
            outcome: outcome.clone(),
        });
        Joined::Wait(outcome)
    }

    async fn fly(self: Arc<Self>, from: Arc<Credential>) -> Outcome {
        let mut guard = ClearOnCancel {
            inner: &self,
            from: from.generation(),
            armed: true,
        };
        let obtained = self.obtain(&from).await;
        guard.armed = false;
        self.finish(from.generation(), obtained)
    }

    async fn obtain(&self, from: &Credential) -> Result<Obtained, Failure> {
        let _lock = match tokio::time::timeout(self.limits.refresh_timeout, self.store.lock()).await
        {
            Ok(Ok(lock)) => lock,
            Ok(Err(error)) => return Err(Failure::Store(error)),
            Err(_) => {
                return Err(Failure::Transient(RefreshError::transient(
                    "timed out waiting for the token store's lock",
                )));
            }
        };

        // Under the lock, nobody can replace the tokens any more; check they are still ours.
        if !self.is_current(from.generation()) {
            return Err(Failure::Superseded);
        }
        let mut base = from.generation();
        // The pair to present to the refresher: ours, or a newer stored one that is too old to
        // adopt (its refresh token is the live one; ours was rotated by whoever wrote it).
        let mut stale_newer: Option<TokenSet> = None;
        match self.store.load().await {
            Ok(Some(stored)) if is_newer(&stored, from) => {
                let generation = stored.generation.max(from.generation() + 1);
                let schedule = self.schedule(&stored.tokens);
                if schedule.is_past_hard(Instant::now()) {
                    // Written longer ago than its lifetime (the writer or this process was
                    // descheduled, or a save stalled): adopting it would hand every waiter a
                    // token the server already refuses.
                    tracing::debug!(
                        generation,
                        "the stored tokens are past their deadline; refreshing them"
                    );
                    base = base.max(stored.generation);
                    stale_newer = Some(stored.tokens);
                } else if let Some(credential) =
                    Credential::new(stored.tokens, generation, schedule)
                {
                    tracing::debug!(generation, "adopted tokens another process refreshed");
                    return Ok(Obtained::Adopted(Arc::new(credential)));
                } else {
                    tracing::warn!("stored tokens are unusable; refreshing instead");
                }
            }
            Ok(Some(stored)) => base = base.max(stored.generation),
            Ok(None) if self.store_in_sync.load(Relaxed) => {
                return Err(Failure::Terminal(LogoutReason::ClearedElsewhere));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "could not read the token store; refreshing with the tokens in memory");
                self.emit(Event::StoreFailed {
                    reason: format!("load: {error}"),
                });
            }
        }

        let old = stale_newer.as_ref().unwrap_or_else(|| from.tokens());
        let tokens = match self.call_refresher(old).await {
            Ok(tokens) => tokens,
            Err(error) if error.is_terminal() => {
                return Err(self.fail_terminally(from.generation(), error).await);
            }
            Err(error) => return Err(Failure::Transient(error)),
        };
        // RFC 6749 §6: a response without a refresh token means "keep using the old one".
        let tokens = match tokens.refresh_token() {
            Some(_) => tokens,
            None => tokens.with_refresh_secret(old.refresh_token().cloned()),
        };
        let generation = base + 1;
        let Some(credential) = Credential::new(tokens.clone(), generation, self.schedule(&tokens))
        else {
            let error = RefreshError::InvalidResponse(
                "the access token is not a valid header value".into(),
            );
            return Err(self.fail_terminally(from.generation(), error).await);
        };
        self.save(&StoredTokens { tokens, generation }).await;
        Counters::bump(&self.counters.refreshes);
        tracing::debug!(generation, "refreshed");
        Ok(Obtained::Refreshed(Arc::new(credential)))
    }

    /// Persists; a failure is reported, and the in-memory tokens are used regardless.
    async fn save(&self, stored: &StoredTokens) {
        match self.store.save(stored).await {
            Ok(()) => self.store_in_sync.store(true, Relaxed),
            Err(error) => {
                self.store_in_sync.store(false, Relaxed);
                tracing::error!(%error, generation = stored.generation, "could not save refreshed tokens");
                self.emit(Event::StoreFailed {
                    reason: format!("save: {error}"),
                });
            }
        }
    }

    /// The refresh token is dead: clear the store (still under its lock) and say why.
    async fn fail_terminally(&self, from: u64, error: RefreshError) -> Failure {
        tracing::warn!(%error, "refresh rejected");
        self.emit(Event::RefreshFailed {
            transient: false,
            reason: error.to_string(),
        });
        if self.is_current(from) {
            self.clear_store().await;
        }
        Failure::Terminal(match error {
            RefreshError::Rejected(reason) => LogoutReason::RefreshRejected(reason),
            RefreshError::InvalidResponse(reason) => LogoutReason::InvalidRefreshResponse(reason),
            RefreshError::NoRefreshToken | RefreshError::Transient { .. } => {
                LogoutReason::NoRefreshToken
            }
        })
    }

    /// Calls the refresher, retrying transient failures with jittered exponential backoff until
    /// the refresh timeout.
    async fn call_refresher(&self, tokens: &TokenSet) -> Result<TokenSet, RefreshError> {
        let deadline = Instant::now() + self.limits.refresh_timeout;
        let mut attempt: u32 = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RefreshError::transient("the refresh timeout passed"));
            }
            Counters::bump(&self.counters.refresh_attempts);
            let limit = self.limits.attempt_timeout.min(remaining);
            let error = match tokio::time::timeout(limit, self.refresher.refresh(tokens)).await {
                Ok(Ok(tokens)) => return Ok(tokens),
                Ok(Err(error)) if error.is_terminal() => return Err(error),
                Ok(Err(error)) => error,
                Err(_) => RefreshError::transient(format!("no answer within {limit:?}")),
            };
            Counters::bump(&self.counters.transient_failures);
            tracing::warn!(%error, attempt, "refresh failed transiently; tokens kept");
            self.emit(Event::RefreshFailed {
                transient: true,
                reason: error.to_string(),
            });
            let delay = self.backoff(attempt, &error);
            if Instant::now() + delay >= deadline {
                return Err(error);
            }
            tokio::time::sleep(delay).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// "Equal jitter": half the exponential step fixed, half random, so retries spread out but
    /// never come back immediately. A `Retry-After` is a floor.
    fn backoff(&self, attempt: u32, error: &RefreshError) -> Duration {
        let step = self
            .limits
            .backoff_initial
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.limits.backoff_max);
        let jittered = step / 2 + step.mul_f64(0.5 * rand::random::<f64>());
        match error {
            RefreshError::Transient {
                retry_after: Some(floor),
                ..
            } => jittered.max(*floor),
            _ => jittered,
        }
    }

    /// Installs the flight's result and hands it to the waiters.
    fn finish(&self, from: u64, obtained: Result<Obtained, Failure>) -> Outcome {
        let mut slot = self.slot();
        slot.finished(from);
        let current = self.state.load_full();
        let is_current = matches!(&*current, State::Active(c) if c.generation() == from);
        let superseded = || match &*current {
            State::Active(newer) => Ok(Arc::clone(newer)),
            State::SignedOut { .. } => Err(Error::LoginRequired),
        };
        match obtained {
            Err(Failure::Superseded) => superseded(),
            Ok(obtained) => {
                let (credential, event) = match obtained {
                    Obtained::Refreshed(c) => {
                        let generation = c.generation();
                        (c, Event::Refreshed { generation })
                    }
                    Obtained::Adopted(c) => {
                        let generation = c.generation();
                        (c, Event::Adopted { generation })
                    }
                };
                if !is_current {
                    // A sign-in or sign-out overtook this flight; its result is not ours to install.
                    return superseded();
                }
                // Counted once installed, so superseded flights do not inflate it.
                if matches!(event, Event::Adopted { .. }) {
                    Counters::bump(&self.counters.adopted);
                }
                self.state
                    .store(Arc::new(State::Active(Arc::clone(&credential))));
                drop(slot);
                self.emit(event);
                Ok(credential)
            }
            Err(Failure::Terminal(reason)) => {
                drop(slot);
                self.end(Some(from), reason.clone());
                Err(Error::SessionExpired(reason))
            }
            Err(Failure::Transient(error)) => {
                self.cool_down(&mut slot);
                Err(Error::RefreshUnavailable(Arc::new(error)))
            }
            Err(Failure::Store(error)) => {
                tracing::error!(%error, "could not lock the token store for a refresh");
                self.cool_down(&mut slot);
                Err(Error::from(error))
            }
        }
    }

    /// After a failed flight, proactive refreshes wait a while; requests that need a token
    /// (expired, or refused) may still start a new flight at once.
    fn cool_down(&self, slot: &mut FlightSlot) {
        slot.cooldown_until = Some(Instant::now() + self.limits.backoff_max);
        self.proactive_for.store(u64::MAX, Relaxed);
    }
}

/// A newer pair in the store than the one being refreshed: written by another process.
fn is_newer(stored: &StoredTokens, from: &Credential) -> bool {
    stored.generation >= from.generation() && !stored.tokens.same_secrets(from.tokens())
}

/// If the flight task is cancelled (runtime shutdown) before it finishes, forget the flight so
/// later requests start a new one instead of joining a dead one.
struct ClearOnCancel<'a> {
    inner: &'a Inner,
    from: u64,
    armed: bool,
}

impl Drop for ClearOnCancel<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.slot().finished(self.from);
        }
    }
}
