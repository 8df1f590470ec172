//! Many logins in one process: heap bytes per idle session of a `tokenkeeper::Sessions`
//! collection with 100,000 keys, tokens included, and what is left after every session was
//! evicted; and the CPU the idle collection uses.
//!
//! Measured by `cargo bench -p tokenkeeper-cli --bench keyed_memory`, a process of its own whose
//! global allocator counts live heap bytes (as the server-memory bench does). It writes its
//! figures to [`results_path`]; `tokenkeeper bench` renders them as BENCHMARKS.md's section 7.
//!
//! The tokens have the reference server's shape: one real login gives the lengths of its access
//! token (a signed JWT) and refresh token; every key then gets random tokens of those lengths,
//! valid for an hour. Two stores, side by side in one run:
//! - **shared store** (Redis, PostgreSQL): the tokens live outside the process, so the bench
//!   uses a store that keeps nothing here; what is measured is the sessions alone;
//! - **in-memory stores** (`MemoryStores`, the default): the store's copy of every pair is in
//!   the process too, and stays after eviction (it is the tokens' only home).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokenkeeper::store::{KeyedStore, MemoryStores, StoreError, StoredTokens, TokenStore};
use tokenkeeper::{Session, Sessions, TokenSet, refresh};

/// Sizes of a measurement.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Keys signed in.
    pub keys: usize,
    /// How long the idle collection is watched for CPU use.
    pub idle: Duration,
}

impl Plan {
    /// The full run.
    pub fn full() -> Self {
        Self {
            keys: 100_000,
            idle: Duration::from_secs(10),
        }
    }

    /// A smoke run for tests.
    pub fn quick() -> Self {
        Self {
            keys: 1_000,
            idle: Duration::from_millis(200),
        }
    }
}

/// One store's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setting {
    /// Heap bytes per signed-in idle session, tokens included.
    pub per_session: f64,
    /// Heap bytes per key left once every session was evicted.
    pub after_eviction: f64,
}

/// The bench's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyedMemory {
    /// The command that produced them.
    pub command: String,
    /// CPU model and cores.
    pub machine: String,
    /// When.
    pub date: String,
    /// Keys signed in.
    pub keys: usize,
    /// Length of each access token (the reference server's JWT).
    pub access_token_bytes: usize,
    /// Length of each refresh token.
    pub refresh_token_bytes: usize,
    /// Tokens in a shared store outside the process.
    pub shared_store: Setting,
    /// Tokens in `MemoryStores`.
    pub memory_stores: Setting,
    /// Seconds the idle collection was watched.
    pub idle_seconds: f64,
    /// CPU time (user + system, whole process) used meanwhile, in milliseconds.
    pub idle_cpu_ms: f64,
}

/// Where the bench binary writes its figures.
pub fn results_path() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    target.join("tokenkeeper-bench").join("keyed-memory.json")
}

/// The figures at `path`, if the bench was run.
pub fn read(path: &Path) -> Option<KeyedMemory> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Writes `figures` to `path`, creating its directory.
pub fn write(path: &Path, figures: &KeyedMemory) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(figures)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Stands for a store outside the process: keeps nothing here.
#[derive(Debug)]
struct Elsewhere;

#[tokenkeeper::async_trait]
impl TokenStore for Elsewhere {
    async fn load(&self) -> Result<Option<StoredTokens>, StoreError> {
        Ok(None)
    }
    async fn save(&self, _: &StoredTokens) -> Result<(), StoreError> {
        Ok(())
    }
    async fn clear(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One shared [`Elsewhere`] for every key: a shared store's per-key handle is a few reference
/// counts over one connection, not counted here.
struct ElsewhereFamily(Arc<dyn TokenStore>);

impl KeyedStore<u64> for ElsewhereFamily {
    fn store_for(&self, _: &u64) -> Result<Arc<dyn TokenStore>, StoreError> {
        Ok(Arc::clone(&self.0))
    }
}

/// The reference server's token lengths, from one real login.
async fn token_lengths() -> anyhow::Result<(usize, usize)> {
    let server = tokenkeeper_server::start(tokenkeeper_server::ServerConfig::default()).await?;
    let answer = reqwest::Client::new()
        .post(server.url("/oauth2/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", "demo"),
        ])
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let tokens = TokenSet::from_response(&answer)?;
    use tokenkeeper::secrecy::ExposeSecret as _;
    let access = tokens.access_token().expose_secret().len();
    let refresh = tokens
        .refresh_token()
        .map_or(43, |secret| secret.expose_secret().len());
    server.shutdown().await;
    Ok((access, refresh))
}

fn random_text(len: usize) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(rng.random_range(b'a'..=b'z')))
        .collect()
}

