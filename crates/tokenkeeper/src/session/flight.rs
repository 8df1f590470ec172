//! The single-flight mechanism: one refresh shared by every request that needs it.
//!
//! The slot holds the flight in progress (if any) and what keeps new flights from starting: a
//! server's `Retry-After`, or a cool-down after a failure. Requests join the flight for their
//! generation or start it; the flight itself runs in a spawned task (see [`refresh`]) whose
//! outcome every waiter shares, so dropping any or all waiters never cancels it half-way.
//!
//! [`refresh`]: super::refresh

use super::{Credential, Inner, Standing, State};
use crate::error::Error;
use crate::refresh::RefreshError;
use crate::session::stats::Counters;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tokio::sync::oneshot;

/// What every waiter of a flight receives.
pub(super) type Outcome = Result<Arc<Credential>, Error>;

/// The generation a flight "from nothing" replaces: the first token of a refresher that needs
/// no login (client credentials). Real generations start at 1.
pub(super) const FROM_NOTHING: u64 = 0;

/// The flight in progress, if any, and what holds new ones back.
#[derive(Default)]
pub(super) struct FlightSlot {
    flight: Option<Flight>,
    /// Proactive refreshes wait until then after a failure.
    cooldown_until: Option<Instant>,
    /// No refresh request at all until then (a `Retry-After`, or an answer that was not a
    /// verdict on the refresh token): requests that need one fail at once.
    blocked: Option<Blocked>,
}

struct Blocked {
    until: Instant,
    error: Arc<RefreshError>,
}

impl FlightSlot {
    /// Forgets the flight in progress: a sign-in or sign-out superseded it. It runs to its end
    /// but will not install its result.
    pub(super) fn abandon_all(&mut self) {
        self.flight = None;
        self.cooldown_until = None;
        self.blocked = None;
    }

    pub(super) fn finished(&mut self, from: u64) {
        if self.flight.as_ref().is_some_and(|f| f.from == from) {
            self.flight = None;
        }
    }

    /// Whether a flight is in progress.
    pub(super) fn is_flying(&self) -> bool {
        self.flight.is_some()
    }

    /// Proactive refreshes wait until `until`.
    pub(super) fn cool_down(&mut self, until: Instant) {
        self.cooldown_until = Some(until);
    }

    /// No refresh request until `until`; requests needing one get `error`.
    pub(super) fn block(&mut self, until: Instant, error: Arc<RefreshError>) {
        self.cooldown_until = Some(self.cooldown_until.map_or(until, |c| c.max(until)));
        self.blocked = Some(Blocked { until, error });
    }

    fn blocked_now(&self) -> Option<&Arc<RefreshError>> {
        let blocked = self.blocked.as_ref()?;
        (Instant::now() < blocked.until).then_some(&blocked.error)
    }
}

struct Flight {
    /// The generation this flight replaces ([`FROM_NOTHING`] for a first token).
    from: u64,
    outcome: Shared<BoxFuture<'static, Outcome>>,
}

enum Joined {
    Ready(Outcome),
    /// Wait for a flight; `joined` says it was another request's (counted outside the lock).
    Wait {
        outcome: Shared<BoxFuture<'static, Outcome>>,
        joined: bool,
    },
}

impl Inner {
    /// Waits for the refresh that replaces `from`, starting it if nobody has. Released at once
    /// if `from`'s login ends meanwhile (a sign-out does not wait for the refresh).
    pub(super) async fn refresh_from(self: &Arc<Self>, from: &Credential) -> Outcome {
        let joined = {
            let mut slot = self.slot();
            self.join_or_start(&mut slot, Some(from), false)
        };
        match joined {
            Joined::Ready(outcome) => outcome,
            Joined::Wait { outcome, joined } => {
                if joined {
                    self.meter.waiter_joined();
                }
                tokio::select! {
                    biased;
                    outcome = outcome => outcome,
                    () = self.login_over(from.login()) => match self.standing(from) {
                        Standing::Ended(reason) => Err(Error::SessionExpired(reason)),
                        Standing::Stale(current) => Ok(current),
                        Standing::Current | Standing::OtherLogin => match self.current() {
                            Some(current) => Ok(current),
                            None => Err(Error::LoginRequired),
                        },
                    },
                }
            }
        }
    }

    /// Obtains the first token for a refresher that needs no login (client credentials): a
    /// flight "from nothing", shared like any other.
    pub(super) async fn obtain_first(self: &Arc<Self>) -> Outcome {
        let joined = {
            let mut slot = self.slot();
            self.join_or_start(&mut slot, None, false)
        };
        match joined {
            Joined::Ready(outcome) => outcome,
            Joined::Wait { outcome, joined } => {
                if joined {
                    self.meter.waiter_joined();
                }
                outcome.await
            }
        }
    }

    /// Starts a refresh of `from` without waiting for it (proactive refresh).
    pub(super) fn refresh_in_background(self: &Arc<Self>, from: &Credential) {
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
        drop(self.join_or_start(&mut slot, Some(from), true));
    }

    fn join_or_start(
        self: &Arc<Self>,
        slot: &mut FlightSlot,
        from: Option<&Credential>,
        proactive: bool,
    ) -> Joined {
        match (&**self.state.load(), from) {
            (State::SignedOut { .. }, Some(_)) => return Joined::Ready(Err(Error::LoginRequired)),
            (State::Active(current), None) => return Joined::Ready(Ok(Arc::clone(current))),
            (State::Active(current), Some(from)) if current.generation() != from.generation() => {
                return Joined::Ready(Ok(Arc::clone(current)));
            }
            _ => {}
        }
        let from_generation = from.map_or(FROM_NOTHING, Credential::generation);
        if let Some(flight) = slot.flight.as_ref().filter(|f| f.from == from_generation) {
            if !proactive {
                Counters::bump(&self.counters.waiters_joined);
            }
            return Joined::Wait {
                outcome: flight.outcome.clone(),
                joined: !proactive,
            };
        }
        if let Some(error) = slot.blocked_now() {
            // A `Retry-After` (or an answer that was no verdict) holds every refresh back.
            Counters::bump(&self.counters.held_back);
            return Joined::Ready(Err(Error::RefreshUnavailable(Arc::clone(error))));
        }
        Counters::bump(&self.counters.flights);
        if proactive {
            Counters::bump(&self.counters.proactive_refreshes);
        }
        let (done, outcome) = oneshot::channel();
        let ticket = self.landing.take_off();
        let flight = Arc::clone(self).fly(from.map(|c| Arc::new(c.clone())), done);
        tokio::spawn(async move {
            flight.await;
            drop(ticket);
        });
        let outcome = async move { outcome.await.unwrap_or(Err(Error::RefreshCancelled)) }
            .boxed()
            .shared();
        slot.flight = Some(Flight {
            from: from_generation,
            outcome: outcome.clone(),
        });
        Joined::Wait {
            outcome,
            joined: false,
        }
    }
}
