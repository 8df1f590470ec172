//! DPoP (RFC 9449) against an independent, certified implementation: oidc-provider's DPoP
//! instance (`scripts/oidc.sh`, `TOKENKEEPER_OIDC_DPOP_ISSUER`), over real HTTP. Its public
//! clients get DPoP-bound access tokens (`token_type` DPoP, `cnf.jkt` in the JWT) and DPoP-bound
//! refresh tokens, it hands out nonces, and it requires one from `tk-dpop-nonce`. The API is the
//! suite's resource server, which verifies every proof itself against the token's `cnf.jkt`
//! (`oidc_env::resource_server`).
//!
//! Token requests are counted by the provider (`GET /__stats`: statuses and OAuth error codes
//! per grant, one client per test), API requests and proofs by the resource server.
//!
//! Without `TOKENKEEPER_OIDC_DPOP_ISSUER` the tests skip loudly; under `CI=true` they fail.

use crate::oidc_env;

use base64::Engine as _;
use oidc_env::resource_server::ResourceServer;
use oidc_env::*;
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, Instant};
use tokenkeeper::dpop::DpopKey;
use tokenkeeper::refresh::{ClientCredentials, OAuth2, RefreshError, Refresher};
use tokenkeeper::{RefreshMode, Session, TokenSet};

/// The `cnf.jkt` of a JWT access token, read without verification (the resource server
/// verifies; this only says which key the provider bound the token to).
fn bound_to(access_token: &SecretString) -> Option<String> {
    let payload = access_token.expose_secret().split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?,
    )
    .ok()?;
    claims["cnf"]["jkt"].as_str().map(str::to_owned)
}

/// A login of the public DPoP client `client_id` with a fresh key: authorization code + PKCE
/// through the provider's forms, the code exchange signed with the key. Returns the refresher,
/// the key and the tokens, checked to be bound to the key.
async fn dpop_login(issuer: &str, client_id: &str) -> (OAuth2, DpopKey, TokenSet) {
    let key = DpopKey::generate();
    let provider = dpop_oauth2(issuer, client_id, key.clone()).await;
    let tokens = login(issuer, client_id, &provider).await;
    assert!(tokens.is_dpop_bound(), "token_type is not DPoP");
    assert_eq!(
        tokens.dpop_key().map(DpopKey::thumbprint),
        Some(key.thumbprint())
    );
    assert_eq!(
        bound_to(tokens.access_token()).as_deref(),
        Some(key.thumbprint()),
        "the provider bound the access token to another key"
    );
    (provider, key, tokens)
}

fn session(provider: OAuth2, api: &ResourceServer, mode: RefreshMode) -> Session {
    Session::builder()
        .refresher(provider)
        .attach_to([api.origin()])
        .mode(mode)
        .build()
        .unwrap()
}

/// The discovery document advertises DPoP, as RFC 9449 §5.1 has it.
#[tokio::test]
async fn the_provider_advertises_dpop() {
    let Some(issuer) = dpop_issuer() else { return };
    let document: serde_json::Value =
        reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let algs = document["dpop_signing_alg_values_supported"]
        .as_array()
        .expect("dpop_signing_alg_values_supported");
    assert!(algs.iter().any(|alg| alg == "ES256"), "{algs:?}");
}

