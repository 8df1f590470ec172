//! OAuth 2.0 (RFC 6749 §6) refresh against the reference server, started in-process.
//!
//! `cargo run -p tokenkeeper --example oauth2`

use std::time::Duration;
use tokenkeeper::{Session, TokenSet, refresh};
use tokenkeeper_server::ServerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::default().with_access_ttl(Duration::from_secs(1));
    let server = tokenkeeper_server::start(config).await?;
    let token_url = server.url("/oauth2/token");

    // The password grant stands in for however your app obtains its first token pair.
    let login = reqwest::Client::new()
        .post(&token_url)
        .form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", "demo"),
        ])
        .send()
        .await?
        .bytes()
        .await?;

    let session = Session::builder()
        .refresher(refresh::OAuth2::new(&token_url)?.client_id("example"))
        .attach_to([server.base_url()])
        .build()?;
    session.sign_in(TokenSet::from_response(&login)?).await?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();

    // Many requests at once, across an expiry: still one refresh per token lifetime.
    for round in 0..3 {
        let requests = (0..50).map(|id| client.get(server.url(&format!("/api/items/{id}"))).send());
        let ok = futures_util::future::join_all(requests)
            .await
            .into_iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.status().is_success()))
            .count();
        println!("round {round}: {ok}/50 ok");
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    println!(
        "refresh calls at the server: {}",
        server.stats().refresh_calls
    );
    server.shutdown().await;
    Ok(())
}
