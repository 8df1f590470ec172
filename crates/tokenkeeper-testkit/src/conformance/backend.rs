//! How the suite sees a store: a fresh *place* of it (a file, a Redis key, a PostgreSQL row),
//! handles on that place as separate processes would have them, and the few things only the
//! backend itself can show or do (whether the lock is held, a dead holder's lease, a dropped
//! connection). A test binary implements these for its stores; the place is made fresh for
//! every test.

use super::proxy::Proxy;
use std::future::Future;
use std::time::Duration;
use tokenkeeper::store::{StoreError, TokenStore};

/// A store under test, on one place of its backend: the factory of its handles.
pub trait Backend: Sized {
    /// A handle on the place.
    type Store: TokenStore + Clone + 'static;
    /// The lease a handle has unless asked for another (`None`: a lock held until released).
    const DEFAULT_LEASE: Option<Duration>;

    /// Another handle on the place, with its own file description or connection, as another
    /// process has; with `lease` as its lock's lease where the store has leases.
    fn handle(&self, lease: Option<Duration>) -> impl Future<Output = Self::Store> + Send;

    /// Whether anyone holds the place's lock (an unexpired lease), seen from outside.
    fn lock_is_held(&self) -> impl Future<Output = bool> + Send;
}

/// A store another process can share.
pub trait Shared: Backend {
    /// Starts another process that opens this place (with `lease` as its lock's lease), takes
    /// the lock, saves the next generation under it and holds the lock until killed: a
    /// [`Mode::Hold`](crate::worker::Mode::Hold) worker does exactly that.
    fn start_lock_holder(&self, lease: Duration) -> std::process::Child;
}

/// A store whose lock is a lease in the backend.
pub trait Leased: Backend {
    /// Who holds the lease, as the backend records it.
    fn holder(&self) -> impl Future<Output = Option<String>> + Send;
    /// Records a holder named `a-dead-process` whose lease runs out after `after` and that will
    /// never renew nor release it.
    fn plant_dead_holder(&self, after: Duration) -> impl Future<Output = ()> + Send;
    /// Makes the current lease run out now (the holder paused past its TTL).
    fn expire_lease(&self) -> impl Future<Output = ()> + Send;
    /// A handle that connects through `proxy` (so the test can drop its connections).
    fn handle_through(
        &self,
        proxy: &Proxy,
        lease: Duration,
    ) -> impl Future<Output = Self::Store> + Send;
    /// The server's `host:port`, for the proxy.
    fn server(&self) -> String;
    /// Ends, on the server, the connections coming from these local ports of the proxy.
    fn kill_connections(&self, ports: &[u16]) -> impl Future<Output = ()> + Send;
}

/// The typed errors of a handle that lost its connection: the store could not reach its backend.
pub fn is_unreachable(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Backend(_) | StoreError::Timeout { .. } | StoreError::Io(_)
    )
}
