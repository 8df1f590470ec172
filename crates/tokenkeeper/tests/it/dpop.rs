//! DPoP (RFC 9449) end to end over real HTTP on 127.0.0.1, against an independent DPoP server
//! written here (`dpop_env`: proofs verified by jsonwebtoken, thumbprints by its RFC 7638 code,
//! a `jti` replay cache, tokens bound to the proof's key, refresh-token rotation with reuse
//! detection, nonce demands at the token endpoint and at the API).

use crate::common::client;
use crate::dpop_env::{DpopServer, Stats};
use futures_util::future::join_all;
use reqwest_middleware::ClientWithMiddleware;
use std::fmt::Debug;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use tokenkeeper::dpop::DpopKey;
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::store::FileStore;
use tokenkeeper::{Event, RefreshMode, Session, SessionBuilder, TokenSet, refresh};

/// The status of a GET of `url`.
async fn status_of_get(client: &ClientWithMiddleware, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

/// A session that refreshes at the server's token endpoint and attaches to its API.
fn builder(server: &DpopServer) -> SessionBuilder {
    Session::builder()
        .refresher(refresh::OAuth2::new(&server.token_url()).unwrap())
        .attach_to([server.base()])
}

/// The login the server issues bound to `key` (what an authorization-code grant with a proof
/// returns).
fn login_bound_to(server: &DpopServer, key: &DpopKey) -> TokenSet {
    TokenSet::from_response(&server.issue_login(key.thumbprint()))
        .unwrap()
        .with_dpop_key(key.clone())
}

/// A session signed in with a login bound to a fresh key.
async fn signed_in(server: &DpopServer, mode: RefreshMode) -> (Session, DpopKey) {
    let key = DpopKey::generate();
    let tokens = login_bound_to(server, &key);
    assert!(tokens.is_dpop_bound());
    let session = Session::builder()
        .refresher(
            refresh::OAuth2::new(&server.token_url())
                .unwrap()
                .client_id("app"),
        )
        .attach_to([server.base()])
        .mode(mode)
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap();
    (session, key)
}

/// Asserts what `pick` reads from the server's counters, all of them shown on failure.
#[track_caller]
fn assert_stats<T: PartialEq + Debug>(
    server: &DpopServer,
    pick: impl Fn(&Stats) -> T,
    expected: T,
) {
    let stats = server.stats();
    assert_eq!(pick(&stats), expected, "{stats:?}");
}

fn assert_only_key(server: &DpopServer, key: &DpopKey) {
    let jkts = server.0.jkts.lock().unwrap().clone();
    assert_eq!(jkts.len(), 1, "proofs were signed by {} keys", jkts.len());
    assert!(jkts.contains(key.thumbprint()));
}

/// 1,000 concurrent requests meet an access token the server expired: one refresh (with a
/// proof), 1,000 successes, every proof valid, no `jti` twice, one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_at_expiry_refreshes_once_and_every_proof_is_valid() {
    let _load = crate::load().await;
    let server = DpopServer::start().await;
    let (session, key) = signed_in(&server, RefreshMode::Reactive).await;
    let client = client(&session);
    let url = server.api_url();
    assert_eq!(status_of_get(&client, &url).await, 200);
    server.expire_access_tokens();
    let responses = join_all((0..1000).map(|i| {
        let request = if i % 2 == 0 {
            client.get(&url)
        } else {
            client.post(&url).body(format!("item {i}"))
        };
        request.send()
    }))
    .await;
    let ok = responses
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count();
    let stats = server.stats();
    assert_eq!(ok, 1000, "{stats:?}");
    assert_eq!(stats.refreshes, 1, "{stats:?}");
    assert_eq!(stats.refresh_reuse, 0, "{stats:?}");
    assert_eq!(stats.bad_proofs, 0, "{stats:?}");
    assert_eq!(stats.jti_reuse, 0, "{stats:?}");
    assert_eq!(session.stats().refreshes, 1);
    assert_only_key(&server, &key);
}

/// The token endpoint demands a nonce: the refresh is sent once more with it (one demand, one
/// refresh), and a later nonce from the endpoint is used without a demand.
#[tokio::test]
async fn a_nonce_demand_at_the_token_endpoint_is_answered_once() {
    let server = DpopServer::start().await;
    server.0.nonce_at_token.store(true, SeqCst);
    let (session, key) = signed_in(&server, RefreshMode::Reactive).await;
    let client = client(&session);
    let url = server.api_url();
    server.expire_access_tokens();
    assert_eq!(status_of_get(&client, &url).await, 200);
    assert_stats(
        &server,
        |stats| (stats.nonce_demands_token, stats.refreshes, stats.bad_proofs),
        (1, 1, 0),
    );
    // The answer carried the nonce: the next refresh needs no demand.
    server.expire_access_tokens();
    assert_eq!(status_of_get(&client, &url).await, 200);
    assert_stats(
        &server,
        |stats| (stats.nonce_demands_token, stats.refreshes),
        (1, 2),
    );
    // A new nonce: one demand again, never two in a row for one refresh.
    server.rotate_nonce();
    server.expire_access_tokens();
    assert_eq!(status_of_get(&client, &url).await, 200);
    assert_stats(
        &server,
        |stats| (stats.nonce_demands_token, stats.refreshes),
        (2, 3),
    );
    assert_eq!(session.stats().logouts, 0);
    assert_only_key(&server, &key);
}

