//! The cookie contract: the refresh token lives in an HttpOnly cookie, scoped by its `Path` to
//! the refresh endpoint. Against the reference server, started in-process.
//!
//! `cargo run -p tokenkeeper --example cookie`

use std::sync::Arc;
use std::time::Duration;
use tokenkeeper::{Session, TokenSet, refresh};
use tokenkeeper_server::ServerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::default().with_access_ttl(Duration::from_millis(500));
    let server = tokenkeeper_server::start(config).await?;

    // The login response sets the refresh cookie in this jar; the refresher sends it from there.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let login = reqwest::Client::builder()
        .cookie_provider(Arc::clone(&jar))
        .build()?
        .post(server.url("/login"))
        .json(&serde_json::json!({"username": "demo", "password": "demo", "style": "cookie"}))
        .send()
        .await?
        .bytes()
        .await?;
    // Keep only the access token: the cookie jar is the refresh token's one home.
    let tokens = TokenSet::from_response(&login)?.with_refresh_secret(None);

    let session = Session::builder()
        .refresher(refresh::Cookie::new(&server.url("/v3/jwt/reissue"), jar)?)
        .attach_to([server.base_url()])
        .build()?;
    session.sign_in(tokens).await?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();

    for id in 1..=4 {
        let status = client
            .get(server.url(&format!("/api/items/{id}")))
            .send()
            .await?
            .status();
        println!(
            "item {id}: {status}, generation {}",
            session.snapshot()?.generation()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    server.shutdown().await;
    Ok(())
}
