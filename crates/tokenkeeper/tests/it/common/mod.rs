//! Shared set-up for the integration tests: a real reference server on 127.0.0.1 and a session
//! signed in through one of its four contracts.

#![allow(dead_code)]

use reqwest_middleware::ClientWithMiddleware;
use std::sync::Arc;
use std::time::Duration;
use tokenkeeper::refresh::{self, Refresher};
use tokenkeeper::{Session, SessionBuilder, TokenSet};
#[allow(unused_imports)]
pub use tokenkeeper_server::{Latency, ServerConfig, ServerHandle, Stats};

/// The four refresh contracts of the reference server.
pub use tokenkeeper_server::Contract;

/// The access-token lifetime tests switch the server to once the first token has been issued,
/// so that only that one expires during the test.
pub const LONG_TTL: Duration = Duration::from_secs(120);

pub fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

pub async fn start(config: ServerConfig) -> ServerHandle {
    tokenkeeper_server::start(config)
        .await
        .expect("server starts")
}

/// A listener on 127.0.0.1 (a free port) for a test's own server, with a listen backlog that
/// holds a burst: `TcpListener::bind` listens with std's 128, which a thousand concurrent
/// connects overflow while the accept loop waits for a saturated CPU, and the kernel then drops
/// handshakes (clients see resets). The reference server does the same.
pub fn loopback_listener() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    socket.listen(4096).unwrap()
}

/// Signs in at the server in `contract`'s style (through the server's own client); returns the
/// tokens and a matching refresher.
pub async fn login(server: &ServerHandle, contract: Contract) -> (TokenSet, Arc<dyn Refresher>) {
    let client = tokenkeeper_server::client::Client::new(contract, &server.base_url()).unwrap();
    let login = client.login().await.expect("login");
    let tokens = TokenSet::from_response(&login.body).unwrap();
    let url = client.refresh_url();
    let refresher: Arc<dyn Refresher> = match contract {
        Contract::OAuth2 => Arc::new(refresh::OAuth2::new(&url).unwrap().client_id("tests")),
        Contract::Json => Arc::new(refresh::Json::new(&url).unwrap()),
        Contract::Header => Arc::new(refresh::Header::new(&url).unwrap()),
        Contract::Cookie => Arc::new(refresh::Cookie::new(&url, client.jar()).unwrap()),
    };
    let tokens = match contract {
        // The cookie contract's refresh token lives in the jar only.
        Contract::Cookie => tokens.with_refresh_secret(None),
        _ => tokens,
    };
    (tokens, refresher)
}

/// A signed-in session for `contract` at `server`, configured further by `configure`, and a
/// client that goes through its middleware.
pub async fn session(
    server: &ServerHandle,
    contract: Contract,
    configure: impl FnOnce(SessionBuilder) -> SessionBuilder,
) -> (Session, ClientWithMiddleware) {
    let session = signed_in_session(server, contract, configure).await;
    let client = client(&session);
    (session, client)
}

/// A session signed in for `contract` at `server`, configured further by `configure`.
pub async fn signed_in_session(
    server: &ServerHandle,
    contract: Contract,
    configure: impl FnOnce(SessionBuilder) -> SessionBuilder,
) -> Session {
    let (tokens, refresher) = login(server, contract).await;
    let builder = Session::builder()
        .refresher_arc(refresher)
        .attach_to([server.base_url()]);
    let session = configure(builder).build().unwrap();
    session.sign_in(tokens).await.unwrap();
    session
}

pub fn client(session: &Session) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .pool_max_idle_per_host(2048)
            .build()
            .unwrap(),
    )
    .with(session.middleware())
    .build()
}

