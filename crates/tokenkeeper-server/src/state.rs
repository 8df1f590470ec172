//! [`AppState`]: everything the handlers share.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore as _;
use tokio::sync::watch;

use crate::access::Policy;
use crate::config::{Latency, ServerConfig};
use crate::dpop::Dpop;
use crate::errors::ServerError;
use crate::families::{Families, Limits};
use crate::faults::{FaultSettings, Faults, LiveLatency};
use crate::stats::{Counters, Stats};
use crate::tokens::TokenMinter;

/// The shared state behind [`router`](crate::router): keys, the family table,
/// counters and live knobs. Cheap to clone (one `Arc`).
///
/// Build one with [`AppState::new`] to embed the server's routes in your own
/// axum app; call [`AppState::begin_shutdown`] when your server stops so that
/// hung refresh requests (fault injection) finish too.
#[derive(Clone)]
pub struct AppState {
    pub(crate) shared: Arc<Shared>,
}

/// What [`AppState`] points to.
pub(crate) struct Shared {
    pub(crate) minter: TokenMinter,
    pub(crate) families: Families,
    pub(crate) counters: Counters,
    pub(crate) faults: Faults,
    pub(crate) latency: LiveLatency,
    pub(crate) access: Policy,
    /// [`ServerConfig::header_bearer_prefix`].
    pub(crate) header_bearer_prefix: bool,
    /// DPoP, when on ([`ServerConfig::dpop`]).
    pub(crate) dpop: Option<Dpop>,
    /// How long a request body may take once the headers are in ([`crate::body_deadline`]).
    pub(crate) body_read_timeout: Duration,
    users: Vec<(String, String)>,
    shutdown: watch::Sender<bool>,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("access_ttl", &self.shared.minter.access_ttl())
            .field("faults", &self.shared.faults.settings())
            .field("latency", &self.shared.latency.get())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for `config` (validated first).
    pub fn new(config: &ServerConfig) -> Result<Self, ServerError> {
        config.validate()?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                let mut secret = vec![0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                secret
            }
        };
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            shared: Arc::new(Shared {
                minter: TokenMinter::new(&secret, config.access_ttl),
                families: Families::new(Limits {
                    refresh_ttl: config.refresh_ttl,
                    grace: config.grace_period,
                    retention: config.family_retention,
                    max_families: config.max_families,
                    prune: config.prune_families,
                }),
                counters: Counters::default(),
                faults: Faults::new(config.refresh_failure_rate, config.refresh_hang),
                latency: LiveLatency::new(config.latency),
                access: Policy::new(config)?,
                header_bearer_prefix: config.header_bearer_prefix,
                dpop: config.dpop.as_ref().map(Dpop::new),
                body_read_timeout: config.header_read_timeout,
                users: config.users.clone(),
                shutdown,
            }),
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let families = &self.shared.families;
        let mut stats = Stats {
            families: families.len() as u64,
            families_pruned: families.pruned(),
            ..self.shared.counters.snapshot()
        };
        if let Some(dpop) = &self.shared.dpop {
            (
                stats.dpop.replay_cache_len,
                stats.dpop.replay_cache_evictions,
            ) = dpop.replay_stats();
        }
        stats
    }

    /// Zeroes every counter and forgets every family: all tokens issued so
    /// far become unknown (refresh) or invalid (access). Fault and latency
    /// settings are kept, and so are the DPoP `jti`s remembered against replay (forgetting
    /// them would let a proof sent before the reset be replayed after it).
    pub fn reset(&self) {
        self.shared.families.clear();
        self.shared.counters.reset();
        if let Some(dpop) = &self.shared.dpop {
            dpop.reset();
        }
    }

    /// Makes every DPoP nonce handed out so far stale, so the next proof at the token
    /// endpoint or the API is challenged (`use_dpop_nonce`). Returns false (and does nothing)
    /// unless DPoP nonces are on ([`DpopConfig::nonce`](crate::DpopConfig::nonce)).
    pub fn rotate_dpop_nonce(&self) -> bool {
        self.shared
            .dpop
            .as_ref()
            .is_some_and(crate::dpop::Dpop::rotate_nonce)
    }

    /// Sets the probability that a refresh request is answered 503
    /// (clamped to 0.0..=1.0).
    pub fn set_refresh_failure_rate(&self, rate: f64) {
        self.shared.faults.set_rate(rate);
    }

    /// Makes refresh requests hang (never answered until shutdown) or not.
    pub fn set_refresh_hang(&self, hang: bool) {
        self.shared.faults.set_hang(hang);
    }

    /// The current fault settings.
    pub fn faults(&self) -> FaultSettings {
        self.shared.faults.settings()
    }

    /// Changes the lifetime of access tokens issued from now on (zero is ignored).
    pub fn set_access_ttl(&self, ttl: Duration) {
        if !ttl.is_zero() {
            self.shared.minter.set_access_ttl(ttl);
        }
    }

    /// Replaces the artificial latencies.
    pub fn set_latency(&self, latency: Latency) {
        self.shared.latency.set(latency);
    }

    /// The current artificial latencies.
    pub fn latency(&self) -> Latency {
        self.shared.latency.get()
    }

    /// Releases every hung refresh request (they answer 503) and makes later
    /// ones answer at once. Irreversible.
    pub fn begin_shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// True once [`AppState::begin_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shared.shutdown.borrow()
    }
}

impl Shared {
    /// True when `username`/`password` is one of the configured users.
    pub(crate) fn check_credentials(&self, username: &str, password: &str) -> bool {
        self.users
            .iter()
            .any(|(u, p)| u == username && p == password)
    }

    /// Resolves when shutdown begins.
    pub(crate) async fn shutdown_signal(&self) {
        let mut rx = self.shutdown.subscribe();
        // An error means the sender is gone, which is as good as shut down.
        let _ = rx.wait_for(|down| *down).await;
    }
}
