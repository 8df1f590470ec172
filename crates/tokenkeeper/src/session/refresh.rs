//! The refresh procedure a flight runs. The order is what makes rotation safe:
//! 1. take the store's lock (a no-op for in-process stores, a file or Redis lock for shared ones);
//! 2. re-read the store and adopt a newer pair someone else wrote, instead of refreshing again;
//! 3. right before each call, check the lock is still held (a lease can pass to another process
//!    while this one was paused), then call the refresher, retrying transient failures with
//!    backoff within the refresh timeout;
//! 4. save the new pair (persist before publish);
//! 5. publish: install the credential, then wake the waiters;
//! 6. if the save failed, keep retrying it (bounded) while still holding the lock, so no other
//!    process refreshes from the pair this one just rotated away; then release the lock.
//!
//! The flight runs in a spawned task, so no waiter's cancellation can interrupt it between 3
//! and 4, where a rotated refresh token would otherwise be lost.

use super::flight::{FROM_NOTHING, Outcome};
use super::meter::{AttemptOutcome, FlightOutcome};
use super::{Credential, Inner, State, Unusable};
use crate::error::{Error, LogoutReason};
use crate::event::Event;
use crate::refresh::RefreshError;
use crate::session::stats::Counters;
use crate::store::{StoreError, StoreLock, StoredTokens};
use crate::token::TokenSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// How often a failed save after a rotation is retried before the lock is let go.
const SAVE_RETRIES: u32 = 4;

/// How often a flight waiting for a shared store's lock re-reads the store.
const LOCK_WAIT_REREAD: Duration = Duration::from_millis(100);

/// What waiting for the store's lock ended with.
enum Locked {
    Held(StoreLock),
    /// The holder saved a newer pair meanwhile; adopted without the lock.
    Adopted(Arc<Credential>),
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
    /// The refresh endpoint's answer was no verdict on the refresh token.
    Inconclusive(RefreshError),
    Store(StoreError),
}

/// A save that failed after a rotation, retried while the lock is held.
struct PendingSave {
    lock: StoreLock,
    stored: StoredTokens,
    /// The session's generation of the pair being saved.
    generation: u64,
}

impl Inner {
    pub(super) async fn fly(
        self: Arc<Self>,
        from: Option<Arc<Credential>>,
        done: oneshot::Sender<Outcome>,
    ) {
        let from_generation = from.as_ref().map_or(FROM_NOTHING, |c| c.generation());
        let timer = self.meter.flight_started();
        let mut guard = ClearOnCancel {
            inner: &self,
            from: from_generation,
            armed: true,
        };
        let (obtained, pending) = self.obtain(from.as_deref()).await;
        guard.armed = false;
        let flight_outcome = match &obtained {
            Ok(Obtained::Refreshed(_)) => FlightOutcome::Refreshed,
            Ok(Obtained::Adopted(_)) => FlightOutcome::Adopted,
            Err(Failure::Superseded) => FlightOutcome::Superseded,
            Err(_) => FlightOutcome::Failed,
        };
        let outcome = self.finish(from.as_deref(), obtained);
        // Recorded before the waiters wake, so whoever sees the outcome sees it counted.
        self.meter.flight_finished(timer, flight_outcome);
        // Waiters go on with the new pair; nobody may be listening any more.
        let _ = done.send(outcome);
        if let Some(pending) = pending {
            self.keep_saving(pending).await;
        }
        if self.clear_after_flight.swap(false, SeqCst) {
            // A sign-out handed the clearing of the store to this flight.
            match self.bounded("lock", self.store.lock()).await {
                Ok(_lock) => self.clear_store().await,
                Err(error) => {
                    tracing::error!(%error, "could not lock the token store to clear it after a sign-out");
                    self.emit(Event::StoreFailed {
                        reason: format!("lock: {error}"),
                    });
                }
            }
        }
    }

