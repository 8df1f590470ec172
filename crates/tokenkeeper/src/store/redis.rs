//! [`RedisStore`]: tokens and the refresh lock in Redis, shared across machines.

use super::format;
use super::{LockFence, MAX_GENERATION, StoreError, StoreLock, StoredTokens, TokenStore};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Default lifetime of the refresh lock; renewed every third of it while held.
const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);

/// The shortest lock lifetime accepted: renewal needs a few round trips of slack.
const MIN_LOCK_TTL: Duration = Duration::from_millis(100);

/// Longest pause between two attempts to take a busy lock.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Writes `ARGV[2]` (generation `ARGV[1]`) unless the stored document has a newer generation,
/// or the same generation with other contents. Returns -1 when written (or already there),
/// otherwise the stored generation.
///
/// Lua numbers are doubles: a stored generation is compared only if it is a whole number in
/// `0..=ARGV[3]` (`MAX_GENERATION`, exact as a double). Anything else is a corrupt document, which
/// is replaced like an unparsable one; returning it would have Redis convert an out-of-range
/// double to an integer reply, which is undefined.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, doc = pcall(cjson.decode, current)
  if ok and type(doc) == 'table' and type(doc['generation']) == 'number' then
    local stored = doc['generation']
    local new = tonumber(ARGV[1])
    local max = tonumber(ARGV[3])
    if stored >= 0 and stored <= max and stored == math.floor(stored) then
      if stored > new or (stored == new and current ~= ARGV[2]) then
        return stored
      end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return -1
",
    )
});

