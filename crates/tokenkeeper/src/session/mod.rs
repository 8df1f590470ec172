//! [`Session`]: the one place that decides when to refresh.
//!
//! The session holds the current [`Credential`] behind an atomic pointer (reading it takes no
//! lock) and runs every refresh as a *flight*: a spawned task whose outcome all waiting requests
//! share. The flight belongs to nobody's future, so dropping any or all waiters never cancels a
//! refresh half-way and never loses a rotated refresh token. See [`flight`] for the refresh
//! itself.

mod builder;
mod credential;
mod flight;
mod landing;
mod meter;
mod refresh;
mod response_policy;
mod routes;
mod schedule;
pub(crate) mod stats;
mod status;

pub(crate) use builder::Template;
pub use builder::{InvalidTokenPolicy, SessionBuilder};
pub use credential::Credential;
use credential::Judged;
pub(crate) use credential::Unusable;
#[cfg_attr(
    not(any(feature = "reqwest", feature = "tower")),
    allow(unused_imports)
)]
pub(crate) use response_policy::AfterResponse;
#[cfg_attr(
    not(any(feature = "reqwest", feature = "tower")),
    allow(unused_imports)
)]
pub(crate) use routes::RouteKey;
pub use schedule::{Proactive, RefreshMode};
pub use stats::SessionStats;
pub use status::Status;

use crate::classify::Classifier;
use crate::config_error::ConfigError;
use crate::error::{Error, LogoutReason};
use crate::event::Event;
use crate::origin::OriginPolicy;
use crate::refresh::Refresher;
use crate::store::{StoreError, StoredTokens, TokenStore};
use crate::token::TokenSet;
use arc_swap::ArcSwap;
use flight::FlightSlot;
use landing::Landing;
use meter::Meter;
use routes::Routes;
use schedule::Schedule;
use stats::Counters;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

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

/// Limits on refreshing and on the store, set through the builder.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) refresh_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_unauthorized_after_refresh: u32,
    pub(crate) invalid_token: InvalidTokenPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            refresh_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            store_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            max_unauthorized_after_refresh: 3,
            invalid_token: InvalidTokenPolicy::default(),
        }
    }
}

/// Why a login ended, kept so that requests which carried it and come back refused after the
/// end learn the reason, not just "login required".
#[derive(Debug, Clone)]
struct Ended {
    login: u64,
    reason: LogoutReason,
}

/// Signed in or not.
enum State {
    SignedOut { ended: Option<Ended> },
    Active(Arc<Credential>),
}

/// What watchers of [`Session::status`] see for `state`.
fn status_of(state: &State) -> Status {
    match state {
        State::Active(c) => Status::SignedIn {
            login: c.login(),
            generation: c.generation(),
        },
        State::SignedOut { ended } => Status::SignedOut {
            reason: ended.as_ref().map(|e| e.reason.clone()),
        },
    }
}

/// How a refused credential relates to the session's current state.
pub(crate) enum Standing {
    /// It is the current credential.
    Current,
    /// Same login, but a newer generation is current: retry with it, no refresh.
    Stale(Arc<Credential>),
    /// Its login ended for this reason.
    Ended(LogoutReason),
    /// It belongs to another login (or none is active): its refusal is its caller's business.
    OtherLogin,
}

