//! Hand-written refresh interceptors, as articles and answers write them, reproduced with
//! reqwest directly (no tokenkeeper) so the demo can run them side by side with the library.
//!
//! - [`Naive`]: every 401 refreshes on its own.
//! - [`SharedFuture`]: one shared refresh for concurrent 401s, but no generation check.
//!
//! Both are faithful to their pattern, bugs included: that is the point of the demo.

mod naive;
mod shared_future;

pub use naive::Naive;
pub use shared_future::SharedFuture;

use crate::demo::call::{ApiCall, Failure};
use crate::demo::timeline::recorder::{MarkKind, Marks};
use crate::reference_client::{Pair, ReferenceClient};
use reqwest::StatusCode;
use std::sync::{Mutex, PoisonError};

/// Where a hand-written client keeps its tokens: the equivalent of `localStorage`.
#[derive(Debug, Default)]
pub(crate) struct TokenSlot {
    pair: Mutex<Option<Pair>>,
}

impl TokenSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pair>> {
        self.pair.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored access token, if signed in.
    pub(crate) fn access(&self) -> Option<String> {
        self.lock().as_ref().map(|pair| pair.access.clone())
    }

    /// The stored pair, if signed in.
    pub(crate) fn pair(&self) -> Option<Pair> {
        self.lock().clone()
    }

    /// Stores a new pair.
    pub(crate) fn store(&self, pair: Pair) {
        *self.lock() = Some(pair);
    }

    /// Forgets the tokens: the app is logged out.
    pub(crate) fn clear(&self) {
        *self.lock() = None;
    }
}

/// Sends `call` with `access` and reads the answer to its end (so the connection is reused).
/// Records a 401 on the wire.
pub(crate) async fn send_with(
    wire: &ReferenceClient,
    call: &ApiCall,
    access: &str,
    marks: &Marks,
) -> Result<StatusCode, Failure> {
    let request = call
        .request(wire, Some(access))
        .map_err(|_| Failure::Transport)?;
    let response = wire
        .http()
        .execute(request)
        .await
        .map_err(|_| Failure::Transport)?;
    let status = response.status();
    response.bytes().await.map_err(|_| Failure::Transport)?;
    if status == StatusCode::UNAUTHORIZED {
        marks.mark(MarkKind::Wire401);
    }
    Ok(status)
}
