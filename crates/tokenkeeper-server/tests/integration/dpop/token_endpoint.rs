//! DPoP at `POST /oauth2/token`: binding, refresh with the same key, and every bad proof.

use reqwest::StatusCode;
use serde_json::json;
use tokenkeeper_server::{Contract, DpopConfig, DpopRejectedCounts, ServerConfig};

use super::encoder::{Key, Proof, Signing, now};
use super::*;

#[tokio::test]
async fn a_valid_proof_binds_the_pair_and_the_refresh_needs_the_same_key() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::random();
    let first = dpop_login(&c, &s, &key).await;

    // Another key cannot redeem the refresh token, and the attempt leaves the session alone.
    let thief = Key::random();
    let stolen = thief.proof("POST", &s.url("/oauth2/token"));
    let reply = refresh_grant(&c, &s, &first.refresh, &[&stolen]).await;
    assert_token_error(&reply, "invalid_grant");
    let stats = s.stats();
    assert_eq!(stats.refresh_rejected.wrong_key, 1);
    assert_eq!(stats.dpop.proofs_rejected.wrong_key, 1);
    assert_eq!(stats.rotations, 0);
    assert_eq!(stats.families_revoked, 0);

    // No proof at all: refused before the session is looked at.
    let reply = refresh_grant(&c, &s, &first.refresh, &[]).await;
    assert_token_error(&reply, "invalid_dpop_proof");
    assert_eq!(s.stats().dpop.proofs_rejected.missing, 1);

    // The owner's key rotates it, still bound.
    let proof = key.proof("POST", &s.url("/oauth2/token"));
    let second = assert_bound_pair(
        &refresh_grant(&c, &s, &first.refresh, &[&proof]).await,
        &key,
    );
    assert_ne!(second, first);
    let stats = s.stats();
    assert_eq!(stats.rotations, 1);
    assert_eq!(stats.reuse_detections, 0);
    // Login and refresh by the owner; the thief's proof was valid but for the wrong token.
    assert_eq!(stats.dpop.proofs_accepted, 2);

    // The refresh token of the bound session is useless through the bearer-only contracts.
    let json = refresh(&c, &s, Contract::Json, &second.refresh).await;
    assert_refresh_rejected(Contract::Json, &json.reply, false);
    assert_eq!(s.stats().refresh_rejected.wrong_key, 2);
    assert_eq!(s.stats().families_revoked, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn every_kind_of_bad_proof_gets_invalid_dpop_proof_and_its_own_count() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::random();
    let htu = s.url("/oauth2/token");
    let base = || Proof::new("POST", &htu);
    let mut other_host = s.url("/oauth2/token");
    other_host = other_host.replace("127.0.0.1", "localhost");
    let cases: Vec<(&str, String, Counter)> = vec![
        ("wrong htm", Proof::new("GET", &htu).sign(&key), |r| {
            &mut r.htm
        }),
        (
            "wrong htu path",
            Proof::new("POST", &s.url("/refresh/token")).sign(&key),
            |r| &mut r.htu,
        ),
        (
            "wrong htu host",
            Proof::new("POST", &other_host).sign(&key),
            |r| &mut r.htu,
        ),
        (
            "relative htu",
            Proof::new("POST", "/oauth2/token").sign(&key),
            |r| &mut r.htu,
        ),
        (
            "iat two minutes old",
            base().claim("iat", now() - 120).sign(&key),
            |r| &mut r.iat,
        ),
        (
            "iat a minute ahead",
            base().claim("iat", now() + 60).sign(&key),
            |r| &mut r.iat,
        ),
        ("alg none", base().signing(Signing::None).sign(&key), |r| {
            &mut r.alg
        }),
        (
            "alg HS256",
            base().signing(Signing::Hs256).sign(&key),
            |r| &mut r.alg,
        ),
        ("alg RS256", base().header("alg", "RS256").sign(&key), |r| {
            &mut r.alg
        }),
        (
            "private key in jwk",
            base().header("jwk", key.private_jwk()).sign(&key),
            |r| &mut r.jwk,
        ),
        (
            "symmetric jwk",
            base()
                .header("jwk", json!({"kty": "oct", "k": "c2VjcmV0"}))
                .sign(&key),
            |r| &mut r.jwk,
        ),
        (
            "P-384 jwk",
            base()
                .header(
                    "jwk",
                    json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
                )
                .sign(&key),
            |r| &mut r.jwk,
        ),
        (
            "no jwk",
            base().header("jwk", json!(null)).sign(&key),
            |r| &mut r.jwk,
        ),
        ("typ jwt", base().header("typ", "JWT").sign(&key), |r| {
            &mut r.typ
        }),
        (
            "no typ",
            base().header("typ", json!(null)).sign(&key),
            |r| &mut r.typ,
        ),
        (
            "signed by another key",
            base().signing(Signing::OtherKey).sign(&key),
            |r| &mut r.signature,
        ),
        ("no jti", base().without_claim("jti").sign(&key), |r| {
            &mut r.malformed
        }),
        ("no iat", base().without_claim("iat").sign(&key), |r| {
            &mut r.malformed
        }),
        ("iat a string", base().claim("iat", "now").sign(&key), |r| {
            &mut r.malformed
        }),
        ("not a JWT", "hello".to_owned(), |r| &mut r.malformed),
    ];
    let mut expected = DpopRejectedCounts::default();
    for (what, proof, counter) in cases {
        let reply = password_grant(&c, &s, &[&proof]).await;
        assert_token_error(&reply, "invalid_dpop_proof");
        *counter(&mut expected) += 1;
        assert_eq!(s.stats().dpop.proofs_rejected, expected, "{what}");
    }
    // Two proofs in one request.
    let (a, b) = (key.proof("POST", &htu), key.proof("POST", &htu));
    assert_token_error(
        &password_grant(&c, &s, &[&a, &b]).await,
        "invalid_dpop_proof",
    );
    expected.malformed += 1;
    // A replayed proof: accepted once, refused after.
    let proof = key.proof("POST", &htu);
    assert_bound_pair(&password_grant(&c, &s, &[&proof]).await, &key);
    assert_token_error(
        &password_grant(&c, &s, &[&proof]).await,
        "invalid_dpop_proof",
    );
    expected.replay += 1;
    let stats = s.stats();
    assert_eq!(stats.dpop.proofs_rejected, expected);
    assert_eq!(stats.dpop.jti_replays, 1);
    assert_eq!(stats.dpop.proofs_accepted, 1);
    assert_eq!(stats.logins, 1, "no bad proof got a login");
    s.shutdown().await;
}

