//! `Sessions`: many logins in one process, against the reference server over real HTTP.
//!
//! One refresh per key per expiry under a burst spread over many keys; keys never cross (also
//! while sessions are evicted and restored, and for audience-scoped keys); eviction during a
//! refresh; requests without a key are refused; a property test over random interleavings of
//! keys, evictions, sign-ins and sign-outs.

use crate::common::*;
use crate::keyed_env::*;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokenkeeper::keyed::Key;
use tokenkeeper::store::{FileStores, MemoryStores};
use tokenkeeper::{Error, Event, NoAuth, RefreshMode, Sessions, Status, TokenSet};

/// A server configuration whose access tokens expire after `ttl`, with no grace period: a
/// refresh token presented twice is refused as reuse at once.
pub(crate) fn expiring_after(ttl: Duration) -> ServerConfig {
    ServerConfig::default()
        .with_access_ttl(ttl)
        .with_grace_period(Duration::ZERO)
}

/// Signs `u0` .. `u{keys-1}` in to `logins`, each under its own name as key; their tokens.
pub(crate) async fn sign_in_users(
    logins: &Sessions<String>,
    server: &ServerHandle,
    keys: usize,
) -> Vec<TokenSet> {
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 0..keys {
        let set = login_as(&http, server, &user(i)).await;
        logins.sign_in(user(i), set.clone()).await.unwrap();
        tokens.push(set);
    }
    tokens
}

/// 1,000 concurrent requests over 100 keys whose tokens all expired: each key refreshes once,
/// every request succeeds with its own key's token, no refresh token is presented twice. In
/// proactive mode the requests wait for their key's refresh; in reactive mode they go out
/// with the expired token and the 401s of each key share one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_100_keys_refreshes_each_key_once() {
    // A burst: never beside a test that loads both cores (see `crate::heavy`).
    let _load = crate::load().await;
    for mode in [RefreshMode::default(), RefreshMode::Reactive] {
        const KEYS: usize = 100;
        // Room for every connection at once: 1,000 requests on the API client's connections
        // plus 100 refreshes on the refresher's. At the server's default limit (1,024) the
        // last connections wait unaccepted until idle ones time out; a refresh sent on such a
        // connection outlives its attempt, the server rotates after the client gave up, and
        // the retry presents a used refresh token (with no grace period: reuse, logout).
        let server =
            server_with_users(KEYS, expiring_after(ms(1500)).with_max_connections(4096)).await;
        let logins = Sessions::<String>::builder()
            .session(template(&server).mode(mode.clone()))
            .build()
            .unwrap();
        let tokens = sign_in_users(&logins, &server, KEYS).await;
        // Only the first tokens expire during the test.
        server.set_access_ttl(LONG_TTL);
        until_expired(&tokens).await;

        let client = keyed_client(&logins);
        let before = server.stats();
        let requests: Vec<_> = (0..1000)
            .map(|i| {
                let (client, url) = (client.clone(), server.base_url());
                let key = user(i % KEYS);
                tokio::spawn(async move {
                    let response = client
                        .get(format!("{url}/api/items/{i}"))
                        .with_extension(Key(key.clone()))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let body: serde_json::Value =
                        response.json().await.map_err(|e| e.to_string())?;
                    Ok::<_, String>((key, body["owner"].as_str().unwrap_or_default().to_owned()))
                })
            })
            .collect();
        for request in requests {
            let (key, owner) = request.await.unwrap().unwrap();
            assert_eq!(
                owner, key,
                "{mode:?}: a request for {key} carried {owner}'s token"
            );
        }
        let stats = delta(&before, &server.stats());
        assert_eq!(stats.refresh_calls, KEYS as u64, "{mode:?}: {stats:?}");
        assert_eq!(stats.rotations, KEYS as u64, "{mode:?}");
        assert_eq!(stats.reuse_detections, 0, "{mode:?}");
        assert_eq!(stats.api_ok, 1000, "{mode:?}");
        for i in 0..KEYS {
            let session = logins.session(&user(i)).await.unwrap();
            assert_eq!(session.stats().refreshes, 1, "{mode:?}: key {i}");
        }
    }
}

