//! Tokens go only where they should, and never into Debug output, errors or logs.

use crate::common;

use common::*;
use secrecy::ExposeSecret;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokenkeeper::classify::Classifier;
use tokenkeeper::store::{MemoryStore, TokenStore};
use tokenkeeper::{Error, RefreshMode, Session, TokenSet};

/// Collects everything a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn secrets_of(tokens: &TokenSet) -> Vec<String> {
    let mut secrets = vec![tokens.access_token().expose_secret().to_owned()];
    secrets.extend(tokens.refresh_token().map(|r| r.expose_secret().to_owned()));
    secrets
}

/// A whole session lifecycle (sign-in, expiry, refresh, invalidation, logout) at TRACE level:
/// no token appears in the captured logs, in any Debug output, or in any error message.
#[tokio::test]
async fn tokens_never_reach_logs_debug_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let store = Arc::new(MemoryStore::new());
    let (tokens, refresher) = login(&server, Contract::Json).await;
    let mut secrets = secrets_of(&tokens);
    let session = Session::builder()
        .refresher_arc(refresher)
        .attach_to([server.base_url()])
        .classifier(Classifier::well_known())
        .invalid_token_policy(tokenkeeper::InvalidTokenPolicy::EndSession)
        .mode(RefreshMode::Reactive)
        .store(Arc::clone(&store))
        .build()
        .unwrap();
    let mut events = session.events();
    let credential = session.sign_in(tokens.clone()).await.unwrap();
    let client = client(&session);
    server.set_access_ttl(LONG_TTL);

    tokio::time::sleep(ms(400)).await;
    let response = client.get(server.url("/api/items/1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let refreshed = store.load().await.unwrap().unwrap();
    secrets.extend(secrets_of(&refreshed.tokens));
    assert_eq!(refreshed.generation, 2);

    server.reset(); // the API now calls the token invalid: the session ends
    let error = client
        .get(server.url("/api/items/2"))
        .send()
        .await
        .unwrap_err();
    let after_logout = client
        .get(server.url("/api/items/3"))
        .send()
        .await
        .unwrap_err();

    let mut seen = vec![
        format!("{session:?}"),
        format!("{credential:?}"),
        format!("{:?}", credential.header_value()),
        format!("{tokens:?}"),
        format!("{refreshed:?}"),
        format!("{error:?} {error}"),
        format!("{after_logout:?} {after_logout}"),
        format!("{:?}", session.stats()),
    ];
    while let Ok(event) = events.try_recv() {
        seen.push(format!("{event:?}"));
    }
    seen.push(String::from_utf8(captured.0.lock().unwrap().clone()).unwrap());
    let everything = seen.join("\n");
    assert!(
        everything.contains("Refreshed"),
        "the flow really ran:\n{everything}"
    );
    assert!(everything.contains("TokenInvalid"));
    for secret in &secrets {
        assert!(
            !everything.contains(secret.as_str()),
            "a token leaked into:\n{everything}"
        );
    }
}

/// Only the origins in `attach_to` get the access token, only the refresh endpoint gets the
/// refresh token, and a redirect to another origin carries no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_go_only_where_they_belong() {
    let server = start(ServerConfig::default()).await;
    let other = start(ServerConfig::default()).await;
    let echo = echo_server().await;
    let (tokens, refresher) = login(&server, Contract::Header).await;
    let access = tokens.access_token().expose_secret().to_owned();
    let refresh = tokens.refresh_token().unwrap().expose_secret().to_owned();
    let session = Session::builder()
        .refresher_arc(refresher)
        .attach_to([server.base_url(), echo.clone()])
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap();
    let client = client(&session);

    // An allowed origin sees the access token and nothing else of ours.
    let echoed = client
        .post(format!("{echo}/echo"))
        .body("hello")
        .send()
        .await
        .unwrap();
    let echoed = echoed.text().await.unwrap();
    assert!(echoed.contains(&access), "{echoed}");
    assert!(!echoed.contains(&refresh), "{echoed}");

    // Another origin (same host, other port) gets no token at all.
    let response = client.get(other.url("/api/items/1")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(other.stats().api_401_missing, 1);

    // A redirect from an allowed origin to another one drops the token; the other origin's 401
    // is not taken as a verdict on our token.
    let foreign_echo = echo_server().await;
    let target = format!("{foreign_echo}/echo");
    let response = client
        .get(format!("{echo}/redirect?to={target}"))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
    let refused = client
        .get(format!("{echo}/redirect?to={foreign_echo}/unauthorized"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        session.stats().flights,
        0,
        "a foreign 401 triggers no refresh"
    );

    // The caller's own Authorization header and the opt-out are respected.
    let own = client
        .get(format!("{echo}/echo"))
        .header("authorization", "Bearer caller-owned")
        .send()
        .await
        .unwrap();
    assert!(own.text().await.unwrap().contains("caller-owned"));
    let opted_out = client
        .get(format!("{echo}/echo"))
        .with_extension(tokenkeeper::NoAuth)
        .send()
        .await
        .unwrap();
    assert!(!opted_out.text().await.unwrap().contains(&access));
}

/// Plain http to a host that is not loopback is refused before anything is sent.
#[tokio::test]
async fn plain_http_to_remote_hosts_is_refused() {
    let refresher = tokenkeeper::refresh::from_fn(|_| async { Ok(TokenSet::new("a")) });
    let listed = Session::builder()
        .refresher(refresher.clone())
        .attach_to(["http://api.example.com"])
        .build();
    assert!(matches!(listed, Err(Error::Config(_))));

    let session = Session::builder()
        .refresher(refresher)
        .attach_to_any()
        .build()
        .unwrap();
    session
        .sign_in(TokenSet::new("secret-token"))
        .await
        .unwrap();
    let error = client(&session)
        .get("http://api.example.invalid/items")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(tk_error(&error), Some(Error::InsecureTransport { .. })),
        "{error}"
    );
    assert!(tokenkeeper::refresh::OAuth2::new("http://auth.example.com/token").is_err());
}
