//! The header contract: the refresh token goes in `Authorization-refresh`, new tokens come back
//! raw in the `Authorization` / `Authorization-refresh` response headers (`refresh::Header`
//! reads `Bearer `-prefixed values too). Against the reference server, started in-process.
//!
//! `cargo run -p tokenkeeper --example header`

use std::time::Duration;
use tokenkeeper::classify::Classifier;
use tokenkeeper::{Error, Session, TokenSet, refresh};
use tokenkeeper_server::ServerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::default().with_access_ttl(Duration::from_millis(500));
    let server = tokenkeeper_server::start(config).await?;
    let login = reqwest::Client::new()
        .post(server.url("/login"))
        .json(&serde_json::json!({"username": "demo", "password": "demo", "style": "header"}))
        .send()
        .await?
        .bytes()
        .await?;

    let session = Session::builder()
        .refresher(refresh::Header::new(&server.url("/api/refresh-token"))?)
        .attach_to([server.base_url()])
        // This API says `ExpiredToken` or `InvalidToken` in its 401 bodies
        // (`rules::plain_text_errors`, part of the well-known set); an invalid token ends the
        // session without a refresh.
        .classifier(Classifier::well_known())
        .build()?;
    session.sign_in(TokenSet::from_response(&login)?).await?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();
    let mut events = session.events();

    let status = client
        .get(server.url("/api/items/1"))
        .send()
        .await?
        .status();
    println!("before expiry: {status}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = client
        .get(server.url("/api/items/2"))
        .send()
        .await?
        .status();
    println!(
        "after expiry: {status} (refreshed: {:?})",
        events.try_recv().ok()
    );

    // The server forgets every session: the API now calls our token invalid.
    server.reset();
    match client.get(server.url("/api/items/3")).send().await {
        Err(error) => match error {
            reqwest_middleware::Error::Middleware(e) => {
                println!("session over: {:?}", e.downcast_ref::<Error>())
            }
            other => println!("transport error: {other}"),
        },
        Ok(response) => println!("unexpected: {}", response.status()),
    }
    server.shutdown().await;
    Ok(())
}