    async fn obtain(
        &self,
        from: Option<&Credential>,
    ) -> (Result<Obtained, Failure>, Option<PendingSave>) {
        let lock = match self.lock_or_adopt(from).await {
            Ok(Locked::Held(lock)) => lock,
            Ok(Locked::Adopted(credential)) => return (Ok(Obtained::Adopted(credential)), None),
            Err(failure) => return (Err(failure), None),
        };

        // Under the lock, nobody can replace the tokens any more; check they are still ours.
        let ours = match from {
            Some(from) => self.is_current(from.generation()),
            None => self.current().is_none(),
        };
        if !ours {
            return (Err(Failure::Superseded), None);
        }
        let mut base = from.map_or(FROM_NOTHING, |from| from.store_generation);
        // A newer stored pair that is too old to hand out: its refresh token is the live one
        // (ours was rotated by whoever wrote it), so it is what the refresher presents.
        let mut stale_newer: Option<(TokenSet, Option<u64>)> = None;
        match self.bounded("load", self.store.load()).await {
            Ok(Some(stored)) if from.is_none_or(|from| is_newer(&stored, from)) => {
                if self.schedule(&stored.tokens).is_past_hard(Instant::now()) {
                    // Written longer ago than its lifetime (the writer or this process was
                    // descheduled, a save stalled): adopting it would hand every waiter a
                    // token the server already refuses.
                    tracing::debug!(
                        generation = stored.generation,
                        "the stored tokens are past their deadline; refreshing them"
                    );
                    base = base.max(stored.generation);
                    stale_newer = Some((stored.tokens, stored.login));
                } else {
                    match self.adopt(stored, from) {
                        Ok(Some(credential)) => return (Ok(Obtained::Adopted(credential)), None),
                        Ok(None) => {
                            tracing::warn!("stored tokens are unusable; refreshing instead")
                        }
                        Err(error) => return (Err(Failure::Store(error)), None),
                    }
                }
            }
            Ok(Some(stored)) => base = base.max(stored.generation),
            Ok(None) if from.is_some() && self.store_in_sync.load(Relaxed) => {
                return (Err(Failure::Terminal(LogoutReason::ClearedElsewhere)), None);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "could not read the token store; refreshing with the tokens in memory");
                self.emit(Event::StoreFailed {
                    reason: format!("load: {error}"),
                });
            }
        }

