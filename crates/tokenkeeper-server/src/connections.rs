//! The accept loop: HTTP/1 connections with a header read timeout and a connection limit,
//! and a graceful shutdown.
//!
//! `axum::serve` sets neither (hyper's header timeout needs a timer it does not give), so a
//! client that opens connections and never finishes a request would hold them forever. Here:
//!
//! - **Connection limit**: a connection is accepted only with one of `max_connections`
//!   semaphore permits, held until it closes. Beyond the limit, new connections wait in the
//!   kernel's listen backlog (their TCP handshake completes, nothing is read) until one
//!   closes; none is refused.
//! - **Header read timeout**: hyper's http1 `header_read_timeout`, with tokio's timer. It runs
//!   whenever the connection waits for the headers of a request: from accept to the end of the
//!   first request's headers, and again from each response to the end of the next request's
//!   headers. A client that sends half a request line, or nothing, or keeps a keep-alive
//!   connection idle, is disconnected once it expires. It does not run while a handler works
//!   (the artificial latency and hung refreshes are not cut short). The body gets as long
//!   again, once the headers are in ([`crate::body_deadline`]).
//! - **Shutdown**: stop accepting, ask every connection to finish its current request and
//!   close (idle ones close at once), and resolve once every connection has.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How long to wait after an accept error that is not about one connection (out of file
/// descriptors, say) before accepting again, so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The connection limits of a server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// See [`ServerConfig::header_read_timeout`](crate::ServerConfig::header_read_timeout).
    pub(crate) header_read_timeout: Duration,
    /// See [`ServerConfig::max_connections`](crate::ServerConfig::max_connections).
    pub(crate) max_connections: usize,
}

/// The connection slots, and how many connections hold one; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    max: usize,
    /// Connections being served (the accept loop also holds a permit while it waits for the
    /// next connection, so the semaphore alone over-counts by one).
    open: Arc<AtomicUsize>,
}

/// One connection's slot: frees the permit and the count when the connection ends.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slots {
    /// `max` slots, all free.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn occupy(&self, permit: OwnedSemaphorePermit) -> Slot {
        self.open.fetch_add(1, Ordering::Relaxed);
        Slot {
            _permit: permit,
            open: Arc::clone(&self.open),
        }
    }

    /// Resolves once every connection has closed.
    async fn all_closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        // An error means the semaphore was closed, which we never do; nothing to wait for.
        let _ = self.permits.acquire_many(all).await;
    }
}

/// A listener on `addr` with a listen backlog of `backlog` (the kernel may cap it).
///
/// `TcpListener::bind` listens with std's backlog of 128; a burst of a thousand new
/// connections overflows that while the accept loop waits for the CPU, and the kernel drops
/// handshakes (some clients then see resets). Address reuse as `bind` sets it, so a restarted
/// server can bind the port its predecessor's connections linger on.
pub(crate) fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    slots: Slots,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    // Connections watch `stop_tx.closed()`: dropping `stop_rx` asks them all to finish.
    let (stop_tx, stop_rx) = watch::channel(());
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error, &mut shutdown).await;
                    continue;
                }
            },
        };
        tracing::trace!(%peer, "connection accepted");
        tokio::spawn(connection(
            tcp,
            app.clone(),
            limits.header_read_timeout,
            slots.occupy(permit),
            stop_tx.clone(),
        ));
    }
    drop(listener);
    drop(stop_rx);
    tracing::debug!(
        open = slots.open(),
        "not accepting; waiting for connections to finish"
    );
    slots.all_closed().await;
}

/// Logs an accept error; pauses after one that is not about a single connection.
async fn accept_failed(
    error: &io::Error,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) {
    let one_connection = matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    );
    if one_connection {
        tracing::debug!(%error, "a connection failed while being accepted");
        return;
    }
    tracing::error!(%error, "cannot accept connections; pausing");
    tokio::select! {
        () = shutdown.as_mut() => {}
        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
    }
}

/// Serves one connection, holding its `slot` until it closes.
async fn connection(
    tcp: TcpStream,
    app: Router,
    header_read_timeout: Duration,
    slot: Slot,
    stop: watch::Sender<()>,
) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // Header timeouts, resets, malformed requests: the client's doing.
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            () = stop.closed(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}