pub(crate) struct Inner {
    state: ArcSwap<State>,
    /// Guards starting and finishing flights; never held across an await.
    flight: Mutex<FlightSlot>,
    /// The generation a proactive refresh was last started for, so only the first request past
    /// the soft deadline touches the flight lock.
    proactive_for: AtomicU64,
    /// The highest generation this session ever issued or adopted: generations never repeat,
    /// also across sign-out and sign-in.
    high_water: AtomicU64,
    /// Per-route accounting of refusals (DESIGN.md §3.8).
    routes: Routes,
    /// Set by a sign-out during a flight: the flight clears the store under the lock it holds
    /// when it is done, so the sign-out need not wait for it.
    clear_after_flight: AtomicBool,
    /// Whether the store holds what this session last installed. When a save failed, an empty
    /// store means "could not write", not "signed out elsewhere".
    store_in_sync: AtomicBool,
    refresher: Arc<dyn Refresher>,
    store: Arc<dyn TokenStore>,
    /// Shared by every session of a [`Sessions`](crate::Sessions) collection (one copy, not one
    /// per key).
    origins: Arc<OriginPolicy>,
    classifier: Arc<Classifier>,
    /// Shared like the origins: one copy per configuration.
    mode: Arc<RefreshMode>,
    limits: Arc<Limits>,
    /// Made on the first [`Session::events`] call: events sent before anyone subscribed are
    /// lost either way, and an idle session of a large [`Sessions`](crate::Sessions) collection
    /// should not carry a 64-slot ring nobody reads.
    events: OnceLock<broadcast::Sender<Event>>,
    /// Where a keyed collection hears this session's events (with its key).
    forward: Option<EventSink>,
    /// Made on the first subscription ([`Inner::status_sender`]), like `events`: a watch
    /// channel costs a few hundred bytes, which an idle session of a large collection should
    /// not carry for nobody.
    status: OnceLock<watch::Sender<Status>>,
    /// The refresh tasks still running, shared by every session of one configuration.
    landing: Arc<Landing>,
    counters: Counters,
    /// Metrics (feature `metrics`); zero-sized and inert without it.
    meter: Meter,
}

/// A keyed collection's hook for one session's events.
pub(crate) type EventSink = Box<dyn Fn(&Event) + Send + Sync>;