#[tokio::test]
async fn htu_ignores_query_and_fragment_and_a_fractional_iat_is_fine() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::random();
    let htu = format!("{}?x=1#top", s.url("/oauth2/token"));
    let proof = Proof::new("POST", &htu)
        .claim("iat", now() as f64 - 0.5)
        .sign(&key);
    assert_bound_pair(&password_grant(&c, &s, &[&proof]).await, &key);
    assert_no_rejections(&s);
    s.shutdown().await;
}

#[tokio::test]
async fn without_required_dpop_a_grant_without_proof_gets_bearer_tokens() {
    let s = dpop_server(DpopConfig::default().with_required(false)).await;
    let c = client();
    let reply = password_grant(&c, &s, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    let access = body["access_token"].as_str().unwrap();
    assert!(claims(access).get("cnf").is_none());
    assert_ok_item(&get_item(&c, &s, "1", Some(access)).await, "1");
    // A proof is still verified and binds when sent.
    let key = Key::random();
    dpop_login(&c, &s, &key).await;
    s.shutdown().await;
}

#[tokio::test]
async fn without_dpop_a_dpop_header_is_ignored_and_tokens_are_bearer() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let key = Key::random();
    let proof = key.proof("POST", &s.url("/oauth2/token"));
    let reply = password_grant(&c, &s, &[&proof]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["token_type"], "Bearer");
    assert_eq!(s.stats().dpop, Default::default());
    s.shutdown().await;
}