/// A collection far smaller than its keys evicts all the time while random requests run:
/// every request carries its own key's token, evicted keys come back from their store without
/// a refresh, and nothing fails. Run over both in-memory and file stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_cross_under_eviction_and_restore() {
    // A burst: never beside a test that loads both cores (see `crate::heavy`).
    let _load = crate::load().await;
    const KEYS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    for file in [false, true] {
        let server = server_with_users(KEYS, ServerConfig::default()).await;
        let builder = Sessions::<String>::builder()
            .session(template(&server))
            .capacity(4);
        let logins = if file {
            builder
                .store(FileStores::open(dir.path()).unwrap())
                .build()
                .unwrap()
        } else {
            builder.store(MemoryStores::new()).build().unwrap()
        };
        sign_in_users(&logins, &server, KEYS).await;
        let client = keyed_client(&logins);
        let before = server.stats();
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let (client, logins) = (client.clone(), logins.clone());
                let server_url = server.base_url();
                tokio::spawn(async move {
                    let mut made = Vec::new();
                    for step in 0..60 {
                        let key = user((task * 7 + step * 13) % KEYS);
                        if step % 9 == 0 {
                            logins.evict(&key);
                        }
                        let response = client
                            .get(format!("{server_url}/api/items/{step}"))
                            .with_extension(Key(key.clone()))
                            .send()
                            .await
                            .unwrap();
                        assert!(response.status().is_success(), "{}", response.status());
                        let body: serde_json::Value = response.json().await.unwrap();
                        made.push((key, body["owner"].as_str().unwrap().to_owned()));
                    }
                    made
                })
            })
            .collect();
        for task in tasks {
            for (key, owner) in task.await.unwrap() {
                assert_eq!(owner, key, "file store: {file}");
            }
        }
        assert!(
            logins.in_memory() <= 4 + 1,
            "the capacity bounds what stays in memory"
        );
        let stats = delta(&before, &server.stats());
        assert_eq!(
            stats.refresh_calls, 0,
            "restoring is not refreshing: {stats:?}"
        );
        assert_eq!(stats.api_ok, 8 * 60);
    }
}