impl Inner {
    /// A signed-out session over `store` with `refresher`, sharing `template`'s settings.
    fn new(
        refresher: Arc<dyn Refresher>,
        store: Arc<dyn TokenStore>,
        template: &Template,
        forward: Option<EventSink>,
    ) -> Self {
        Self {
            state: ArcSwap::from_pointee(State::SignedOut { ended: None }),
            flight: Mutex::new(FlightSlot::default()),
            proactive_for: AtomicU64::new(u64::MAX),
            high_water: AtomicU64::new(0),
            routes: Routes::default(),
            clear_after_flight: AtomicBool::new(false),
            store_in_sync: AtomicBool::new(false),
            refresher,
            store,
            origins: Arc::clone(&template.origins),
            classifier: Arc::clone(&template.classifier),
            mode: Arc::clone(&template.mode),
            limits: Arc::clone(&template.limits),
            events: OnceLock::new(),
            forward,
            status: OnceLock::new(),
            landing: Arc::clone(&template.landing),
            counters: Counters::default(),
            meter: Meter::new(template.meter.clone()),
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

    /// Whether `login` is the active login.
    fn is_active_login(&self, login: u64) -> bool {
        self.current().is_some_and(|c| c.login() == login)
    }

    pub(crate) fn standing(&self, of: &Credential) -> Standing {
        match &**self.state.load() {
            State::Active(current) if current.generation() == of.generation() => Standing::Current,
            State::Active(current) if current.login() == of.login() => {
                Standing::Stale(Arc::clone(current))
            }
            State::SignedOut { ended: Some(ended) } if ended.login == of.login() => {
                Standing::Ended(ended.reason.clone())
            }
            _ => Standing::OtherLogin,
        }
    }

    /// Claims a generation of at least `at_least` that this session never used. Fails only when
    /// the generations would overflow, which only a corrupt store can cause.
    fn claim_generation(&self, at_least: u64) -> Result<u64, StoreError> {
        let mut seen = self.high_water.load(SeqCst);
        loop {
            let next = seen
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt("the token generation would overflow".into()))?
                .max(at_least);
            match self.high_water.compare_exchange(seen, next, SeqCst, SeqCst) {
                Ok(_) => return Ok(next),
                Err(actual) => seen = actual,
            }
        }
    }

    fn emit(&self, event: Event) {
        tracing::debug!(?event, "session event");
        if let Some(forward) = &self.forward {
            forward(&event);
        }
        if let Some(events) = self.events.get() {
            // No subscriber is not an error.
            let _ = events.send(event);
        }
    }

    fn schedule(&self, tokens: &TokenSet) -> Schedule {
        Schedule::for_tokens(&self.mode, tokens)
    }

    /// Replaces the state and tells `status` watchers. Called with the flight lock held.
    fn install(&self, state: State) {
        self.install_quietly(state);
        self.send_status();
    }

    /// Tells `status` watchers, if anyone ever subscribed, where the session stands now.
    ///
    /// The state is read under the channel's own lock, not taken from the caller: a sign-out
    /// sends after releasing the flight lock, and a sign-in right after it may send first.
    /// Whichever send runs last reads the state last installed, so the channel never ends up
    /// behind the state.
    fn send_status(&self) {
        if let Some(sender) = self.status.get() {
            sender.send_if_modified(|status| {
                let now = status_of(&self.state.load());
                let changed = *status != now;
                *status = now;
                changed
            });
        }
    }

    /// The status channel, made on first use with the state as it is then.
    fn status_sender(&self) -> &watch::Sender<Status> {
        if let Some(sender) = self.status.get() {
            return sender;
        }
        // Made under the flight lock, where states are installed, and with the state as its
        // first value: no other caller can find the channel before it holds the state (made
        // with a placeholder and corrected afterwards, a burst of first subscribers could see
        // "signed out" and release every waiter of a refresh), and an install after this finds
        // the channel and sends itself.
        let _slot = self.slot();
        self.status
            .get_or_init(|| watch::Sender::new(status_of(&self.state.load())))
    }

    /// Replaces the state without telling `status` watchers: the caller sends the status
    /// ([`send_status`](Self::send_status)) once its event is out, so that whoever wakes up on
    /// the status finds the event already sent.
    fn install_quietly(&self, state: State) {
        self.meter.installed(match &state {
            State::Active(c) => Some(c),
            State::SignedOut { .. } => None,
        });
        self.state.store(Arc::new(state));
    }

    /// Installs `credential` and emits `event`, under the flight lock so flights see it atomically.
    fn publish(&self, credential: Arc<Credential>, event: Event) {
        let mut slot = self.slot();
        slot.abandon_all();
        let new_login = !self.is_active_login(credential.login());
        self.install(State::Active(credential));
        drop(slot);
        if new_login {
            // Nothing learnt about another login's routes applies to this one.
            self.routes.forget();
        }
        self.emit(event);
    }

    /// Ends the session if `generation` is still current (or always, for `None`).
    /// Returns whether this call made the transition, so `LoggedOut` is emitted once.
    fn end(&self, generation: Option<u64>, reason: LogoutReason) -> bool {
        self.end_and_hand_over(generation, reason, false).0
    }

    /// [`end`](Self::end); with `hand_over`, a flight in progress is told to clear the store
    /// under the lock it holds when it is done, and the second value says whether one was.
    fn end_and_hand_over(
        &self,
        generation: Option<u64>,
        reason: LogoutReason,
        hand_over: bool,
    ) -> (bool, bool) {
        let mut slot = self.slot();
        let ended = match (&**self.state.load(), generation) {
            (State::SignedOut { .. }, _) => None,
            (State::Active(c), None) => Some(c.login()),
            (State::Active(c), Some(g)) => (c.generation() == g).then_some(c.login()),
        };
        let handed_over = hand_over && slot.is_flying();
        if handed_over {
            self.clear_after_flight.store(true, SeqCst);
        }
        if let Some(login) = ended {
            // Flights in progress run to their end but no longer install their result.
            slot.abandon_all();
            self.install_quietly(State::SignedOut {
                ended: Some(Ended {
                    login,
                    reason: reason.clone(),
                }),
            });
        }
        drop(slot);
        let ends = ended.is_some();
        if ends {
            if reason != LogoutReason::SignedOut {
                Counters::bump(&self.counters.logouts);
            }
            self.meter.logout(&reason);
            tracing::info!(%reason, "session ended");
            self.emit(Event::LoggedOut { reason });
            // Requests waiting on this login wake up now, with the event already sent.
            self.send_status();
        }
        (ends, handed_over)
    }

    /// Runs a store operation under the store timeout: a hung disk, FIFO or Redis gives a typed
    /// error in bounded time, never a hang.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let after = self.limits.store_timeout;
        let result = tokio::time::timeout(after, call)
            .await
            .unwrap_or(Err(StoreError::Timeout { operation, after }));
        if result.is_err() {
            self.meter.store_failure(operation);
        }
        result
    }

