//! The best hand-written pattern: one shared refresh for concurrent 401s, no generation check.

use super::{TokenSlot, send_with};
use crate::demo::call::{ApiCall, Failure, Outcome};
use crate::demo::timeline::recorder::{MarkKind, Marks};
use crate::reference_client::{ReferenceClient, RefreshFailure};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use reqwest::StatusCode;
use std::sync::{Arc, Mutex, PoisonError};

type RefreshFuture = Shared<BoxFuture<'static, Result<String, RefreshFailure>>>;

/// The pattern careful articles end with (the `isRefreshing` flag plus a queue of waiting
/// requests, or one shared refresh promise), translated to Rust with a
/// `futures::future::Shared`:
///
/// ```text
/// on 401 for a request not yet retried (the retry flag):
///     if no refresh is running: refreshing = (async {
///             tokens = POST /refresh(storage.refreshToken)
///             storage = tokens                  // or storage.clear() on any error
///         }).finally(|| refreshing = None)
///     access = await refreshing                 // concurrent 401s share this one refresh
///     retry the request once with access
/// on refresh error: logged out
/// ```
///
/// What it lacks is a *generation check*: a 401 that arrives after the shared refresh finished
/// (the request was sent, or decided by the server, with the old token) starts another refresh,
/// although the stored token is already new. With server latency many 401s arrive late, so one
/// expiry costs several refresh calls. And any refresh error, even a 503, logs the user out.
#[derive(Debug, Clone)]
pub struct SharedFuture {
    inner: Arc<Inner>,
}

struct Inner {
    wire: ReferenceClient,
    tokens: TokenSlot,
    refreshing: Mutex<Option<RefreshFuture>>,
    marks: Arc<Marks>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFuture").finish_non_exhaustive()
    }
}

impl SharedFuture {
    /// A signed-out client for `wire`, recording into `marks`.
    pub fn new(wire: ReferenceClient, marks: Arc<Marks>) -> Self {
        Self {
            inner: Arc::new(Inner {
                wire,
                tokens: TokenSlot::default(),
                refreshing: Mutex::new(None),
                marks,
            }),
        }
    }

    /// Logs in and stores the pair.
    pub async fn sign_in(&self) -> anyhow::Result<()> {
        let login = self.inner.wire.login().await?;
        self.inner.tokens.store(login.pair);
        Ok(())
    }

    /// Sends `call` with the shared-refresh pattern.
    pub async fn send(&self, call: &ApiCall) -> Outcome {
        let inner = &self.inner;
        let Some(access) = inner.tokens.access() else {
            return Err(Failure::LoggedOut);
        };
        let status = send_with(&inner.wire, call, &access, &inner.marks).await?;
        if status != StatusCode::UNAUTHORIZED {
            return Failure::from_status(status);
        }
        match self.refresh().await {
            Ok(access) => {
                // The retry flag: this request is not retried again.
                let status = send_with(&inner.wire, call, &access, &inner.marks).await?;
                Failure::from_status(status)
            }
            Err(_) => Err(Failure::LoggedOut),
        }
    }

    /// Joins the running refresh, or starts one.
    fn refresh(&self) -> RefreshFuture {
        let mut slot = self
            .inner
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = slot.as_ref() {
            return running.clone();
        }
        let inner = Arc::clone(&self.inner);
        let future = async move {
            let result = inner.refresh_once().await;
            // `.finally(() => refreshing = null)`: the next 401 starts a new refresh.
            *inner
                .refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
            result
        }
        .boxed()
        .shared();
        *slot = Some(future.clone());
        future
    }
}

impl Inner {
    async fn refresh_once(&self) -> Result<String, RefreshFailure> {
        let Some(stored) = self.tokens.pair() else {
            return Err(RefreshFailure::Rejected("logged out".into()));
        };
        self.marks.mark(MarkKind::RefreshCall);
        match self.wire.refresh(stored.refresh.as_deref()).await {
            Ok(pair) => {
                self.marks.mark(MarkKind::RefreshOk);
                let access = pair.access.clone();
                self.tokens.store(pair);
                Ok(access)
            }
            Err(error) => {
                self.marks.mark(MarkKind::RefreshFailed);
                tracing::debug!(%error, "shared future: refresh failed, logging out");
                self.tokens.clear();
                Err(error)
            }
        }
    }
}