/// The API demands a nonce: the request is sent once more with it; no refresh, no retry
/// counted, no logout. A body that cannot be replayed gets the demand back, still with no
/// refresh; the nonce it carried serves the next request.
#[tokio::test]
async fn a_nonce_demand_at_the_api_is_answered_once_without_a_refresh() {
    let server = DpopServer::start().await;
    server.0.nonce_at_api.store(true, SeqCst);
    let (session, key) = signed_in(&server, RefreshMode::Reactive).await;
    let client = client(&session);
    let url = server.api_url();
    let response = client.post(&url).body("replayable").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "replayable");
    assert_stats(
        &server,
        |stats| (stats.nonce_demands_api, stats.refreshes),
        (1, 0),
    );
    assert_eq!(session.stats().dpop_nonce_retries, 1);
    assert_eq!(session.stats().retries, 0);
    // Remembered: no demand for the next requests.
    for _ in 0..3 {
        assert_eq!(status_of_get(&client, &url).await, 200);
    }
    assert_eq!(server.stats().nonce_demands_api, 1);

    // A streamed body after the nonce changed: the demand is the caller's answer.
    server.rotate_nonce();
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("a"), Ok("b")];
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = client.post(&url).body(streamed).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("use_dpop_nonce")
    );
    // The demand's nonce is kept: the next request goes through at once.
    assert_eq!(status_of_get(&client, &url).await, 200);
    assert_stats(
        &server,
        |stats| (stats.nonce_demands_api, stats.refreshes),
        (2, 0),
    );
    assert_eq!(session.stats().flights, 0);
    assert_eq!(session.stats().logouts, 0);
    assert!(session.status().borrow().is_signed_in());

    // A nonce demand and an expired token together: one nonce retry, one refresh, one retry.
    server.rotate_nonce();
    server.expire_access_tokens();
    assert_eq!(status_of_get(&client, &url).await, 200);
    assert_stats(
        &server,
        |stats| (stats.nonce_demands_api, stats.refreshes, stats.bad_proofs),
        (3, 1, 0),
    );
    assert_only_key(&server, &key);
}