/// 1,000 concurrent requests meet an expired DPoP-bound token: exactly one refresh grant at
/// the provider, which accepts its proof; 1,000 successes; every proof that reached the
/// resource server passed its checks against `cnf.jkt`, no `jti` twice, one key throughout.
/// With `api_nonce`, the API also demands a nonce the client does not know yet: each request
/// meets at most one demand, retried once, on top of the refresh.
async fn burst_at_expiry_refreshes_once(
    client_id: &str,
    mode: RefreshMode,
    api_nonce: Option<&str>,
) {
    let Some(issuer) = dpop_issuer() else { return };
    let _heavy = crate::heavy().await;
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    set_ttl(&issuer, client_id, DEFAULT_TTL_SECS).await;
    let (provider, key, tokens) = dpop_login(&issuer, client_id).await;
    let received = Instant::now();
    // Only the first token expires during the test, however slow the machine.
    set_ttl(&issuer, client_id, 120).await;
    let session = session(provider, &api, mode);
    session.sign_in(tokens).await.unwrap();
    let client = crate::common::client(&session);
    tokio::time::sleep(until_expired().saturating_sub(received.elapsed())).await;

    if let Some(nonce) = api_nonce {
        api.demand_nonce(nonce);
    }
    let before = provider_stats(&issuer, client_id).await;
    let outcomes = burst(&client, &api, 1000).await;
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    let seen = api.seen();
    eprintln!(
        "{client_id}: 1,000 DPoP requests at expiry -> {} refresh call(s) at the provider; \
         api {seen:?}",
        delta.total("refresh_token"),
    );
    assert_all_ok(&outcomes);
    assert_eq!(delta.total("refresh_token"), 1, "{delta:?}");
    assert_eq!(delta.count("refresh_token", 200), 1, "{delta:?}");
    assert_eq!(delta.reuse_detections, 0, "{delta:?}");
    assert_eq!(session.stats().refreshes, 1);
    assert_eq!(seen.ok, 1000, "{seen:?}");
    // Every request that reached the API carried a valid proof: the accepted ones and the
    // refusals of the expired token alike.
    assert_eq!(seen.proofs, seen.ok + seen.expired, "{seen:?}");
    assert_eq!(
        (
            seen.bad_proofs,
            seen.jti_reuse,
            seen.bound_as_bearer,
            seen.invalid
        ),
        (0, 0, 0, 0),
        "{seen:?}"
    );
    assert_eq!(
        api.dpop_keys(),
        [key.thumbprint().to_owned()].into(),
        "proofs by another key"
    );
    assert_eq!(
        session.stats().dpop_nonce_retries,
        seen.nonce_demands,
        "one retry per demand"
    );
    if api_nonce.is_some() {
        assert!((1..=1000).contains(&seen.nonce_demands), "{seen:?}");
    } else {
        assert_eq!(seen.nonce_demands, 0, "{seen:?}");
    }
    // The refreshed token is bound to the same key, and the session kept the key with it.
    let current = session.credential().await.unwrap();
    assert_eq!(
        bound_to(current.tokens().access_token()).as_deref(),
        Some(key.thumbprint())
    );
    assert!(
        current
            .tokens()
            .dpop_key()
            .is_some_and(|kept| kept.same_key(&key))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_at_expiry_reactive_refreshes_once_with_valid_proofs() {
    burst_at_expiry_refreshes_once("tk-dpop-burst", RefreshMode::Reactive, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_at_expiry_proactive_refreshes_once_with_valid_proofs() {
    burst_at_expiry_refreshes_once("tk-dpop-burst-proactive", RefreshMode::default(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_at_expiry_meeting_an_api_nonce_demand_refreshes_once() {
    burst_at_expiry_refreshes_once(
        "tk-dpop-burst-api-nonce",
        RefreshMode::Reactive,
        Some("burst-nonce"),
    )
    .await;
}

/// Client credentials with a DPoP key (a confidential client whose tokens the provider binds):
/// 1,000 concurrent callers of a session nobody signed in to make one token request, signed
/// with the key; the token is bound to it, and every one of the 1,000 requests carries a valid
/// proof by that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_a_key_1000_callers_one_bound_token() {
    let Some(issuer) = dpop_issuer() else { return };
    let client_id = "tk-dpop-m2m";
    let _heavy = crate::heavy().await;
    set_ttl(&issuer, client_id, 120).await;
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    let key = DpopKey::generate();
    let m2m = ClientCredentials::new(oauth2(&issuer, client_id).await)
        .scope("api:read")
        .dpop(key.clone());
    let session = Session::builder()
        .refresher(m2m)
        .attach_to([api.origin()])
        .build()
        .unwrap();
    let client = crate::common::client(&session);
    let before = provider_stats(&issuer, client_id).await;

    let outcomes = burst(&client, &api, 1000).await;
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    assert_all_ok(&outcomes);
    assert_eq!(delta.total("client_credentials"), 1, "{delta:?}");
    assert_eq!(delta.count("client_credentials", 200), 1, "{delta:?}");
    let seen = api.seen();
    assert_eq!(
        (seen.ok, seen.proofs, seen.distinct_tokens),
        (1000, 1000, 1),
        "{seen:?}"
    );
    assert_eq!(
        (seen.bad_proofs, seen.jti_reuse, seen.invalid, seen.missing),
        (0, 0, 0, 0),
        "{seen:?}"
    );
    assert_eq!(api.dpop_keys(), [key.thumbprint().to_owned()].into());
    let current = session.credential().await.unwrap();
    assert!(current.tokens().is_dpop_bound());
    assert_eq!(
        bound_to(current.tokens().access_token()).as_deref(),
        Some(key.thumbprint())
    );
}

/// `tk-dpop-nonce` must send a nonce at the token endpoint. The code exchange meets the demand
/// (`400 use_dpop_nonce` with a `DPoP-Nonce`) and is sent once more; the first refresh carries
/// the nonce it learnt, so no demand; after the provider's nonce changed (a stale one planted
/// in the key, as after the provider's nonce window moved on), the refresh meets one demand,
/// is retried once, and is one refresh: no `invalid_grant`, no logout, the session's refresh
/// count grows by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_demand_at_the_token_endpoint_is_one_retry_and_no_extra_refresh() {
    let Some(issuer) = dpop_issuer() else { return };
    let client_id = "tk-dpop-nonce";
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    set_ttl(&issuer, client_id, DEFAULT_TTL_SECS).await;
    let start = provider_stats(&issuer, client_id).await;
    let (provider, key, tokens) = dpop_login(&issuer, client_id).await;
    let token_url = provider.token_endpoint().clone();
    let delta = provider_stats(&issuer, client_id).await.since(&start);
    assert_eq!(
        (
            delta.errors("authorization_code", "use_dpop_nonce"),
            delta.count("authorization_code", 200),
            delta.total("authorization_code"),
        ),
        (1, 1, 2),
        "the code exchange: one demand, one retry: {delta:?}"
    );
    let session = session(provider, &api, RefreshMode::Reactive);
    session.sign_in(tokens).await.unwrap();
    let client = crate::common::client(&session);
    let mut events = session.events();

    // The first refresh: the nonce from the code exchange's answer is still good.
    tokio::time::sleep(until_expired()).await;
    let before = provider_stats(&issuer, client_id).await;
    let response = client.get(api.url("/items/1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    assert_eq!(
        (
            delta.total("refresh_token"),
            delta.count("refresh_token", 200)
        ),
        (1, 1),
        "a remembered nonce needs no demand: {delta:?}"
    );
    assert_eq!(session.stats().refreshes, 1);

    // The provider's nonce moved on: one demand, one retry, one refresh.
    assert!(key.remember_nonce(&token_url, "a-nonce-the-provider-no-longer-accepts"));
    tokio::time::sleep(until_expired()).await;
    let before = provider_stats(&issuer, client_id).await;
    let response = client.get(api.url("/items/2")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    assert_eq!(
        (
            delta.errors("refresh_token", "use_dpop_nonce"),
            delta.count("refresh_token", 200),
            delta.total("refresh_token"),
        ),
        (1, 1, 2),
        "one demand, one retry: {delta:?}"
    );
    assert_eq!(delta.errors("refresh_token", "invalid_grant"), 0);
    assert_eq!(delta.reuse_detections, 0);
    let stats = session.stats();
    assert_eq!((stats.refreshes, stats.logouts), (2, 0), "{stats:?}");
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, tokenkeeper::Event::LoggedOut { .. }),
            "{event:?}"
        );
    }
    let seen = api.seen();
    assert_eq!((seen.ok, seen.bad_proofs), (2, 0), "{seen:?}");
}

/// The resource server demands a nonce (`401 WWW-Authenticate: DPoP error="use_dpop_nonce"`
/// with a `DPoP-Nonce`): the request is sent once more with it, nothing is refreshed, and the
/// nonce is remembered for the next requests until the server changes it. Concurrent requests
/// that all meet the demand each retry once and all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_demand_at_the_api_is_one_retry_and_no_refresh() {
    let Some(issuer) = dpop_issuer() else { return };
    let client_id = "tk-dpop-api-nonce";
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    // Long-lived: a refresh here could only come from a nonce demand taken for a refusal.
    set_ttl(&issuer, client_id, 120).await;
    let (provider, _key, tokens) = dpop_login(&issuer, client_id).await;
    let session = session(provider, &api, RefreshMode::Reactive);
    session.sign_in(tokens).await.unwrap();
    let client = crate::common::client(&session);
    let before = provider_stats(&issuer, client_id).await;

    api.demand_nonce("nonce-1");
    let response = client.get(api.url("/items/1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = api.seen();
    assert_eq!((seen.nonce_demands, seen.ok), (1, 1), "{seen:?}");
    assert_eq!(session.stats().dpop_nonce_retries, 1);
    // Remembered: no demand for the next one.
    let response = client.get(api.url("/items/2")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(api.seen().nonce_demands, 1);
    // A new nonce: one demand again.
    api.demand_nonce("nonce-2");
    let response = client.get(api.url("/items/3")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = api.seen();
    assert_eq!((seen.nonce_demands, seen.ok), (2, 3), "{seen:?}");

    // 100 at once meet a new nonce: each meets at most one demand.
    api.demand_nonce("nonce-3");
    let _load = crate::load().await;
    let outcomes = burst(&client, &api, 100).await;
    assert_all_ok(&outcomes);
    let seen = api.seen();
    let demands = seen.nonce_demands - 2;
    assert!((1..=100).contains(&demands), "{seen:?}");
    assert_eq!(seen.ok, 103, "{seen:?}");
    // One retry per demand: a request never meets a second one.
    assert_eq!(
        session.stats().dpop_nonce_retries,
        seen.nonce_demands,
        "{seen:?}"
    );
    assert_eq!(
        (seen.bad_proofs, seen.jti_reuse, seen.expired),
        (0, 0, 0),
        "{seen:?}"
    );

    let delta = provider_stats(&issuer, client_id).await.since(&before);
    assert_eq!(delta.total("refresh_token"), 0, "{delta:?}");
    let stats = session.stats();
    assert_eq!(
        (stats.refreshes, stats.refresh_attempts, stats.logouts),
        (0, 0, 0),
        "{stats:?}"
    );
}

/// A stolen access token is useless without the key: the resource server refuses it as a
/// bearer token, with the DPoP scheme but no proof, with a proof by another key, and with a
/// replayed proof; the rightful key's proof passes (so the refusals are the binding's).
#[tokio::test]
async fn a_stolen_access_token_is_refused_without_the_key() {
    let Some(issuer) = dpop_issuer() else { return };
    let client_id = "tk-dpop-stolen";
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    set_ttl(&issuer, client_id, 120).await;
    let (provider, key, tokens) = dpop_login(&issuer, client_id).await;
    let token = tokens.access_token().clone();
    let url = api.url("/items/1");
    let parsed = url::Url::parse(&url).unwrap();
    let thief = reqwest::Client::new();
    let challenge = |response: &reqwest::Response| {
        response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };

    let as_bearer = thief
        .get(&url)
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(as_bearer.status(), 401);
    assert_eq!(api.seen().bound_as_bearer, 1);

    let dpop = format!("DPoP {}", token.expose_secret());
    let no_proof = thief
        .get(&url)
        .header("authorization", &dpop)
        .send()
        .await
        .unwrap();
    assert_eq!(no_proof.status(), 401);
    assert!(challenge(&no_proof).contains("invalid_dpop_proof"));

    let other_key = DpopKey::generate();
    let wrong_key = thief
        .get(&url)
        .header("authorization", &dpop)
        .header(
            "dpop",
            other_key.proof("GET", &parsed, Some(&token)).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 401);
    assert!(challenge(&wrong_key).contains("invalid_dpop_proof"));

    // The rightful key passes; the same proof captured and sent again does not.
    let proof = key.proof("GET", &parsed, Some(&token)).unwrap();
    let rightful = thief
        .get(&url)
        .header("authorization", &dpop)
        .header("dpop", proof.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(rightful.status(), 200);
    let replayed = thief
        .get(&url)
        .header("authorization", &dpop)
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 401);

    let seen = api.seen();
    assert_eq!(
        (
            seen.ok,
            seen.bad_proofs,
            seen.jti_reuse,
            seen.bound_as_bearer
        ),
        (1, 3, 1, 1),
        "{seen:?}"
    );
    // The session, holding the key, is served.
    let session = session(provider, &api, RefreshMode::Reactive);
    session.sign_in(tokens).await.unwrap();
    let response = crate::common::client(&session)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(api.seen().ok, 2);
}

/// The refresh token of a public client is bound to the key too (RFC 9449 §5): the provider
/// refuses it with another key's proof and with no proof, and those refusals consume nothing:
/// the rightful key then refreshes (rotation, no reuse detected).
#[tokio::test]
async fn a_stolen_refresh_token_is_refused_by_the_provider_without_the_key() {
    let Some(issuer) = dpop_issuer() else { return };
    let client_id = "tk-dpop-refresh-bound";
    let (provider, key, tokens) = dpop_login(&issuer, client_id).await;
    let before = provider_stats(&issuer, client_id).await;

    let refused = |result: Result<TokenSet, RefreshError>| match result {
        Err(error @ RefreshError::Rejected(_)) => assert!(error.is_terminal(), "{error:?}"),
        other => panic!("a stolen refresh token was not refused: {other:?}"),
    };
    // Another key's proof.
    refused(
        provider
            .refresh(&tokens.clone().with_dpop_key(DpopKey::generate()))
            .await,
    );
    // No proof at all: the pair without its key, through a refresher without one.
    let keyless = TokenSet::new(tokens.access_token().expose_secret().to_owned())
        .with_refresh_secret(tokens.refresh_token().cloned());
    let no_dpop = OAuth2::discover(&issuer)
        .await
        .unwrap()
        .client_id(client_id)
        .resource(RESOURCE);
    refused(no_dpop.refresh(&keyless).await);

    let refreshed = provider.refresh(&tokens).await.unwrap();
    assert_ne!(
        refreshed.refresh_token().unwrap().expose_secret(),
        tokens.refresh_token().unwrap().expose_secret(),
        "rotated"
    );
    assert_eq!(
        bound_to(refreshed.access_token()).as_deref(),
        Some(key.thumbprint())
    );
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    assert_eq!(delta.count("refresh_token", 400), 2, "{delta:?}");
    assert_eq!(
        delta.errors("refresh_token", "invalid_grant"),
        2,
        "{delta:?}"
    );
    assert_eq!(delta.count("refresh_token", 200), 1, "{delta:?}");
    assert_eq!(delta.reuse_detections, 0, "{delta:?}");
}

/// The tower layer (hyper client) against the provider's tokens: the API's nonce demand is one
/// retry and no refresh; after expiry, 200 requests at once make one refresh grant at the
/// provider, every proof valid and by the one key.
#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_proves_possession_and_answers_nonce_demands() {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::{ServiceBuilder, ServiceExt as _};

    let Some(issuer) = dpop_issuer() else { return };
    let client_id = "tk-dpop-tower";
    let _load = crate::load().await;
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    set_ttl(&issuer, client_id, DEFAULT_TTL_SECS).await;
    let (provider, key, tokens) = dpop_login(&issuer, client_id).await;
    let received = Instant::now();
    set_ttl(&issuer, client_id, 120).await;
    let session = session(provider, &api, RefreshMode::Reactive);
    session.sign_in(tokens).await.unwrap();
    let service = ServiceBuilder::new().layer(session.layer()).service(
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(2048)
            .build_http::<Full<bytes::Bytes>>(),
    );
    let send = |i: usize| {
        let request = http::Request::get(api.url(&format!("/items/{i}")))
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let service = service.clone();
        async move { service.oneshot(request).await.unwrap().status().as_u16() }
    };
    let before = provider_stats(&issuer, client_id).await;

    api.demand_nonce("tower-nonce");
    assert_eq!(send(0).await, 200);
    let seen = api.seen();
    assert_eq!((seen.nonce_demands, seen.ok), (1, 1), "{seen:?}");
    assert_eq!(session.stats().dpop_nonce_retries, 1);
    assert_eq!(session.stats().refreshes, 0);

    tokio::time::sleep(until_expired().saturating_sub(received.elapsed())).await;
    let statuses = futures_util::future::join_all((1..=200).map(send)).await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    assert_eq!(
        (
            delta.total("refresh_token"),
            delta.count("refresh_token", 200)
        ),
        (1, 1),
        "{delta:?}"
    );
    let seen = api.seen();
    assert_eq!(seen.ok, 201, "{seen:?}");
    assert_eq!(seen.nonce_demands, 1, "the nonce was remembered: {seen:?}");
    assert_eq!((seen.bad_proofs, seen.jti_reuse), (0, 0), "{seen:?}");
    assert_eq!(seen.proofs, seen.ok + seen.expired, "{seen:?}");
    assert_eq!(api.dpop_keys(), [key.thumbprint().to_owned()].into());
    assert_eq!(session.stats().refreshes, 1);
}