        let placeholder;
        let current = match (&stale_newer, from) {
            (Some((stored, _)), _) => stored,
            (None, Some(from)) => from.tokens(),
            (None, None) => {
                placeholder = TokenSet::new("");
                &placeholder
            }
        };
        let tokens = match self.call_refresher(current, &lock).await {
            Ok(tokens) => tokens,
            Err(RefreshFailure::Refused(error)) => {
                return (Err(self.fail_terminally(from, error).await), None);
            }
            Err(RefreshFailure::Other(failure)) => return (Err(failure), None),
        };
        // RFC 6749 §6: a response without a refresh token means "keep using the old one".
        let tokens = match (tokens.refresh_token(), from) {
            (None, Some(from)) => {
                tokens.with_refresh_secret(from.tokens().refresh_token().cloned())
            }
            _ => tokens,
        };
        // The key belongs to the login: a refresher that does not hand it on (a `from_fn`)
        // still gets it on the new pair.
        #[cfg(feature = "dpop")]
        let tokens = match (tokens.dpop_key(), current.dpop_key()) {
            (None, Some(key)) => tokens.with_dpop_key(key.clone()),
            _ => tokens,
        };
        let Some(store_generation) = base.checked_add(1) else {
            let error = StoreError::Corrupt("the token generation would overflow".into());
            return (Err(Failure::Store(error)), None);
        };
        let generation = match self.claim_generation(store_generation) {
            Ok(generation) => generation,
            Err(error) => return (Err(Failure::Store(error)), None),
        };
        // The login the refreshed pair belongs to: the one refreshed from, unless the pair it
        // was refreshed from is another process's newer sign-in.
        let (login, store_login) = match (&stale_newer, from) {
            (Some((_, tag)), Some(from)) if *tag == from.store_login => (from.login(), *tag),
            (Some((_, tag)), _) => (generation, *tag),
            (None, Some(from)) => (from.login(), from.store_login),
            // A first token (a refresher that needs no login) starts a login of its own.
            (None, None) => (generation, Some(rand::random::<u64>())),
        };
        let mut schedule = self.schedule(&tokens);
        if let Some(from) = from
            && !outlives(&tokens, from.tokens())
        {
            // A server or proxy that hands out cached tokens: renewing early would only get
            // the same token again, in a loop.
            Counters::bump(&self.counters.non_renewing_tokens);
            tracing::warn!(
                generation,
                "the refreshed token expires no later than the one it replaced; no early renewal for it"
            );
            schedule = schedule.without_proactive();
        }
        let credential = Credential::new(
            tokens.clone(),
            generation,
            store_generation,
            login,
            store_login,
            schedule,
        );
        let credential = match credential {
            Ok(credential) => credential,
            Err(why) => {
                let error = RefreshError::InvalidResponse(why.describe().into());
                return (Err(self.fail_terminally(from, error).await), None);
            }
        };
        if from.is_some_and(|from| !self.is_current(from.generation())) {
            // Signed out (or invalidated) while the refresh ran: the rotated pair belongs to an
            // ended login. Do not save it; make sure the store holds nothing of that login.
            self.clear_store().await;
            return (Err(Failure::Superseded), None);
        }
        Counters::bump(&self.counters.refreshes);
        tracing::debug!(generation, "refreshed");
        let stored = StoredTokens {
            tokens,
            generation: store_generation,
            login: store_login,
        };
        let pending = match self.bounded("save", self.store.save(&stored)).await {
            Ok(()) => {
                self.store_in_sync.store(true, Relaxed);
                None
            }
            Err(error) => {
                self.store_in_sync.store(false, Relaxed);
                tracing::error!(%error, generation, "could not save refreshed tokens; retrying while holding the lock");
                self.emit(Event::StoreFailed {
                    reason: format!("save: {error}"),
                });
                Some(PendingSave {
                    lock,
                    stored,
                    generation,
                })
            }
        };
        (Ok(Obtained::Refreshed(Arc::new(credential))), pending)
    }

    /// A pair another process wrote (or, for a first token, any stored pair) as this session's.
    /// Takes the store's lock, within the refresh timeout. While another holder has it, the
    /// store is re-read now and then: that holder is usually refreshing the very pair this
    /// flight is for, and once it has saved the new one, adopting it needs no lock. Without
    /// this, every other process sharing the login queues for the lock only to adopt, one
    /// after another, and on a saturated machine the last of them times out.
    async fn lock_or_adopt(&self, from: Option<&Credential>) -> Result<Locked, Failure> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.limits.refresh_timeout;
        let mut next_read = started + LOCK_WAIT_REREAD;
        let lock = self.store.lock();
        tokio::pin!(lock);
        loop {
            tokio::select! {
                biased;
                locked = &mut lock => {
                    return locked.map(Locked::Held).map_err(|error| {
                        self.meter.store_failure("lock");
                        Failure::Store(error)
                    });
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.meter.store_failure("lock");
                    return Err(Failure::Transient(RefreshError::transient(
                        "timed out waiting for the token store's lock",
                    )));
                }
                () = tokio::time::sleep_until(next_read), if from.is_some() => {
                    next_read = tokio::time::Instant::now() + LOCK_WAIT_REREAD;
                    let newer = match from {
                        Some(from) => self.newer_stored_pair(from, deadline).await,
                        None => None,
                    };
                    if let Some(credential) = newer {
                        return Ok(Locked::Adopted(credential));
                    }
                }
            }
        }
    }

    /// A usable pair newer than `from` in the store, adopted; `None` when there is none or
    /// the store cannot say now (the flight goes on waiting for the lock, and reads again
    /// under it).
    async fn newer_stored_pair(
        &self,
        from: &Credential,
        deadline: tokio::time::Instant,
    ) -> Option<Arc<Credential>> {
        if !self.is_current(from.generation()) {
            return None;
        }
        let read = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + self.limits.store_timeout),
            self.store.load(),
        );
        let stored = read.await.ok()?.ok()??;
        if !is_newer(&stored, from) || self.schedule(&stored.tokens).is_past_hard(Instant::now()) {
            return None;
        }
        self.adopt(stored, Some(from)).ok()?
    }

    fn adopt(
        &self,
        stored: StoredTokens,
        from: Option<&Credential>,
    ) -> Result<Option<Arc<Credential>>, StoreError> {
        let generation = self.claim_generation(stored.generation)?;
        // Another process's sign-in is a new login here too: requests sent under the old one
        // are handed back, never retried with its tokens.
        let login = match from {
            Some(from) if from.store_login == stored.login => from.login(),
            _ => generation,
        };
        let schedule = self.schedule(&stored.tokens);
        let credential = Credential::new(
            stored.tokens,
            generation,
            stored.generation,
            login,
            stored.login,
            schedule,
        );
        match credential {
            Ok(credential) => {
                tracing::debug!(generation, "adopted tokens another process obtained");
                Ok(Some(Arc::new(credential)))
            }
            // Never sent as a bearer token, never refreshed from: the store is corrupt.
            Err(why @ Unusable::DpopWithoutKey) => Err(StoreError::Corrupt(why.describe().into())),
            Err(Unusable::NotAHeaderValue) => Ok(None),
        }
    }

    /// Retries a failed save with backoff while holding the store's lock, so that no other
    /// process refreshes from the pair this one rotated away. Gives up after [`SAVE_RETRIES`].
    async fn keep_saving(&self, pending: PendingSave) {
        let PendingSave {
            lock,
            stored,
            generation,
        } = pending;
        let mut delay = self.limits.backoff_initial;
        for attempt in 1..=SAVE_RETRIES {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.limits.backoff_max);
            if !self.is_current(generation) {
                // Signed out, or a newer pair took over: this one is not worth keeping.
                break;
            }
            Counters::bump(&self.counters.save_retries);
            match self.bounded("save", self.store.save(&stored)).await {
                Ok(()) => {
                    self.store_in_sync.store(true, Relaxed);
                    tracing::info!(
                        attempt,
                        generation = stored.generation,
                        "saved refreshed tokens on a retry"
                    );
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, attempt, generation = stored.generation, "saving refreshed tokens failed again");
                }
            }
        }
        tracing::error!(
            generation = stored.generation,
            "giving up saving refreshed tokens; other processes sharing the store may refresh from the old pair"
        );
        drop(lock);
    }

    /// The refresh token is dead: clear the store (still under its lock) and say why.
    async fn fail_terminally(&self, from: Option<&Credential>, error: RefreshError) -> Failure {
        tracing::warn!(%error, "refresh rejected");
        self.emit(Event::RefreshFailed {
            transient: false,
            reason: error.to_string(),
        });
        if from.is_some_and(|from| self.is_current(from.generation())) {
            self.clear_store().await;
        }
        Failure::Terminal(match error {
            RefreshError::Rejected(reason) => LogoutReason::RefreshRejected(reason),
            RefreshError::InvalidResponse(reason) => LogoutReason::InvalidRefreshResponse(reason),
            _ => LogoutReason::NoRefreshToken,
        })
    }

    /// Calls the refresher, retrying transient failures with jittered exponential backoff until
    /// the refresh timeout. Right before each call it checks that the store's lock is still
    /// held. A `Retry-After` beyond the deadline ends the attempts at once (the slot then holds
    /// every refresh back until it passes).
    async fn call_refresher(
        &self,
        tokens: &TokenSet,
        lock: &StoreLock,
    ) -> Result<TokenSet, RefreshFailure> {
        let deadline = Instant::now() + self.limits.refresh_timeout;
        let mut attempt: u32 = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(RefreshFailure::transient("the refresh timeout passed"));
            }
            match lock.still_held().await {
                Ok(true) => {}
                Ok(false) => {
                    self.meter.store_failure("lease_lost");
                    return Err(RefreshFailure::transient(
                        "the store's lock was lost before the refresh was sent",
                    ));
                }
                Err(error) => {
                    self.meter.store_failure("fence");
                    return Err(RefreshFailure::Other(Failure::Store(error)));
                }
            }
            Counters::bump(&self.counters.refresh_attempts);
            let limit = self.limits.attempt_timeout.min(remaining);
            // The new token's lifetime counts from here, not from when its answer was read.
            let sent_at = SystemTime::now();
            let called = tokio::time::timeout(limit, self.refresher.refresh(tokens)).await;
            // Whatever the refresher says goes to events, logs and callers: made safe first.
            let called = called.map(|result| result.map_err(|error| error.redacted(tokens)));
            self.meter.refresh_attempt(AttemptOutcome::of_call(&called));
            let (error, lost_answer) = match called {
                Ok(Ok(tokens)) => return Ok(tokens.counted_from(sent_at)),
                Ok(Err(error @ RefreshError::Inconclusive(_))) => {
                    return Err(RefreshFailure::Other(Failure::Inconclusive(error)));
                }
                Ok(Err(error)) if error.is_terminal() => {
                    return Err(RefreshFailure::Refused(error));
                }
                Ok(Err(error)) => (error, false),
                Err(_) => (
                    RefreshError::transient(format!("no answer within {limit:?}")),
                    true,
                ),
            };
            Counters::bump(&self.counters.transient_failures);
            tracing::warn!(%error, attempt, "refresh failed transiently; tokens kept");
            self.emit(Event::RefreshFailed {
                transient: true,
                reason: error.to_string(),
            });
            // A lost answer may have rotated the token: retry promptly, inside any grace window
            // the server keeps, instead of backing off past it.
            let delay = if lost_answer {
                self.limits.backoff_initial
            } else {
                self.backoff(attempt, &error)
            };
            if Instant::now() + delay >= deadline {
                return Err(RefreshFailure::Other(Failure::Transient(error)));
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
        jittered.max(error.retry_after().unwrap_or_default())
    }

    /// Installs the flight's result and hands it to the waiters.
    fn finish(&self, from: Option<&Credential>, obtained: Result<Obtained, Failure>) -> Outcome {
        let mut slot = self.slot();
        slot.finished(from.map_or(FROM_NOTHING, Credential::generation));
        let current = self.state.load_full();
        let still_ours = match (&*current, from) {
            (State::Active(c), Some(from)) => c.generation() == from.generation(),
            (State::SignedOut { .. }, None) => true,
            _ => false,
        };
        let superseded = || match &*current {
            State::Active(newer) => Ok(Arc::clone(newer)),
            State::SignedOut { .. } => Err(Error::LoginRequired),
        };
        match obtained {
            Err(Failure::Superseded) => superseded(),
            Ok(obtained) => {
                if !still_ours {
                    // A sign-in or sign-out overtook this flight; its result is not ours to install.
                    return superseded();
                }
                let (credential, event) = match obtained {
                    Obtained::Refreshed(c) if from.is_none() => {
                        let generation = c.generation();
                        (c, Event::SignedIn { generation })
                    }
                    Obtained::Refreshed(c) => {
                        let generation = c.generation();
                        (c, Event::Refreshed { generation })
                    }
                    Obtained::Adopted(c) => {
                        // Counted once installed, so superseded flights do not inflate it.
                        Counters::bump(&self.counters.adopted);
                        self.meter.refresh_attempt(AttemptOutcome::Adopted);
                        let generation = c.generation();
                        (c, Event::Adopted { generation })
                    }
                };
                self.install(State::Active(Arc::clone(&credential)));
                drop(slot);
                if from.is_none() {
                    self.routes.forget();
                }
                self.emit(event);
                Ok(credential)
            }
            Err(Failure::Terminal(reason)) => {
                match from {
                    Some(from) => {
                        drop(slot);
                        self.end(Some(from.generation()), reason.clone());
                    }
                    None => {
                        // No login to end; do not ask again for every request.
                        let error = Arc::new(RefreshError::Rejected(reason.to_string()));
                        slot.block(Instant::now() + self.limits.backoff_max, error);
                    }
                }
                Err(Error::SessionExpired(reason))
            }
            Err(Failure::Transient(error)) => {
                self.cool_down(&mut slot);
                let error = Arc::new(error);
                if let Some(wait) = error.retry_after() {
                    slot.block(Instant::now() + wait, Arc::clone(&error));
                }
                Err(Error::RefreshUnavailable(error))
            }
            Err(Failure::Inconclusive(error)) => {
                tracing::warn!(%error, "the refresh endpoint's answer is no verdict on the refresh token; tokens kept");
                self.emit(Event::RefreshFailed {
                    transient: false,
                    reason: error.to_string(),
                });
                self.cool_down(&mut slot);
                let error = Arc::new(error);
                let wait = error.retry_after().unwrap_or(self.limits.backoff_max);
                slot.block(Instant::now() + wait, Arc::clone(&error));
                Err(Error::RefreshUnavailable(error))
            }
            Err(Failure::Store(error)) => {
                tracing::error!(%error, "the token store failed during a refresh");
                self.cool_down(&mut slot);
                Err(Error::from(error))
            }
        }
    }

    /// After a failed flight, proactive refreshes wait a while; requests that need a token
    /// (expired, or refused) may still start a new flight at once unless the slot is blocked.
    fn cool_down(&self, slot: &mut super::flight::FlightSlot) {
        slot.cool_down(Instant::now() + self.limits.backoff_max);
        self.proactive_for.store(u64::MAX, Relaxed);
    }
}

