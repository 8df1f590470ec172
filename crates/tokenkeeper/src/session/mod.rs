//! [`Session`]: the one place that decides when to refresh.
//!
//! The session holds the current [`Credential`] behind an atomic pointer (reading it takes no
//! lock) and runs every refresh as a *flight*: a spawned task whose outcome all waiting requests
//! share. The flight belongs to nobody's future, so dropping any or all waiters never cancels a
//! refresh half-way and never loses a rotated refresh token. See [`flight`] for the refresh
//! itself.

mod adapter;
mod builder;
mod credential;
mod flight;
mod schedule;
pub(crate) mod stats;

#[cfg_attr(
    not(any(feature = "reqwest", feature = "tower")),
    allow(unused_imports)
)]
pub(crate) use adapter::AfterResponse;
pub use builder::SessionBuilder;
pub use credential::Credential;
pub use schedule::{Proactive, RefreshMode};
pub use stats::SessionStats;

use crate::TokenSet;
use crate::classify::Classifier;
use crate::error::{Error, LogoutReason};
use crate::event::Event;
use crate::origin::{Decision, OriginPolicy};
use crate::refresh::Refresher;
use crate::store::{StoredTokens, TokenStore};
use arc_swap::ArcSwap;
use flight::FlightSlot;
use schedule::Schedule;
use stats::Counters;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Keeps a client authenticated: hands out the current token, refreshes it once for everyone
/// who needs it, and ends the session cleanly when the refresh token is dead.
///
/// Cheap to clone; clones share one state.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use tokenkeeper::{refresh, Session, TokenSet};
///
/// let session = Session::builder()
///     .refresher(refresh::OAuth2::new("https://auth.example.com/oauth2/token")?.client_id("app"))
///     .attach_to(["https://api.example.com"])
///     .build()?;
/// session.sign_in(TokenSet::from_response(br#"{"access_token":"a","refresh_token":"r"}"#)?).await?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(session.middleware())
///     .build();
/// let items = client.get("https://api.example.com/items/1").send().await?;
/// # let _ = items; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            // Not `snapshot()`: formatting must never start a refresh.
            .field("generation", &self.inner.current().map(|c| c.generation()))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Limits on refreshing, set through the builder.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) refresh_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_unauthorized_after_refresh: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            refresh_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            max_unauthorized_after_refresh: 3,
        }
    }
}

/// Signed in or not.
enum State {
    /// `ended` remembers which generation ended and why, so requests that carried it and come
    /// back refused after the end learn the reason, not just "login required".
    SignedOut {
        ended: Option<(u64, LogoutReason)>,
    },
    Active(Arc<Credential>),
}

pub(crate) struct Inner {
    state: ArcSwap<State>,
    /// Guards starting and finishing flights; never held across an await.
    flight: Mutex<FlightSlot>,
    /// The generation a proactive refresh was last started for, so only the first request past
    /// the soft deadline touches the flight lock.
    proactive_for: AtomicU64,
    unauthorized_streak: AtomicU32,
    /// The generation whose refused retry was last counted in `unauthorized_streak`: concurrent
    /// retries carrying one fresh token are one observation ("this refresh did not help"), not
    /// one per request. Without this, a stall longer than the token's lifetime (a saturated
    /// machine, a slow disk) made the burst of requests waiting for that refresh count ten
    /// refusals at once and end the session, clearing a shared store for every process.
    refused_generation: AtomicU64,
    /// Whether the store holds what this session last installed. When a save failed, an empty
    /// store means "could not write", not "signed out elsewhere".
    store_in_sync: AtomicBool,
    refresher: Arc<dyn Refresher>,
    store: Arc<dyn TokenStore>,
    origins: OriginPolicy,
    classifier: Classifier,
    mode: RefreshMode,
    limits: Limits,
    events: broadcast::Sender<Event>,
    counters: Counters,
}

impl Inner {
    fn new(
        refresher: Arc<dyn Refresher>,
        store: Arc<dyn TokenStore>,
        origins: OriginPolicy,
        classifier: Classifier,
        mode: RefreshMode,
        limits: Limits,
    ) -> Self {
        Self {
            state: ArcSwap::from_pointee(State::SignedOut { ended: None }),
            flight: Mutex::new(FlightSlot::default()),
            proactive_for: AtomicU64::new(u64::MAX),
            unauthorized_streak: AtomicU32::new(0),
            refused_generation: AtomicU64::new(0),
            store_in_sync: AtomicBool::new(false),
            refresher,
            store,
            origins,
            classifier,
            mode,
            limits,
            events: broadcast::channel(64).0,
            counters: Counters::default(),
        }
    }

