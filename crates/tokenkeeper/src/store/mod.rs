//! Where tokens live between refreshes: the [`TokenStore`] trait, [`MemoryStore`] (one process,
//! the default), [`FileStore`] (every process on one machine), `RedisStore` (feature `redis`) and
//! `PostgresStore` (feature `postgres`) for processes on many machines.
//!
//! A store that several processes share provides a [`lock`](TokenStore::lock): the session takes
//! it around every refresh, re-reads the store under it, and adopts a newer pair written by
//! someone else instead of refreshing again. That is what keeps refresh-token rotation safe
//! across processes.
//!
//! A lock with a *lease* (Redis: the lock expires unless renewed) can be lost while held: the
//! holder is paused (GC, swap, a suspended VM, a saturated machine) past the lease, or Redis fails
//! over to a replica that never saw the lock. Such a store *fences* its guard
//! ([`StoreLock::with_fence`]); the session asks [`StoreLock::still_held`] right before it
//! presents a refresh token, and gives up the refresh if the answer is no, and
//! [`TokenStore::lock_lease`] tells it how long a refresh may take at most.
//!
//! Every store's I/O is bounded: the file store's blocking calls run on tokio's blocking pool, so
//! a hung filesystem stalls one pool thread, not the runtime (the session puts its own timeouts
//! around `load`, `save` and `lock`), and the Redis store gives every command a response timeout.
//!
//! Failures: a failed `save` or `clear` is reported as
//! [`Event::StoreFailed`](crate::Event::StoreFailed) and the session keeps using the tokens in
//! memory. A failed `lock` is different: refreshing without the lock could present a token
//! another process already rotated, so the refresh does not happen and the waiting requests get
//! [`Error::Store`](crate::Error::Store); the next request tries again.

mod file;
mod format;
mod keyed;
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
pub use keyed::{FileStores, KeyedStore, MAX_FILE_KEY_LEN, MemoryStores};
pub use memory::MemoryStore;

use crate::token::TokenSet;
use std::fmt;
use std::time::Duration;

/// The largest generation a store holds: 2⁵³ − 1, so every generation is exact as a double
/// (Lua numbers in Redis scripts, JSON readers in other languages) and adding one to a loaded
/// generation can never overflow.
///
/// A stored generation above it (up to `u64::MAX`) is [`StoreError::Corrupt`] when loaded,
/// never a panic or a wrap-around; saving one is [`StoreError::GenerationOutOfRange`].
/// Generations grow by one per refresh, so no real login comes near.
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

/// A token set with the generation the session gave it.
///
/// Generations grow by one per refresh, across every process sharing a store: a writer under
/// the store's lock saves `generation = stored + 1`. Stores hold at most [`MAX_GENERATION`].
#[derive(Debug, Clone)]
pub struct StoredTokens {
    /// The tokens.
    pub tokens: TokenSet,
    /// Their generation.
    pub generation: u64,
    /// The login they descend from: a random tag chosen at sign-in that every refresh keeps.
    /// Sessions sharing a store compare it to tell another process's new sign-in from a
    /// refresh of the login they hold, so a request refused under one login is never retried
    /// with another login's token. `None` in a document written without one; a store keeps
    /// whatever it is given.
    pub login: Option<u64>,
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

    /// How long the lock stays held by a holder that stops renewing it, for stores whose lock
    /// is a lease (Redis). A refresh must finish well within it: once the lease runs out, another
    /// process may take the lock and present the same refresh token. `None` (the default) for
    /// locks held until released, such as an OS file lock or an in-process mutex.
    ///
    /// ```
    /// use tokenkeeper::store::{MemoryStore, TokenStore};
    ///
    /// assert_eq!(MemoryStore::new().lock_lease(), None);
    /// ```
    fn lock_lease(&self) -> Option<Duration> {
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
    fn lock_lease(&self) -> Option<Duration> {
        (**self).lock_lease()
    }
}

/// Checks whether a lease lock is still held by the guard it belongs to (see
/// [`StoreLock::with_fence`]).
#[async_trait::async_trait]
pub trait LockFence: Send + Sync + 'static {
    /// `Ok(true)` while the lock is ours; `Ok(false)` once it is known to be lost (expired,
    /// taken by another holder, or a renewal failed); `Err` when that cannot be determined now.
    async fn still_held(&self) -> Result<bool, StoreError>;
}

