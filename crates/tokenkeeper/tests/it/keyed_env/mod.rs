//! Set-up for the keyed-session tests: a reference server with one user per key, sign-ins as
//! those users, and a client through a collection's middleware.

#![allow(dead_code)]

use crate::common::*;
use reqwest_middleware::ClientWithMiddleware;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokenkeeper::keyed::{Key, LoginKey};
use tokenkeeper::refresh::{self, Refresher};
use tokenkeeper::{Session, SessionBuilder, Sessions, TokenSet};

pub const PASSWORD: &str = "pw";

pub fn user(i: usize) -> String {
    format!("u{i}")
}

/// A reference server whose users are `u0` .. `u{users-1}`.
pub async fn server_with_users(users: usize, config: ServerConfig) -> ServerHandle {
    start(config.with_users((0..users).map(|i| (user(i), PASSWORD.to_owned())))).await
}

/// Tokens for `username` from the server's oauth2 password grant.
pub async fn login_as(http: &reqwest::Client, server: &ServerHandle, username: &str) -> TokenSet {
    let response = http
        .post(server.url("/oauth2/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "login: {}",
        response.status()
    );
    TokenSet::from_response(&response.bytes().await.unwrap()).unwrap()
}

pub fn refresher(server: &ServerHandle) -> Arc<dyn Refresher> {
    Arc::new(
        refresh::OAuth2::new(&server.url("/oauth2/token"))
            .unwrap()
            .client_id("tests"),
    )
}

/// The per-key configuration every test starts from.
pub fn template(server: &ServerHandle) -> SessionBuilder {
    Session::builder()
        .refresher_arc(refresher(server))
        .attach_to([server.base_url()])
}

pub fn keyed_client<K: LoginKey>(logins: &Sessions<K>) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap(),
    )
    .with(logins.middleware())
    .build()
}

/// `GET /api/items/{i}` for `key`: the owner the server saw in the token, or the error.
pub async fn owner_seen<K: LoginKey>(
    client: &ClientWithMiddleware,
    server: &ServerHandle,
    key: K,
    i: usize,
) -> Result<String, String> {
    let response = client
        .get(server.url(&format!("/api/items/{i}")))
        .with_extension(Key(key))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["owner"].as_str().unwrap_or_default().to_owned())
}

/// Waits until every one of `tokens` has expired by the wall clock (their expiry, not a guess).
pub async fn until_expired<'a>(tokens: impl IntoIterator<Item = &'a TokenSet>) {
    let last = tokens
        .into_iter()
        .filter_map(TokenSet::expires_at)
        .max()
        .expect("tokens with an expiry");
    let left = last
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    // The expiry itself plus the session's hard margin (at most 2 % of a lifetime).
    tokio::time::sleep(left + ms(50)).await;
}
