//! One process of a multi-process run over a shared store: what it is told
//! ([`WorkerConfig`]), what it does ([`run`]) and what it reports ([`Summary`]).
//!
//! Three kinds of worker ([`Mode`]):
//! - [`Mode::Requests`]: restores a session from the shared store (someone signed in before,
//!   see [`sign_in`]), runs `tasks` concurrent request loops against the reference server until
//!   `duration_ms` passed (or the stop file exists), and counts what the session reported
//!   (refreshed, adopted, store failures, logouts). The same loops run through any other
//!   session with [`requests_through`].
//! - [`Mode::Churn`]: no server; rewrites the store as fast as it can under its lock (load,
//!   generation + 1, save), so a `kill -9` lands mid-write often.
//! - [`Mode::Hold`]: no server; takes the lock, saves the next generation under it, and keeps
//!   the lock until killed (or `duration_ms` passed): the lock holder the conformance suite's
//!   `kill -9` test kills.
//!
//! Starting the process and carrying the configuration and the summary across (an environment
//! variable and a line on stdout, say) is the caller's: a test binary re-runs itself, the
//! `tokenkeeper` binary runs a hidden subcommand. Both derive serde's traits for that.
//!
//! ```no_run
//! use tokenkeeper_testkit::worker::{self, StoreSpec, WorkerConfig};
//!
//! # async fn example() -> Result<(), worker::WorkerError> {
//! let config = WorkerConfig::requests(
//!     StoreSpec::File { path: "/tmp/tokens.json".into() },
//!     "http://127.0.0.1:8080",
//! );
//! let summary = worker::run(&config).await?;
//! assert_eq!(summary.failed, 0, "first error: {:?}", summary.first_error);
//! # Ok(()) }
//! ```

mod lock_holder;
mod requests;
mod store_spec;

pub use lock_holder::random_tokens;
pub use requests::{Load, requests_through};
pub use store_spec::StoreSpec;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokenkeeper::store::TokenStore;
use tokenkeeper::{Session, TokenSet, refresh};

/// What a worker does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Mode {
    /// Requests through a session restored from the store, from many tasks.
    Requests,
    /// Rewrites the store under its lock as fast as it can.
    Churn,
    /// Takes the lock, saves once under it, and holds it.
    Hold,
}

/// What a worker is told to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The shared store it opens.
    pub store: StoreSpec,
    /// What it does.
    pub mode: Mode,
    /// The reference server ([`Mode::Requests`]).
    pub base_url: String,
    /// Concurrent request loops ([`Mode::Requests`]).
    pub tasks: usize,
    /// How long it runs at the most.
    pub duration_ms: u64,
    /// Pause between two requests of one task.
    pub pause_ms: u64,
    /// Stop early once this file exists (the parent decides when the run ends).
    pub stop_file: Option<PathBuf>,
}

impl WorkerConfig {
    /// How its request loops run.
    pub fn load(&self) -> Load {
        Load {
            tasks: self.tasks,
            duration: Duration::from_millis(self.duration_ms),
            pause: Duration::from_millis(self.pause_ms),
            stop_file: self.stop_file.clone(),
        }
    }

    /// A [`Mode::Requests`] worker at `base_url`: 50 tasks for 6 s, 2 ms between two requests
    /// of a task, no stop file.
    pub fn requests(store: StoreSpec, base_url: &str) -> Self {
        Self {
            store,
            mode: Mode::Requests,
            base_url: base_url.to_owned(),
            tasks: 50,
            duration_ms: 6_000,
            pause_ms: 2,
            stop_file: None,
        }
    }

    /// A worker without a server ([`Mode::Churn`], [`Mode::Hold`]) for at most `duration`.
    pub fn without_server(store: StoreSpec, mode: Mode, duration: Duration) -> Self {
        Self {
            store,
            mode,
            base_url: String::new(),
            tasks: 0,
            duration_ms: millis(duration),
            pause_ms: 0,
            stop_file: None,
        }
    }
}

/// What a worker reports when it finishes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests that failed (an error or another status).
    pub failed: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// `Event::Refreshed` seen: refreshes this process made.
    pub refreshed: u64,
    /// `Event::Adopted` seen: pairs another process refreshed, adopted instead of refreshing.
    pub adopted: u64,
    /// `Event::StoreFailed` seen.
    pub store_failures: u64,
    /// `Event::LoggedOut` seen.
    pub logouts: u64,
    /// Why the session ended, one entry per logout (`LogoutReason`'s text).
    pub logout_reasons: Vec<String>,
    /// Events the counter missed because it fell behind the channel: the counts above are
    /// short by that many.
    pub lost_events: u64,
    /// [`Mode::Churn`], [`Mode::Hold`]: saves made.
    pub saves: u64,
    /// The session's counters at the end ([`tokenkeeper::SessionStats`], printed), so a failed
    /// request can be traced to the path that handed it back.
    #[serde(default)]
    pub session_stats: Option<String>,
}

