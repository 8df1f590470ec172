//! Running the server in-process: [`start`] and [`ServerHandle`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::{Latency, ServerConfig};
use crate::connections::{self, Slots};
use crate::errors::ServerError;
use crate::faults::FaultSettings;
use crate::routes::router;
use crate::state::AppState;
use crate::stats::Stats;

/// How long [`ServerHandle::shutdown`] waits for in-flight requests before
/// dropping them.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `config.bind`, spawns the server on the current tokio runtime and
/// returns at once.
///
/// ```no_run
/// # async fn demo() -> Result<(), tokenkeeper_server::ServerError> {
/// use std::time::Duration;
/// use tokenkeeper_server::{ServerConfig, start};
///
/// let server = start(ServerConfig::default().with_access_ttl(Duration::from_secs(2))).await?;
/// println!("token endpoint: {}", server.url("/oauth2/token"));
/// // ... drive it ...
/// assert_eq!(server.stats().reuse_detections, 0);
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let state = AppState::new(&config)?;
    let listener = connections::listen(config.bind, config.listen_backlog).map_err(|source| {
        ServerError::Bind {
            addr: config.bind,
            source,
        }
    })?;
    let addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
    let app = router(state.clone());
    let limits = connections::Limits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
    };
    let slots = Slots::new(limits.max_connections);
    let signal = state.clone();
    let task = tokio::spawn(connections::serve(
        listener,
        app,
        limits,
        slots.clone(),
        async move { signal.shared.shutdown_signal().await },
    ));
    tracing::info!(%addr, "tokenkeeper reference server listening");
    Ok(ServerHandle {
        addr,
        state,
        slots,
        task: Some(task),
    })
}

/// A running server. Dropping the handle begins a graceful shutdown without
/// waiting for it; [`ServerHandle::shutdown`] waits.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    state: AppState,
    slots: Slots,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// [`base_url`](Self::base_url) followed by `path` (which should start
    /// with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The shared state, e.g. to build more routers over it.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Connections open now (at most [`ServerConfig::max_connections`]).
    pub fn open_connections(&self) -> usize {
        self.slots.open()
    }

    /// A snapshot of the counters, read in-process.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Zeroes the counters and forgets every family, in-process (as `POST /__reset` with
    /// the [`ADMIN_HEADER`](crate::ADMIN_HEADER)).
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Sets the probability that a refresh request is answered 503
    /// (clamped to 0.0..=1.0).
    pub fn set_refresh_failure_rate(&self, rate: f64) {
        self.state.set_refresh_failure_rate(rate);
    }

    /// Makes refresh requests hang until shutdown, or not.
    pub fn set_refresh_hang(&self, hang: bool) {
        self.state.set_refresh_hang(hang);
    }

    /// The current fault settings.
    pub fn faults(&self) -> FaultSettings {
        self.state.faults()
    }

    /// Changes the lifetime of access tokens issued from now on; tokens already issued keep
    /// theirs. Lets a test expire the first token quickly and keep the next ones.
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.state.set_access_ttl(ttl);
    }

    /// Makes every DPoP nonce handed out so far stale, in-process (as
    /// `POST /__dpop/rotate-nonce`): the next proof at the token endpoint or the API gets a
    /// `use_dpop_nonce` challenge. False (and nothing happens) unless DPoP nonces are on.
    pub fn rotate_dpop_nonce(&self) -> bool {
        self.state.rotate_dpop_nonce()
    }

    /// Replaces the artificial latencies, effective for the next requests.
    pub fn set_latency(&self, latency: Latency) {
        self.state.set_latency(latency);
    }

    /// Stops accepting connections, releases hung refresh requests, and waits
    /// (up to 10 s) for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        self.state.begin_shutdown();
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_TIMEOUT, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "server task failed"),
                Err(_) => {
                    tracing::warn!("graceful shutdown timed out; dropping connections");
                    task.abort();
                }
            }
        }
        tracing::info!(addr = %self.addr, "tokenkeeper reference server stopped");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.state.begin_shutdown();
    }
}
