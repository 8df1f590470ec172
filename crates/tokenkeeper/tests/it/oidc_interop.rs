//! Interop with a certified OpenID provider (oidc-provider from npm, started by
//! `scripts/oidc.sh`), over real HTTP: discovery, login by authorization code + PKCE, refresh
//! with rotation, every client authentication method, client credentials, revocation, and two
//! processes sharing a `FileStore`. The API is the suite's own resource server, which validates
//! the provider's JWT access tokens against its JWKS.
//!
//! Token requests are counted by the provider itself (`GET /__stats`, per client; every test
//! that counts has its own client), API requests by the resource server.
//!
//! Without `TOKENKEEPER_OIDC_ISSUER` the tests skip loudly; under `CI=true` they fail.

use crate::oidc_env;

use oidc_env::resource_server::ResourceServer;
use oidc_env::*;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokenkeeper::refresh::{ClientCredentials, ClientKey, KeyAlgorithm, RefreshError, Refresher};
use tokenkeeper::{Error, Event, LogoutReason, RefreshMode, Session, TokenSet};

/// Entry point of the child processes of the shared-store test (see `oidc_env::worker`).
#[test]
#[ignore = "runs only as a child process of the shared-store test"]
fn oidc_worker() {
    oidc_env::worker::child_main();
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn tk_error(error: &reqwest_middleware::Error) -> Option<&Error> {
    match error {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Error>(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

/// Login by authorization code + PKCE through the provider's forms; discovery gives the token
/// endpoint; a refresh at expiry rotates the refresh token; presenting the rotated one again is
/// reuse, which the provider answers by revoking the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_pkce_then_discovered_refresh_rotates_and_reuse_is_refused() {
    let Some(issuer) = issuer() else { return };
    let client_id = "tk-basic";
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    let provider = oauth2(&issuer, client_id).await;
    assert_eq!(
        provider.token_endpoint().as_str(),
        format!("{issuer}/token")
    );
    let before = provider_stats(&issuer, client_id).await;

    let first = login(&issuer, client_id, &provider).await;
    assert_eq!(
        first.lifetime(),
        Some(Duration::from_secs(DEFAULT_TTL_SECS))
    );
    let session = Session::builder()
        .refresher(provider.clone())
        .attach_to([api.origin()])
        .mode(RefreshMode::Reactive)
        .build()
        .unwrap();
    session.sign_in(first.clone()).await.unwrap();
    let client = crate::common::client(&session);
    let item = client.get(api.url("/items/1")).send().await.unwrap();
    assert_eq!(item.status(), 200);
    let body: serde_json::Value = item.json().await.unwrap();
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["client_id"], client_id);

    tokio::time::sleep(until_expired()).await;
    let item = client.get(api.url("/items/2")).send().await.unwrap();
    assert_eq!(item.status(), 200);
    assert_eq!(session.stats().refreshes, 1);
    let seen = api.seen();
    assert_eq!((seen.expired, seen.distinct_tokens), (1, 2), "{seen:?}");
    let current = session.credential().await.unwrap();
    let rotated = current.tokens().refresh_token().unwrap().expose_secret();
    assert_ne!(rotated, first.refresh_token().unwrap().expose_secret());

    // The first refresh token was rotated away: presenting it again is reuse.
    let reuse = provider.refresh(&first).await.unwrap_err();
    assert!(
        matches!(&reuse, RefreshError::Rejected(reason) if reason.contains("invalid_grant")),
        "{reuse:?}"
    );
    // The provider revoked the whole grant: the current refresh token is dead as well.
    let dead = provider.refresh(current.tokens()).await.unwrap_err();
    assert!(dead.is_terminal(), "{dead:?}");

    let delta = provider_stats(&issuer, client_id).await.since(&before);
    assert_eq!(delta.count("authorization_code", 200), 1, "{delta:?}");
    assert_eq!(delta.count("refresh_token", 200), 1, "{delta:?}");
    assert_eq!(delta.count("refresh_token", 400), 2, "{delta:?}");
    assert_eq!(delta.reuse_detections, 1, "{delta:?}");
}

/// `client_secret_post` and `private_key_jwt` (RS256, ES256) against the provider: the code
/// exchange, a refresh and a client-credentials grant each authenticate the client.
/// (`client_secret_basic`, with a secret full of reserved characters, is every other test's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_auth_method_logs_in_refreshes_and_gets_client_credentials() {
    let Some(issuer) = issuer() else { return };
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    let plain = reqwest::Client::new();
    for client_id in ["tk-post", "tk-jwt-rs256", "tk-jwt-es256"] {
        let before = provider_stats(&issuer, client_id).await;
        let provider = oauth2(&issuer, client_id).await;
        let debug = format!("{provider:?}");
        assert!(
            !debug.contains("BEGIN") && !debug.contains(SECRET),
            "{debug}"
        );
        let tokens = login(&issuer, client_id, &provider).await;
        let refreshed = provider.refresh(&tokens).await.unwrap();
        assert_ne!(
            refreshed.refresh_token().unwrap().expose_secret(),
            tokens.refresh_token().unwrap().expose_secret(),
            "{client_id}: rotated"
        );
        let m2m = ClientCredentials::new(provider)
            .scope("api:read")
            .refresh(&TokenSet::new(""))
            .await
            .unwrap();
        assert!(m2m.refresh_token().is_none());
        for token in [&refreshed, &m2m] {
            let item = plain
                .get(api.url("/items/1"))
                .bearer_auth(token.access_token().expose_secret())
                .send()
                .await
                .unwrap();
            assert_eq!(item.status(), 200, "{client_id}");
            let body: serde_json::Value = item.json().await.unwrap();
            assert_eq!(body["client_id"], client_id);
        }
        let delta = provider_stats(&issuer, client_id).await.since(&before);
        for grant in ["authorization_code", "refresh_token", "client_credentials"] {
            assert_eq!(delta.count(grant, 200), 1, "{client_id} {grant}: {delta:?}");
            assert_eq!(delta.total(grant), 1, "{client_id} {grant}: {delta:?}");
        }
    }
}

/// Wrong credentials are terminal rejections, never retried as transient; the assertion
/// audience may be the token endpoint (default) or the issuer, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_credentials_are_rejected_and_the_assertion_audience_is_checked() {
    let Some(issuer) = issuer() else { return };
    let grant = |provider: tokenkeeper::refresh::OAuth2| async move {
        ClientCredentials::new(provider)
            .refresh(&TokenSet::new(""))
            .await
    };
    let discovered = || async {
        tokenkeeper::refresh::OAuth2::discover(&issuer)
            .await
            .unwrap()
    };

    let wrong_secret = discovered()
        .await
        .client_id("tk-wrong")
        .client_secret("nope");
    let error = grant(wrong_secret).await.unwrap_err();
    assert!(
        matches!(&error, RefreshError::Rejected(r) if r.contains("invalid_client")),
        "{error:?}"
    );
    let right = discovered()
        .await
        .client_id("tk-wrong")
        .client_secret(SECRET);
    grant(right).await.unwrap();
    // The secret has reserved characters: sent in a Basic header *without* the form-urlencoding
    // of RFC 6749 §2.3.1 (what a plain `basic_auth` does), the provider cannot read it.
    let raw = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("tk-wrong", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert!(raw.status().is_client_error(), "{}", raw.status());
    // oidc-provider treats client_secret_basic and client_secret_post as one method: a client
    // registered for Basic may also post its secret in the form.
    let post = discovered()
        .await
        .client_id("tk-wrong")
        .client_secret(SECRET)
        .client_auth(tokenkeeper::refresh::ClientAuth::Post);
    grant(post).await.unwrap();

    let es256 = || ClientKey::from_pem(&key_pem("client-es256.pem"), KeyAlgorithm::ES256).unwrap();
    let wrong_key = discovered()
        .await
        .client_id("tk-jwt-es256")
        .private_key_jwt(
            ClientKey::from_pem(&key_pem("client-rs256.pem"), KeyAlgorithm::RS256).unwrap(),
        );
    let error = grant(wrong_key).await.unwrap_err();
    assert!(
        matches!(&error, RefreshError::Rejected(r) if r.contains("invalid_client")),
        "{error:?}"
    );
    let issuer_audience = discovered()
        .await
        .client_id("tk-jwt-es256")
        .private_key_jwt(es256())
        .assertion_audience(issuer.as_str());
    grant(issuer_audience).await.unwrap();
    let elsewhere = discovered()
        .await
        .client_id("tk-jwt-es256")
        .private_key_jwt(es256())
        .assertion_audience("https://elsewhere.example.com/token");
    assert!(grant(elsewhere).await.unwrap_err().is_terminal());
}

/// 1,000 concurrent requests meet an expired token: exactly one refresh at the provider, 1,000
/// successes.
async fn burst_at_expiry_refreshes_once(client_id: &str, mode: RefreshMode) {
    let Some(issuer) = issuer() else { return };
    let _heavy = crate::heavy().await;
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    let provider = oauth2(&issuer, client_id).await;
    set_ttl(&issuer, client_id, DEFAULT_TTL_SECS).await;
    let tokens = login(&issuer, client_id, &provider).await;
    let received = Instant::now();
    // Only the first token expires during the test: however slow the machine, the burst
    // finishes long before the refreshed one's refresh point.
    set_ttl(&issuer, client_id, 120).await;
    let session = Session::builder()
        .refresher(provider)
        .attach_to([api.origin()])
        .mode(mode)
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap();
    let client = crate::common::client(&session);
    tokio::time::sleep(until_expired().saturating_sub(received.elapsed())).await;

    let before = provider_stats(&issuer, client_id).await;
    let outcomes = burst(&client, &api, 1000).await;
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    eprintln!(
        "{client_id}: 1,000 requests at expiry -> {} refresh call(s) at the provider; api {:?}",
        delta.total("refresh_token"),
        api.seen()
    );
    assert_all_ok(&outcomes);
    assert_eq!(delta.total("refresh_token"), 1, "{delta:?}");
    assert_eq!(delta.count("refresh_token", 200), 1, "{delta:?}");
    assert_eq!(delta.reuse_detections, 0);
    assert_eq!(session.stats().refreshes, 1);
    assert_eq!(api.seen().ok, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_at_expiry_proactive_refreshes_once() {
    burst_at_expiry_refreshes_once("tk-burst", RefreshMode::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_at_expiry_reactive_refreshes_once() {
    burst_at_expiry_refreshes_once("tk-burst-reactive", RefreshMode::Reactive).await;
}

/// Requests in flight across several expiries, answered 200 ms after the token was judged, so
/// refusals of a token arrive after it was already replaced: they are retried with the new
/// token, and refreshes stay within one per token lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_401s_across_expiries_stay_within_one_refresh_per_lifetime() {
    let Some(issuer) = issuer() else { return };
    let client_id = "tk-late";
    let _heavy = crate::heavy().await;
    let api = ResourceServer::start(&issuer, ms(200)).await;
    let provider = oauth2(&issuer, client_id).await;
    let tokens = login(&issuer, client_id, &provider).await;
    let session = Session::builder()
        .refresher(provider)
        .attach_to([api.origin()])
        .mode(RefreshMode::Reactive)
        .build()
        .unwrap();
    session.sign_in(tokens).await.unwrap();
    let client = crate::common::client(&session);
    let before = provider_stats(&issuer, client_id).await;

    let run_for = Duration::from_secs(8);
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // For 8 s and until the second refresh at least: on a saturated machine the time from one
    // expiry to the next refresh grows. The give-up bound ends a run whose refreshes stopped
    // (the verdict below then fails).
    let enough = {
        let session = session.clone();
        move || {
            started.elapsed() >= crate::common::LATE_GIVE_UP
                || (started.elapsed() >= run_for && session.stats().refreshes >= 2)
        }
    };
    let workers: Vec<_> = (0..20)
        .map(|worker| {
            let (client, ok, enough) = (client.clone(), Arc::clone(&ok), enough.clone());
            let url = api.url(&format!("/items/{worker}"));
            tokio::spawn(async move {
                while !enough() {
                    let response = client.get(&url).send().await.expect("no error");
                    assert_eq!(response.status(), 200);
                    ok.fetch_add(1, Relaxed);
                    // Staggered, so some request is always in flight.
                    tokio::time::sleep(ms(worker % 7 * 5)).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    let stats = session.stats();
    let seen = api.seen();
    // Each token lives at least DEFAULT_TTL_SECS at the resource server.
    let lifetimes = (elapsed.as_secs_f64() / DEFAULT_TTL_SECS as f64).ceil() as u64;
    eprintln!(
        "late 401s: {} refresh calls in {elapsed:?} (at most {lifetimes} lifetimes began); \
         {} stale retries; api {seen:?}",
        delta.total("refresh_token"),
        stats.stale_retries
    );
    assert!(delta.total("refresh_token") >= 2, "{delta:?}");
    assert!(delta.total("refresh_token") <= lifetimes, "{delta:?}");
    assert_eq!(delta.count("refresh_token", 200), stats.refreshes);
    assert_eq!(delta.total("refresh_token"), stats.refreshes);
    assert_eq!(delta.reuse_detections, 0);
    assert_eq!(seen.ok, ok.load(Relaxed));
    assert!(stats.stale_retries > 0, "no late 401 was seen: {stats:?}");
    assert!(seen.expired > stats.refreshes, "{seen:?}");
}

/// The refresh token is revoked at the provider while requests run: they keep working with the
/// access token until it expires (a JWT cannot be revoked), then the one refresh is refused, the
/// session ends with exactly one `LoggedOut`, and every request returns promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_logs_out_once_without_hanging() {
    let Some(issuer) = issuer() else { return };
    let client_id = "tk-revoke";
    let _heavy = crate::heavy().await;
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    let provider = oauth2(&issuer, client_id).await;
    let tokens = login(&issuer, client_id, &provider).await;
    let session = Session::builder()
        .refresher(provider.clone())
        .attach_to([api.origin()])
        .build()
        .unwrap();
    let mut events = session.events();
    session.sign_in(tokens.clone()).await.unwrap();
    let client = crate::common::client(&session);
    let before = provider_stats(&issuer, client_id).await;
    revoke(&provider, client_id, tokens.refresh_token().unwrap()).await;

    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..20)
        .map(|worker| {
            let (client, ok) = (client.clone(), Arc::clone(&ok));
            let url = api.url(&format!("/items/{worker}"));
            tokio::spawn(async move {
                loop {
                    let sent =
                        tokio::time::timeout(Duration::from_secs(10), client.get(&url).send());
                    match sent.await.expect("a request hung") {
                        Ok(response) if response.status() == 200 => ok.fetch_add(1, Relaxed),
                        Ok(response) => panic!("status {}", response.status()),
                        Err(error) => return tk_error(&error).cloned(),
                    };
                    tokio::time::sleep(ms(10)).await;
                }
            })
        })
        .collect();
    let mut endings = Vec::new();
    for worker in workers {
        endings.push(worker.await.unwrap());
    }
    let ended_after = started.elapsed();
    // Any further LoggedOut would follow at once; give it the time to show.
    tokio::time::sleep(ms(500)).await;
    let mut logouts = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::LoggedOut { reason } = event {
            logouts.push(reason);
        }
    }
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    eprintln!(
        "revoked: {} requests ok until the end after {ended_after:?}; logouts {logouts:?}; \
         provider {delta:?}",
        ok.load(Relaxed)
    );
    assert_eq!(logouts.len(), 1, "{logouts:?}");
    assert!(
        matches!(&logouts[0], LogoutReason::RefreshRejected(r) if r.contains("invalid_grant")),
        "{logouts:?}"
    );
    for ending in &endings {
        assert!(
            matches!(
                ending,
                Some(
                    Error::SessionExpired(LogoutReason::RefreshRejected(_)) | Error::LoginRequired
                )
            ),
            "{ending:?}"
        );
    }
    assert!(
        ok.load(Relaxed) > 0,
        "the access token worked until it expired"
    );
    assert_eq!(delta.revocations, 1);
    assert_eq!(
        delta.total("refresh_token"),
        1,
        "one refresh, refused: {delta:?}"
    );
    assert_eq!(delta.count("refresh_token", 400), 1, "{delta:?}");
    assert_eq!(session.stats().logouts, 1);
    assert!(matches!(
        client
            .get(api.url("/items/x"))
            .send()
            .await
            .map_err(|e| tk_error(&e).cloned()),
        Err(Some(Error::LoginRequired))
    ));
}

/// 1,000 concurrent callers of a machine-to-machine session nobody signed in to: the first
/// requests obtain the token, with one token request at the provider, and none is sent without
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_1000_concurrent_callers_make_one_token_request() {
    let Some(issuer) = issuer() else { return };
    let client_id = "tk-m2m-burst";
    let _heavy = crate::heavy().await;
    // The burst must not outlive the token on a loaded machine: this one test is about
    // concurrency, the next one about lifetimes.
    set_ttl(&issuer, client_id, 120).await;
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    let m2m = ClientCredentials::new(oauth2(&issuer, client_id).await).scope("api:read");
    assert!(m2m.obtains_without_login());
    let session = Session::builder()
        .refresher(m2m)
        .attach_to([api.origin()])
        .build()
        .unwrap();
    let client = crate::common::client(&session);
    let before = provider_stats(&issuer, client_id).await;

    let outcomes = burst(&client, &api, 1000).await;
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    eprintln!(
        "client credentials: 1,000 concurrent callers -> {} token request(s) at the provider",
        delta.total("client_credentials")
    );
    assert_all_ok(&outcomes);
    assert_eq!(delta.total("client_credentials"), 1, "{delta:?}");
    assert_eq!(delta.count("client_credentials", 200), 1, "{delta:?}");
    assert_eq!(session.stats().refreshes, 1);
    let seen = api.seen();
    assert_eq!((seen.ok, seen.distinct_tokens), (1000, 1), "{seen:?}");
    assert_eq!((seen.invalid, seen.missing), (0, 0), "{seen:?}");
}

/// 1,000 callers over several token lifetimes, with the default proactive renewal: one token
/// request per token lifetime (each token replaced once, ahead of its expiry), each token used,
/// none wasted, no caller ever refused.
///
/// Each caller waits about four seconds between requests, as a client with work of its own
/// does, and the callers start spread over those seconds: 250 requests a second in all. On a
/// machine whose cores are saturated by other work this process gets a fraction of a core (a
/// few hundred requests a second through client and resource server together, measured on the
/// 2-core machine under load), and a request beyond that capacity queues for seconds; callers
/// that never pause would measure only that queue (a token expires on its way once a request
/// waits longer than the token has left, however the client manages it). Reactive mode is
/// the late-401 test's subject: under such starvation every expiry there sends the requests in
/// flight back with 401s and then all their retries at once, which deepens the queue further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_1000_callers_make_one_token_request_per_lifetime() {
    let Some(issuer) = issuer() else { return };
    let client_id = "tk-m2m-loop";
    let ttl = Duration::from_secs(4);
    let _heavy = crate::heavy().await;
    set_ttl(&issuer, client_id, ttl.as_secs()).await;
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    let m2m = ClientCredentials::new(oauth2(&issuer, client_id).await).scope("api:read");
    let session = Session::builder()
        .refresher(m2m)
        .attach_to([api.origin()])
        .build()
        .unwrap();
    let client = crate::common::client(&session);
    let before = provider_stats(&issuer, client_id).await;

    let run_for = Duration::from_secs(16);
    let think = ms(4000);
    let started = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let callers: Vec<_> = (0..1000u32)
        .map(|caller| {
            let (client, failed, first_error) = (
                client.clone(),
                Arc::clone(&failed),
                Arc::clone(&first_error),
            );
            let url = api.url(&format!("/items/{caller}"));
            tokio::spawn(async move {
                tokio::time::sleep(think / 1000 * caller).await;
                while started.elapsed() < run_for {
                    let error = match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => None,
                        Ok(response) => Some(format!("status {}", response.status())),
                        Err(error) => Some(error.to_string()),
                    };
                    if let Some(error) = error {
                        first_error.lock().unwrap().get_or_insert(error);
                        failed.fetch_add(1, Relaxed);
                    }
                    tokio::time::sleep(think.min(run_for.saturating_sub(started.elapsed()))).await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let elapsed = started.elapsed();
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    let requests = delta.total("client_credentials");
    let seen = api.seen();
    // A token is replaced after 70 % of its lifetime at the earliest (75 % less jitter).
    let lifetimes = (elapsed.as_secs_f64() / (0.7 * ttl.as_secs_f64())).floor() as u64 + 1;
    eprintln!(
        "client credentials: 1,000 callers for {elapsed:?} -> {requests} token requests (at most \
         {lifetimes} proactive lifetimes began); api {seen:?}; session {:?}",
        session.stats()
    );
    let first_error = first_error.lock().unwrap().clone();
    assert_eq!(failed.load(Relaxed), 0, "first error: {first_error:?}");
    assert_eq!(
        delta.count("client_credentials", 200),
        requests,
        "{delta:?}"
    );
    assert!(requests >= 3, "{delta:?}");
    assert!(requests <= lifetimes, "{requests} > {lifetimes}");
    assert_eq!(session.stats().refreshes, requests);
    // Every token obtained was used: none was fetched and thrown away.
    assert_eq!(seen.distinct_tokens, requests);
}

/// Two processes share one login through a `FileStore` and refresh at the provider: one
/// refresh call per token lifetime between them (each a new generation in the store), no
/// reuse, no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_a_file_store_refresh_once_per_expiry() {
    let Some(issuer) = issuer() else { return };
    let client_id = "tk-processes";
    let _heavy = crate::heavy().await;
    let api = ResourceServer::start(&issuer, Duration::ZERO).await;
    let provider = oauth2(&issuer, client_id).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let store = Arc::new(tokenkeeper::store::FileStore::open(&path).unwrap());
    let first = {
        let session = Session::builder()
            .refresher(provider.clone())
            .store_arc(store.clone())
            .attach_to([api.origin()])
            .build()
            .unwrap();
        let tokens = login(&issuer, client_id, &provider).await;
        session.sign_in(tokens).await.unwrap().generation()
    };
    let before = provider_stats(&issuer, client_id).await;

    let config = oidc_env::worker::WorkerConfig {
        issuer: issuer.clone(),
        client_id: client_id.to_owned(),
        store: path.clone(),
        api: api.origin().to_owned(),
        tasks: 20,
        duration_ms: 8_000,
        pause_ms: 5,
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..2).map(|_| oidc_env::worker::spawn(&config)).collect();
    let summaries: Vec<_> = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(oidc_env::worker::Worker::finish)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();

    use tokenkeeper::store::TokenStore as _;
    let last = store
        .load()
        .await
        .unwrap()
        .expect("still stored")
        .generation;
    let delta = provider_stats(&issuer, client_id).await.since(&before);
    let sum = |f: fn(&oidc_env::worker::Summary) -> u64| summaries.iter().map(f).sum::<u64>();
    let refreshes = delta.total("refresh_token");
    // Proactive renewal starts at 70 % of the lifetime at the earliest (75 % less jitter).
    let most = (elapsed.as_secs_f64() / (0.7 * DEFAULT_TTL_SECS as f64)).ceil() as u64;
    eprintln!(
        "2 processes x 20 tasks for {elapsed:?}: {} ok, {} failed; provider: {refreshes} refresh \
         calls, {} reuse detections; store generations {first}..{last}; refreshed {} / adopted \
         {} by the processes",
        sum(|s| s.ok),
        sum(|s| s.failed),
        delta.reuse_detections,
        sum(|s| s.refreshed),
        sum(|s| s.adopted),
    );
    let first_error = summaries.iter().find_map(|s| s.first_error.clone());
    assert_eq!(sum(|s| s.failed), 0, "first error: {first_error:?}");
    assert!(summaries.iter().all(|s| s.ok > 0), "{summaries:?}");
    assert_eq!(sum(|s| s.logouts), 0);
    assert_eq!(delta.reuse_detections, 0);
    assert_eq!(delta.count("refresh_token", 200), refreshes, "{delta:?}");
    // One refresh per expiry, whichever process made it: each is one new generation.
    assert_eq!(refreshes, last - first);
    assert_eq!(sum(|s| s.refreshed), refreshes);
    assert!(refreshes >= 3, "only {refreshes} expiries");
    assert!(refreshes <= most, "{refreshes} > {most}");
    assert!(sum(|s| s.adopted) > 0, "the other process adopted");
}