    async fn clear_store(&self) {
        if let Err(error) = self.bounded("clear", self.store.clear()).await {
            tracing::error!(%error, "could not clear the token store");
            self.emit(Event::StoreFailed {
                reason: format!("clear: {error}"),
            });
        }
    }

    /// Waits until `login` is no longer the active login (signed out, or replaced).
    async fn login_over(&self, login: u64) {
        let mut status = self.status_sender().subscribe();
        // `Err` means the sender is gone, which cannot happen while `self` lives.
        let _ = status
            .wait_for(|s| !matches!(s, Status::SignedIn { login: l, .. } if *l == login))
            .await;
    }
}

impl Session {
    /// Starts configuring a session.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::new()
    }

    /// Installs freshly obtained tokens (after a login) as a new login. They are saved to the
    /// store first; if that fails the tokens are used anyway and `Err(Error::Store)` reports the
    /// failure.
    ///
    /// The new login's generation is above every generation this session or its store has
    /// seen, so a late refusal of the previous login's token can never be mistaken for one of
    /// this login's.
    pub async fn sign_in(&self, tokens: TokenSet) -> Result<Arc<Credential>, Error> {
        let inner = &self.inner;
        let _lock = inner.bounded("lock", inner.store.lock()).await?;
        // Generations only grow, across processes too: continue after whatever is stored.
        let stored = match inner.bounded("load", inner.store.load()).await {
            Ok(stored) => stored.map_or(0, |s| s.generation),
            Err(error) => {
                tracing::warn!(%error, "replacing unreadable stored tokens at sign-in");
                0
            }
        };
        let after_stored = stored
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("the stored generation would overflow".into()))?;
        let generation = inner.claim_generation(after_stored)?;
        // A new tag per sign-in: other processes sharing the store see a new login, not a
        // refresh of the one they hold.
        let store_login = Some(rand::random::<u64>());
        let schedule = inner.schedule(&tokens);
        let credential = Credential::new(
            tokens.clone(),
            generation,
            after_stored,
            generation,
            store_login,
            schedule,
        )
        .map_err(|why| ConfigError::new(why.describe()))?;
        let credential = Arc::new(credential);
        let saved = inner
            .bounded(
                "save",
                inner.store.save(&StoredTokens {
                    tokens,
                    generation: after_stored,
                    login: store_login,
                }),
            )
            .await;
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
    /// Returns `false` when the store holds none. The restored tokens are a new login for this
    /// session.
    pub async fn restore(&self) -> Result<bool, Error> {
        let inner = &self.inner;
        let Some(stored) = inner.bounded("load", inner.store.load()).await? else {
            return Ok(false);
        };
        let generation = inner.claim_generation(stored.generation)?;
        let schedule = inner.schedule(&stored.tokens);
        let credential = Credential::new(
            stored.tokens,
            generation,
            stored.generation,
            generation,
            stored.login,
            schedule,
        )
        .map_err(|why| match why {
            Unusable::DpopWithoutKey => Error::from(StoreError::Corrupt(why.describe().into())),
            Unusable::NotAHeaderValue => Error::from(ConfigError::new(
                "the stored access token is not a valid header value",
            )),
        })?;
        inner.store_in_sync.store(true, Relaxed);
        inner.publish(Arc::new(credential), Event::SignedIn { generation });
        Ok(true)
    }

    /// Ends the session: at once locally (requests get [`Error::LoginRequired`], requests
    /// waiting for a refresh are released, a refresh in flight no longer installs its result),
    /// then clears the store under its lock and emits [`Event::LoggedOut`] with
    /// [`LogoutReason::SignedOut`].
    ///
    /// It does not wait for a refresh in progress: that refresh's result is discarded, and it
    /// clears the store under the lock it holds when it is done. Otherwise the store is cleared
    /// here, under its lock (waiting at most the store timeout for it).
    pub async fn sign_out(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let (_, flight_clears) = inner.end_and_hand_over(None, LogoutReason::SignedOut, true);
        if flight_clears {
            return Ok(());
        }
        let _lock = inner.bounded("lock", inner.store.lock()).await?;
        inner.bounded("clear", inner.store.clear()).await?;
        inner.store_in_sync.store(false, Relaxed);
        Ok(())
    }

    /// The credential to attach to a request now.
    ///
    /// The fast path (token valid) reads an atomic pointer and takes no lock. Past the soft
    /// deadline it also starts a background refresh; past the hard deadline it waits for one.
    /// With a refresher that needs no login ([`refresh::Refresher::obtains_without_login`],
    /// e.g. client credentials) the first call obtains the first token.
    ///
    /// [`refresh::Refresher::obtains_without_login`]: crate::refresh::Refresher::obtains_without_login
    pub async fn credential(&self) -> Result<Arc<Credential>, Error> {
        match self.judge()? {
            Judged::Ready(current) => Ok(current),
            Judged::Refresh(expired) => self.inner.refresh_from(&expired).await,
            Judged::ObtainFirst => self.inner.obtain_first().await,
        }
    }

    /// The current credential without waiting, for synchronous code such as tonic interceptors.
    /// Starts a background refresh when one is due; never blocks. The credential may be past its
    /// expiry if a refresh is still running.
    pub fn snapshot(&self) -> Result<Arc<Credential>, Error> {
        let current = self.inner.current().ok_or(Error::LoginRequired)?;
        let (past_soft, _) = current.schedule.deadlines_passed();
        if past_soft && tokio::runtime::Handle::try_current().is_ok() {
            self.inner.refresh_in_background(&current);
        }
        Ok(current)
    }

    /// The access token to use now (see [`credential`](Self::credential)), for code that sends
    /// requests without the middleware.
    pub async fn access_token(&self) -> Result<secrecy::SecretString, Error> {
        Ok(self.credential().await?.access_token().clone())
    }

    /// A request carrying `credential` was refused as expired: returns the credential to retry
    /// with. Refreshes only if `credential` is still current; if a newer one of the same login
    /// exists (the refusal arrived late) it is returned at once.
    ///
    /// A newer credential that is itself past its deadline (nobody refreshed it while the
    /// request was out) is refreshed first. A credential of another login gets
    /// [`Error::LoginChanged`]: do not retry, hand the refusal to its caller. One whose login
    /// ended gets [`Error::SessionExpired`].
    pub async fn token_rejected(&self, credential: &Credential) -> Result<Arc<Credential>, Error> {
        let fresh = match self.inner.standing(credential) {
            Standing::Current => self.inner.refresh_from(credential).await,
            Standing::Stale(current) if current.is_expired() => {
                self.inner.refresh_from(&current).await
            }
            Standing::Stale(current) => {
                Counters::bump(&self.inner.counters.stale_retries);
                self.inner.meter.stale_retry();
                Ok(current)
            }
            Standing::Ended(reason) => Err(Error::SessionExpired(reason)),
            Standing::OtherLogin => Err(Error::LoginChanged),
        };
        match fresh {
            // A sign-in (here, or another process's, adopted from the store) overtook the
            // refresh: the new login must not send this request.
            Ok(fresh) if fresh.login() == credential.login() => Ok(fresh),
            Ok(_) | Err(Error::LoginChanged) => {
                Counters::bump(&self.inner.counters.other_login_refusals);
                Err(Error::LoginChanged)
            }
            Err(error) => Err(error),
        }
    }

    /// The API said the token of `generation` is invalid (not merely expired): end the session
    /// without refreshing, if that generation is still current. Returns whether it ended.
    pub async fn invalidate(&self, generation: u64) -> bool {
        self.inner
            .invalidate(generation, LogoutReason::TokenInvalid)
            .await
    }

    /// Subscribes to state transitions. A subscriber that falls behind by more than 64 events
    /// loses the oldest; [`status`](Self::status) cannot be missed.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner
            .events
            .get_or_init(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Where the session stands, as a `watch` value: always the latest state, never lost.
    ///
    /// ```no_run
    /// # async fn example(session: tokenkeeper::Session) {
    /// let mut status = session.status();
    /// while status.changed().await.is_ok() {
    ///     println!("now {:?}", *status.borrow());
    /// }
    /// # }
    /// ```
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status_sender().subscribe()
    }

    /// Waits until nobody is signed in, and returns why the last login ended (`None` if there
    /// never was one). Returns at once when signed out already.
    pub async fn signed_out(&self) -> Option<LogoutReason> {
        let mut status = self.status();
        let ended = status.wait_for(|s| !s.is_signed_in()).await;
        match ended.as_deref() {
            Ok(Status::SignedOut { reason }) => reason.clone(),
            _ => None,
        }
    }

    /// Waits until someone is signed in: by [`sign_in`](Self::sign_in) on this session, or by
    /// another process writing tokens to a shared store (checked every `poll`). Returns the
    /// credential. Store errors while polling are logged and polling goes on.
    pub async fn wait_for_sign_in(&self, poll: Duration) -> Arc<Credential> {
        let mut status = self.status();
        loop {
            if let Some(current) = self.inner.current() {
                return current;
            }
            match self.restore().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "waiting for a sign-in: store not readable"),
            }
            // Either a local sign-in or the next poll, whichever comes first.
            let _ = tokio::time::timeout(poll, status.changed()).await;
        }
    }

    /// Waits until no refresh of this session is running any more, the ones nobody waits for
    /// included (a refresh ahead of expiry, one a sign-in or sign-out superseded, a save being
    /// retried). Call it before the process exits: a refresh cut off after the server answered
    /// loses the rotated pair, and the next process would present a refresh token the server
    /// already replaced (with reuse detection, the end of the login).
    ///
    /// Each refresh is bounded (the refresh timeout, then the store's retries), so this
    /// returns; new refreshes may start again afterwards if requests go on. Every session made
    /// from one [`Sessions`](crate::Sessions) collection counts together.
    ///
    /// ```no_run
    /// # async fn example(session: tokenkeeper::Session) {
    /// // ... the application's last request has been answered ...
    /// session.refreshes_landed().await;
    /// // Now the store holds the newest pair; exiting loses nothing.
    /// # }
    /// ```
    pub async fn refreshes_landed(&self) {
        self.inner.landing.all_landed().await;
    }

    /// The session's counters.
    pub fn stats(&self) -> SessionStats {
        self.inner.counters.snapshot()
    }

    /// Where the session stands now, without subscribing to changes.
    pub(crate) fn status_now(&self) -> Status {
        status_of(&self.inner.state.load())
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }
}

impl Inner {
    async fn invalidate(&self, generation: u64, reason: LogoutReason) -> bool {
        if !self.is_current(generation) {
            return false;
        }
        // Locally first, so no request goes out with the refused token while the store's lock
        // is awaited.
        let ended = self.end(Some(generation), reason);
        if ended {
            match self.bounded("lock", self.store.lock()).await {
                Ok(_lock) => self.clear_store().await,
                Err(error) => {
                    tracing::error!(%error, "could not lock the token store to clear it");
                    self.emit(Event::StoreFailed {
                        reason: format!("lock: {error}"),
                    });
                }
            }
        }
        ended
    }
}