/// How [`Inner::call_refresher`] fails.
enum RefreshFailure {
    /// The refresh token was refused: the caller ends the session.
    Refused(RefreshError),
    Other(Failure),
}

impl RefreshFailure {
    fn transient(reason: &str) -> Self {
        RefreshFailure::Other(Failure::Transient(RefreshError::transient(reason)))
    }
}

/// A newer pair in the store than the one being refreshed: written by another process.
fn is_newer(stored: &StoredTokens, from: &Credential) -> bool {
    stored.generation >= from.store_generation && !stored.tokens.same_secrets(from.tokens())
}

/// Whether `new` expires clearly later than `old`: by a tenth of `old`'s lifetime (a second when
/// unknown), so the transit time of a cached token's recomputed `expires_in` does not count.
/// Unknown expiries count as later: there is nothing to loop on.
fn outlives(new: &TokenSet, old: &TokenSet) -> bool {
    let slack = old
        .lifetime()
        .map_or(Duration::from_secs(1), |lifetime| lifetime / 10);
    match (new.expires_at(), old.expires_at()) {
        (Some(new), Some(old)) => new > old + slack,
        _ => true,
    }
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

#[cfg(test)]
mod tests {
    use crate::store::{MemoryStore, StoredTokens, TokenStore};
    use crate::{RefreshMode, Session, TokenSet, refresh};
    use secrecy::ExposeSecret;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, SystemTime};

    /// Another holder of the store's lock saved the refreshed pair and still holds the lock
    /// (another process, slow to release it): the waiting flight adopts the pair without the
    /// lock, within its re-read interval, and never calls the refresher. Before, it waited
    /// for the lock until its refresh timeout and failed.
    #[tokio::test]
    async fn a_flight_waiting_for_the_lock_adopts_the_pair_its_holder_saved() {
        let store = Arc::new(MemoryStore::new());
        let calls = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&calls);
        let session = Session::builder()
            .mode(RefreshMode::default())
            .attach_to(["https://api.example.com"])
            .store_arc(Arc::clone(&store) as Arc<dyn TokenStore>)
            .refresh_timeout(Duration::from_secs(5))
            .refresher(refresh::from_fn(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok(TokenSet::new("refreshed-here")) }
            }))
            .build()
            .unwrap();
        sign_in_expiring(&session).await;
        let signed_in = store.load().await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(70)).await;

        let held = store.lock().await.unwrap();
        store
            .save(&StoredTokens {
                tokens: TokenSet::new("saved-by-the-holder")
                    .with_refresh_token("r2")
                    .with_expires_in(Duration::from_secs(3600)),
                generation: signed_in.generation + 1,
                login: signed_in.login,
            })
            .await
            .unwrap();
        let credential = tokio::time::timeout(Duration::from_secs(2), session.credential())
            .await
            .expect("adopted while the lock is still held")
            .unwrap();
        assert_eq!(
            credential.access_token().expose_secret(),
            "saved-by-the-holder"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(session.stats().adopted, 1);
        drop(held);
    }

    /// Signs in a pair whose access token expires in 60 ms (past it after a 70 ms sleep).
    async fn sign_in_expiring(session: &Session) {
        session
            .sign_in(
                TokenSet::new("first")
                    .with_refresh_token("r1")
                    .with_expires_in(Duration::from_millis(60)),
            )
            .await
            .unwrap();
    }

    /// A refreshed token's lifetime counts from when the refresh request left, not from when its
    /// answer was read: a slow answer (here 300 ms; on a saturated machine, anything) must not
    /// move the expiry past the server's, or requests go out with a token the server already
    /// refuses. The refresher builds its set after the delay, as a strategy parsing a late
    /// answer does.
    #[tokio::test]
    async fn a_slow_answer_does_not_extend_the_token() {
        let lifetime = Duration::from_secs(10);
        let session = Session::builder()
            .mode(RefreshMode::default())
            .attach_to(["https://api.example.com"])
            .refresher(refresh::from_fn(move |_| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(TokenSet::new("refreshed")
                    .with_refresh_token("r2")
                    .with_expires_in(lifetime))
            }))
            .build()
            .unwrap();
        sign_in_expiring(&session).await;
        tokio::time::sleep(Duration::from_millis(70)).await;
        let refreshed = session.credential().await.unwrap();
        let answered = SystemTime::now();
        assert_eq!(refreshed.generation(), 2);
        let expires_at = refreshed.tokens().expires_at().unwrap();
        // The request left at least 300 ms before the answer was read (and before `answered`).
        assert!(
            expires_at + Duration::from_millis(300) <= answered + lifetime,
            "the lifetime counts from the answer: {:?} after it",
            expires_at.duration_since(answered).ok()
        );
        assert_eq!(refreshed.tokens().lifetime(), Some(lifetime));
    }
}