/// Guard of a [`TokenStore::lock`]; the lock is released when it is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tokenkeeper::store::StoreError> {
/// use tokenkeeper::store::{LockFence, StoreError, StoreLock};
///
/// struct Lost;
///
/// #[async_trait::async_trait]
/// impl LockFence for Lost {
///     async fn still_held(&self) -> Result<bool, StoreError> {
///         Ok(false)
///     }
/// }
///
/// assert!(StoreLock::new(()).still_held().await?, "a lock without a lease stays held");
/// assert!(!StoreLock::with_fence((), Lost).still_held().await?);
/// # Ok(()) }
/// ```
pub struct StoreLock {
    _guard: Option<Box<dyn Send + Sync>>,
    fence: Option<Box<dyn LockFence>>,
}

impl StoreLock {
    /// A guard that holds nothing.
    pub fn none() -> Self {
        Self {
            _guard: None,
            fence: None,
        }
    }

    /// Wraps whatever releases the lock on drop, for a lock held until then (an OS file lock, a
    /// mutex guard): [`still_held`](Self::still_held) is always true.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            _guard: Some(Box::new(guard)),
            fence: None,
        }
    }

    /// Wraps the guard of a lock that can be lost while held (a lease that expires unless
    /// renewed), with the check [`still_held`](Self::still_held) runs.
    pub fn with_fence(guard: impl Send + Sync + 'static, fence: impl LockFence) -> Self {
        Self {
            _guard: Some(Box::new(guard)),
            fence: Some(Box::new(fence)),
        }
    }

    /// Whether this guard still holds the lock, checked right before a refresh token is
    /// presented. Always `true` for locks without a lease; for a fenced lock, its
    /// [`LockFence::still_held`].
    pub async fn still_held(&self) -> Result<bool, StoreError> {
        match &self.fence {
            None => Ok(true),
            Some(fence) => fence.still_held().await,
        }
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock")
            .field("held", &self._guard.is_some())
            .field("fenced", &self.fence.is_some())
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
    /// A generation above [`MAX_GENERATION`] was to be saved.
    #[error("generation {generation} is above the largest a store holds ({MAX_GENERATION})")]
    GenerationOutOfRange {
        /// The generation that was to be written.
        generation: u64,
    },
    /// The store's file is not safe to use, so it is neither read nor written: a symbolic link
    /// or something other than a regular file where the token or lock file belongs, or a token
    /// file owned by another user.
    #[error("refusing to use the token store: {0}")]
    Unsafe(String),
}

/// [`StoreError::GenerationOutOfRange`] for a generation above [`MAX_GENERATION`].
pub(crate) fn check_generation(generation: u64) -> Result<(), StoreError> {
    if generation > MAX_GENERATION {
        return Err(StoreError::GenerationOutOfRange { generation });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    struct Flag(Arc<AtomicBool>);

    #[async_trait::async_trait]
    impl LockFence for Flag {
        async fn still_held(&self) -> Result<bool, StoreError> {
            Ok(self.0.load(Relaxed))
        }
    }

    struct Unknown;

    #[async_trait::async_trait]
    impl LockFence for Unknown {
        async fn still_held(&self) -> Result<bool, StoreError> {
            Err(StoreError::Backend("cannot tell".into()))
        }
    }

    #[tokio::test]
    async fn locks_without_a_lease_are_held_until_dropped() {
        assert!(StoreLock::none().still_held().await.unwrap());
        assert!(StoreLock::new(()).still_held().await.unwrap());
        let memory = MemoryStore::new();
        assert!(memory.lock().await.unwrap().still_held().await.unwrap());
        assert_eq!(memory.lock_lease(), None);
        assert_eq!(Arc::new(MemoryStore::new()).lock_lease(), None);
    }

    #[tokio::test]
    async fn a_fenced_lock_asks_its_fence_every_time() {
        let held = Arc::new(AtomicBool::new(true));
        let lock = StoreLock::with_fence((), Flag(Arc::clone(&held)));
        assert!(lock.still_held().await.unwrap());
        held.store(false, Relaxed);
        assert!(!lock.still_held().await.unwrap());
        assert!(
            StoreLock::with_fence((), Unknown)
                .still_held()
                .await
                .is_err()
        );
        assert!(format!("{lock:?}").contains("fenced: true"));
    }

    #[test]
    fn generations_above_the_maximum_are_refused() {
        assert!(check_generation(MAX_GENERATION).is_ok());
        for generation in [MAX_GENERATION + 1, u64::MAX] {
            match check_generation(generation) {
                Err(StoreError::GenerationOutOfRange { generation: g }) => {
                    assert_eq!(g, generation);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
