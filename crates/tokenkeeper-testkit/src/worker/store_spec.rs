//! Which shared store a worker opens: enough to reach the same place from another process.

use super::WorkerError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(any(feature = "redis", feature = "postgres"))]
use std::time::Duration;
use tokenkeeper::store::{FileStore, TokenStore};

/// A shared store, as another process opens it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum StoreSpec {
    /// A [`FileStore`] at this path.
    File {
        /// The token file.
        path: PathBuf,
    },
    /// A `RedisStore` (feature `redis`).
    Redis {
        /// `redis://host:port`
        url: String,
        /// The key the pair is stored under.
        key: String,
        /// The lock's lease; the store's default if `None`.
        lock_ttl_ms: Option<u64>,
    },
    /// A `PostgresStore` (feature `postgres`), its tables made if missing.
    Postgres {
        /// `postgres://user@host:port/db`
        url: String,
        /// The row the pair is stored in.
        key: String,
        /// The lock's lease; the store's default if `None`.
        lock_ttl_ms: Option<u64>,
    },
}

impl StoreSpec {
    /// `a file`, `Redis` or `PostgreSQL`, for messages.
    pub fn backend_name(&self) -> &'static str {
        match self {
            StoreSpec::File { .. } => "a file",
            StoreSpec::Redis { .. } => "Redis",
            StoreSpec::Postgres { .. } => "PostgreSQL",
        }
    }

    /// Opens (connects to) the store.
    pub async fn open(&self) -> Result<Arc<dyn TokenStore>, WorkerError> {
        match self {
            StoreSpec::File { path } => Ok(Arc::new(FileStore::open(path)?)),
            #[cfg(feature = "redis")]
            StoreSpec::Redis {
                url,
                key,
                lock_ttl_ms,
            } => {
                let store = tokenkeeper::store::RedisStore::connect(url, key.clone()).await?;
                Ok(Arc::new(match lock_ttl_ms {
                    Some(ms) => store.lock_ttl(Duration::from_millis(*ms)),
                    None => store,
                }))
            }
            #[cfg(not(feature = "redis"))]
            StoreSpec::Redis { .. } => Err(WorkerError::NotBuilt("redis")),
            #[cfg(feature = "postgres")]
            StoreSpec::Postgres {
                url,
                key,
                lock_ttl_ms,
            } => {
                let store = tokenkeeper::store::PostgresStore::connect(url, key.clone()).await?;
                let store = match lock_ttl_ms {
                    Some(ms) => store.lock_ttl(Duration::from_millis(*ms)),
                    None => store,
                };
                // Idempotent, and safe from every process at once.
                store.migrate().await?;
                Ok(Arc::new(store))
            }
            #[cfg(not(feature = "postgres"))]
            StoreSpec::Postgres { .. } => Err(WorkerError::NotBuilt("postgres")),
        }
    }
}