/// Deletes the lock only if this holder's token is still in it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Extends the lock only if this holder's token is still in it.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Tokens in Redis, shared by every process on every machine that uses the same key
/// (cargo feature `redis`).
///
/// - **The pair** is one string value at `key`: the same versioned JSON document as
///   [`FileStore`](super::FileStore) writes.
/// - **The refresh lock** is `<key>:lock`, taken with `SET NX PX <ttl>` and a random token,
///   renewed every third of its TTL by a background task while held (so a slow refresh keeps
///   it), and released when the guard drops by a Lua script that deletes it only if the token
///   is still ours. A holder that dies simply stops renewing: its lock expires after the TTL and
///   the next instance takes over. Waiting polls with a capped, jittered backoff.
/// - **Fencing.** The lock is a lease, so it can be lost while held (the holder paused past the
///   TTL, a failover to a replica that never saw it). Its guard is fenced:
///   [`StoreLock::still_held`] is `false` as soon as a renewal failed (recorded by the renewal
///   task, no round trip), and otherwise compares the lock's value in Redis with this holder's
///   token. The session checks it right before presenting a refresh token.
///   [`lock_lease`](TokenStore::lock_lease) is the lock TTL.
/// - **Compare-and-set saves.** A Lua script writes only if the stored generation is older than
///   the new one, so a writer that lost its lock (paused past the TTL, partitioned) cannot
///   replace a newer pair: it gets [`StoreError::StaleWrite`].
/// - Other instances learn of a new pair by re-reading it under the lock, which is what the
///   session does before every refresh.
///
/// Each call goes through a [`ConnectionManager`] that reconnects by itself; connecting and every
/// command time out after 2 s by default, so an unreachable Redis, or one that accepts
/// connections and never answers, is an error, never a hang.
///
/// Expiry times are wall-clock instants from the machine that received the tokens: keep the
/// machines' clocks in sync (NTP). The tokens are stored in clear: protect Redis as you would
/// any secret store (ACLs, TLS with `rediss://` URLs by enabling one of the `redis` crate's TLS
/// features in your own `Cargo.toml`).
///
/// ```no_run
/// # async fn example() -> Result<(), tokenkeeper::store::StoreError> {
/// use std::time::Duration;
/// use tokenkeeper::store::RedisStore;
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379", "myapp:tokens:alice")
///     .await?
///     .lock_ttl(Duration::from_secs(5));
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    key: Arc<str>,
    lock_key: Arc<str>,
    lock_ttl: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("key", &self.key)
            .field("lock_key", &self.lock_key)
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`) and uses `key` for the tokens
    /// (and `<key>:lock` for the refresh lock). Commands time out after 2 s; the connection
    /// is re-established by itself when it drops.
    pub async fn connect(url: &str, key: impl Into<String>) -> Result<Self, StoreError> {
        // The URL may carry a password: it never goes into an error message.
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Backend(format!("invalid Redis URL ({:?})", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(backend("connecting"))?;
        Ok(Self::with_connection(connection, key))
    }

    /// Uses a connection you configured yourself.
    pub fn with_connection(connection: ConnectionManager, key: impl Into<String>) -> Self {
        let key: String = key.into();
        Self {
            connection,
            lock_key: format!("{key}:lock").into(),
            key: key.into(),
            lock_ttl: DEFAULT_LOCK_TTL,
        }
    }

    /// A store for another key over the same connection, with the same lock TTL.
    pub fn for_key(&self, key: impl Into<String>) -> Self {
        Self {
            lock_ttl: self.lock_ttl,
            ..Self::with_connection(self.connection.clone(), key)
        }
    }

    /// How long the refresh lock outlives a holder that stopped renewing it (default 10 s,
    /// at least 100 ms). A crashed holder delays the others by up to this long.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.max(MIN_LOCK_TTL);
        self
    }

    /// The key holding the tokens.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key of the refresh lock (`<key>:lock`).
    pub fn lock_key(&self) -> &str {
        &self.lock_key
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.lock_ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait::async_trait]
impl TokenStore for RedisStore {
    async fn load(&self) -> Result<Option<StoredTokens>, StoreError> {
        let mut connection = self.connection.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&*self.key)
            .query_async(&mut connection)
            .await
            .map_err(backend("reading the tokens"))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let value = secrecy::zeroize::Zeroizing::new(value);
        format::decode(&value, &format!("Redis key {}", self.key)).map(Some)
    }

    async fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        let document = format::encode(tokens)?;
        let mut connection = self.connection.clone();
        let stored: i64 = SAVE
            .key(&*self.key)
            .arg(tokens.generation)
            .arg(&document[..])
            .arg(MAX_GENERATION)
            .invoke_async(&mut connection)
            .await
            .map_err(backend("saving the tokens"))?;
        if stored < 0 {
            return Ok(());
        }
        Err(StoreError::StaleWrite {
            stored: u64::try_from(stored).unwrap_or(0),
            attempted: tokens.generation,
        })
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg(&*self.key)
            .query_async::<i64>(&mut connection)
            .await
            .map_err(backend("clearing the tokens"))?;
        Ok(())
    }

    async fn lock(&self) -> Result<StoreLock, StoreError> {
        let token = format!("{:032x}", rand::random::<u128>());
        // From here on, dropping `pending` (this future cancelled while a SET was on the wire)
        // releases whatever we may have taken: the release only deletes our own token.
        let pending = Release(Some(Holder {
            connection: self.connection.clone(),
            lock_key: Arc::clone(&self.lock_key),
            token: token.clone(),
            runtime: tokio::runtime::Handle::current(),
        }));
        let mut connection = self.connection.clone();
        let mut delay = Duration::from_millis(2);
        loop {
            let taken: Option<String> = redis::cmd("SET")
                .arg(&*self.lock_key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl_ms())
                .query_async(&mut connection)
                .await
                .map_err(backend("taking the refresh lock"))?;
            if taken.is_some() {
                break;
            }
            let jitter = delay.mul_f64(rand::random::<f64>() * 0.5);
            tokio::time::sleep(delay + jitter).await;
            delay = (delay * 2).min(MAX_POLL);
        }
        let fence = RedisFence {
            connection: connection.clone(),
            lock_key: Arc::clone(&self.lock_key),
            token: token.clone(),
            lost: Arc::new(AtomicBool::new(false)),
        };
        let renewer = tokio::spawn(renew(
            connection,
            Arc::clone(&self.lock_key),
            token,
            self.lock_ttl,
            Arc::clone(&fence.lost),
        ));
        Ok(StoreLock::with_fence(
            RedisLockGuard {
                _release: pending,
                renewer: renewer.abort_handle(),
            },
            fence,
        ))
    }

    fn lock_lease(&self) -> Option<Duration> {
        Some(self.lock_ttl)
    }
}

/// Keeps the lock alive while it is held. Stops when the lock turns out to be someone else's.
/// Any failed renewal marks the lock `lost` for good: whether it stayed ours in between cannot
/// be known, so a refresh must not rely on it.
async fn renew(
    mut connection: ConnectionManager,
    lock_key: Arc<str>,
    token: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
) {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::time::sleep(ttl / 3).await;
        let renewed: Result<i64, _> = RENEW
            .key(&*lock_key)
            .arg(&token)
            .arg(ttl_ms)
            .invoke_async(&mut connection)
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                lost.store(true, Relaxed);
                tracing::warn!(
                    lock = %lock_key,
                    "the Redis refresh lock expired while held; a stale save will be refused"
                );
                return;
            }
            Err(error) => {
                lost.store(true, Relaxed);
                tracing::warn!(%error, lock = %lock_key, "could not renew the Redis refresh lock");
            }
        }
    }
}

/// [`LockFence`] of a Redis lock: lost once a renewal failed, otherwise held while the lock's
/// value is still this holder's token.
struct RedisFence {
    connection: ConnectionManager,
    lock_key: Arc<str>,
    token: String,
    lost: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl LockFence for RedisFence {
    async fn still_held(&self) -> Result<bool, StoreError> {
        if self.lost.load(Relaxed) {
            return Ok(false);
        }
        let mut connection = self.connection.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(&*self.lock_key)
            .query_async(&mut connection)
            .await
            .map_err(backend("checking the refresh lock"))?;
        let held = value.as_deref() == Some(self.token.as_str());
        if !held {
            self.lost.store(true, Relaxed);
            tracing::warn!(lock = %self.lock_key, "the Redis refresh lock is no longer ours");
        }
        Ok(held)
    }
}

struct Holder {
    connection: ConnectionManager,
    lock_key: Arc<str>,
    token: String,
    runtime: tokio::runtime::Handle,
}

/// Releases the lock (if this token still holds it) when dropped. Drop is synchronous, so the
/// release is spawned; if the runtime is already gone the lock simply expires after its TTL.
struct Release(Option<Holder>);

impl Drop for Release {
    fn drop(&mut self) {
        let Some(holder) = self.0.take() else {
            return;
        };
        let Holder {
            mut connection,
            lock_key,
            token,
            runtime,
        } = holder;
        runtime.spawn(async move {
            let released: Result<i64, _> = RELEASE
                .key(&*lock_key)
                .arg(&token)
                .invoke_async(&mut connection)
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, lock = %lock_key, "could not release the Redis refresh lock; it expires after its TTL");
            }
        });
    }
}

/// Stops the renewal, then (its field dropping) releases the lock.
struct RedisLockGuard {
    _release: Release,
    renewer: tokio::task::AbortHandle,
}

impl Drop for RedisLockGuard {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

fn backend(doing: &'static str) -> impl Fn(redis::RedisError) -> StoreError {
    move |error| StoreError::Backend(format!("Redis, {doing}: {error}"))
}
