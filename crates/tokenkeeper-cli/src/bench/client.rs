//! Clients the bench drives: bare reqwest, and reqwest through tokenkeeper's middleware, built
//! with the same settings; plus a connection cap for bursts larger than the fd limit allows.

use crate::reference_client::ReferenceClient;
use anyhow::Context;
use reqwest::ResponseBuilderExt as _;
use reqwest_middleware::ClientWithMiddleware;
use std::sync::Arc;
use std::time::Duration;
use tokenkeeper::classify::Classifier;
use tokenkeeper::{RefreshMode, Session, TokenSet, refresh};
use tokenkeeper_server::Contract;
use tokio::sync::Semaphore;

/// The HTTP client every bench client is built on: keep-alive pool sized for `connections`.
pub fn http(connections: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

/// A session signed in at the server at `base_url` (json contract), in `mode`.
pub async fn signed_in(base_url: &str, mode: RefreshMode) -> anyhow::Result<Session> {
    let wire = ReferenceClient::new(Contract::Json, base_url)?;
    let session = Session::builder()
        .refresher(refresh::Json::new(&wire.refresh_url())?)
        .attach_to([base_url])
        .classifier(Classifier::well_known())
        .mode(mode)
        .build()
        .context("configuring the session")?;
    let login = wire.login().await?;
    session
        .sign_in(TokenSet::from_response(&login.body)?)
        .await?;
    Ok(session)
}

/// `http` through `session`'s middleware, with at most `cap` requests on the wire at once
/// (the cap sits *below* tokenkeeper, so every request is inside the session concurrently).
pub fn through(
    session: &Session,
    http: reqwest::Client,
    cap: Option<usize>,
) -> ClientWithMiddleware {
    let builder = reqwest_middleware::ClientBuilder::new(http).with(session.middleware());
    match cap {
        Some(cap) => builder.with(InFlightLimit::new(cap)).build(),
        None => builder.build(),
    }
}

/// Lets at most N requests past it at once; the others wait for a permit. Keeps a burst of
/// 100,000 requests within the process's file-descriptor limit by reusing N keep-alive
/// connections.
#[derive(Debug, Clone)]
pub struct InFlightLimit {
    permits: Arc<Semaphore>,
}

impl InFlightLimit {
    /// A limit of `max` requests in flight.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for InFlightLimit {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let response = next.run(request, extensions).await?;
        // Read the body under the permit so the connection is back in the pool when the permit
        // is; rebuild the response with its URL (tokenkeeper checks the answering origin).
        let url = response.url().clone();
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let mut builder = http::Response::builder()
            .status(status)
            .version(version)
            .url(url);
        if let Some(map) = builder.headers_mut() {
            *map = headers;
        }
        let rebuilt = builder
            .body(body)
            .map_err(reqwest_middleware::Error::middleware)?;
        Ok(reqwest::Response::from(rebuilt))
    }
}
