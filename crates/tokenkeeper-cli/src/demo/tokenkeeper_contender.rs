//! The tokenkeeper contender: the library, configured as a user would, for one contract style.

use super::call::{ApiCall, Failure, Outcome};
use super::timeline::recorder::{MarkKind, Marks, Wire401Recorder};
use crate::reference_client::ReferenceClient;
use anyhow::Context;
use reqwest_middleware::ClientWithMiddleware;
use std::sync::Arc;
use tokenkeeper::classify::Classifier;
use tokenkeeper::refresh::{self, Refresher};
use tokenkeeper::{RefreshMode, Session, SessionStats, TokenSet};
use tokenkeeper_server::Contract;

/// A [`Session`] and a client that goes through its middleware.
#[derive(Debug)]
pub struct Keeper {
    wire: ReferenceClient,
    session: Session,
    client: ClientWithMiddleware,
}

impl Keeper {
    /// A signed-out session for `wire`'s server and style, in `mode`, recording into `marks`.
    pub fn new(
        wire: ReferenceClient,
        mode: RefreshMode,
        marks: Arc<Marks>,
    ) -> anyhow::Result<Self> {
        let refresher = recorded(strategy(&wire)?, Arc::clone(&marks));
        let session = Session::builder()
            .refresher(refresher)
            .attach_to([wire.url("")])
            .classifier(Classifier::well_known())
            .mode(mode)
            .build()
            .context("configuring the session")?;
        // The recorder sits below tokenkeeper's middleware, next to the wire.
        let client = reqwest_middleware::ClientBuilder::new(wire.http().clone())
            .with(session.middleware())
            .with(Wire401Recorder::new(marks))
            .build();
        Ok(Self {
            wire,
            session,
            client,
        })
    }

    /// The session, for its counters.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session's counters.
    pub fn stats(&self) -> SessionStats {
        self.session.stats()
    }

    /// Logs in and hands the tokens to the session.
    pub async fn sign_in(&self) -> anyhow::Result<()> {
        let login = self.wire.login().await?;
        let tokens = TokenSet::from_response(&login.body).context("reading the login tokens")?;
        let tokens = match self.wire.style() {
            // The cookie contract's refresh token lives in the jar only.
            Contract::Cookie => tokens.with_refresh_secret(None),
            _ => tokens,
        };
        self.session.sign_in(tokens).await?;
        Ok(())
    }

    /// Sends `call` through the middleware.
    pub async fn send(&self, call: &ApiCall) -> Outcome {
        let request = call
            .request(&self.wire, None)
            .map_err(|_| Failure::Transport)?;
        match self.client.execute(request).await {
            Ok(response) => {
                let status = response.status();
                response.bytes().await.map_err(|_| Failure::Transport)?;
                Failure::from_status(status)
            }
            Err(error) => Err(classify_error(&error)),
        }
    }
}

/// The failure a middleware error stands for.
fn classify_error(error: &reqwest_middleware::Error) -> Failure {
    let reqwest_middleware::Error::Middleware(inner) = error else {
        return Failure::Transport;
    };
    match inner.downcast_ref::<tokenkeeper::Error>() {
        Some(tokenkeeper::Error::LoginRequired | tokenkeeper::Error::SessionExpired(_)) => {
            Failure::LoggedOut
        }
        Some(tokenkeeper::Error::RefreshUnavailable(_)) => Failure::RefreshUnavailable,
        _ => Failure::Transport,
    }
}

/// The built-in strategy for `wire`'s style.
fn strategy(wire: &ReferenceClient) -> anyhow::Result<Arc<dyn Refresher>> {
    let url = wire.refresh_url();
    Ok(match wire.style() {
        Contract::OAuth2 => Arc::new(refresh::OAuth2::new(&url)?.client_id("demo")),
        Contract::Json => Arc::new(refresh::Json::new(&url)?),
        Contract::Header => Arc::new(refresh::Header::new(&url)?),
        Contract::Cookie => Arc::new(refresh::Cookie::new(&url, wire.jar())?),
    })
}

/// Wraps `inner` so every call to the refresh endpoint is drawn on the timeline.
fn recorded(inner: Arc<dyn Refresher>, marks: Arc<Marks>) -> impl Refresher {
    refresh::from_fn(move |tokens: TokenSet| {
        let inner = Arc::clone(&inner);
        let marks = Arc::clone(&marks);
        async move {
            marks.mark(MarkKind::RefreshCall);
            let result = inner.refresh(&tokens).await;
            marks.mark(if result.is_ok() {
                MarkKind::RefreshOk
            } else {
                MarkKind::RefreshFailed
            });
            result
        }
    })
}
