//! A hyper client behind tokenkeeper's tower layer, against the reference server started
//! in-process.
//!
//! `cargo run -p tokenkeeper --example hyper_client --features tower`
//!
//! Access tokens live one second here and the session is reactive (it refreshes only when the
//! API refuses the token), so some requests below meet an expired token: the layer refreshes
//! once and retries them, and every request succeeds.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokenkeeper::classify::Classifier;
use tokenkeeper::{NoAuth, RefreshMode, Session, TokenSet, refresh};
use tokenkeeper_server::ServerConfig;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::default().with_access_ttl(Duration::from_secs(1));
    let server = tokenkeeper_server::start(config).await?;

    // 1. One session per login: how to refresh, where the token may go, how refusals read.
    let session = Session::builder()
        .refresher(refresh::Json::new(&server.url("/refresh/token"))?)
        .attach_to([server.base_url()])
        .classifier(Classifier::well_known())
        .mode(RefreshMode::Reactive)
        .build()?;

    // 2. The layer on a plain hyper client.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let api = ServiceBuilder::new().layer(session.layer()).service(client);

    // 3. Log in through the same client; `NoAuth` keeps the (absent) token off this call.
    let mut login = http::Request::post(server.url("/login"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"username":"demo","password":"demo","style":"json"}"#,
        )))?;
    login.extensions_mut().insert(NoAuth);
    let login = api
        .clone()
        .oneshot(login)
        .await?
        .into_body()
        .collect()
        .await?;
    session
        .sign_in(TokenSet::from_response(&login.to_bytes())?)
        .await?;

    for id in 1..=5 {
        let request =
            http::Request::get(server.url(&format!("/api/items/{id}"))).body(Full::default())?;
        let response = api.clone().oneshot(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!("{status} {}", String::from_utf8_lossy(&body));
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let stats = session.stats();
    println!(
        "refreshes: {}, retried requests: {} (server saw {} expired-token 401s)",
        stats.refreshes,
        stats.retries,
        server.stats().api_401_expired
    );
    server.shutdown().await;
    Ok(())
}
