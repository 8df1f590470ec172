//! [`PostgresStore`]: tokens and a fenced refresh lease in PostgreSQL, one row per key.

mod connection;
mod lease;

pub use lease::PostgresLease;

use super::format;
use super::{MAX_GENERATION, StoreError, StoreLock, StoredTokens, TokenStore};
use connection::Connection;
use secrecy::zeroize::Zeroizing;
use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::Type;

/// Default lifetime of the refresh lease; renewed every third of it while held.
const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(10);

/// The shortest lease accepted: renewal needs a few round trips of slack.
const MIN_LOCK_TTL: Duration = Duration::from_millis(100);

/// Default bound on every call (connecting included).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

const LOAD: &str = "SELECT generation, tokens FROM tokenkeeper_tokens WHERE key = $1";

/// The compare-and-set, one statement: written when the key is new, when the stored generation
/// is older, or when exactly this document is already there. Concurrent writers of one key are
/// serialized on the row, and each one's condition is evaluated against the latest version.
const SAVE: &str = "INSERT INTO tokenkeeper_tokens AS stored (key, generation, tokens, updated_at) \
     VALUES ($1, $2, $3, clock_timestamp()) \
     ON CONFLICT (key) DO UPDATE \
     SET generation = EXCLUDED.generation, tokens = EXCLUDED.tokens, updated_at = EXCLUDED.updated_at \
     WHERE stored.generation < EXCLUDED.generation \
        OR (stored.generation = EXCLUDED.generation AND stored.tokens = EXCLUDED.tokens) \
     RETURNING 1";

const STORED_GENERATION: &str = "SELECT generation FROM tokenkeeper_tokens WHERE key = $1";

const CLEAR: &str = "DELETE FROM tokenkeeper_tokens WHERE key = $1";