    fn slot(&self) -> MutexGuard<'_, FlightSlot> {
        // The slot's invariants hold between statements; a panic elsewhere cannot break them.
        self.flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<Credential>> {
        match &**self.state.load() {
            State::Active(credential) => Some(Arc::clone(credential)),
            State::SignedOut { .. } => None,
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.current().is_some_and(|c| c.generation() == generation)
    }

    fn emit(&self, event: Event) {
        tracing::debug!(?event, "session event");
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    fn schedule(&self, tokens: &TokenSet) -> Schedule {
        Schedule::for_tokens(&self.mode, tokens)
    }

    /// Installs `credential` and emits `event`, under the flight lock so flights see it atomically.
    fn publish(&self, credential: Arc<Credential>, event: Event) {
        let mut slot = self.slot();
        slot.abandon_all();
        self.state.store(Arc::new(State::Active(credential)));
        self.unauthorized_streak.store(0, Relaxed);
        self.refused_generation.store(0, Relaxed);
        drop(slot);
        self.emit(event);
    }

    /// Ends the session if `generation` is still current (or always, for `None`).
    /// Returns whether this call made the transition, so `LoggedOut` is emitted once.
    fn end(&self, generation: Option<u64>, reason: LogoutReason) -> bool {
        let slot = self.slot();
        let ended = match (&**self.state.load(), generation) {
            (State::SignedOut { .. }, _) => None,
            (State::Active(c), None) => Some(c.generation()),
            (State::Active(c), Some(g)) => (c.generation() == g).then_some(g),
        };
        if let Some(generation) = ended {
            self.state.store(Arc::new(State::SignedOut {
                ended: Some((generation, reason.clone())),
            }));
        }
        let ends = ended.is_some();
        drop(slot);
        if ends {
            if reason != LogoutReason::SignedOut {
                Counters::bump(&self.counters.logouts);
            }
            tracing::info!(%reason, "session ended");
            self.emit(Event::LoggedOut { reason });
        }
        ends
    }

    async fn clear_store(&self) {
        if let Err(error) = self.store.clear().await {
            tracing::error!(%error, "could not clear the token store");
            self.emit(Event::StoreFailed {
                reason: format!("clear: {error}"),
            });
        }
    }
}

impl Session {
    /// Starts configuring a session.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::new()
    }

    /// Installs freshly obtained tokens (after a login). They are saved to the store first; if
    /// that fails the tokens are used anyway and `Err(Error::Store)` reports the failure.
    pub async fn sign_in(&self, tokens: TokenSet) -> Result<Arc<Credential>, Error> {
        let inner = &self.inner;
        let _lock = inner.store.lock().await?;
        // Generations only grow, across processes too: continue after whatever is stored.
        let stored = match inner.store.load().await {
            Ok(stored) => stored.map_or(0, |s| s.generation),
            Err(error) => {
                tracing::warn!(%error, "replacing unreadable stored tokens at sign-in");
                0
            }
        };
        let generation = stored.max(inner.current().map_or(0, |c| c.generation())) + 1;
        let credential = Credential::new(tokens.clone(), generation, inner.schedule(&tokens))
            .ok_or_else(|| Error::Config("the access token is not a valid header value".into()))?;
        let credential = Arc::new(credential);
        let saved = inner.store.save(&StoredTokens { tokens, generation }).await;
        inner.store_in_sync.store(saved.is_ok(), Relaxed);
        inner.publish(Arc::clone(&credential), Event::SignedIn { generation });
        if let Err(error) = saved {
            inner.emit(Event::StoreFailed {
                reason: format!("save: {error}"),
            });
            return Err(error.into());
        }
        Ok(credential)
    }

    /// Loads tokens from the store (e.g. at start-up, or in a second process sharing a file).
    /// Returns `false` when the store holds none.
    pub async fn restore(&self) -> Result<bool, Error> {
        let inner = &self.inner;
        let Some(stored) = inner.store.load().await? else {
            return Ok(false);
        };
        let generation = stored.generation;
        let schedule = inner.schedule(&stored.tokens);
        let credential = Credential::new(stored.tokens, generation, schedule).ok_or_else(|| {
            Error::Config("the stored access token is not a valid header value".into())
        })?;
        inner.store_in_sync.store(true, Relaxed);
        inner.publish(Arc::new(credential), Event::SignedIn { generation });
        Ok(true)
    }

    /// Ends the session: clears the store, emits [`Event::LoggedOut`] with
    /// [`LogoutReason::SignedOut`]. Refreshes in flight no longer install their result.
    pub async fn sign_out(&self) -> Result<(), Error> {
        let _lock = self.inner.store.lock().await?;
        self.inner.end(None, LogoutReason::SignedOut);
        self.inner.store.clear().await?;
        Ok(())
    }

    /// The credential to attach to a request now.
    ///
    /// The fast path (token valid) reads an atomic pointer and takes no lock. Past the soft
    /// deadline it also starts a background refresh; past the hard deadline it waits for one.
    pub async fn credential(&self) -> Result<Arc<Credential>, Error> {
        let current = self.inner.current().ok_or(Error::LoginRequired)?;
        let now = Instant::now();
        if current.schedule.is_past_hard(now) {
            return self.inner.refresh_from(&current).await;
        }
        if current.schedule.is_past_soft(now) {
            self.inner.refresh_in_background(&current);
        }
        Ok(current)
    }

    /// The current credential without waiting, for synchronous code such as tonic interceptors.
    /// Starts a background refresh when one is due; never blocks. The credential may be past its
    /// expiry if a refresh is still running.
    pub fn snapshot(&self) -> Result<Arc<Credential>, Error> {
        let current = self.inner.current().ok_or(Error::LoginRequired)?;
        if current.schedule.is_past_soft(Instant::now())
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.inner.refresh_in_background(&current);
        }
        Ok(current)
    }

