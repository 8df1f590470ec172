//! The OpenID provider of the interop suite (`scripts/oidc.sh`, configured in
//! `scripts/oidc/provider.mjs`): where it is, its clients, a login scripted through its
//! development forms, and the counters it keeps.

#![allow(dead_code)]

pub mod resource_server;
pub mod worker;

use base64::Engine as _;
use secrecy::ExposeSecret;
use sha2::Digest as _;
use std::path::PathBuf;
use tokenkeeper::TokenSet;
use tokenkeeper::refresh::{ClientAuth, ClientKey, KeyAlgorithm, OAuth2};

/// The API every access token is for (`aud`), as in provider.mjs.
pub const RESOURCE: &str = "urn:tokenkeeper:interop-api";
/// The redirect URI every client registered; nothing listens there, the login stops at it.
pub const REDIRECT_URI: &str = "https://client.tokenkeeper.invalid/callback";
/// Every secret client's secret, as in provider.mjs: reserved characters on purpose.
pub const SECRET: &str = "tk secret: with +/%&= reserved chars";
/// The access-token lifetime the provider gives unless a test changes it for its client.
pub const DEFAULT_TTL_SECS: u64 = 2;

/// The provider's issuer. Without `TOKENKEEPER_OIDC_ISSUER`: a failure under CI (`CI` set),
/// otherwise `None` after a loud message, and the test returns early.
pub fn issuer() -> Option<String> {
    if let Ok(issuer) = std::env::var("TOKENKEEPER_OIDC_ISSUER") {
        return Some(issuer);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "TOKENKEEPER_OIDC_ISSUER is not set and CI is: the OpenID interop suite must run in \
             CI. Start the provider with `eval \"$(bash scripts/oidc.sh)\"`."
        );
    }
    eprintln!(
        "\n*** SKIPPED: TOKENKEEPER_OIDC_ISSUER is not set, so this OpenID interop test did not \
         run. Run `eval \"$(bash scripts/oidc.sh)\"` first (installs oidc-provider with npm ci \
         and starts it on 127.0.0.1:6392). ***\n"
    );
    None
}

/// The DPoP instance of the provider (`TOKENKEEPER_OIDC_DPOP_ISSUER`, started by the same
/// `scripts/oidc.sh`): public DPoP-bound clients, nonces. Skips or fails like [`issuer`].
pub fn dpop_issuer() -> Option<String> {
    if let Ok(issuer) = std::env::var("TOKENKEEPER_OIDC_DPOP_ISSUER") {
        return Some(issuer);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "TOKENKEEPER_OIDC_DPOP_ISSUER is not set and CI is: the DPoP interop tests must run \
             in CI. Start the providers with `eval \"$(bash scripts/oidc.sh)\"`."
        );
    }
    eprintln!(
        "\n*** SKIPPED: TOKENKEEPER_OIDC_DPOP_ISSUER is not set, so this DPoP interop test did \
         not run. Run `eval \"$(bash scripts/oidc.sh)\"` first (starts oidc-provider's DPoP \
         instance on 127.0.0.1:6394). ***\n"
    );
    None
}

/// The refresher of a public DPoP client of the DPoP instance (no client secret: the key is
/// the client's only proof), from discovery; the code exchange is signed with `key`.
#[cfg(feature = "dpop")]
pub async fn dpop_oauth2(issuer: &str, client_id: &str, key: tokenkeeper::dpop::DpopKey) -> OAuth2 {
    OAuth2::discover(issuer)
        .await
        .expect("discovery")
        .client_id(client_id)
        .resource(RESOURCE)
        .dpop(key)
}

