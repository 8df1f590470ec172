//! The clients the demo runs the same storm against.

use super::call::{ApiCall, Outcome};
use super::timeline::recorder::Marks;
use super::tokenkeeper_contender::Keeper;
use crate::demo::baseline::{Naive, SharedFuture};
use crate::reference_client::ReferenceClient;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use tokenkeeper::{Proactive, RefreshMode, SessionStats};

/// Which client a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// [`Naive`]: every 401 refreshes on its own.
    Naive,
    /// [`SharedFuture`]: one shared refresh, no generation check.
    SharedFuture,
    /// tokenkeeper, proactive (the default mode).
    Tokenkeeper,
    /// tokenkeeper in reactive mode (401s only).
    TokenkeeperReactive,
}

impl Kind {
    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Naive => "naive",
            Kind::SharedFuture => "best hand-written",
            Kind::Tokenkeeper => "tokenkeeper",
            Kind::TokenkeeperReactive => "tokenkeeper (reactive)",
        }
    }

    /// Whether this is the library (judged by the pass criterion).
    pub fn is_tokenkeeper(self) -> bool {
        matches!(self, Kind::Tokenkeeper | Kind::TokenkeeperReactive)
    }

    /// The proactive settings this client refreshes by, if it refreshes ahead of expiry.
    pub fn proactive(self) -> Option<Proactive> {
        match self {
            Kind::Tokenkeeper => Some(Proactive::default()),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One client, ready to sign in and send.
#[derive(Debug)]
pub enum Contender {
    /// See [`Naive`].
    Naive(Naive),
    /// See [`SharedFuture`].
    SharedFuture(SharedFuture),
    /// See [`Keeper`].
    Tokenkeeper(Keeper),
}

impl Contender {
    /// A signed-out client of `kind` for `wire`.
    pub fn new(kind: Kind, wire: ReferenceClient, marks: Arc<Marks>) -> anyhow::Result<Self> {
        Ok(match kind {
            Kind::Naive => Contender::Naive(Naive::new(wire, marks)),
            Kind::SharedFuture => Contender::SharedFuture(SharedFuture::new(wire, marks)),
            Kind::Tokenkeeper | Kind::TokenkeeperReactive => {
                let mode = match kind.proactive() {
                    Some(proactive) => RefreshMode::Proactive(proactive),
                    None => RefreshMode::Reactive,
                };
                Contender::Tokenkeeper(Keeper::new(wire, mode, marks)?)
            }
        })
    }

    /// Logs in (first sign-in, or back from the login screen).
    pub async fn sign_in(&self) -> anyhow::Result<()> {
        match self {
            Contender::Naive(client) => client.sign_in().await,
            Contender::SharedFuture(client) => client.sign_in().await,
            Contender::Tokenkeeper(client) => client.sign_in().await,
        }
    }

    /// Sends one API call, refreshing and retrying the client's way.
    pub async fn send(&self, call: &ApiCall) -> Outcome {
        match self {
            Contender::Naive(client) => client.send(call).await,
            Contender::SharedFuture(client) => client.send(call).await,
            Contender::Tokenkeeper(client) => client.send(call).await,
        }
    }

    /// The session's own counters, for tokenkeeper.
    pub fn session_stats(&self) -> Option<SessionStats> {
        match self {
            Contender::Tokenkeeper(client) => Some(client.stats()),
            _ => None,
        }
    }
}