fn sessions(stores: impl KeyedStore<u64>, keys: usize) -> anyhow::Result<Sessions<u64>> {
    Ok(Sessions::builder()
        .session(
            Session::builder()
                .refresher(refresh::from_fn(|_| async {
                    Err(refresh::RefreshError::NoRefreshToken)
                }))
                .attach_to(["https://api.example.com"]),
        )
        .store(stores)
        .capacity(keys as u64)
        .idle_timeout(Duration::from_secs(3600))
        .build()?)
}

/// Signs in `plan.keys` keys and reads the live bytes before, after, and after eviction.
async fn setting(
    logins: &Sessions<u64>,
    plan: &Plan,
    lengths: (usize, usize),
    live_bytes: &impl Fn() -> i64,
    idle: Option<&mut (f64, f64)>,
) -> anyhow::Result<Setting> {
    logins.in_memory();
    let before = live_bytes();
    // Each key's tokens are made here and handed over: what the collection keeps of them is
    // counted, the rest is freed before the next key.
    for key in 0..plan.keys {
        let tokens = TokenSet::new(random_text(lengths.0))
            .with_refresh_token(random_text(lengths.1))
            .with_expires_in(Duration::from_secs(3600));
        logins.sign_in(key as u64, tokens).await?;
    }
    logins.in_memory();
    let signed_in = live_bytes();
    if let Some(idle) = idle {
        let cpu_before = super::cpu::process().unwrap_or_default();
        tokio::time::sleep(plan.idle).await;
        let cpu_after = super::cpu::process().unwrap_or_default();
        *idle = (
            plan.idle.as_secs_f64(),
            cpu_after.saturating_sub(cpu_before).as_secs_f64() * 1e3,
        );
    }
    logins.evict_all();
    logins.in_memory();
    let evicted = live_bytes();
    let keys = plan.keys as f64;
    Ok(Setting {
        per_session: (signed_in - before) as f64 / keys,
        after_eviction: (evicted - before) as f64 / keys,
    })
}

/// Measures `plan` with `live_bytes` reading the heap bytes allocated and not yet freed.
pub async fn measure(
    plan: &Plan,
    live_bytes: impl Fn() -> i64,
    command: String,
) -> anyhow::Result<KeyedMemory> {
    let lengths = token_lengths().await?;
    let mut idle = (0.0, 0.0);
    let shared = sessions(ElsewhereFamily(Arc::new(Elsewhere)), plan.keys)?;
    let shared_store = setting(&shared, plan, lengths, &live_bytes, Some(&mut idle)).await?;
    drop(shared);
    let memory = sessions(MemoryStores::new(), plan.keys)?;
    let memory_stores = setting(&memory, plan, lengths, &live_bytes, None).await?;
    let machine = super::machine::Machine::detect();
    Ok(KeyedMemory {
        command,
        machine: format!(
            "{}, {} logical CPUs, {}",
            machine.cpu, machine.cores, machine.os
        ),
        date: machine.date,
        keys: plan.keys,
        access_token_bytes: lengths.0,
        refresh_token_bytes: lengths.1,
        shared_store,
        memory_stores,
        idle_seconds: idle.0,
        idle_cpu_ms: idle.1,
    })
}
