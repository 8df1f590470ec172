//! Many logins in one process: [`Sessions`], one [`Session`] per key.
//!
//! A server that holds many logins (a backend-for-frontend with a session per user, an
//! integration platform with thousands of customers' refresh tokens for one partner API) keeps
//! them in one `Sessions<K>`. Each key behaves exactly like a lone [`Session`]: one refresh
//! flight per key, generation stamping, one retry, the failure policy, adoption of a pair
//! another process wrote to the shared store. A key is the login and, when tokens differ by
//! what they are for, that too (`(user, audience)`): a token is only ever attached for the key
//! it was obtained for.
//!
//! ```no_run
//! use tokenkeeper::{keyed::Key, refresh, store, Session, Sessions, TokenSet};
//!
//! # async fn example(login_response: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let logins = Sessions::<String>::builder()
//!     .session(Session::builder()
//!         .refresher(refresh::OAuth2::new("https://auth.example.com/token")?.client_id("app"))
//!         .attach_to(["https://partner.example.com"]))
//!     .store(store::FileStores::open("/var/lib/myapp/logins")?)
//!     .build()?;
//! logins.sign_in("alice".to_owned(), TokenSet::from_response(login_response)?).await?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(logins.middleware()).build();
//! client.get("https://partner.example.com/items").with_extension(Key("alice".to_owned())).send().await?;
//! # Ok(()) }
//! ```
//!
//! ## Memory and time
//! - **Lazy.** Nothing happens per key at start-up. A key's session is made on its first use
//!   and restored from its store then.
//! - **Bounded.** Sessions live in a [`moka`] cache bounded by
//!   [`capacity`](SessionsBuilder::capacity) and [`idle_timeout`](SessionsBuilder::idle_timeout).
//!   An evicted key loses nothing: its tokens are in its store, and its next use restores them,
//!   without a refresh. A session evicted during a refresh finishes that refresh (the flight
//!   belongs to no cache) and saves the result; a new session for the key meanwhile takes the
//!   key's store lock, re-reads the store and adopts the result instead of refreshing again.
//! - **No scheduler.** Renewal ahead of expiry is driven by use, as in a lone [`Session`]: a
//!   request past a token's soft deadline starts one background refresh and is sent with the
//!   still-valid token. So only keys in use are renewed ahead of time, idle keys cost no timer,
//!   task or wake-up (the CPU an idle collection uses is zero, whatever its size), and no
//!   refresh is ever spent on a key nobody uses again. An idle key whose token expired renews on
//!   its next use (that request waits for the refresh).
//!
//! ## Adapters
//! [`Sessions::middleware`] (reqwest) and [`Sessions::layer`] (tower, feature `tower`) pick the
//! session per request from its [`Key`] extension. A request to an origin that gets tokens
//! without a key fails with [`Error::NoKey`] and is not sent; requests to other origins, with
//! their own `Authorization` header or with [`NoAuth`](crate::NoAuth) go out untouched, as with a
//! lone session.

mod key;
#[cfg(feature = "reqwest")]
mod reqwest;
#[cfg(feature = "tower")]
mod tower;

pub use key::LoginKey;
#[cfg(feature = "reqwest")]
pub use reqwest::KeyedMiddleware;
#[cfg(feature = "tower")]
pub use tower::{KeyedLayer, KeyedService};

use crate::error::Error;
use crate::event::Event;
use crate::refresh::Refresher;
use crate::session::{Credential, Session, SessionBuilder, Status, Template};
use crate::store::{KeyedStore, MemoryStores};
use crate::token::TokenSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

/// The request extension that names the login a request is sent for.
///
/// What it costs the caller: the key travels in the request's `http::Extensions`, which keeps a
/// boxed map of boxed values. On a request with no other extension, inserting it allocates three
/// blocks (the map, its table, the boxed key), about 600 instructions per request with their
/// frees in `tokenkeeper bench`'s callgrind profile; a request that carries another extension
/// already pays for the boxed key only. A key that is cheap to clone and hash (an integer, an
/// `Arc<str>`) keeps the rest of the lookup cheap.
///
/// ```no_run
/// # async fn example(client: reqwest_middleware::ClientWithMiddleware) -> reqwest_middleware::Result<()> {
/// use tokenkeeper::keyed::Key;
/// client.get("https://partner.example.com/items").with_extension(Key(42u64)).send().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key<K>(pub K);

/// An event of one key's session, from [`Sessions::events`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeyedEvent<K> {
    /// Whose.
    pub key: K,
    /// What happened.
    pub event: Event,
}

