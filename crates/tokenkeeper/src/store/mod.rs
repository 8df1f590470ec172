//! Where tokens live between refreshes: the [`TokenStore`] trait, [`MemoryStore`] (one process,
//! the default), [`FileStore`] (every process on one machine), `RedisStore` (feature `redis`) and
//! `PostgresStore` (feature `postgres`) for processes on many machines.
//!
//! A store that several processes share provides a [`lock`](TokenStore::lock): the session takes
//! it around every refresh, re-reads the store under it, and adopts a newer pair written by
//! someone else instead of refreshing again. That is what keeps refresh-token rotation safe
//! across processes.
//!
//! Failures: a failed `save` or `clear` is reported as
//! [`Event::StoreFailed`](crate::Event::StoreFailed) and the session keeps using the tokens in
//! memory. A failed `lock` is different: refreshing without the lock could present a token
//! another process already rotated, so the refresh does not happen and the waiting requests get
//! [`Error::Store`](crate::Error::Store); the next request tries again.

mod file;
mod format;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresLease, PostgresStore};
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use file::FileStore;
pub use memory::MemoryStore;

use crate::TokenSet;
use std::fmt;

/// A token set with the generation the session gave it.
///
/// Generations grow by one per refresh, across every process sharing a store: a writer under
/// the store's lock saves `generation = stored + 1`.
#[derive(Debug, Clone)]
pub struct StoredTokens {
    /// The tokens.
    pub tokens: TokenSet,
    /// Their generation.
    pub generation: u64,
}

/// Persists the session's tokens.
///
/// `save` is called before new tokens are handed to any request (persist before publish);
/// `clear` when the session ends.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The stored tokens, or `None` when nobody is signed in.
    async fn load(&self) -> Result<Option<StoredTokens>, StoreError>;
    /// Replaces the stored tokens.
    async fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError>;
    /// Removes the stored tokens.
    async fn clear(&self) -> Result<(), StoreError>;
    /// Takes the store's refresh lock, held until the returned guard is dropped.
    ///
    /// Stores that only one session uses need no lock: the default returns a no-op guard.
    async fn lock(&self) -> Result<StoreLock, StoreError> {
        Ok(StoreLock::none())
    }

    /// How long the lock lasts without renewal, for stores whose lock is a lease (Redis). The
    /// session keeps its refresh timeout clearly below it. `None`: the lock is held until
    /// released (in-process, or a file lock the OS holds).
    fn lock_lease(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A shared store is still a store, so a test or an app can keep a handle to inspect it.
#[async_trait::async_trait]
impl<T: TokenStore + ?Sized> TokenStore for std::sync::Arc<T> {
    async fn load(&self) -> Result<Option<StoredTokens>, StoreError> {
        (**self).load().await
    }
    async fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        (**self).save(tokens).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        (**self).clear().await
    }
    async fn lock(&self) -> Result<StoreLock, StoreError> {
        (**self).lock().await
    }
    fn lock_lease(&self) -> Option<std::time::Duration> {
        (**self).lock_lease()
    }
}

/// Guard of a [`TokenStore::lock`]; the lock is released when it is dropped.
pub struct StoreLock {
    _guard: Option<Box<dyn Send + Sync>>,
}

impl StoreLock {
    /// A guard that holds nothing.
    pub fn none() -> Self {
        Self { _guard: None }
    }

    /// Whether the lock is still held. The session asks right before sending a refresh: a
    /// lease can expire while a process is paused, and a refresh sent without the lock could
    /// present a token another process already rotated. Locks without a lease are always held.
    pub async fn still_held(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Wraps whatever releases the lock on drop.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            _guard: Some(Box::new(guard)),
        }
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock")
            .field("held", &self._guard.is_some())
            .finish()
    }
}

/// A token store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The stored data is unreadable; the store will not overwrite it silently.
    #[error("stored tokens are corrupt: {0}")]
    Corrupt(String),
    /// Anything else the backend reports.
    #[error("{0}")]
    Backend(String),
    /// A store operation did not finish within the session's store timeout (a hung disk, a
    /// FIFO at the store path, an unresponsive server).
    #[error("the store's {operation} did not finish within {after:?}")]
    Timeout {
        /// Which operation: `load`, `save`, `clear` or `lock`.
        operation: &'static str,
        /// The timeout.
        after: std::time::Duration,
    },
    /// A newer generation is already stored: a stale writer may not replace it. Shared stores
    /// compare generations before writing, so a process that lost the refresh lock (or never
    /// took it) cannot overwrite a newer pair with an older one.
    #[error(
        "generation {stored} is already stored; refusing to replace it with generation {attempted}"
    )]
    StaleWrite {
        /// The generation in the store.
        stored: u64,
        /// The generation that was to be written.
        attempted: u64,
    },
}
