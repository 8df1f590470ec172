//! The failure policy (DESIGN.md §3.7) against the real reference server.

use crate::common;

use common::*;
use reqwest_middleware::ClientWithMiddleware;
use std::sync::Arc;
use std::time::Duration;
use tokenkeeper::classify::Classifier;
use tokenkeeper::store::{MemoryStore, TokenStore};
use tokenkeeper::{Error, Event, InvalidTokenPolicy, LogoutReason, RefreshMode, Session};

fn drain(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

fn logouts(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::LoggedOut { .. }))
        .count()
}

/// A server whose refresh endpoint takes `refresh` to answer.
fn slow_refresh(refresh: Duration) -> ServerConfig {
    ServerConfig::default().with_latency(Latency {
        refresh,
        ..Latency::default()
    })
}

/// A signed-in session that refreshes only when refused, saving to a store the test reads.
async fn reactive_with_store(
    server: &ServerHandle,
    contract: Contract,
) -> (Session, ClientWithMiddleware, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let (session, client) = session(server, contract, |b| {
        b.mode(RefreshMode::Reactive).store(Arc::clone(&store))
    })
    .await;
    (session, client, store)
}

/// The refresh token is dead (its TTL passed): every waiting request gets `SessionExpired`,
/// `LoggedOut` is emitted once, the store is cleared, and later requests fail with
/// `LoginRequired` without reaching the network.
async fn dead_refresh_token_ends_the_session_once(contract: Contract) {
    let server = start(
        // All 100 requests are waiting by the time the rejection comes back.
        slow_refresh(ms(300))
            .with_access_ttl(ms(300))
            .with_refresh_ttl(ms(500)),
    )
    .await;
    let (session, client, store) = reactive_with_store(&server, contract).await;
    let mut events = session.events();
    tokio::time::sleep(ms(700)).await;

    let outcomes = burst(&client, &server, 100).await;
    for outcome in &outcomes {
        let error = outcome.as_ref().expect_err("every request fails");
        assert!(error.contains("session expired"), "{error}");
    }
    let events = drain(&mut events);
    assert_eq!(logouts(&events), 1, "{events:?}");
    assert!(matches!(
        events.last(),
        Some(Event::LoggedOut {
            reason: LogoutReason::RefreshRejected(_)
        })
    ));
    assert!(store.load().await.unwrap().is_none(), "store cleared");
    assert_eq!(server.stats().refresh_calls, 1);

    let before = server.stats();
    let error = get_err(&client, server.url("/api/items/1")).await;
    assert!(
        matches!(tk_error(&error), Some(Error::LoginRequired)),
        "{error}"
    );
    let after = server.stats();
    assert_eq!(
        (after.api_ok, after.api_401_expired),
        (before.api_ok, before.api_401_expired)
    );
    assert_eq!(session.stats().logouts, 1);
}

