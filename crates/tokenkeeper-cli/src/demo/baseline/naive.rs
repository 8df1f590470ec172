//! The naive interceptor: every 401 refreshes on its own.

use super::{TokenSlot, send_with};
use crate::demo::call::{ApiCall, Failure, Outcome};
use crate::demo::timeline::recorder::{MarkKind, Marks};
use crate::reference_client::ReferenceClient;
use reqwest::StatusCode;
use std::sync::Arc;

/// The interceptor as most articles first write it (axios `interceptors.response.use`
/// translated to Rust):
///
/// ```text
/// on 401 for a request not yet retried:
///     refresh = storage.refreshToken            // read at this moment
///     tokens  = POST /refresh(refresh)          // no queue, no single flight
///     storage = tokens                          // store the pair
///     retry the request once with tokens.access
/// on refresh failure:
///     storage.clear()                           // logged out: back to the login screen
/// ```
///
/// Every request that meets the expiry refreshes by itself. With refresh-token rotation, the
/// second of two concurrent refreshes presents a token the first one just rotated: the server
/// sees reuse, revokes the whole family, and the user is logged out.
#[derive(Debug)]
pub struct Naive {
    wire: ReferenceClient,
    tokens: TokenSlot,
    marks: Arc<Marks>,
}

impl Naive {
    /// A signed-out client for `wire`, recording into `marks`.
    pub fn new(wire: ReferenceClient, marks: Arc<Marks>) -> Self {
        Self {
            wire,
            tokens: TokenSlot::default(),
            marks,
        }
    }

    /// Logs in and stores the pair.
    pub async fn sign_in(&self) -> anyhow::Result<()> {
        let login = self.wire.login().await?;
        self.tokens.store(login.pair);
        Ok(())
    }

    /// Sends `call` the naive way.
    pub async fn send(&self, call: &ApiCall) -> Outcome {
        let Some(access) = self.tokens.access() else {
            return Err(Failure::LoggedOut);
        };
        let status = send_with(&self.wire, call, &access, &self.marks).await?;
        if status != StatusCode::UNAUTHORIZED {
            return Failure::from_status(status);
        }
        // Refresh on our own, with whatever refresh token is stored right now.
        let Some(stored) = self.tokens.pair() else {
            return Err(Failure::LoggedOut);
        };
        self.marks.mark(MarkKind::RefreshCall);
        match self.wire.refresh(stored.refresh.as_deref()).await {
            Ok(pair) => {
                self.marks.mark(MarkKind::RefreshOk);
                let access = pair.access.clone();
                self.tokens.store(pair);
                let status = send_with(&self.wire, call, &access, &self.marks).await?;
                Failure::from_status(status)
            }
            Err(error) => {
                self.marks.mark(MarkKind::RefreshFailed);
                tracing::debug!(%error, "naive: refresh failed, logging out");
                self.tokens.clear();
                Err(Failure::LoggedOut)
            }
        }
    }
}
