//! Each store as the conformance suite sees it (`tokenkeeper_testkit::conformance::Backend`): a
//! fresh *place* (a file, a Redis key, a PostgreSQL row), handles on it as separate processes
//! would have them, and the few things only the backend itself can show or do (whether the lock
//! is held, a dead holder's lease, a dropped connection). `place` makes a fresh one named after
//! the test; `None` when the backend is not there (the test skips, or fails under CI: see
//! `redis_env`, `postgres_env`).

use crate::store_worker::{self, Mode, StoreSpec, WorkerConfig};
use std::path::PathBuf;
use std::time::Duration;
use tokenkeeper::store::TokenStore;
use tokenkeeper_testkit::conformance::{Backend, Shared};
#[cfg(any(feature = "redis", feature = "postgres"))]
use tokenkeeper_testkit::conformance::{Leased, proxy, proxy::Proxy};

/// Starts a child that opens `store`, takes its lock, saves under it and holds the lock (for
/// two minutes at the most) until killed.
fn start_lock_holder(store: StoreSpec) -> std::process::Child {
    let config = WorkerConfig::without_server(store, Mode::Hold, Duration::from_secs(120));
    store_worker::spawn(&config).into_process()
}

// --- MemoryStore: handles are clones of one store (one process), so only the lock applies.

pub struct Memory(std::sync::Arc<tokenkeeper::store::MemoryStore>);

impl Memory {
    pub async fn place(_: &str) -> Option<Self> {
        Some(Memory(std::sync::Arc::new(
            tokenkeeper::store::MemoryStore::new(),
        )))
    }
}

impl Backend for Memory {
    type Store = std::sync::Arc<tokenkeeper::store::MemoryStore>;
    const DEFAULT_LEASE: Option<Duration> = None;

    async fn handle(&self, _: Option<Duration>) -> Self::Store {
        std::sync::Arc::clone(&self.0)
    }

    async fn lock_is_held(&self) -> bool {
        use futures_util::FutureExt as _;
        self.0.lock().now_or_never().is_none()
    }
}

// --- FileStore: a file in a temporary directory; each handle opens it anew.

pub struct File {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl File {
    pub async fn place(_: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        Some(File {
            path: dir.path().join("tokens.json"),
            _dir: dir,
        })
    }
}

impl Backend for File {
    type Store = tokenkeeper::store::FileStore;
    const DEFAULT_LEASE: Option<Duration> = None;

    async fn handle(&self, _: Option<Duration>) -> Self::Store {
        tokenkeeper::store::FileStore::open(&self.path).unwrap()
    }

    async fn lock_is_held(&self) -> bool {
        let store = tokenkeeper::store::FileStore::open(&self.path).unwrap();
        crate::store_worker::flock_holder(store.lock_path()).is_some()
    }
}

impl Shared for File {
    fn start_lock_holder(&self, _: Duration) -> std::process::Child {
        start_lock_holder(StoreSpec::File {
            path: self.path.clone(),
        })
    }
}

// --- RedisStore: a unique key; each handle has its own connection.

#[cfg(feature = "redis")]
pub struct Redis {
    url: String,
    key: String,
    lock_key: String,
}

#[cfg(feature = "redis")]
impl Redis {
    pub async fn place(test: &str) -> Option<Self> {
        let url = crate::redis_env::redis_url()?;
        let key = crate::redis_env::unique_key(test);
        let lock_key = tokenkeeper::store::RedisStore::connect(&url, key.clone())
            .await
            .unwrap()
            .lock_key()
            .to_owned();
        Some(Redis { url, key, lock_key })
    }
}

#[cfg(feature = "redis")]
impl Backend for Redis {
    type Store = tokenkeeper::store::RedisStore;
    const DEFAULT_LEASE: Option<Duration> = Some(Duration::from_secs(10));

    async fn handle(&self, lease: Option<Duration>) -> Self::Store {
        let store = tokenkeeper::store::RedisStore::connect(&self.url, self.key.clone())
            .await
            .unwrap();
        match lease {
            Some(lease) => store.lock_ttl(lease),
            None => store,
        }
    }

    async fn lock_is_held(&self) -> bool {
        // Gone once its TTL ran out (-2; 0 in its last millisecond); a lock without a TTL (-1)
        // would be a bug.
        let ttl: i64 =
            crate::redis_env::raw(&self.url, redis::cmd("PTTL").arg(&self.lock_key)).await;
        assert_ne!(ttl, -1, "a lock without a TTL");
        ttl > 0
    }
}

#[cfg(feature = "redis")]
impl Shared for Redis {
    fn start_lock_holder(&self, lease: Duration) -> std::process::Child {
        start_lock_holder(StoreSpec::Redis {
            url: self.url.clone(),
            key: self.key.clone(),
            lock_ttl_ms: Some(lease.as_millis() as u64),
        })
    }
}

#[cfg(feature = "redis")]
impl Leased for Redis {
    async fn holder(&self) -> Option<String> {
        crate::redis_env::raw(&self.url, redis::cmd("GET").arg(&self.lock_key)).await
    }

