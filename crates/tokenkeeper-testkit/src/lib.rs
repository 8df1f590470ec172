//! Test support for tokenkeeper's shared stores, in one place for the library's integration
//! tests and the `tokenkeeper bench` command (this crate is not published).
//!
//! - [`worker`]: the body of one process of a multi-process run. The library's tests start
//!   their test binary again as a worker, the bench starts its own binary as the hidden
//!   `__store-worker` subcommand; both hand a [`worker::WorkerConfig`] to [`worker::run`] and
//!   report the [`worker::Summary`] it returns. How a process is started and how its report
//!   travels back stays with each caller.
//! - [`conformance`]: what every shared [`TokenStore`](tokenkeeper::store::TokenStore)
//!   promises (the lock excludes, stale writes are refused, racing writers have one winner,
//!   `kill -9` of a lock holder, leases renewed, taken over and fenced), as async functions
//!   over a [`conformance::Backend`]: a factory of handles on one place of a store. Any store,
//!   a user's own included, runs the same tests by implementing it.
//!
//! ```
//! use tokenkeeper::store::{MemoryStore, TokenStore as _};
//! use tokenkeeper_testkit::conformance::{self, Backend};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! // A MemoryStore's handles are clones of one store (one process's store).
//! struct Memory(Arc<MemoryStore>);
//!
//! impl Backend for Memory {
//!     type Store = Arc<MemoryStore>;
//!     const DEFAULT_LEASE: Option<Duration> = None;
//!
//!     async fn handle(&self, _lease: Option<Duration>) -> Self::Store {
//!         Arc::clone(&self.0)
//!     }
//!
//!     async fn lock_is_held(&self) -> bool {
//!         use futures_util::FutureExt as _;
//!         self.0.lock().now_or_never().is_none()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let place = Memory(Arc::new(MemoryStore::new()));
//! conformance::the_lock_excludes_another_handle_and_is_released_on_drop(place).await;
//! # }
//! ```

pub mod conformance;
pub mod worker;
