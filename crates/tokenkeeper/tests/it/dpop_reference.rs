//! DPoP end to end against the reference server (`tokenkeeper serve --dpop`, here
//! `ServerConfig::with_dpop`): the server verifies every proof (signature, `htm`/`htu`, `iat`,
//! `jti` replay cache, `ath`, the key the tokens are bound to) and counts what it accepted and
//! refused, so these tests assert on the server's own verdicts.

use crate::common::*;
use futures_util::future::join_all;
use tokenkeeper::dpop::DpopKey;
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::{RefreshMode, Session, TokenSet, refresh};
use tokenkeeper_server::DpopConfig;

/// The password grant with a proof (answering one nonce demand), as an application's login
/// would send it: the tokens come back bound to `key`.
async fn dpop_login(server: &ServerHandle, key: &DpopKey) -> TokenSet {
    let url = server.url("/oauth2/token").parse().unwrap();
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let response = http
            .post(server.url("/oauth2/token"))
            .header("dpop", key.proof("POST", &url, None).unwrap())
            .form(&[
                ("grant_type", "password"),
                ("username", "demo"),
                ("password", "demo"),
            ])
            .send()
            .await
            .unwrap();
        if let Some(nonce) = response.headers().get("dpop-nonce") {
            key.remember_nonce(&url, nonce.to_str().unwrap());
        }
        let status = response.status();
        let body = response.bytes().await.unwrap();
        if status == 400 && String::from_utf8_lossy(&body).contains("use_dpop_nonce") {
            continue;
        }
        assert!(status.is_success(), "login: {status}");
        let tokens = TokenSet::from_response(&body)
            .unwrap()
            .with_dpop_key(key.clone());
        assert!(tokens.is_dpop_bound());
        return tokens;
    }
    panic!("two nonce demands for one login");
}

async fn dpop_session(
    server: &ServerHandle,
    mode: RefreshMode,
) -> (Session, reqwest_middleware::ClientWithMiddleware, DpopKey) {
    let key = DpopKey::generate();
    let tokens = dpop_login(server, &key).await;
    let session = Session::builder()
        .refresher(
            refresh::OAuth2::new(&server.url("/oauth2/token"))
                .unwrap()
                .client_id("tests"),
        )
        .attach_to([server.base_url()])
        .mode(mode)
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap();
    let client = client(&session);
    (session, client, key)
}

fn assert_every_proof_valid(stats: &Stats) {
    let rejected = &stats.dpop.proofs_rejected;
    assert_eq!(*rejected, Default::default(), "{stats:?}");
    assert_eq!(stats.dpop.jti_replays, 0, "{stats:?}");
    assert_eq!(stats.dpop.bearer_downgrades, 0, "{stats:?}");
}

/// 1,000 concurrent requests meet an expired DPoP-bound token: one refresh (signed), 1,000
/// successes, every proof accepted, no `jti` twice. Reactive: the expiry is met as 401s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_at_expiry_refreshes_once_with_valid_proofs() {
    burst_of_1000_at_expiry(RefreshMode::Reactive).await;
}

/// The same burst when the session knows the token expired (the default mode): every request
/// waits for the one refresh. It once saw 2 refreshes under load: `credential()` refreshed the
/// refresh's own result when that was installed between its two readings of the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_at_expiry_in_the_default_mode_refreshes_once_with_valid_proofs() {
    burst_of_1000_at_expiry(RefreshMode::default()).await;
}

async fn burst_of_1000_at_expiry(mode: RefreshMode) {
    let _load = crate::load().await;
    let server = start(
        ServerConfig::default()
            .with_access_ttl(ms(300))
            .with_dpop(DpopConfig::default()),
    )
    .await;
    let (session, client, _key) = dpop_session(&server, mode.clone()).await;
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;
    let before = server.stats();
    let url = server.url("/api/items/1");
    let responses = join_all((0..1000).map(|_| client.get(&url).send())).await;
    let ok = responses
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count();
    let stats = server.stats();
    assert_eq!(ok, 1000, "{mode:?} {stats:?}");
    assert_eq!(
        stats.refresh_calls - before.refresh_calls,
        1,
        "{mode:?} {stats:?}"
    );
    assert_eq!(stats.reuse_detections, 0);
    assert_every_proof_valid(&stats);
    assert_eq!(session.stats().refreshes, 1, "{:?}", session.stats());
}

/// Nonces at the token endpoint and at the API: each demand costs one retry, none a refresh.
#[tokio::test]
async fn nonce_demands_are_answered_once_each_without_a_refresh() {
    let server = start(
        ServerConfig::default()
            .with_access_ttl(ms(300))
            .with_dpop(DpopConfig::default().with_nonce(true)),
    )
    .await;
    let (session, client, _key) = dpop_session(&server, RefreshMode::Reactive).await;
    let url = server.url("/api/items/1");
    // The login's nonce came from the token endpoint's origin, which is the API's origin too.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert!(server.rotate_dpop_nonce());
    let before = server.stats();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let stats = server.stats();
    assert_eq!(
        stats.dpop.nonce_challenges - before.dpop.nonce_challenges,
        1,
        "{stats:?}"
    );
    assert_eq!(stats.refresh_calls, before.refresh_calls, "{stats:?}");
    assert_eq!(session.stats().dpop_nonce_retries, 1);
    assert_eq!(session.stats().retries, 0);

    // Expiry after a rotation: the API demands the new nonce (one retry), then refuses the
    // expired token (one refresh). The demand carried the new nonce for this origin, which is
    // also the token endpoint's, so the refresh needs no demand of its own.
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;
    assert!(server.rotate_dpop_nonce());
    let before = server.stats();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let stats = server.stats();
    assert_eq!(stats.refresh_calls - before.refresh_calls, 1, "{stats:?}");
    assert_eq!(
        stats.dpop.nonce_challenges - before.dpop.nonce_challenges,
        1,
        "{stats:?}"
    );
    assert_every_proof_valid(&stats);
    assert_eq!(session.stats().logouts, 0);
}

/// A stolen access token is refused without the key.
#[tokio::test]
async fn a_stolen_access_token_is_refused_without_the_key() {
    let server = start(ServerConfig::default().with_dpop(DpopConfig::default())).await;
    let (session, client, _key) = dpop_session(&server, RefreshMode::Reactive).await;
    let url = server.url("/api/items/1");
    let stolen = session.access_token().await.unwrap();
    let plain = reqwest::Client::new();
    let as_bearer = plain
        .get(&url)
        .bearer_auth(stolen.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(as_bearer.status(), 401);
    let thief = DpopKey::generate();
    let proof = thief
        .proof("GET", &url.parse().unwrap(), Some(&stolen))
        .unwrap();
    let with_other_key = plain
        .get(&url)
        .header("authorization", format!("DPoP {}", stolen.expose_secret()))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(with_other_key.status(), 401);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(server.stats().dpop.bearer_downgrades, 1);
}