/// A stolen access token is refused without the key: as a bearer token, as a DPoP token
/// without a proof, and with a proof signed by another key.
#[tokio::test]
async fn a_stolen_access_token_is_useless_without_the_key() {
    let server = DpopServer::start().await;
    let (session, _key) = signed_in(&server, RefreshMode::Reactive).await;
    let credential = session.credential().await.unwrap();
    assert!(credential.is_dpop_bound());
    assert!(
        credential
            .header_value()
            .to_str()
            .is_ok_and(|v| v.starts_with("DPoP "))
    );
    let stolen = credential.access_token().expose_secret().to_owned();
    let plain = reqwest::Client::new();
    let url = server.api_url();
    let as_bearer = plain.get(&url).bearer_auth(&stolen).send().await.unwrap();
    assert_eq!(as_bearer.status(), 401);
    let without_proof = plain
        .get(&url)
        .header("authorization", format!("DPoP {stolen}"))
        .send()
        .await
        .unwrap();
    assert_eq!(without_proof.status(), 401);
    let thief = DpopKey::generate();
    let secret = tokenkeeper::secrecy::SecretString::from(stolen.clone());
    let proof = thief
        .proof("GET", &url.parse().unwrap(), Some(&secret))
        .unwrap();
    let foreign_key = plain
        .get(&url)
        .header("authorization", format!("DPoP {stolen}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_key.status(), 401);
    // The owner's requests still work.
    assert_eq!(status_of_get(&client(&session), &url).await, 200);
}

/// The proactive path: a refresh ahead of expiry is signed too, and no request sees a 401.
#[tokio::test]
async fn the_proactive_refresh_is_signed_and_no_request_is_refused() {
    let server = DpopServer::start().await;
    let key = DpopKey::generate();
    let tokens = login_bound_to(&server, &key).with_expires_in(Duration::from_millis(800));
    let session = builder(&server).build().unwrap();
    session.sign_in(tokens).await.unwrap();
    let mut events = session.events();
    let client = client(&session);
    let url = server.api_url();
    loop {
        assert_eq!(status_of_get(&client, &url).await, 200);
        if let Ok(Event::Refreshed { .. }) = events.try_recv() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status_of_get(&client, &url).await, 200);
    let stats = server.stats();
    assert!(stats.refreshes >= 1, "{stats:?}");
    assert_eq!((stats.api_refused, stats.bad_proofs), (0, 0), "{stats:?}");
    assert!(session.stats().proactive_refreshes >= 1);
    assert_only_key(&server, &key);
}

/// Client credentials with DPoP, two sessions sharing one FileStore: the first obtains a token
/// signed with its key and saves the key with it; the second adopts the pair and signs with
/// the same key, though it was configured with another one.
#[tokio::test]
async fn client_credentials_share_the_key_through_the_file_store() {
    let server = DpopServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let session = |key: DpopKey| {
        let oauth2 = refresh::OAuth2::new(&server.token_url())
            .unwrap()
            .client_id("svc");
        Session::builder()
            .refresher(refresh::ClientCredentials::new(oauth2).dpop(key))
            .store(FileStore::open(&path).unwrap())
            .attach_to([server.base()])
            .mode(RefreshMode::Reactive)
            .build()
            .unwrap()
    };
    let first_key = DpopKey::generate();
    let first = session(first_key.clone());
    let second = session(DpopKey::generate());
    let url = server.api_url();
    assert_eq!(status_of_get(&client(&first), &url).await, 200);
    assert_eq!(status_of_get(&client(&second), &url).await, 200);
    assert_stats(&server, |stats| (stats.grants, stats.bad_proofs), (1, 0));
    assert_only_key(&server, &first_key);
    // The file holds the key (0600 like every token file) next to the token.
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(document["token_type"], "DPoP");
    assert_eq!(document["dpop_key"]["kty"], "EC");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Expiry: one new grant for both, still the same key.
    server.expire_access_tokens();
    assert_eq!(status_of_get(&client(&second), &url).await, 200);
    assert_eq!(status_of_get(&client(&first), &url).await, 200);
    assert_stats(&server, |stats| (stats.grants, stats.bad_proofs), (2, 0));
    assert_only_key(&server, &first_key);
}

/// A stored DPoP-bound pair whose key is missing is corrupt: restoring fails with a typed error
/// and nothing is sent as a bearer token.
#[tokio::test]
async fn a_bound_pair_without_its_key_is_never_sent_as_bearer() {
    let server = DpopServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let key = DpopKey::generate();
    let with_the_file = || {
        builder(&server)
            .store(FileStore::open(&path).unwrap())
            .build()
            .unwrap()
    };
    let writer = with_the_file();
    writer.sign_in(login_bound_to(&server, &key)).await.unwrap();
    let mut document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    document.as_object_mut().unwrap().remove("dpop_key");
    std::fs::write(&path, document.to_string()).unwrap();

    let reader = with_the_file();
    match reader.restore().await {
        Err(tokenkeeper::Error::Store(error)) => {
            assert!(
                error.to_string().contains("without its DPoP key"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
    let before = server.stats();
    let sent = client(&reader).get(server.api_url()).send().await;
    assert!(sent.is_err());
    assert_eq!(server.stats().api_refused, before.api_refused);

    // And a bound token set without a key is refused at sign-in.
    let unbound = TokenSet::from_response(br#"{"access_token":"a","token_type":"DPoP"}"#).unwrap();
    assert!(matches!(
        reader.sign_in(unbound).await,
        Err(tokenkeeper::Error::Config(_))
    ));
}

/// The tower layer (hyper client): proofs on every request, the nonce demand answered once, the
/// refresh after expiry signed, and a burst at expiry still one refresh.
#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_proves_possession_and_answers_nonce_demands() {
    let _load = crate::load().await;
    use http_body_util::{BodyExt as _, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::{ServiceBuilder, ServiceExt as _};

    let server = DpopServer::start().await;
    server.0.nonce_at_api.store(true, SeqCst);
    let (session, key) = signed_in(&server, RefreshMode::Reactive).await;
    let api = ServiceBuilder::new().layer(session.layer()).service(
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(2048)
            .build_http::<Full<bytes::Bytes>>(),
    );
    let url = server.api_url();
    let send = |body: &'static str| {
        let request = http::Request::post(&url)
            .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
            .unwrap();
        let api = api.clone();
        async move {
            let response = api.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    };
    assert_eq!(send("one").await, (200, bytes::Bytes::from_static(b"one")));
    assert_stats(
        &server,
        |stats| (stats.nonce_demands_api, stats.refreshes),
        (1, 0),
    );
    assert_eq!(session.stats().dpop_nonce_retries, 1);

    server.expire_access_tokens();
    let results = join_all((0..200).map(|_| send("burst"))).await;
    assert!(results.iter().all(|(status, _)| *status == 200));
    assert_stats(
        &server,
        |stats| {
            (
                stats.nonce_demands_api,
                stats.refreshes,
                stats.bad_proofs,
                stats.jti_reuse,
            )
        },
        (1, 1, 0, 0),
    );
    assert_only_key(&server, &key);
}
