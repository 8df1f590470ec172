//! The seed articles' contracts as the articles write them, over real HTTP on 127.0.0.1:
//! the header contract with raw and with `Bearer `-prefixed response headers (the reference
//! server both ways, and an independent server written from the article alone), and the two
//! ways to start the cookie contract (sign in through the strategy's jar, or seed it from a
//! refresh token).

use crate::article_header;
use crate::common;

use article_header::ArticleHeaderServer;
use common::*;
use reqwest_middleware::ClientWithMiddleware;
use std::time::Duration;
use tokenkeeper::classify::Classifier;
use tokenkeeper::refresh::{self, CookieError};
use tokenkeeper::{Error, InvalidTokenPolicy, LogoutReason, RefreshMode, Session, TokenSet};
use tokenkeeper_server::REFRESH_COOKIE;

const BURST: usize = 1000;

/// Sends `count` concurrent GETs to `/api/items/{i}` at `base` and asserts every one got 200.
async fn burst_all_ok(client: &ClientWithMiddleware, base: &str, count: usize) {
    let _load = crate::load().await;
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/api/items/{i}");
            tokio::spawn(async move {
                match client.get(url).send().await {
                    Ok(response) => Ok(response.status().as_u16()),
                    Err(error) => Err(error.to_string()),
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for handle in handles {
        let outcome = handle.await.unwrap();
        if outcome != Ok(200) {
            failures.push(outcome);
        }
    }
    crate::contracts::assert_no_failures(&failures);
}

/// Lifetime of the access tokens whose expiry the tests wait out, and how long they wait: long
/// enough that a retry's fresh token never expires on its way on a loaded machine.
const SHORT_TTL: Duration = Duration::from_millis(1000);
const OUTLIVE: Duration = Duration::from_millis(1300);

/// What the tests need of either server.
trait SeedServer {
    fn base(&self) -> String;
    fn set_ttl(&self, ttl: Duration);
    /// `(refresh calls, reuse detections, API 200s)` so far.
    fn counts(&self) -> (u64, u64, u64);
}

impl SeedServer for ServerHandle {
    fn base(&self) -> String {
        self.base_url()
    }
    fn set_ttl(&self, ttl: Duration) {
        self.set_access_ttl(ttl);
    }
    fn counts(&self) -> (u64, u64, u64) {
        let stats = self.stats();
        (stats.refresh_calls, stats.reuse_detections, stats.api_ok)
    }
}

impl SeedServer for ArticleHeaderServer {
    fn base(&self) -> String {
        self.base_url().to_owned()
    }
    fn set_ttl(&self, ttl: Duration) {
        self.set_access_ttl(ttl);
    }
    fn counts(&self) -> (u64, u64, u64) {
        let counts = ArticleHeaderServer::counts(self);
        (counts.refresh_calls, counts.reuse_detections, counts.api_ok)
    }
}

/// The session's first token lives [`SHORT_TTL`]. Two expiries are met by one request each,
/// the third by a burst of 1,000 concurrent requests: exactly one refresh per expiry (the
/// burst's included), every request answered 200, no reuse detected. Each refresh presents
/// the refresh token the previous answer rotated, so the strategy read it right every time.
async fn refreshes_once_per_expiry(
    server: &impl SeedServer,
    session: &Session,
    client: &ClientWithMiddleware,
) {
    let base = server.base();
    let (refreshes_before, _, ok_before) = server.counts();
    for expiry in 0..2 {
        tokio::time::sleep(OUTLIVE).await;
        let response = client
            .get(format!("{base}/api/items/{expiry}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // The token the third refresh issues outlives the burst, however slow the machine.
    server.set_ttl(LONG_TTL);
    tokio::time::sleep(OUTLIVE).await;
    let (burst_before, _, _) = server.counts();
    burst_all_ok(client, &base, BURST).await;
    let (refreshes, reuse, ok) = server.counts();
    assert_eq!(refreshes - burst_before, 1, "refresh calls in the burst");
    assert_eq!(
        refreshes - refreshes_before,
        3,
        "refresh calls for 3 expiries"
    );
    assert_eq!(reuse, 0);
    assert_eq!(ok - ok_before, 2 + BURST as u64);
    assert_eq!(session.stats().refreshes, 3);
    assert_eq!(session.credential().await.unwrap().generation(), 4);
}

// ---------------------------------------------------------------------------------------------
// The header contract, raw and prefixed.

/// The header values the reference server's header contract answers a refresh with, on a
/// login of its own (so the session under test is not disturbed).
async fn header_values_sent(server: &ServerHandle) -> (String, String) {
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(server.url("/login"))
        .json(&serde_json::json!({"username": "demo", "password": "demo", "style": "header"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh_token = login["refreshToken"].as_str().unwrap();
    let response = http
        .post(server.url("/api/refresh-token"))
        .header("authorization-refresh", format!("Bearer {refresh_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let value = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    (value("authorization"), value("authorization-refresh"))
}

/// A header-contract session at the reference server, which answers raw or `Bearer `-prefixed
/// tokens as told.
async fn header_form_refreshes_once_per_expiry(prefixed: bool) {
    let server = start(
        ServerConfig::default()
            .with_access_ttl(SHORT_TTL)
            .with_header_bearer_prefix(prefixed),
    )
    .await;
    // The server really speaks the form under test.
    let (access, refresh) = header_values_sent(&server).await;
    for value in [&access, &refresh] {
        assert_eq!(value.starts_with("Bearer "), prefixed, "{value}");
    }
    let (session, client) = session(&server, Contract::Header, |b| {
        b.mode(RefreshMode::Reactive)
            .classifier(Classifier::well_known())
    })
    .await;
    refreshes_once_per_expiry(&server, &session, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_raw_tokens_refresh_once_per_expiry_and_burst() {
    header_form_refreshes_once_per_expiry(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_bearer_prefixed_tokens_refresh_once_per_expiry_and_burst() {
    header_form_refreshes_once_per_expiry(true).await;
}

/// A session at the article's server with the article's contract as `refresh::Header`'s
/// defaults and its 401 bodies recognised by the well-known rules; signed in with the login's
/// raw header values (as the article's client stores them), or with `tokens`.
async fn article_session(
    server: &ArticleHeaderServer,
    tokens: Option<TokenSet>,
) -> (Session, ClientWithMiddleware) {
    article_session_with(server, tokens, InvalidTokenPolicy::default()).await
}

/// [`article_session`] with the given answer to `InvalidToken`.
async fn article_session_with(
    server: &ArticleHeaderServer,
    tokens: Option<TokenSet>,
    invalid_token: InvalidTokenPolicy,
) -> (Session, ClientWithMiddleware) {
    let tokens = match tokens {
        Some(tokens) => tokens,
        None => {
            let response = reqwest::Client::new()
                .post(server.url("/login"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
            TokenSet::new(header("authorization"))
                .with_refresh_token(header("authorization-refresh"))
        }
    };
    let session = Session::builder()
        .refresher(refresh::Header::new(&server.url("/api/refresh-token")).unwrap())
        .attach_to([server.base_url()])
        .classifier(Classifier::well_known())
        .invalid_token_policy(invalid_token)
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap();
    let client = client(&session);
    (session, client)
}

/// The same against the independent server written from the article: raw headers, opaque
/// tokens (so every expiry is learned from an `ExpiredToken` answer, in the default mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_header_server_refreshes_once_per_expiry_and_burst() {
    let server = ArticleHeaderServer::start(SHORT_TTL).await;
    let (session, client) = article_session(&server, None).await;
    refreshes_once_per_expiry(&server, &session, &client).await;
    let counts = server.counts();
    assert_eq!(counts.rotations, 3);
    assert!(counts.api_expired >= 3, "{counts:?}");
}

/// The article's client logs out on `InvalidToken`; so does a session configured as strictly
/// (`InvalidTokenPolicy::EndSession`), without a refresh call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_header_server_invalid_token_ends_the_session_without_refreshing() {
    let server = ArticleHeaderServer::start(LONG_TTL).await;
    let forged = TokenSet::new("never-issued").with_refresh_token("never-issued");
    let (_session, client) =
        article_session_with(&server, Some(forged), InvalidTokenPolicy::EndSession).await;
    let error = get_err(&client, server.url("/api/items/1")).await;
    assert!(
        matches!(
            tk_error(&error),
            Some(Error::SessionExpired(LogoutReason::TokenInvalid))
        ),
        "{error}"
    );
    assert_eq!(server.counts().refresh_calls, 0);
    assert_eq!(server.counts().api_invalid, 1);
}

/// By default one refresh decides an `InvalidToken` answer: here the refresh token is forged
/// too, so the article's server refuses it (401) and the session ends once, after one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_header_server_invalid_token_costs_one_refresh_by_default() {
    let server = ArticleHeaderServer::start(LONG_TTL).await;
    let forged = TokenSet::new("never-issued").with_refresh_token("never-issued");
    let (_session, client) = article_session(&server, Some(forged)).await;
    let error = get_err(&client, server.url("/api/items/1")).await;
    assert!(
        matches!(
            tk_error(&error),
            Some(Error::SessionExpired(LogoutReason::RefreshRejected(_)))
        ),
        "{error}"
    );
    assert_eq!(server.counts().refresh_calls, 1);
    assert_eq!(server.counts().api_invalid, 1);
}

// ---------------------------------------------------------------------------------------------
// Starting the cookie contract.

/// A cookie-contract session at the reference server, signed in with `tokens`.
async fn cookie_session(
    server: &ServerHandle,
    refresher: refresh::Cookie,
    tokens: TokenSet,
) -> (Session, ClientWithMiddleware) {
    let session = Session::builder()
        .refresher(refresher)
        .attach_to([server.base_url()])
        .mode(RefreshMode::Reactive)
        .classifier(Classifier::well_known())
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap();
    let client = client(&session);
    (session, client)
}

fn login_body() -> serde_json::Value {
    serde_json::json!({"username": "demo", "password": "demo", "style": "cookie"})
}

/// Start (a): sign in through the strategy's own jar, which sees the login's `Set-Cookie`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_login_through_the_strategy_jar_refreshes_once_per_expiry_and_burst() {
    let server = start(ServerConfig::default().with_access_ttl(SHORT_TTL)).await;
    let refresher = refresh::Cookie::with_empty_jar(&server.url("/v3/jwt/reissue")).unwrap();
    let tokens = refresher
        .login(|http| http.post(server.url("/login")).json(&login_body()))
        .await
        .unwrap();
    // The body's refresh token is dropped: the cookie is its one home.
    assert!(tokens.refresh_token().is_none());
    let (session, client) = cookie_session(&server, refresher, tokens).await;
    refreshes_once_per_expiry(&server, &session, &client).await;
}

/// Start (b): a login answered elsewhere (no jar saw its `Set-Cookie`); the jar is seeded
/// from the refresh token in its body with one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_seeded_from_a_refresh_token_refreshes_once_per_expiry_and_burst() {
    let server = start(ServerConfig::default().with_access_ttl(SHORT_TTL)).await;
    let body = reqwest::Client::new()
        .post(server.url("/login"))
        .json(&login_body())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let login = TokenSet::from_response(&body).unwrap();
    let refresh_token = login.refresh_token().unwrap().clone();
    let refresher = refresh::Cookie::with_empty_jar(&server.url("/v3/jwt/reissue")).unwrap();
    refresher
        .seed_refresh_cookie(REFRESH_COOKIE, refresh_token)
        .unwrap();
    let (session, client) =
        cookie_session(&server, refresher, login.with_refresh_secret(None)).await;
    refreshes_once_per_expiry(&server, &session, &client).await;
}

/// A login that leaves no refresh cookie for the refresh endpoint fails at login, loudly, not
/// at the first expiry; a refused login says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_login_without_a_refresh_cookie_is_refused_at_login() {
    let server = start(ServerConfig::default()).await;
    let refresher = refresh::Cookie::with_empty_jar(&server.url("/v3/jwt/reissue")).unwrap();
    // The oauth2 password grant answers tokens but sets no cookie.
    let password_grant = |http: &reqwest::Client| {
        http.post(server.url("/oauth2/token")).form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", "demo"),
        ])
    };
    assert_eq!(
        refresher.login(password_grant).await.unwrap_err(),
        CookieError::NoRefreshCookie
    );
    // The login sent on another client: its jar, not the strategy's, saw the cookie.
    let elsewhere = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    assert_eq!(
        refresher
            .login(|_| elsewhere.post(server.url("/login")).json(&login_body()))
            .await
            .unwrap_err(),
        CookieError::NoRefreshCookie
    );
    let wrong_password =
        serde_json::json!({"username": "demo", "password": "nope", "style": "cookie"});
    assert_eq!(
        refresher
            .login(|http| http.post(server.url("/login")).json(&wrong_password))
            .await
            .unwrap_err(),
        CookieError::Refused { status: 401 }
    );
    assert_eq!(server.stats().refresh_calls, 0);
}
