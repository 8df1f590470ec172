//! The cookie contract: the refresh token lives in an HttpOnly cookie, scoped by its `Path` to
//! the refresh endpoint. Against the reference server, started in-process.
//!
//! Two ways to start, both shown:
//! 1. sign in through the strategy's own cookie jar, so it sees the login's `Set-Cookie`;
//! 2. seed the jar from a refresh token you already hold, with one call.
//!
//! `cargo run -p tokenkeeper --example cookie`

use std::time::Duration;
use tokenkeeper::classify::Classifier;
use tokenkeeper::{Session, TokenSet, refresh};
use tokenkeeper_server::{REFRESH_COOKIE, ServerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::default().with_access_ttl(Duration::from_millis(500));
    let server = tokenkeeper_server::start(config).await?;
    let reissue = server.url("/v3/jwt/reissue");
    let credentials =
        serde_json::json!({"username": "demo", "password": "demo", "style": "cookie"});

    // 1. Sign in through the strategy's jar. `login` sends the request on the strategy's own
    //    client, checks that the jar now holds a cookie the refresh endpoint will receive, and
    //    returns the access token (the cookie is the refresh token's one home).
    let refresher = refresh::Cookie::with_empty_jar(&reissue)?;
    let tokens = refresher
        .login(|http| http.post(server.url("/login")).json(&credentials))
        .await?;
    run("signed in through the jar", &server, refresher, tokens).await?;

    // 2. A refresh token you already hold (here: the body of a login answered by another
    //    client, whose jar kept the cookie). One call puts it in the jar: host-only for the
    //    refresh endpoint, Path = its directory (/v3/jwt), HttpOnly, Secure only over https.
    let body = reqwest::Client::new()
        .post(server.url("/login"))
        .json(&credentials)
        .send()
        .await?
        .bytes()
        .await?;
    let login = TokenSet::from_response(&body)?;
    let refresher = refresh::Cookie::with_empty_jar(&reissue)?;
    if let Some(refresh_token) = login.refresh_token() {
        refresher.seed_refresh_cookie(REFRESH_COOKIE, refresh_token.clone())?;
    }
    let tokens = login.with_refresh_secret(None);
    run("seeded from a refresh token", &server, refresher, tokens).await?;

    let stats = server.stats();
    println!(
        "server: {} refresh calls, {} reuse detections",
        stats.refresh_calls, stats.reuse_detections
    );
    server.shutdown().await;
    Ok(())
}

/// Four requests, 400 ms apart, across two expiries of the 500 ms access tokens.
async fn run(
    start: &str,
    server: &tokenkeeper_server::ServerHandle,
    refresher: refresh::Cookie,
    tokens: TokenSet,
) -> Result<(), Box<dyn std::error::Error>> {
    let session = Session::builder()
        .refresher(refresher)
        .attach_to([server.base_url()])
        // The reference server's cookie contract words its 401s
        // `{"result":{"errorCode":"EXPIRED_TOKEN"}}`.
        .classifier(Classifier::well_known())
        .build()?;
    session.sign_in(tokens).await?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();
    println!("{start}:");
    for id in 1..=4 {
        let status = client
            .get(server.url(&format!("/api/items/{id}")))
            .send()
            .await?
            .status();
        println!(
            "  item {id}: {status}, generation {}",
            session.snapshot()?.generation()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    Ok(())
}