/// Default bound on the sessions kept in memory.
pub const DEFAULT_CAPACITY: u64 = 100_000;
/// Default time a session stays in memory unused.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What happened when a key's session was looked up: the one place a metrics recorder hooks
/// into (each variant is one outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A session in memory was used.
    Cached,
    /// A new session was made for a key not in memory (first use, or after eviction).
    Made,
    /// A new session found its key's tokens in the store.
    Restored,
    /// A new session found no tokens in the store (nobody signed in for the key yet).
    NothingStored,
}

fn note(lookup: Lookup) {
    tracing::trace!(?lookup, "keyed session lookup");
}

/// One key's session in memory, and whether it was restored from its store yet.
struct Entry {
    session: Session,
    /// Set once the session holds the key's login (restored, signed in, or obtained): from
    /// then on requests use the session as it is.
    restored: AtomicBool,
    /// Serialises restoring with signing in, so a restore cannot install an older pair over a
    /// sign-in that happened meanwhile.
    restoring: tokio::sync::Mutex<()>,
}

impl Entry {
    fn is_restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    /// Restores the key's login from its store unless the session holds one already. Finding
    /// nothing leaves the entry unrestored: the next use looks again (another process may sign
    /// in for the key).
    async fn restore(&self) -> Result<(), Error> {
        let _restoring = self.restoring.lock().await;
        if self.is_restored() {
            return Ok(());
        }
        if !self.session.status_now().is_signed_in() {
            let found = self.session.restore().await?;
            note(if found {
                Lookup::Restored
            } else {
                Lookup::NothingStored
            });
            if !found {
                return Ok(());
            }
        }
        self.restored.store(true, Ordering::Release);
        Ok(())
    }
}

/// Chooses each key's refresher, for collections whose keys need different ones.
type RefresherFor<K> = Arc<dyn Fn(&K) -> Arc<dyn Refresher> + Send + Sync>;

struct Shared<K: LoginKey> {
    template: Template,
    refresher_for: Option<RefresherFor<K>>,
    stores: Arc<dyn KeyedStore<K>>,
    cache: moka::sync::Cache<K, Arc<Entry>>,
    events: broadcast::Sender<KeyedEvent<K>>,
    /// Never signed in: judges the origin of requests that carry no key.
    prototype: Session,
}

/// Many logins, one [`Session`] per key, made and restored lazily, evicted when idle.
/// See the [module docs](self).
///
/// Cheap to clone; clones share one collection.
pub struct Sessions<K: LoginKey> {
    shared: Arc<Shared<K>>,
}

