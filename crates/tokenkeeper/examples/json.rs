//! The quickstart: the JSON refresh contract against the reference server, started in-process.
//!
//! `cargo run -p tokenkeeper --example json`
//!
//! Access tokens live one second here, so the five requests below cross several expiries; the
//! session refreshes ahead of each one, and no request ever sees a 401.

use std::time::Duration;
use tokenkeeper::{Session, TokenSet, refresh};
use tokenkeeper_server::ServerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::default().with_access_ttl(Duration::from_secs(1));
    let server = tokenkeeper_server::start(config).await?;

    // 1. Log in however your app does; tokenkeeper takes over from the token response.
    let login = reqwest::Client::new()
        .post(server.url("/login"))
        .json(&serde_json::json!({"username": "demo", "password": "demo"}))
        .send()
        .await?
        .bytes()
        .await?;

    // 2. One session per login: how to refresh, and where the token may go.
    let session = Session::builder()
        .refresher(refresh::Json::new(&server.url("/refresh/token"))?)
        .attach_to([server.base_url()])
        .build()?;
    session.sign_in(TokenSet::from_response(&login)?).await?;

    // 3. One middleware on the client.
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();

    for id in 1..=5 {
        let item: serde_json::Value = client
            .get(server.url(&format!("/api/items/{id}")))
            .send()
            .await?
            .json()
            .await?;
        println!("{item}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = server.stats();
    println!(
        "refreshes: {} (server saw {} refresh calls, {} expired-token 401s)",
        session.stats().refreshes,
        stats.refresh_calls,
        stats.api_401_expired
    );
    server.shutdown().await;
    Ok(())
}