/// The tokenkeeper error inside a middleware error, if that is what it is.
pub fn tk_error(error: &reqwest_middleware::Error) -> Option<&tokenkeeper::Error> {
    match error {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<tokenkeeper::Error>(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

/// The error of a GET that must fail (refused by tokenkeeper, or not sent at all).
pub async fn get_err(client: &ClientWithMiddleware, url: String) -> reqwest_middleware::Error {
    client.get(url).send().await.unwrap_err()
}

/// Sends `count` GETs at once and returns their outcomes (status or tokenkeeper error text).
pub async fn burst(
    client: &ClientWithMiddleware,
    server: &ServerHandle,
    count: usize,
) -> Vec<Result<u16, String>> {
    let _load = crate::load().await;
    burst_to(
        client,
        (0..count).map(|i| server.url(&format!("/api/items/{i}"))),
    )
    .await
}

/// Sends a GET to each of `urls` at once and returns their outcomes, in order (status or
/// error text).
pub async fn burst_to(
    client: &ClientWithMiddleware,
    urls: impl IntoIterator<Item = String>,
) -> Vec<Result<u16, String>> {
    let handles: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let client = client.clone();
            tokio::spawn(async move {
                match client.get(url).send().await {
                    Ok(response) => Ok(response.status().as_u16()),
                    Err(error) => Err(error.to_string()),
                }
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    outcomes
}

/// Counter differences between two stats snapshots.
pub fn delta(before: &Stats, after: &Stats) -> Stats {
    Stats {
        logins: after.logins - before.logins,
        refresh_calls: after.refresh_calls - before.refresh_calls,
        rotations: after.rotations - before.rotations,
        reuse_detections: after.reuse_detections - before.reuse_detections,
        families_revoked: after.families_revoked - before.families_revoked,
        grace_hits: after.grace_hits - before.grace_hits,
        api_ok: after.api_ok - before.api_ok,
        api_401_expired: after.api_401_expired - before.api_401_expired,
        api_401_invalid: after.api_401_invalid - before.api_401_invalid,
        api_401_missing: after.api_401_missing - before.api_401_missing,
        ..after.clone()
    }
}

/// A small real HTTP server (not a mock of anything tokenkeeper talks to): `/echo` answers with
/// every request header and the body as text, `/redirect?to=URL` answers 307 to `URL`, and
/// `/unauthorized` always answers 401.
pub async fn echo_server() -> String {
    use axum::routing::{any, get};
    async fn echo(headers: axum::http::HeaderMap, body: String) -> String {
        let mut text = String::new();
        for (name, value) in &headers {
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.push('\n');
        text.push_str(&body);
        text
    }
    async fn redirect(
        axum::extract::Query(query): axum::extract::Query<
            std::collections::HashMap<String, String>,
        >,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let to = query.get("to").cloned().unwrap_or_default();
        (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, to)],
        )
            .into_response()
    }
    let app = axum::Router::new()
        .route("/echo", any(echo))
        .route("/redirect", get(redirect))
        .route(
            "/unauthorized",
            any(|| async { axum::http::StatusCode::UNAUTHORIZED }),
        );
    let listener = crate::common::loopback_listener();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A refresh endpoint that misbehaves in every way a real one has been seen to, on 127.0.0.1:
/// `/no-tokens` (200 `{}`), `/garbage` (200 HTML), `/huge` (200, 1 MiB of JSON), `/truncated`
/// (200, the body breaks off mid-way), `/wrong-type` (200 with `token_type: mac`),
/// `/busy` (429 with `Retry-After: 1`), `/teapot` (418).
pub async fn misbehaving_server() -> String {
    use axum::body::Body;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::post;
    let huge = format!(
        "{{\"access_token\":\"a\",\"pad\":\"{}\"}}",
        "x".repeat(1 << 20)
    );
    let app = axum::Router::new()
        .route(
            "/no-tokens",
            post(|| async { axum::Json(serde_json::json!({})) }),
        )
        .route(
            "/garbage",
            post(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html>oops</html>") }),
        )
        .route("/huge", post(move || async move { huge.clone() }))
        .route(
            "/truncated",
            post(|| async {
                let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                    Ok("{\"access_token\":\"a"),
                    Err(std::io::Error::other("connection reset")),
                ];
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/wrong-type",
            post(|| async {
                axum::Json(serde_json::json!({"access_token": "a", "token_type": "mac"}))
            }),
        )
        .route(
            "/busy",
            post(|| async {
                (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")]).into_response()
            }),
        )
        .route("/teapot", post(|| async { StatusCode::IM_A_TEAPOT }))
        .route(
            "/redirect",
            post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "/no-tokens")],
                )
                    .into_response()
            }),
        );
    let listener = crate::common::loopback_listener();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The late-401 scenario, shared by every adapter's suite: tokens live `LATE_TTL`, and the API
/// checks a token on arrival but answers 200 ms later, so a refusal for a token arrives after
/// the token was already replaced. The TTL is long enough that a delayed retry's fresh token
/// never expires on the way, even on a loaded machine; short enough for several expiries.
pub const LATE_TTL: Duration = Duration::from_millis(2000);
/// How long the late-401 scenario's workers send at least (and until the third refresh).
pub const LATE_RUN: Duration = Duration::from_millis(8000);
/// When the late-401 scenario's workers stop even if fewer than three refreshes happened.
pub const LATE_GIVE_UP: Duration = Duration::from_secs(60);

/// The reference server for the late-401 scenario.
pub async fn late_401_server() -> ServerHandle {
    start(
        ServerConfig::default()
            .with_access_ttl(LATE_TTL)
            .with_latency(Latency {
                api: ms(200),
                ..Latency::default()
            }),
    )
    .await
}

/// The late-401 verdict: several expiries, never more refreshes than token lifetimes, every
/// refresh call made by the session, no reuse, every request answered, and late refusals seen
/// (and retried without a refresh).
pub fn assert_late_401s_did_not_refresh_again(
    server_delta: &Stats,
    stats: &tokenkeeper::SessionStats,
    elapsed: Duration,
    ok: u64,
) {
    // Each generation lives at least one TTL on the server, so no more than this many can
    // have expired while the workers ran.
    let most = (elapsed.as_secs_f64() / LATE_TTL.as_secs_f64()).ceil() as u64 + 1;
    assert!(server_delta.refresh_calls >= 3, "{server_delta:?}");
    assert!(
        server_delta.refresh_calls <= most,
        "{} refreshes > {most}",
        server_delta.refresh_calls
    );
    assert_eq!(server_delta.refresh_calls, stats.refreshes);
    assert_eq!(server_delta.reuse_detections, 0);
    assert_eq!(server_delta.api_ok, ok);
    assert!(stats.stale_retries > 0, "no late 401 was seen: {stats:?}");
    assert!(server_delta.api_401_expired > server_delta.refresh_calls);
}