/// A client private key of the interop provider (test-only keys in scripts/oidc/keys).
pub fn key_pem(file: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../../scripts/oidc/keys", file]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How each client of provider.mjs authenticates.
pub fn client_auth(client_id: &str) -> ClientAuth {
    match client_id {
        "tk-post" | "tk-m2m-loop" => ClientAuth::Post,
        "tk-jwt-rs256" | "tk-jwt-es256" | "tk-m2m-jwt" => ClientAuth::PrivateKeyJwt,
        _ => ClientAuth::Basic,
    }
}

/// The refresher for `client_id`, from discovery, with the client's credentials. Secret clients
/// get no explicit method unless they use `client_secret_post`: discovery lists
/// `client_secret_basic`, which the strategy then picks by itself.
pub async fn oauth2(issuer: &str, client_id: &str) -> OAuth2 {
    let discovered = OAuth2::discover(issuer)
        .await
        .expect("discovery")
        .client_id(client_id)
        .resource(RESOURCE);
    match client_id {
        "tk-jwt-rs256" => discovered.private_key_jwt(
            ClientKey::from_pem(&key_pem("client-rs256.pem"), KeyAlgorithm::RS256)
                .unwrap()
                .key_id("client-rs256"),
        ),
        "tk-jwt-es256" | "tk-m2m-jwt" => discovered.private_key_jwt(
            ClientKey::from_pem(&key_pem("client-es256.pem"), KeyAlgorithm::ES256)
                .unwrap()
                .key_id("client-es256"),
        ),
        "tk-post" | "tk-m2m-loop" => discovered
            .client_secret(SECRET)
            .client_auth(ClientAuth::Post),
        _ => discovered.client_secret(SECRET),
    }
}

/// Signs in as a user through the provider's development login and consent forms
/// (authorization code + PKCE), then exchanges the code with `client`'s own authentication.
pub async fn login(issuer: &str, client_id: &str, client: &OAuth2) -> TokenSet {
    let verifier =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let code = authorize(issuer, client_id, &challenge).await;
    let tokens = client
        .exchange_code(&code, REDIRECT_URI, Some(&verifier))
        .await
        .expect("code exchange");
    assert!(
        tokens.refresh_token().is_some(),
        "the provider issued no refresh token"
    );
    tokens
}

/// The authorization request, through the login and consent forms; returns the code.
async fn authorize(issuer: &str, client_id: &str, challenge: &str) -> String {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let state = format!("{:016x}", rand::random::<u64>());
    let mut url = url::Url::parse(&format!("{issuer}/auth")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid offline_access api:read")
        .append_pair("resource", RESOURCE)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("prompt", "consent")
        .append_pair("state", &state);
    let mut response = browser.get(url.clone()).send().await.unwrap();
    for _ in 0..12 {
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .expect("a redirect has a Location");
            let next = url.join(location).unwrap();
            if next.as_str().starts_with(REDIRECT_URI) {
                let query: std::collections::HashMap<_, _> =
                    next.query_pairs().into_owned().collect();
                assert_eq!(query.get("state"), Some(&state));
                assert_eq!(query.get("iss").map(String::as_str), Some(issuer));
                return query
                    .get("code")
                    .unwrap_or_else(|| panic!("no code in {next}"))
                    .clone();
            }
            url = next;
            response = browser.get(url.clone()).send().await.unwrap();
            continue;
        }
        let status = response.status();
        let page = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {page}");
        let action = between(&page, "action=\"", "\"").expect("a form");
        let submit = url.join(&action.replace("&amp;", "&")).unwrap();
        let form: &[(&str, &str)] = if page.contains(r#"name="prompt" value="login""#) {
            &[("prompt", "login"), ("login", "alice"), ("password", "any")]
        } else if page.contains(r#"name="prompt" value="consent""#) {
            &[("prompt", "consent")]
        } else {
            panic!("an interaction page the suite does not know: {page}");
        };
        url = submit.clone();
        response = browser.post(submit).form(form).send().await.unwrap();
    }
    panic!("the login did not reach the redirect URI in 12 steps");
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// What the provider counted for one client (`GET /__stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ProviderStats {
    /// grant_type → HTTP status → count, for every request that reached the token endpoint.
    pub token_requests: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    /// grant_type → OAuth error code → count (`use_dpop_nonce`, `invalid_grant`, ...). Absent
    /// from a provider started from an older provider.mjs.
    #[serde(default)]
    pub token_errors: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    pub reuse_detections: u64,
    pub revocations: u64,
}

impl ProviderStats {
    /// Requests of `grant` answered with `status`.
    pub fn count(&self, grant: &str, status: u16) -> u64 {
        self.token_requests
            .get(grant)
            .and_then(|by_status| by_status.get(&status.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests of `grant`, whatever the answer.
    pub fn total(&self, grant: &str) -> u64 {
        self.token_requests
            .get(grant)
            .map_or(0, |by_status| by_status.values().sum())
    }

    /// Requests of `grant` refused with the OAuth error code `error`.
    pub fn errors(&self, grant: &str, error: &str) -> u64 {
        self.token_errors
            .get(grant)
            .and_then(|by_error| by_error.get(error))
            .copied()
            .unwrap_or(0)
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &ProviderStats) -> ProviderStats {
        let mut delta = self.clone();
        for (grant, by_status) in &mut delta.token_requests {
            for (status, count) in by_status.iter_mut() {
                *count -= before
                    .token_requests
                    .get(grant)
                    .and_then(|b| b.get(status))
                    .copied()
                    .unwrap_or(0);
            }
        }
        for (grant, by_error) in &mut delta.token_errors {
            for (error, count) in by_error.iter_mut() {
                *count -= before
                    .token_errors
                    .get(grant)
                    .and_then(|b| b.get(error))
                    .copied()
                    .unwrap_or(0);
            }
        }
        delta.reuse_detections -= before.reuse_detections;
        delta.revocations -= before.revocations;
        delta
    }
}

pub async fn provider_stats(issuer: &str, client_id: &str) -> ProviderStats {
    reqwest::get(format!("{issuer}/__stats?client_id={client_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The lifetime of the access tokens the provider issues to `client_id` from now on.
pub async fn set_ttl(issuer: &str, client_id: &str, seconds: u64) {
    let response = reqwest::Client::new()
        .post(format!(
            "{issuer}/__ttl?client_id={client_id}&seconds={seconds}"
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// Revokes a refresh token at the provider's revocation endpoint (RFC 7009), authenticating as
/// `client_id` with client_secret_basic (form-urlencoded, RFC 6749 §2.3.1).
pub async fn revoke(client: &OAuth2, client_id: &str, refresh_token: &secrecy::SecretString) {
    let endpoint = client
        .metadata()
        .and_then(|m| m.revocation_endpoint())
        .expect("the provider has a revocation endpoint")
        .clone();
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let response = reqwest::Client::new()
        .post(endpoint)
        .basic_auth(encode(client_id), Some(encode(SECRET)))
        .form(&[
            ("token", refresh_token.expose_secret()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

/// How long to wait after receiving a token until the resource server refuses it: the JWT's
/// `iat` is whole seconds (at most 1 s before receipt), it lives `DEFAULT_TTL_SECS`, and the
/// server refuses it once a whole second past `exp` has begun.
pub fn until_expired() -> std::time::Duration {
    std::time::Duration::from_secs(DEFAULT_TTL_SECS + 1) + std::time::Duration::from_millis(100)
}

/// `count` GETs at once; their statuses, or the error text.
pub async fn burst(
    client: &reqwest_middleware::ClientWithMiddleware,
    api: &resource_server::ResourceServer,
    count: usize,
) -> Vec<Result<u16, String>> {
    crate::common::burst_to(client, (0..count).map(|i| api.url(&format!("/items/{i}")))).await
}

/// Asserts that every request of a burst got a 200 (`outcomes` from [`burst`]).
pub fn assert_all_ok(outcomes: &[Result<u16, String>]) {
    let failures: Vec<_> = outcomes.iter().filter(|o| **o != Ok(200)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed, e.g. {:?}",
        failures.len(),
        outcomes.len(),
        failures.first()
    );
}