    async fn plant_dead_holder(&self, after: Duration) {
        let () = crate::redis_env::raw(
            &self.url,
            redis::cmd("SET")
                .arg(&self.lock_key)
                .arg("a-dead-process")
                .arg("PX")
                .arg(after.as_millis() as u64),
        )
        .await;
    }

    async fn expire_lease(&self) {
        let _: i64 =
            crate::redis_env::raw(&self.url, redis::cmd("PEXPIRE").arg(&self.lock_key).arg(1))
                .await;
        // Gone, not merely below 1 ms to live (PTTL reads 0 then).
        loop {
            let exists: i64 =
                crate::redis_env::raw(&self.url, redis::cmd("EXISTS").arg(&self.lock_key)).await;
            if exists == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn handle_through(&self, proxy: &Proxy, lease: Duration) -> Self::Store {
        tokenkeeper::store::RedisStore::connect(
            &proxy::through(&self.url, &proxy.addr),
            self.key.clone(),
        )
        .await
        .unwrap()
        .lock_ttl(lease)
    }

    fn server(&self) -> String {
        proxy::host_port(&self.url)
    }

    async fn kill_connections(&self, ports: &[u16]) {
        for port in ports {
            let killed: i64 = crate::redis_env::raw(
                &self.url,
                redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ADDR")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("SKIPME")
                    .arg("yes"),
            )
            .await;
            assert!(killed <= 1, "{killed} connections from one port");
        }
    }
}

// --- PostgresStore: a unique row; each handle has its own connection.

#[cfg(feature = "postgres")]
pub struct Postgres {
    url: String,
    key: String,
}

#[cfg(feature = "postgres")]
impl Postgres {
    pub async fn place(test: &str) -> Option<Self> {
        let url = crate::postgres_env::postgres_url()?;
        let key = crate::postgres_env::unique_key(test);
        Some(Postgres { url, key })
    }
}

#[cfg(feature = "postgres")]
impl Backend for Postgres {
    type Store = tokenkeeper::store::PostgresStore;
    const DEFAULT_LEASE: Option<Duration> = Some(Duration::from_secs(10));

    async fn handle(&self, lease: Option<Duration>) -> Self::Store {
        let store = crate::postgres_env::store(&self.url, &self.key).await;
        match lease {
            Some(lease) => store.lock_ttl(lease),
            None => store,
        }
    }

    async fn lock_is_held(&self) -> bool {
        let rows = crate::postgres_env::query(
            &self.url,
            "SELECT expires_at > clock_timestamp() FROM tokenkeeper_locks WHERE key = $1",
            &[&self.key],
        )
        .await;
        rows.first().is_some_and(|row| row.get::<_, bool>(0))
    }
}

#[cfg(feature = "postgres")]
impl Shared for Postgres {
    fn start_lock_holder(&self, lease: Duration) -> std::process::Child {
        start_lock_holder(StoreSpec::Postgres {
            url: self.url.clone(),
            key: self.key.clone(),
            lock_ttl_ms: Some(lease.as_millis() as u64),
        })
    }
}

#[cfg(feature = "postgres")]
impl Leased for Postgres {
    async fn holder(&self) -> Option<String> {
        crate::postgres_env::query(
            &self.url,
            "SELECT holder FROM tokenkeeper_locks WHERE key = $1",
            &[&self.key],
        )
        .await
        .first()
        .map(|row| row.get(0))
    }

    async fn plant_dead_holder(&self, after: Duration) {
        crate::postgres_env::execute(
            &self.url,
            "INSERT INTO tokenkeeper_locks (key, holder, expires_at) \
             VALUES ($1, 'a-dead-process', clock_timestamp() + make_interval(secs => $2))",
            &[&self.key, &after.as_secs_f64()],
        )
        .await;
    }

    async fn expire_lease(&self) {
        crate::postgres_env::execute(
            &self.url,
            "UPDATE tokenkeeper_locks SET expires_at = clock_timestamp() - interval '1 second' \
             WHERE key = $1",
            &[&self.key],
        )
        .await;
    }

    async fn handle_through(&self, proxy: &Proxy, lease: Duration) -> Self::Store {
        let url = proxy::through(&self.url, &proxy.addr);
        let store = tokenkeeper::store::PostgresStore::connect(&url, self.key.clone())
            .await
            .unwrap()
            .lock_ttl(lease);
        store.migrate().await.unwrap();
        store
    }

    fn server(&self) -> String {
        proxy::host_port(&self.url)
    }

    async fn kill_connections(&self, ports: &[u16]) {
        let ports: Vec<i32> = ports.iter().map(|&p| i32::from(p)).collect();
        let killed = crate::postgres_env::query(
            &self.url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE client_addr = '127.0.0.1' AND client_port = ANY($1)",
            &[&ports],
        )
        .await;
        assert_eq!(
            killed.len(),
            ports.len(),
            "one backend per proxied connection"
        );
    }
}
