//! The oauth2 contract's client credentials grant (RFC 6749 §4.4): the configured users are
//! the clients; an access token, no refresh token; DPoP-bound with a proof.

use base64::Engine as _;
use reqwest::StatusCode;
use tokenkeeper_server::{DpopConfig, ServerConfig, ServerHandle};

use crate::common::*;
use crate::dpop::dpop_get;
use crate::dpop::encoder::Key;

async fn grant(
    c: &reqwest::Client,
    s: &ServerHandle,
    basic: Option<&str>,
    form: &[(&str, &str)],
) -> Reply {
    let mut request = c.post(s.url("/oauth2/token")).form(form);
    if let Some(basic) = basic {
        let encoded = base64::engine::general_purpose::STANDARD.encode(basic);
        request = request.header("authorization", format!("Basic {encoded}"));
    }
    Reply::read(request.send().await.unwrap()).await
}

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

#[tokio::test]
async fn a_configured_client_gets_an_access_token_without_a_refresh_token() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    for (basic, form) in [
        (Some("demo:demo"), vec![GRANT]),
        (
            None,
            vec![GRANT, ("client_id", "demo"), ("client_secret", "demo")],
        ),
    ] {
        let reply = grant(&c, &s, basic, &form).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let body = reply.json();
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].is_number());
        assert!(body.get("refresh_token").is_none(), "{body}");
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(claims(access)["sub"], "demo");
        assert_ok_item(&get_item(&c, &s, "1", Some(access)).await, "1");
    }
    assert_eq!(s.stats().logins, 2);
    s.shutdown().await;
}

#[tokio::test]
async fn a_wrong_or_missing_client_gets_invalid_client() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    for (basic, form) in [
        (Some("demo:wrong"), vec![GRANT]),
        (Some("nobody:demo"), vec![GRANT]),
        (Some("no colon"), vec![GRANT]),
        (None, vec![GRANT]),
        (None, vec![GRANT, ("client_id", "demo")]),
        (
            None,
            vec![GRANT, ("client_id", "demo"), ("client_secret", "wrong")],
        ),
    ] {
        let reply = grant(&c, &s, basic, &form).await;
        reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Basic realm=\"tokenkeeper\"")
        );
    }
    assert_eq!(s.stats().logins, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn basic_credentials_are_form_decoded() {
    // RFC 6749 §2.3.1: id and secret are form-encoded before they are joined with ':'.
    let s = server(ServerConfig::default().with_users([("my app+1", "p:&%ss")])).await;
    let c = client();
    let reply = grant(&c, &s, Some("my+app%2B1:p%3A%26%25ss"), &[GRANT]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Not form-encoded (a raw '&' or '='): refused rather than guessed at.
    let s2 = server(ServerConfig::default().with_users([("a", "b")])).await;
    let reply = grant(&c, &s2, Some("x&v=a:b"), &[GRANT]).await;
    reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    s.shutdown().await;
    s2.shutdown().await;
}

#[tokio::test]
async fn with_dpop_the_token_is_bound_to_the_proof_key() {
    let s = server(ServerConfig::default().with_dpop(DpopConfig::default())).await;
    let c = client();
    let key = Key::random();
    let proof = key.proof("POST", &s.url("/oauth2/token"));
    let mut request = c
        .post(s.url("/oauth2/token"))
        .basic_auth("demo", Some("demo"))
        .form(&[GRANT]);
    request = request.header("dpop", proof);
    let reply = Reply::read(request.send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["token_type"], "DPoP");
    assert!(body.get("refresh_token").is_none());
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["cnf"]["jkt"], key.jkt());
    assert_ok_item(&dpop_get(&c, &s, &key, access).await, "1");
    // Without a proof: refused like any grant.
    let reply = grant(&c, &s, Some("demo:demo"), &[GRANT]).await;
    reply.assert_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    let stats = s.stats();
    assert_eq!(stats.dpop.proofs_accepted, 2);
    assert_eq!(stats.dpop.proofs_rejected.missing, 1);
    s.shutdown().await;
}