impl Summary {
    /// The sum of several workers' summaries (the first error seen kept).
    pub fn total(summaries: &[Summary]) -> Summary {
        let mut total = Summary::default();
        for s in summaries {
            total.ok += s.ok;
            total.failed += s.failed;
            total.refreshed += s.refreshed;
            total.adopted += s.adopted;
            total.store_failures += s.store_failures;
            total.logouts += s.logouts;
            total
                .logout_reasons
                .extend(s.logout_reasons.iter().cloned());
            total.lost_events += s.lost_events;
            total.saves += s.saves;
            if total.first_error.is_none() {
                total.first_error.clone_from(&s.first_error);
            }
        }
        total
    }
}

/// Why a worker could not do its job (a failed request is counted, not an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The store could not be opened, read or written.
    #[error("store: {0}")]
    Store(#[from] tokenkeeper::store::StoreError),
    /// The session could not be built, restored or signed in.
    #[error("session: {0}")]
    Session(#[from] tokenkeeper::Error),
    /// The refresh endpoint's URL was refused.
    #[error("configuration: {0}")]
    Config(#[from] tokenkeeper::ConfigError),
    /// The login at the reference server failed.
    #[error("login: {0}")]
    Login(#[from] tokenkeeper_server::client::LoginError),
    /// The login's answer held no usable pair.
    #[error("login answer: {0}")]
    Tokens(#[from] tokenkeeper::TokenError),
    /// Nobody signed in to the shared store before the worker started.
    #[error("nobody signed in to the shared store")]
    NotSignedIn,
    /// The store's cargo feature is off in this build.
    #[error("built without the `{0}` feature")]
    NotBuilt(&'static str),
    /// A request loop or the event counter panicked.
    #[error("a task of the worker failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The session's last refresh did not finish within 30 s after the requests stopped.
    #[error("the last refresh did not finish")]
    RefreshStillOut,
}

/// Opens the store `config` names, does what it says and reports it.
pub async fn run(config: &WorkerConfig) -> Result<Summary, WorkerError> {
    run_on(config, config.store.open().await?).await
}

/// [`run`] on a store the caller opened: one that [`StoreSpec::open`] cannot open in this build
/// (its feature is off here, but on where the caller is built), or a store of the caller's own.
pub async fn run_on(
    config: &WorkerConfig,
    store: Arc<dyn TokenStore>,
) -> Result<Summary, WorkerError> {
    match config.mode {
        Mode::Requests => requests::run(config, store).await,
        Mode::Churn => lock_holder::churn(config, &*store).await,
        Mode::Hold => lock_holder::hold(config, &*store).await,
    }
}

/// Logs in at the reference server at `base_url` (its json contract) and signs in through a
/// session over `store`, so that workers can restore from it. Returns the generation signed in.
pub async fn sign_in(base_url: &str, store: Arc<dyn TokenStore>) -> Result<u64, WorkerError> {
    let login = tokenkeeper_server::client::login(
        &reqwest::Client::new(),
        base_url,
        tokenkeeper_server::Contract::Json,
    )
    .await?;
    let tokens = TokenSet::from_response(&login.body)?;
    let session = session(base_url, store)?;
    Ok(session.sign_in(tokens).await?.generation())
}

/// A session over `store` that refreshes at the reference server's json endpoint and attaches
/// to `base_url`.
fn session(base_url: &str, store: Arc<dyn TokenStore>) -> Result<Session, WorkerError> {
    Ok(Session::builder()
        .refresher(refresh::Json::new(&format!("{base_url}/refresh/token"))?)
        .store_arc(store)
        .attach_to([base_url])
        .build()?)
}

/// Clears `running` after the load's duration, or once its stop file exists.
fn stop_when(load: &Load, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let deadline = Instant::now() + load.duration;
    let stop_file = load.stop_file.clone();
    tokio::spawn(async move {
        while Instant::now() < deadline && !stop_file.as_ref().is_some_and(|f| f.exists()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.store(false, Relaxed);
    })
}

/// `duration` in whole milliseconds, saturated.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