    /// The access token to use now (see [`credential`](Self::credential)), for code that sends
    /// requests without the middleware.
    pub async fn access_token(&self) -> Result<secrecy::SecretString, Error> {
        Ok(self.credential().await?.access_token().clone())
    }

    /// A request carrying `generation` was refused as expired: returns the credential to retry
    /// with. Refreshes only if `generation` is still current; if a newer one exists (the refusal
    /// arrived late) it is returned at once, unless it is itself past its deadline (then it is
    /// refreshed first).
    pub async fn token_rejected(&self, generation: u64) -> Result<Arc<Credential>, Error> {
        let current = match &**self.inner.state.load() {
            State::Active(current) => Arc::clone(current),
            State::SignedOut {
                ended: Some((ended, reason)),
            } if *ended == generation => return Err(Error::SessionExpired(reason.clone())),
            State::SignedOut { .. } => return Err(Error::LoginRequired),
        };
        if current.generation() != generation && !current.is_expired() {
            Counters::bump(&self.inner.counters.stale_retries);
            return Ok(current);
        }
        // Ours, or a newer one already past its hard deadline (nobody refreshed it while this
        // request was out): a retry with it would only be refused again.
        self.inner.refresh_from(&current).await
    }

    /// The API said the token of `generation` is invalid (not merely expired): end the session
    /// without refreshing, if that generation is still current. Returns whether it ended.
    pub async fn invalidate(&self, generation: u64) -> bool {
        self.inner
            .invalidate(generation, LogoutReason::TokenInvalid)
            .await
    }

    /// Subscribes to state transitions.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The session's counters.
    pub fn stats(&self) -> SessionStats {
        self.inner.counters.snapshot()
    }

    /// Whether a request to `url` gets the token.
    pub fn attaches_to(&self, url: &url::Url) -> bool {
        self.inner.origins.decide(url) == Decision::Attach
    }

    pub(crate) fn decide(&self, url: &url::Url) -> Decision {
        self.inner.origins.decide(url)
    }

    pub(crate) fn classifier(&self) -> &Classifier {
        &self.inner.classifier
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// A response was accepted: the post-refresh refusal streak is over.
    pub(crate) fn note_accepted(&self) {
        let streak = &self.inner.unauthorized_streak;
        if streak.load(Relaxed) != 0 {
            streak.store(0, Relaxed);
        }
    }

    /// A retried request was refused again. After too many in a row the session ends. Each
    /// generation counts once, however many requests carried it.
    pub(crate) async fn note_refused_after_refresh(&self, generation: u64) {
        if self.inner.refused_generation.swap(generation, Relaxed) == generation {
            return;
        }
        let count = self.inner.unauthorized_streak.fetch_add(1, Relaxed) + 1;
        if count >= self.inner.limits.max_unauthorized_after_refresh {
            let reason = LogoutReason::RepeatedUnauthorized(count);
            self.inner.invalidate(generation, reason).await;
        }
    }
}

impl Inner {
    async fn invalidate(&self, generation: u64, reason: LogoutReason) -> bool {
        let _lock = match self.store.lock().await {
            Ok(lock) => lock,
            Err(error) => {
                tracing::error!(%error, "could not lock the token store to end the session");
                return self.end(Some(generation), reason);
            }
        };
        let ended = self.end(Some(generation), reason);
        if ended {
            self.clear_store().await;
        }
        ended
    }
}