impl<K: LoginKey> Clone for Sessions<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: LoginKey> fmt::Debug for Sessions<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("in_memory", &self.shared.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Sessions`] collection. Start with [`Sessions::builder`].
pub struct SessionsBuilder<K: LoginKey> {
    session: Option<SessionBuilder>,
    refresher_for: Option<RefresherFor<K>>,
    stores: Arc<dyn KeyedStore<K>>,
    capacity: u64,
    idle_timeout: Duration,
}

impl<K: LoginKey> fmt::Debug for SessionsBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionsBuilder")
            .field("session", &self.session)
            .field("capacity", &self.capacity)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<K: LoginKey> SessionsBuilder<K> {
    /// How every key's session is configured, as for a lone [`Session`] (refresher, origins,
    /// classifier, mode, timeouts; required). The builder's store is ignored: each key's store
    /// comes from [`store`](Self::store).
    ///
    /// ```
    /// # fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use tokenkeeper::{refresh, Session, Sessions};
    ///
    /// let logins = Sessions::<u64>::builder()
    ///     .session(
    ///         Session::builder()
    ///             .refresher(refresh::OAuth2::new("https://auth.example.com/token")?)
    ///             .attach_to(["https://api.example.com"]),
    ///     )
    ///     .build()?;
    /// # let _ = logins; Ok(()) }
    /// # example().unwrap();
    /// ```
    pub fn session(mut self, session: SessionBuilder) -> Self {
        self.session = Some(session);
        self
    }

    /// Each key's refresher chosen by its key (e.g. a token endpoint or client per tenant),
    /// instead of the one set in [`session`](Self::session).
    pub fn refresher_for(
        mut self,
        choose: impl Fn(&K) -> Arc<dyn Refresher> + Send + Sync + 'static,
    ) -> Self {
        self.refresher_for = Some(Arc::new(choose));
        self
    }

    /// Where each key's tokens live (default [`MemoryStores`]). Shared stores
    /// ([`FileStores`](crate::store::FileStores), `RedisStore`, `PostgresStore`) coordinate each
    /// key's refreshes across processes.
    pub fn store(mut self, stores: impl KeyedStore<K>) -> Self {
        self.stores = Arc::new(stores);
        self
    }

    /// At most this many sessions stay in memory (default [`DEFAULT_CAPACITY`]); past it the
    /// least used are evicted. Evicted keys come back from their store.
    pub fn capacity(mut self, sessions: u64) -> Self {
        self.capacity = sessions;
        self
    }

    /// A session unused this long is evicted (default [`DEFAULT_IDLE_TIMEOUT`]).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Builds the collection. Fails as [`SessionBuilder::build`] does, and without a
    /// [`session`](Self::session) configuration.
    pub fn build(self) -> Result<Sessions<K>, Error> {
        let mut session = self.session.ok_or_else(|| {
            Error::from(crate::ConfigError::new(
                "Sessions need a session configuration",
            ))
        })?;
        if self.refresher_for.is_some() {
            // A placeholder for the checks; every key gets its own.
            session = session.refresher(crate::refresh::from_fn(|_| async {
                Err(crate::refresh::RefreshError::NoRefreshToken)
            }));
        }
        let template = session.template(self.stores.lock_lease())?;
        let prototype = template.session(Arc::new(crate::store::MemoryStore::new()), None);
        // moka's default hasher, std's SipHash-1-3 with per-process random keys, is kept:
        // keys can come from outside (tenant or connection ids in a URL) and looking up any key
        // makes an entry, so a hasher whose collisions an attacker could find would let them
        // slow every lookup. It costs about 140 instructions per request in `tokenkeeper
        // bench`'s callgrind profile (of the ~1,900 the keyed middleware adds); a faster hasher
        // would save part of that.
        let cache = moka::sync::Cache::builder()
            .max_capacity(self.capacity)
            .time_to_idle(self.idle_timeout)
            .build();
        Ok(Sessions {
            shared: Arc::new(Shared {
                template,
                refresher_for: self.refresher_for,
                stores: self.stores,
                cache,
                events: broadcast::channel(1024).0,
                prototype,
            }),
        })
    }
}