/// Keys scoped by audience: one user, two logins, two token pairs. Each key's requests carry
/// that key's token (seen by an independent echo server), and after expiry each key refreshes
/// its own pair once (a pair presented for the other key would be reuse at the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_scoped_keys_keep_their_own_tokens() {
    // Concurrent requests: never beside a test that loads both cores (see `crate::heavy`).
    let _load = crate::load().await;
    let echo = echo_server().await;
    let logins = Sessions::<(String, String)>::builder()
        .session(
            tokenkeeper::Session::builder()
                .refresher(tokenkeeper::refresh::from_fn(|_| async {
                    Err(tokenkeeper::refresh::RefreshError::NoRefreshToken)
                }))
                .attach_to([echo.as_str()]),
        )
        .build()
        .unwrap();
    let alice_a = ("alice".to_owned(), "https://a.example".to_owned());
    let alice_b = ("alice".to_owned(), "https://b.example".to_owned());
    logins
        .sign_in(alice_a.clone(), TokenSet::new("token-for-a"))
        .await
        .unwrap();
    logins
        .sign_in(alice_b.clone(), TokenSet::new("token-for-b"))
        .await
        .unwrap();
    let client = keyed_client(&logins);
    for (key, token) in [(&alice_a, "token-for-a"), (&alice_b, "token-for-b")] {
        let seen = client
            .get(format!("{echo}/echo"))
            .with_extension(Key(key.clone()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .to_lowercase();
        assert!(
            seen.contains(&format!("bearer {token}")),
            "{key:?} sent: {seen}"
        );
        let other = if token.ends_with('a') {
            "token-for-b"
        } else {
            "token-for-a"
        };
        assert!(!seen.contains(other));
    }

    // Against the reference server: both audiences' pairs expire, each key refreshes its own.
    let server = server_with_users(1, expiring_after(ms(800))).await;
    let logins = Sessions::<(String, String)>::builder()
        .session(template(&server))
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let a = login_as(&http, &server, &user(0)).await;
    let b = login_as(&http, &server, &user(0)).await;
    logins.sign_in(alice_a.clone(), a.clone()).await.unwrap();
    logins.sign_in(alice_b.clone(), b.clone()).await.unwrap();
    server.set_access_ttl(LONG_TTL);
    until_expired([&a, &b]).await;
    let client = keyed_client(&logins);
    let before = server.stats();
    let requests: Vec<_> = (0..200)
        .map(|i| {
            let key = if i % 2 == 0 {
                alice_a.clone()
            } else {
                alice_b.clone()
            };
            let (client, server_url) = (client.clone(), server.base_url());
            tokio::spawn(async move {
                client
                    .get(format!("{server_url}/api/items/{i}"))
                    .with_extension(Key(key))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for request in requests {
        assert!(request.await.unwrap().is_success());
    }
    let stats = delta(&before, &server.stats());
    assert_eq!(
        (stats.refresh_calls, stats.reuse_detections),
        (2, 0),
        "{stats:?}"
    );
    let token_a = logins.access_token(&alice_a).await.unwrap();
    let token_b = logins.access_token(&alice_b).await.unwrap();
    use tokenkeeper::secrecy::ExposeSecret;
    assert_ne!(token_a.expose_secret(), token_b.expose_secret());
}

/// A key evicted while its refresh is in flight: the flight finishes and saves; the key's next
/// session restores the old pair, waits on the key's store lock and adopts the new pair. One
/// refresh call, no reuse, both requests answered with the key's own token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_during_a_refresh_neither_loses_nor_repeats_it() {
    let server = server_with_users(
        2,
        expiring_after(ms(600)).with_latency(Latency {
            refresh: ms(400),
            ..Latency::default()
        }),
    )
    .await;
    let logins = Sessions::<String>::builder()
        .session(template(&server))
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let set = login_as(&http, &server, &user(1)).await;
    logins.sign_in(user(1), set.clone()).await.unwrap();
    let mut events = logins.events_for(user(1));
    server.set_access_ttl(LONG_TTL);
    until_expired([&set]).await;

    let client = keyed_client(&logins);
    let before = server.stats();
    let first = tokio::spawn({
        let (client, server) = (client.clone(), server.base_url());
        async move {
            client
                .get(format!("{server}/api/items/1"))
                .with_extension(Key(user(1)))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    // The refresh has reached the server (it answers after its latency): evict now.
    while server.stats().refresh_calls == before.refresh_calls {
        tokio::task::yield_now().await;
    }
    logins.evict(&user(1));
    assert_eq!(logins.in_memory(), 0);
    let second = owner_seen(&client, &server, user(1), 2).await.unwrap();
    assert_eq!(second, user(1));
    assert_eq!(first.await.unwrap()["owner"], user(1));
    let stats = delta(&before, &server.stats());
    assert_eq!(
        (stats.refresh_calls, stats.reuse_detections),
        (1, 0),
        "{stats:?}"
    );
    // The events of both sessions of the key reach its stream.
    let mut saw_refresh = false;
    while let Ok(Ok(event)) = tokio::time::timeout(ms(10), events.recv()).await {
        saw_refresh |= matches!(event, Event::Refreshed { .. });
    }
    assert!(saw_refresh, "the evicted session's refresh is reported");
}

/// Requests without a key: refused with `Error::NoKey` and not sent when they would get a
/// token; sent untouched to other origins, with their own header, or with `NoAuth`.
#[tokio::test]
async fn requests_without_a_key_are_refused_not_sent() {
    let server = server_with_users(1, ServerConfig::default()).await;
    let echo = echo_server().await;
    let logins = Sessions::<String>::builder()
        .session(template(&server))
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    logins
        .sign_in(user(0), login_as(&http, &server, &user(0)).await)
        .await
        .unwrap();
    let client = keyed_client(&logins);
    let before = server.stats();
    let refused = get_err(&client, server.url("/api/items/1")).await;
    assert!(
        matches!(tk_error(&refused), Some(Error::NoKey)),
        "{refused}"
    );
    let stats = delta(&before, &server.stats());
    assert_eq!(stats.api_ok + stats.api_401_missing, 0, "nothing was sent");

    let elsewhere = client.get(format!("{echo}/echo")).send().await.unwrap();
    let text = elsewhere.text().await.unwrap().to_lowercase();
    assert!(
        !text.contains("authorization"),
        "no token to another origin: {text}"
    );
    let opted_out = client
        .get(server.url("/api/items/1"))
        .with_extension(NoAuth)
        .send()
        .await
        .unwrap();
    assert_eq!(opted_out.status(), 401);
    // A key nobody signed in for: login required, nothing sent.
    let unknown = client
        .get(server.url("/api/items/1"))
        .with_extension(Key("nobody".to_owned()))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(tk_error(&unknown), Some(Error::LoginRequired)));
    assert_eq!(
        owner_seen(&client, &server, user(0), 3).await.unwrap(),
        user(0)
    );
}

/// Sign-out of one key ends that key only, everywhere it is stored; its status says so, and
/// other keys go on.
#[tokio::test]
async fn signing_out_one_key_leaves_the_others() {
    // Concurrent requests: never beside a test that loads both cores (see `crate::heavy`).
    let _load = crate::load().await;
    let server = server_with_users(2, ServerConfig::default()).await;
    let stores = Arc::new(MemoryStores::new());
    let logins = Sessions::<String>::builder()
        .session(template(&server))
        .store(Arc::clone(&stores))
        .build()
        .unwrap();
    sign_in_users(&logins, &server, 2).await;
    let client = keyed_client(&logins);
    logins.sign_out(&user(0)).await.unwrap();
    assert_eq!(
        logins.status(&user(0)).await.unwrap(),
        Status::SignedOut {
            reason: Some(tokenkeeper::LogoutReason::SignedOut)
        }
    );
    let ended = owner_seen(&client, &server, user(0), 1).await.unwrap_err();
    assert!(ended.contains("login required"), "{ended}");
    // Also after eviction: the store was cleared, nothing comes back.
    logins.evict(&user(0));
    let ended = owner_seen(&client, &server, user(0), 1).await.unwrap_err();
    assert!(ended.contains("login required"), "{ended}");
    assert_eq!(
        owner_seen(&client, &server, user(1), 2).await.unwrap(),
        user(1)
    );
    assert!(logins.status(&user(1)).await.unwrap().is_signed_in());
}

/// What a step of the property test does.
#[derive(Debug, Clone)]
enum Step {
    Request(usize),
    Evict(usize),
    SignOut(usize),
    SignIn(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..KEYS_PROP).prop_map(Step::Request),
        2 => (0..KEYS_PROP).prop_map(Step::Evict),
        1 => (0..KEYS_PROP).prop_map(Step::SignOut),
        1 => (0..KEYS_PROP).prop_map(Step::SignIn),
    ]
}

const KEYS_PROP: usize = 5;

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Random interleavings of requests (several at once), evictions, sign-ins and sign-outs
    /// over a few keys with short-lived tokens (so refreshes interleave too): a request is
    /// answered with its own key's token or refused for that key's own state (signed out), never
    /// sent with another key's token; no refresh token is ever presented twice.
    #[test]
    fn random_interleavings_never_cross_keys(steps in proptest::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let _load = crate::load().await;
            let server = server_with_users(
                KEYS_PROP,
                expiring_after(ms(300)),
            )
            .await;
            let logins = Sessions::<String>::builder()
                .session(template(&server))
                .capacity(2)
                .build()
                .unwrap();
            let http = reqwest::Client::new();
            let mut signed_in = [false; KEYS_PROP];
            let client = keyed_client(&logins);
            let mut in_flight = Vec::new();
            for step in steps {
                match step {
                    Step::Request(k) => {
                        let (client, url) = (client.clone(), server.base_url());
                        let expect_ok = signed_in[k];
                        in_flight.push(tokio::spawn(async move {
                            let response = client
                                .get(format!("{url}/api/items/{k}"))
                                .with_extension(Key(user(k)))
                                .send()
                                .await;
                            (k, expect_ok, response)
                        }));
                    }
                    Step::Evict(k) => logins.evict(&user(k)),
                    Step::SignOut(k) | Step::SignIn(k) => {
                        // Sign-ins and sign-outs happen between requests, as a user's would.
                        for request in in_flight.drain(..) {
                            check(request.await.unwrap()).await;
                        }
                        if matches!(step, Step::SignIn(_)) {
                            let set = login_as(&http, &server, &user(k)).await;
                            logins.sign_in(user(k), set).await.unwrap();
                            signed_in[k] = true;
                        } else {
                            logins.sign_out(&user(k)).await.unwrap();
                            signed_in[k] = false;
                        }
                    }
                }
            }
            for request in in_flight {
                check(request.await.unwrap()).await;
            }
            assert_eq!(server.stats().reuse_detections, 0);
        });
    }
}

async fn check(
    (k, expect_ok, response): (usize, bool, reqwest_middleware::Result<reqwest::Response>),
) {
    match response {
        Ok(response) => {
            assert!(expect_ok, "key {k} is signed out, yet its request was sent");
            assert!(
                response.status().is_success(),
                "key {k}: {}",
                response.status()
            );
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["owner"], user(k));
        }
        Err(error) => {
            assert!(!expect_ok, "key {k}: {error}");
            assert!(
                matches!(tk_error(&error), Some(Error::LoginRequired)),
                "{error}"
            );
        }
    }
}