/// Tokens in PostgreSQL, shared by every process on every machine that uses the same key
/// (cargo feature `postgres`).
///
/// - **Schema**: two tables, `tokenkeeper_tokens` (one row per key: `key`, `generation`,
///   `tokens`, `updated_at`) and `tokenkeeper_locks` (one lease row per key). Create them with
///   [`migrate`](Self::migrate) (idempotent, safe to run from every process at start-up) or by
///   running [`SCHEMA`](Self::SCHEMA) yourself.
/// - **The pair** is the same versioned JSON document [`FileStore`](super::FileStore) writes,
///   byte for byte, in a `bytea` column. A row that does not parse, whose columns disagree with
///   the document, or whose generation is out of range is [`StoreError::Corrupt`].
/// - **Compare-and-set saves**: one `INSERT … ON CONFLICT … DO UPDATE … WHERE stored.generation
///   < new` statement, so a writer that lost its lease cannot replace a newer pair: it gets
///   [`StoreError::StaleWrite`].
/// - **The refresh lock is a lease** ([`PostgresLease`]): a row taken when free or expired,
///   renewed every third of its TTL while held, deleted (if still ours) on drop. Expiry is
///   judged on the server's clock. A holder that dies stops renewing, and the next instance
///   takes over after the TTL. [`PostgresLease::still_held`] is the fence a holder checks right
///   before presenting the refresh token; [`TokenStore::lock`]'s [`StoreLock`] carries it, so
///   a session asks it before every refresh.
/// - **Many keys, one connection**: [`for_key`](Self::for_key) gives a store for another key
///   over the same connection (tokio-postgres pipelines concurrent queries), so a process can
///   hold many logins without a connection each.
///
/// Every call, connecting included, is bounded (5 s by default, or
/// [`connect_with_timeout`](Self::connect_with_timeout)); a
/// dropped connection is reopened by the next call. [`connect`](Self::connect) speaks plain TCP
/// (`NoTls`): meant for loopback or a trusted network. For TLS, build a
/// [`tokio_postgres::Client`] with the connector of your choice and pass it to
/// [`with_client`](Self::with_client). The tokens are stored in clear: protect the database as
/// you would any secret store.
///
/// ```no_run
/// # async fn example() -> Result<(), tokenkeeper::store::StoreError> {
/// use std::time::Duration;
/// use tokenkeeper::store::PostgresStore;
///
/// let store = PostgresStore::connect("postgres://app@127.0.0.1:5432/app", "alice")
///     .await?
///     .lock_ttl(Duration::from_secs(5));
/// store.migrate().await?;
/// let bob = store.for_key("bob"); // same connection, another login
/// # let _ = bob; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    connection: Arc<Connection>,
    key: Arc<str>,
    lock_ttl: Duration,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("PostgresStore")
            .field("key", &self.key)
            .field("lock_ttl", &self.lock_ttl)
            .field("timeout", &self.connection.timeout())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The schema, idempotent. Run as one implicit transaction under an advisory lock, so processes
    /// migrating at the same time do not trip over each other's `CREATE TABLE`.
    ///
    /// `tokens` holds the exact bytes [`FileStore`](super::FileStore) writes to its file (a
    /// versioned JSON document); `generation` repeats the document's generation so the
    /// compare-and-set is one indexed comparison.
    pub const SCHEMA: &'static str = "\
    SELECT pg_advisory_xact_lock(7346289142075812352);
    CREATE TABLE IF NOT EXISTS tokenkeeper_tokens (
        key text PRIMARY KEY,
        generation bigint NOT NULL CHECK (generation >= 0),
        tokens bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE TABLE IF NOT EXISTS tokenkeeper_locks (
        key text PRIMARY KEY,
        holder text NOT NULL,
        expires_at timestamptz NOT NULL
    );";

    /// Connects to `url` (`postgres://[user[:password]@]host[:port]/database`, or a libpq
    /// `key=value` string) without TLS, and uses `key` for the tokens and the lease.
    pub async fn connect(url: &str, key: impl Into<String>) -> Result<Self, StoreError> {
        Self::connect_with_timeout(url, key, DEFAULT_TIMEOUT).await
    }

    /// [`connect`](Self::connect) with a bound other than 5 s on every call.
    pub async fn connect_with_timeout(
        url: &str,
        key: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        // The URL may carry a password: neither it nor the parser's message (which may quote
        // it) goes into the error.
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|_| StoreError::Backend("PostgreSQL: invalid connection URL".into()))?;
        config.connect_timeout(timeout);
        if config.get_application_name().is_none() {
            config.application_name("tokenkeeper");
        }
        let store = Self {
            connection: Arc::new(Connection::new(config, timeout)),
            key: Arc::from(key.into()),
            lock_ttl: DEFAULT_LOCK_TTL,
        };
        // Connect now, so a wrong URL or a server that is down shows at start-up.
        store.connection.check().await?;
        Ok(store)
    }

    /// Uses a client you connected yourself (TLS, your own settings). Its connection task must
    /// be running; once it closes, every call fails (there is no configuration to reconnect
    /// with), so prefer [`connect`](Self::connect) where TLS is not needed.
    pub fn with_client(client: tokio_postgres::Client, key: impl Into<String>) -> Self {
        Self {
            connection: Arc::new(Connection::with_client(client, DEFAULT_TIMEOUT)),
            key: Arc::from(key.into()),
            lock_ttl: DEFAULT_LOCK_TTL,
        }
    }

    /// A store for another key over the same connection, with the same settings.
    pub fn for_key(&self, key: impl Into<String>) -> Self {
        Self {
            connection: Arc::clone(&self.connection),
            key: Arc::from(key.into()),
            lock_ttl: self.lock_ttl,
        }
    }

    /// How long the refresh lease outlives a holder that stopped renewing it (default 10 s, at
    /// least 100 ms). A crashed holder delays the others by up to this long.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.max(MIN_LOCK_TTL);
        self
    }

    /// The key of this store's row.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Creates the tables if they do not exist ([`SCHEMA`](Self::SCHEMA)). Idempotent; concurrent runs wait
    /// for each other.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.connection
            .run("migrate", "creating the schema", |client| async move {
                client.batch_execute(Self::SCHEMA).await
            })
            .await
    }

    /// Takes the refresh lease, waiting while another holder has it. [`TokenStore::lock`]
    /// returns the same lease inside a [`StoreLock`].
    pub async fn lease(&self) -> Result<PostgresLease, StoreError> {
        lease::take(
            Arc::clone(&self.connection),
            Arc::clone(&self.key),
            self.lock_ttl,
        )
        .await
    }

    fn describe_row(&self) -> String {
        format!("PostgreSQL row tokenkeeper_tokens[{}]", self.key)
    }

    /// The generation stored now, if any (to report a refused write).
    async fn stored_generation(&self) -> Result<Option<i64>, StoreError> {
        let key = &*self.key;
        let rows = self
            .connection
            .run(
                "save",
                "reading the stored generation",
                |client| async move {
                    client
                        .query_typed(STORED_GENERATION, &[(&key, Type::TEXT)])
                        .await
                },
            )
            .await?;
        rows.first()
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()
            .map_err(|_| {
                StoreError::Corrupt(format!("{}: unreadable generation", self.describe_row()))
            })
    }
}

