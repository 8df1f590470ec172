//! DPoP (RFC 9449) at the token endpoint and the protected API, with proofs built by an
//! independent encoder ([`encoder`]).

mod api;
mod concurrency;
pub mod encoder;
mod nonces;
mod replay;
mod token_endpoint;

use reqwest::header::AUTHORIZATION;
use serde_json::Value;
use tokenkeeper_server::{DpopConfig, DpopRejectedCounts, ServerConfig, ServerHandle};

use crate::common::*;
use encoder::Key;

/// Picks the rejection counter a bad proof should raise.
pub type Counter = fn(&mut DpopRejectedCounts) -> &mut u64;

/// A server with DPoP on, configured by `dpop`.
pub async fn dpop_server(dpop: DpopConfig) -> ServerHandle {
    server(ServerConfig::default().with_dpop(dpop)).await
}

/// `POST /oauth2/token` with `form` and one `DPoP` header per proof.
pub async fn token_request(
    c: &reqwest::Client,
    s: &ServerHandle,
    form: &[(&str, &str)],
    proofs: &[&str],
) -> Reply {
    let mut request = c.post(s.url("/oauth2/token")).form(form);
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    Reply::read(request.send().await.unwrap()).await
}

/// The password grant for demo/demo with `proofs`.
pub async fn password_grant(c: &reqwest::Client, s: &ServerHandle, proofs: &[&str]) -> Reply {
    token_request(
        c,
        s,
        &[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", "demo"),
        ],
        proofs,
    )
    .await
}

/// The refresh grant with `proofs`.
pub async fn refresh_grant(
    c: &reqwest::Client,
    s: &ServerHandle,
    refresh: &str,
    proofs: &[&str],
) -> Reply {
    token_request(
        c,
        s,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        proofs,
    )
    .await
}

/// Logs in with a proof by `key`; asserts a DPoP-bound pair came back.
pub async fn dpop_login(c: &reqwest::Client, s: &ServerHandle, key: &Key) -> Pair {
    let proof = key.proof("POST", &s.url("/oauth2/token"));
    let reply = password_grant(c, s, &[&proof]).await;
    assert_bound_pair(&reply, key)
}

/// Asserts a token response with a pair bound to `key`; returns the pair.
pub fn assert_bound_pair(reply: &Reply, key: &Key) -> Pair {
    assert_eq!(reply.status, reqwest::StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&access)["cnf"]["jkt"], Value::from(key.jkt()));
    Pair {
        access,
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// A request to the API with `authorization` (a whole header value) and `proofs`.
pub async fn api_get(
    c: &reqwest::Client,
    s: &ServerHandle,
    path: &str,
    authorization: Option<&str>,
    proofs: &[&str],
) -> Reply {
    let mut request = c.get(s.url(path));
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    Reply::read(request.send().await.unwrap()).await
}

/// `GET /api/items/1` with `Authorization: DPoP <access>` and a valid proof by `key`.
pub async fn dpop_get(c: &reqwest::Client, s: &ServerHandle, key: &Key, access: &str) -> Reply {
    let proof = encoder::Proof::new("GET", &s.url("/api/items/1"))
        .for_token(access)
        .sign(key);
    api_get(
        c,
        s,
        "/api/items/1",
        Some(&format!("DPoP {access}")),
        &[&proof],
    )
    .await
}

/// Asserts the token endpoint's `400 {"error": code}` with `Cache-Control: no-store`.
pub fn assert_token_error(reply: &Reply, code: &str) {
    reply.assert_error(reqwest::StatusCode::BAD_REQUEST, code);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

/// Asserts the API's `401` with `WWW-Authenticate: DPoP error="<code>", ...` and the same
/// JSON error.
pub fn assert_dpop_challenge(reply: &Reply, code: &str) {
    assert_eq!(
        reply.status,
        reqwest::StatusCode::UNAUTHORIZED,
        "{}",
        reply.body
    );
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(&format!("DPoP error=\"{code}\", error_description=\"")),
        "{challenge}"
    );
    assert!(challenge.ends_with(", algs=\"ES256 EdDSA\""), "{challenge}");
    assert_eq!(reply.json()["error"], code, "{}", reply.body);
}

/// No proof refused for any reason.
pub fn assert_no_rejections(s: &ServerHandle) {
    assert_eq!(
        s.stats().dpop.proofs_rejected,
        DpopRejectedCounts::default()
    );
}