impl<K: LoginKey> Sessions<K> {
    /// Starts configuring a collection.
    pub fn builder() -> SessionsBuilder<K> {
        SessionsBuilder {
            session: None,
            refresher_for: None,
            stores: Arc::new(MemoryStores::new()),
            capacity: DEFAULT_CAPACITY,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// The request extension for `key` (the same as `Key(key)`).
    pub fn key(&self, key: K) -> Key<K> {
        Key(key)
    }

    /// The entry of `key`, made (not restored) when it is not in memory.
    fn entry(&self, key: &K) -> Result<Arc<Entry>, Error> {
        if let Some(entry) = self.shared.cache.get(key) {
            note(Lookup::Cached);
            return Ok(entry);
        }
        // Made once per key however many requests miss at the same time.
        self.shared
            .cache
            .try_get_with_by_ref(key, || self.make(key))
            .map_err(|error: Arc<Error>| (*error).clone())
    }

    fn make(&self, key: &K) -> Result<Arc<Entry>, Error> {
        note(Lookup::Made);
        let shared = &self.shared;
        let store = shared.stores.store_for(key)?;
        let events = shared.events.clone();
        let owner = key.clone();
        let forward = Box::new(move |event: &Event| {
            // No subscriber is not an error.
            let _ = events.send(KeyedEvent {
                key: owner.clone(),
                event: event.clone(),
            });
        });
        let session = match &shared.refresher_for {
            Some(choose) => shared
                .template
                .session_with(choose(key), store, Some(forward)),
            None => shared.template.session(store, Some(forward)),
        };
        Ok(Arc::new(Entry {
            session,
            restored: AtomicBool::new(false),
            restoring: tokio::sync::Mutex::new(()),
        }))
    }

    /// The session of `key`, restored from its store if it was not in memory.
    ///
    /// For code that needs a [`Session`]'s own methods (`access_token`, `status`, `stats`).
    /// Use it and let it go: after the key is evicted the next call returns a new session, and
    /// the one kept would no longer hear of sign-ins made through the collection.
    pub async fn session(&self, key: &K) -> Result<Session, Error> {
        Ok(self.ready(key).await?.session.clone())
    }

    async fn ready(&self, key: &K) -> Result<Arc<Entry>, Error> {
        let entry = self.entry(key)?;
        if !entry.is_restored() {
            entry.restore().await?;
        }
        Ok(entry)
    }

    /// Installs freshly obtained tokens for `key` (see [`Session::sign_in`]).
    pub async fn sign_in(&self, key: K, tokens: TokenSet) -> Result<Arc<Credential>, Error> {
        let entry = self.entry(&key)?;
        let _restoring = entry.restoring.lock().await;
        let signed_in = entry.session.sign_in(tokens).await;
        // Also after a failed save: the session uses the tokens in memory.
        if entry.session.status_now().is_signed_in() {
            entry.restored.store(true, Ordering::Release);
        }
        signed_in
    }

    /// Ends `key`'s login (see [`Session::sign_out`]): requests for it get
    /// [`Error::LoginRequired`] at once, requests waiting for its refresh are released, and its
    /// store is cleared, for every process sharing it.
    pub async fn sign_out(&self, key: &K) -> Result<(), Error> {
        let entry = self.entry(key)?;
        let _restoring = entry.restoring.lock().await;
        entry.restored.store(true, Ordering::Release);
        entry.session.sign_out().await
    }

    /// The access token of `key` to use now (see [`Session::access_token`]).
    pub async fn access_token(&self, key: &K) -> Result<secrecy::SecretString, Error> {
        self.ready(key).await?.session.access_token().await
    }

    /// Where `key`'s login stands now (restoring it first if it was not in memory).
    pub async fn status(&self, key: &K) -> Result<Status, Error> {
        Ok(self.ready(key).await?.session.status_now())
    }

    /// Waits until no refresh of any key is running any more, those of evicted keys included
    /// (see [`Session::refreshes_landed`]). Call it before the process exits, so no rotated
    /// pair is lost on its way to the store.
    pub async fn refreshes_landed(&self) {
        self.shared.template.refreshes_landed().await;
    }

    /// Every key's events, each with its key. A subscriber that falls behind by more than
    /// 1024 events loses the oldest. [`events_for`](Self::events_for) keeps one key's.
    pub fn events(&self) -> broadcast::Receiver<KeyedEvent<K>> {
        self.shared.events.subscribe()
    }

    /// One key's events (they outlive its eviction: the next session for the key reports to
    /// the same stream).
    pub fn events_for(&self, key: K) -> KeyEvents<K> {
        KeyEvents {
            key,
            events: self.events(),
        }
    }

    /// Drops `key`'s session from memory (its tokens stay in its store; the next use restores
    /// them). A refresh in flight for it finishes and saves.
    pub fn evict(&self, key: &K) {
        self.shared.cache.invalidate(key);
    }

    /// Drops every session from memory, as [`evict`](Self::evict) does for one.
    pub fn evict_all(&self) {
        self.shared.cache.invalidate_all();
        self.shared.cache.run_pending_tasks();
    }

    /// How many sessions are in memory (approximate until the cache's pending work ran).
    pub fn in_memory(&self) -> u64 {
        self.shared.cache.run_pending_tasks();
        self.shared.cache.entry_count()
    }

    /// The restored session of `key` if it is in memory, for the adapters' fast path.
    pub(crate) fn cached_ready(&self, key: &K) -> Result<CachedSession, Error> {
        let entry = self.entry(key)?;
        Ok(if entry.is_restored() {
            CachedSession::Ready(entry.session.clone())
        } else {
            CachedSession::Restore(RestoreFirst { entry })
        })
    }

    /// The session that judges the origin of requests without a key (never signed in).
    pub(crate) fn prototype(&self) -> &Session {
        &self.shared.prototype
    }
}

/// A key's session as the adapters find it.
pub(crate) enum CachedSession {
    /// In memory and restored.
    Ready(Session),
    /// Made just now (or nobody signed in yet): restore it first.
    Restore(RestoreFirst),
}

/// A session to restore before use.
pub(crate) struct RestoreFirst {
    entry: Arc<Entry>,
}

impl RestoreFirst {
    pub(crate) async fn restore(self) -> Result<Session, Error> {
        self.entry.restore().await?;
        Ok(self.entry.session.clone())
    }
}

/// One key's events, from [`Sessions::events_for`].
#[derive(Debug)]
pub struct KeyEvents<K> {
    key: K,
    events: broadcast::Receiver<KeyedEvent<K>>,
}

impl<K: LoginKey> KeyEvents<K> {
    /// The next event of this key. Fails as [`broadcast::Receiver::recv`] does (lagged by more
    /// than the channel holds, or the collection is gone).
    pub async fn recv(&mut self) -> Result<Event, broadcast::error::RecvError> {
        loop {
            let keyed = self.events.recv().await?;
            if keyed.key == self.key {
                return Ok(keyed.event);
            }
        }
    }
}