/// The refresh endpoint never answers: waiters are released by the refresh timeout with
/// `RefreshUnavailable`, tokens are kept, and once the endpoint recovers the next request works.
async fn hanging_refresh_releases_waiters(contract: Contract) {
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let (session, client) = session(&server, contract, |b| {
        b.mode(RefreshMode::Reactive)
            .refresh_timeout(ms(800))
            .attempt_timeout(ms(300))
            .backoff(ms(50), ms(100))
    })
    .await;
    server.set_access_ttl(LONG_TTL);
    server.set_refresh_hang(true);
    tokio::time::sleep(ms(400)).await;

    let outcomes = tokio::time::timeout(ms(10_000), burst(&client, &server, 50))
        .await
        .expect("waiters are released, not hung");
    for outcome in &outcomes {
        let error = outcome.as_ref().expect_err("refresh unavailable");
        assert!(error.contains("refresh unavailable"), "{error}");
    }
    assert_eq!(session.stats().flights, 1, "one flight for all 50");
    assert!(session.credential().await.is_ok(), "tokens kept");

    server.set_refresh_hang(false);
    let response = client.get(server.url("/api/items/1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(session.stats().flights, 2);
    assert_eq!(server.stats().reuse_detections, 0);
}

/// Half of the requests waiting on a refresh are dropped mid-flight: the refresh still completes
/// once, its tokens are stored, and the other half succeed.
async fn cancelled_waiters_do_not_cancel_the_refresh(contract: Contract) {
    let server = start(slow_refresh(ms(400)).with_access_ttl(ms(800))).await;
    let (session, client, store) = reactive_with_store(&server, contract).await;
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(900)).await;

    let handles: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            let url = server.url(&format!("/api/items/{i}"));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(ms(150)).await;
    let mut kept = Vec::new();
    for (i, handle) in handles.into_iter().enumerate() {
        if i % 2 == 0 {
            handle.abort();
        } else {
            kept.push(handle);
        }
    }
    for handle in kept {
        assert_eq!(handle.await.unwrap().unwrap(), 200);
    }
    let stats = server.stats();
    assert_eq!(stats.refresh_calls, 1);
    assert_eq!(stats.reuse_detections, 0);
    let stored = store.load().await.unwrap().expect("stored");
    assert_eq!(stored.generation, 2);
    assert_eq!(session.credential().await.unwrap().generation(), 2);
}

/// The API says the token is invalid (not expired) by a configured rule, under the strict
/// policy: the session ends
/// without a refresh call. (The oauth2 contract words both cases `invalid_token`, as RFC 6750
/// does, and the cookie contract's `INVALID_TOKEN` is what the react-query article's server
/// answers for a merely expired token, so for those two one refresh tells the cases apart.)
async fn invalid_token_rule_logs_out_without_refreshing(contract: Contract) {
    let server = start(ServerConfig::default()).await;
    let (session, client) = session(&server, contract, |b| {
        b.classifier(Classifier::well_known())
            .invalid_token_policy(InvalidTokenPolicy::EndSession)
    })
    .await;
    let mut events = session.events();
    // Forgetting every family makes the server call our (well-signed) token invalid.
    server.reset();

    let error = get_err(&client, server.url("/api/items/1")).await;
    let stats = server.stats();
    match contract {
        Contract::OAuth2 | Contract::Cookie => {
            assert!(
                matches!(
                    tk_error(&error),
                    Some(Error::SessionExpired(LogoutReason::RefreshRejected(_)))
                ),
                "{error}"
            );
            assert_eq!(stats.refresh_calls, 1);
        }
        _ => {
            assert!(
                matches!(
                    tk_error(&error),
                    Some(Error::SessionExpired(LogoutReason::TokenInvalid))
                ),
                "{error}"
            );
            assert_eq!(stats.refresh_calls, 0);
        }
    }
    assert_eq!(logouts(&drain(&mut events)), 1);
    assert!(matches!(
        session.credential().await,
        Err(Error::LoginRequired)
    ));
}

macro_rules! contract_suite {
    ($($module:ident => $contract:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dead_refresh_token_ends_the_session_once() {
                super::dead_refresh_token_ends_the_session_once($contract).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hanging_refresh_releases_waiters() {
                super::hanging_refresh_releases_waiters($contract).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cancelled_waiters_do_not_cancel_the_refresh() {
                super::cancelled_waiters_do_not_cancel_the_refresh($contract).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn invalid_token_rule_logs_out_without_refreshing() {
                super::invalid_token_rule_logs_out_without_refreshing($contract).await;
            }
        }
    )*};
}

contract_suite! {
    oauth2 => Contract::OAuth2,
    json => Contract::Json,
    header => Contract::Header,
    cookie => Contract::Cookie,
}

/// A token the API never accepts (issued by another server): each request is retried once,
/// never twice, and after three routes in a row refused it right after a refresh (the token is
/// refused everywhere) the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_after_refresh_is_not_retried_again_and_ends_the_session() {
    let api = start(ServerConfig::default()).await;
    let auth = start(ServerConfig::default()).await;
    let (tokens, refresher) = login(&auth, Contract::Json).await;
    let session = Session::builder()
        .refresher_arc(refresher)
        .attach_to([api.base_url()])
        .classifier(Classifier::default())
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap();
    let client = client(&session);

    for route in 1..=2 {
        let url = api.url(&format!("/api/items/{route}"));
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 401, "the retried refusal is handed back");
    }
    let error = client.get(api.url("/api/items/3")).send().await;
    assert_eq!(error.unwrap().status(), 401);
    assert_eq!(
        api.stats().api_401_invalid,
        6,
        "two attempts per request, never three"
    );
    assert_eq!(auth.stats().refresh_calls, 3);
    let error = get_err(&client, api.url("/api/items/1")).await;
    assert!(
        matches!(tk_error(&error), Some(Error::LoginRequired)),
        "{error}"
    );
    assert_eq!(session.stats().logouts, 1);
}

/// A streamed body cannot be replayed: the caller gets the original 401, the refresh still
/// happens, and the next request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_body_gets_the_original_401_and_the_refresh_still_happens() {
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let (session, client) =
        session(&server, Contract::Json, |b| b.mode(RefreshMode::Reactive)).await;
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;

    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("{\"name\":"), Ok("\"x\"}")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = client
        .post(server.url("/api/items"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(session.stats().refreshes, 1);
    assert_eq!(session.stats().not_replayable, 1);

    let response = client
        .post(server.url("/api/items"))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.stats().refresh_calls, 1);
}

/// No tokens at all: the request is not sent.
#[tokio::test]
async fn no_tokens_means_login_required_without_network() {
    let server = start(ServerConfig::default()).await;
    let (_, refresher) = login(&server, Contract::Json).await;
    let session = Session::builder()
        .refresher_arc(refresher)
        .attach_to([server.base_url()])
        .build()
        .unwrap();
    let error = client(&session)
        .get(server.url("/api/items/1"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(tk_error(&error), Some(Error::LoginRequired)));
    assert_eq!(server.stats().api_401_missing + server.stats().api_ok, 0);
}