#[async_trait::async_trait]
impl TokenStore for PostgresStore {
    async fn load(&self) -> Result<Option<StoredTokens>, StoreError> {
        let key = &*self.key;
        let rows = self
            .connection
            .run("load", "reading the tokens", |client| async move {
                client.query_typed(LOAD, &[(&key, Type::TEXT)]).await
            })
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let what = self.describe_row();
        let corrupt = |why: &str| StoreError::Corrupt(format!("{what}: {why}"));
        let generation: i64 = row
            .try_get(0)
            .map_err(|_| corrupt("`generation` is not a bigint"))?;
        let document: Vec<u8> = row
            .try_get(1)
            .map_err(|_| corrupt("`tokens` is not bytea"))?;
        let document = Zeroizing::new(document);
        // Checked before the document: a negative generation was not written by tokenkeeper,
        // and one above what any store holds could never be followed by the next refresh's.
        let largest = i64::try_from(MAX_GENERATION).unwrap_or(i64::MAX);
        if !(0..=largest).contains(&generation) {
            return Err(corrupt("`generation` is out of range"));
        }
        let stored = format::decode(&document, &what)?;
        if u64::try_from(generation).ok() != Some(stored.generation) {
            return Err(corrupt(
                "the `generation` column and the document's generation differ",
            ));
        }
        Ok(Some(stored))
    }

    async fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        let generation = i64::try_from(tokens.generation).map_err(|_| {
            StoreError::Corrupt(format!(
                "{}: generation {} does not fit PostgreSQL's bigint",
                self.describe_row(),
                tokens.generation
            ))
        })?;
        let document = format::encode(tokens)?;
        let key = &*self.key;
        // A refused write whose row then vanished (cleared in between) is tried again: the key
        // is free now. Bounded, in case clears and writes keep racing.
        for _ in 0..3 {
            let document = &document[..];
            let written = self
                .connection
                .run("save", "saving the tokens", |client| async move {
                    client
                        .query_typed(
                            SAVE,
                            &[
                                (&key, Type::TEXT),
                                (&generation, Type::INT8),
                                (&document, Type::BYTEA),
                            ],
                        )
                        .await
                })
                .await?;
            if !written.is_empty() {
                return Ok(());
            }
            if let Some(stored) = self.stored_generation().await? {
                return Err(StoreError::StaleWrite {
                    stored: u64::try_from(stored).unwrap_or(0),
                    attempted: tokens.generation,
                });
            }
        }
        Err(StoreError::Backend(format!(
            "PostgreSQL: {} kept changing while saving",
            self.describe_row()
        )))
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let key = &*self.key;
        self.connection
            .run("clear", "clearing the tokens", |client| async move {
                client.execute_typed(CLEAR, &[(&key, Type::TEXT)]).await
            })
            .await?;
        Ok(())
    }

    async fn lock(&self) -> Result<StoreLock, StoreError> {
        // The session asks `StoreLock::still_held` right before each refresh: the lease's own
        // check (renewing it, or learning it was lost to another holder).
        let lease = self.lease().await?;
        let fence = lease.fence();
        Ok(StoreLock::with_fence(lease, fence))
    }

    fn lock_lease(&self) -> Option<Duration> {
        Some(self.lock_ttl)
    }
}
