//! Proactive refresh and the transient-failure policy (DESIGN.md §3.6, §3.7), under the reference
//! server's fault injection, and hostile refresh responses.

use crate::common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokenkeeper::refresh::{self, RefreshError, Refresher};
use tokenkeeper::{Error, Event, RefreshMode, Session, TokenSet};

/// Runs `workers` request loops for `run_for`; returns (ok, failed).
async fn steady_load(
    client: &reqwest_middleware::ClientWithMiddleware,
    server: &ServerHandle,
    workers: u64,
    run_for: Duration,
) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, ok, failed) = (client.clone(), Arc::clone(&ok), Arc::clone(&failed));
            let url = server.url(&format!("/api/items/{worker}"));
            tokio::spawn(async move {
                while started.elapsed() < run_for {
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(10 + worker % 5 * 7)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

/// Steady load across more than five token lifetimes with proactive refresh: no request ever
/// meets an expired token, and each generation is refreshed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proactive_refresh_means_no_expiry_401s() {
    let ttl = ms(1000);
    let run_for = ms(6000);
    let server = start(ServerConfig::default().with_access_ttl(ttl)).await;
    let (session, client) =
        session(&server, Contract::Json, |b| b.mode(RefreshMode::default())).await;
    let before = server.stats();
    let (ok, failed) = steady_load(&client, &server, 10, run_for).await;
    let server_delta = delta(&before, &server.stats());
    let stats = session.stats();

    assert_eq!(failed, 0);
    assert_eq!(server_delta.api_401_expired, 0, "{server_delta:?}");
    assert_eq!(server_delta.api_ok, ok);
    assert_eq!(server_delta.reuse_detections, 0);
    // One refresh per generation: no flight was wasted or duplicated.
    assert_eq!(server_delta.refresh_calls, stats.refreshes);
    assert_eq!(stats.proactive_refreshes, stats.flights);
    // A generation is refreshed after 70-75 % of its lifetime (75 % minus up to 5 % jitter), so
    // 6 s of 1 s tokens take between 6 and ceil(6 / 0.7) = 9 refreshes.
    let lifetimes = run_for.as_secs_f64() / ttl.as_secs_f64();
    assert!(stats.refreshes as f64 >= lifetimes.floor(), "{stats:?}");
    assert!(
        stats.refreshes as f64 <= (lifetimes / 0.7).ceil() + 1.0,
        "{stats:?}"
    );
}

/// The refresh endpoint fails (100 % for 3 s, then 50 % for 2 s) while the token expires:
/// no logout, no lost token, requests wait and then succeed, and the endpoint is not hammered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_outage_keeps_the_session_and_backs_off() {
    let server = start(ServerConfig::default().with_access_ttl(ms(1500))).await;
    let (session, client) = session(&server, Contract::OAuth2, |b| {
        b.refresh_timeout(Duration::from_secs(15))
    })
    .await;
    let mut events = session.events();
    server.set_access_ttl(LONG_TTL);
    server.set_refresh_failure_rate(1.0);
    let load = {
        let (client, server_url) = (client.clone(), server.base_url());
        tokio::spawn(async move {
            let started = Instant::now();
            let (mut ok, mut failed) = (0u64, 0u64);
            while started.elapsed() < Duration::from_secs(6) {
                match client.get(format!("{server_url}/api/items/1")).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
                tokio::time::sleep(ms(50)).await;
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during_outage = server.stats().refresh_calls;
    server.set_refresh_failure_rate(0.5);
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.set_refresh_failure_rate(0.0);
    let (ok, failed) = load.await.unwrap();

    assert_eq!(
        failed, 0,
        "requests wait for the refresh instead of failing"
    );
    assert!(ok > 20);
    let stats = server.stats();
    assert_eq!(stats.reuse_detections, 0);
    assert!(stats.rotations >= 1, "the refresh succeeded after recovery");
    // Backoff starts at 200 ms and doubles (with jitter): 3 s of outage cannot take more than
    // a handful of calls, where a naive retry loop would make hundreds.
    assert!(
        during_outage <= 8,
        "{during_outage} refresh calls in 3 s of outage"
    );
    let mut logouts = 0;
    let mut transient = 0;
    while let Ok(event) = events.try_recv() {
        match event {
            Event::LoggedOut { .. } => logouts += 1,
            Event::RefreshFailed {
                transient: true, ..
            } => transient += 1,
            _ => {}
        }
    }
    assert_eq!(logouts, 0);
    assert!(transient >= 1);
    assert!(session.credential().await.unwrap().generation() >= 2);
}

/// The refresh endpoint hangs while the token is expired: callers get `RefreshUnavailable` once
/// the refresh timeout passes, the tokens are kept, and the next request after recovery works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_past_the_deadline_gives_refresh_unavailable_then_recovers() {
    let server = start(ServerConfig::default().with_access_ttl(ms(400))).await;
    let (session, client) = session(&server, Contract::Json, |b| {
        b.refresh_timeout(ms(700)).attempt_timeout(ms(300))
    })
    .await;
    server.set_access_ttl(LONG_TTL);
    server.set_refresh_hang(true);
    tokio::time::sleep(ms(450)).await;
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(server.url("/api/items/1")).send(),
    )
    .await
    .expect("bounded time")
    .unwrap_err();
    assert!(
        matches!(tk_error(&error), Some(Error::RefreshUnavailable(_))),
        "{error}"
    );
    assert!(session.snapshot().is_ok(), "tokens kept");
    assert_eq!(
        server.stats().api_401_expired,
        0,
        "an expired token is not sent"
    );

    server.set_refresh_hang(false);
    let response = client.get(server.url("/api/items/1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// `Retry-After` on a 429 is honoured: the second attempt waits at least that long.
#[tokio::test]
async fn retry_after_is_honoured() {
    let bad = misbehaving_server().await;
    let refresher = refresh::Json::new(&format!("{bad}/busy")).unwrap();
    let tokens = TokenSet::new("a").with_refresh_token("r");
    let error = refresher.refresh(&tokens).await.unwrap_err();
    assert_eq!(
        error,
        RefreshError::Transient {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(1))
        }
    );
}

/// Every strategy turns every malformed answer into a typed error, never a panic.
#[tokio::test]
async fn hostile_refresh_responses_are_typed_errors() {
    let bad = misbehaving_server().await;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let tokens = TokenSet::new("a").with_refresh_token("r");
    for path in [
        "/no-tokens",
        "/garbage",
        "/huge",
        "/truncated",
        "/wrong-type",
        "/teapot",
    ] {
        let url = format!("{bad}{path}");
        let refreshers: Vec<(&str, Box<dyn Refresher>)> = vec![
            ("oauth2", Box::new(refresh::OAuth2::new(&url).unwrap())),
            ("json", Box::new(refresh::Json::new(&url).unwrap())),
            ("header", Box::new(refresh::Header::new(&url).unwrap())),
            (
                "cookie",
                Box::new(refresh::Cookie::new(&url, Arc::clone(&jar)).unwrap()),
            ),
        ];
        for (name, refresher) in refreshers {
            let error = refresher.refresh(&tokens).await.unwrap_err();
            let expected_kind = match path {
                "/truncated" => matches!(error, RefreshError::Transient { .. }),
                // No verdict on the refresh token (issue 10): kept, never a logout.
                "/teapot" | "/huge" => matches!(error, RefreshError::Inconclusive(_)),
                // An HTML page: a portal or proxy answered, not the token endpoint.
                "/garbage" => matches!(error, RefreshError::Inconclusive(_)),
                // A 307 would re-send the refresh token: refused, not followed.
                "/redirect" => {
                    matches!(&error, RefreshError::Rejected(r) if r.contains("redirect"))
                }
                // The header strategy reads headers only: a body it ignores cannot be wrong.
                "/wrong-type" if name != "oauth2" => true,
                _ => matches!(error, RefreshError::InvalidResponse(_)),
            };
            assert!(expected_kind, "{name} {path}: {error:?}");
            assert!(
                error.to_string().len() < 200,
                "{name} {path}: the error stays short"
            );
        }
    }
}

/// A session of `refresher` that attaches to any origin, signed in with `tokens`, and its
/// first credential.
async fn signed_in_anywhere(
    refresher: impl Refresher,
    tokens: TokenSet,
) -> (Session, Arc<tokenkeeper::Credential>) {
    let session = Session::builder()
        .refresher(refresher)
        .attach_to_any()
        .build()
        .unwrap();
    let credential = session.sign_in(tokens).await.unwrap();
    (session, credential)
}

/// A refresh that answers 200 without tokens ends the session with the precise cause.
#[tokio::test]
async fn success_without_tokens_ends_the_session_with_the_cause() {
    let bad = misbehaving_server().await;
    let (session, credential) = signed_in_anywhere(
        refresh::OAuth2::new(&format!("{bad}/no-tokens")).unwrap(),
        TokenSet::new("a").with_refresh_token("r"),
    )
    .await;
    let error = session.token_rejected(&credential).await.unwrap_err();
    match error {
        Error::SessionExpired(reason) => {
            assert!(reason.to_string().contains("no access token"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// `invalidate` ends the session only if the refused generation is still current.
#[tokio::test]
async fn invalidate_ignores_stale_generations() {
    let refresher =
        refresh::from_fn(|_| async { Ok(TokenSet::new("next").with_refresh_token("r2")) });
    let (session, first) =
        signed_in_anywhere(refresher, TokenSet::new("first").with_refresh_token("r1")).await;
    let second = session.token_rejected(&first).await.unwrap();
    assert_eq!(second.generation(), first.generation() + 1);
    assert!(
        !session.invalidate(first.generation()).await,
        "stale: ignored"
    );
    assert!(session.snapshot().is_ok());
    assert!(session.invalidate(second.generation()).await);
    assert!(matches!(session.snapshot(), Err(Error::LoginRequired)));
}

/// A late refusal is retried with the current token, unless that one is itself past its
/// deadline (nobody refreshed it while the request was out, as happens on a saturated machine):
/// then it is refreshed first, so the retry is not refused again.
#[tokio::test]
async fn a_late_refusal_is_not_retried_with_an_expired_token() {
    let issued = Arc::new(AtomicU64::new(0));
    let refresher = refresh::from_fn(move |_| {
        let n = issued.fetch_add(1, Ordering::Relaxed);
        async move {
            Ok(TokenSet::new(format!("access-{n}"))
                .with_refresh_token(format!("refresh-{n}"))
                .with_expires_in(ms(200)))
        }
    });
    let (session, first) =
        signed_in_anywhere(refresher, TokenSet::new("first").with_refresh_token("r1")).await;
    let second = session.token_rejected(&first).await.unwrap();
    let late = session.token_rejected(&first).await.unwrap();
    assert_eq!(
        late.generation(),
        second.generation(),
        "fresh: retried as is"
    );
    assert_eq!(session.stats().stale_retries, 1);

    tokio::time::sleep(ms(250)).await;
    assert!(second.is_expired());
    let late = session.token_rejected(&first).await.unwrap();
    assert_eq!(late.generation(), second.generation() + 1);
    assert!(!late.is_expired());
    assert_eq!(session.stats().refreshes, 2);
}

/// Two sessions share one store: when the second meets the expiry the first already refreshed,
/// it adopts the stored pair (counted, `Event::Adopted`) instead of presenting a rotated token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_sharing_the_store_adopts_instead_of_refreshing() {
    let server = start(ServerConfig::default()).await;
    let (tokens, refresher) = login(&server, Contract::Json).await;
    let store = Arc::new(tokenkeeper::store::MemoryStore::new());
    let build = || {
        Session::builder()
            .refresher_arc(Arc::clone(&refresher))
            .attach_to([server.base_url()])
            .store(Arc::clone(&store))
            .build()
            .unwrap()
    };
    let (first, second) = (build(), build());
    let signed_in = first.sign_in(tokens).await.unwrap();
    assert!(second.restore().await.unwrap());
    let mut events = second.events();

    let restored = second.credential().await.unwrap();
    first.token_rejected(&signed_in).await.unwrap();
    let adopted = second.token_rejected(&restored).await.unwrap();

    assert_eq!(adopted.generation(), signed_in.generation() + 1);
    assert_eq!(server.stats().refresh_calls, 1);
    assert_eq!(server.stats().reuse_detections, 0);
    assert_eq!((first.stats().refreshes, second.stats().refreshes), (1, 0));
    assert_eq!(second.stats().adopted, 1);
    assert!(matches!(events.try_recv(), Ok(Event::Adopted { .. })));
}
