//! DPoP at the protected API: `Authorization: DPoP` with a proof bound to the token.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokenkeeper_server::{Contract, DpopConfig, DpopRejectedCounts};

use super::encoder::{Key, Proof, Signing, now};
use super::*;

#[tokio::test]
async fn a_bound_token_with_a_valid_proof_is_served() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::random();
    let pair = dpop_login(&c, &s, &key).await;
    assert_ok_item(&dpop_get(&c, &s, &key, &pair.access).await, "1");
    // POST with a body, and the scheme in another case.
    let proof = Proof::new("POST", &s.url("/api/items"))
        .for_token(&pair.access)
        .sign(&key);
    let reply = Reply::read(
        c.post(s.url("/api/items"))
            .header("authorization", format!("dpop {}", pair.access))
            .header("dpop", proof)
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["item"], json!({"name": "x"}));
    let stats = s.stats();
    assert_eq!(stats.api_ok, 2);
    assert_eq!(stats.dpop.proofs_accepted, 3);
    assert_no_rejections(&s);
    s.shutdown().await;
}

#[tokio::test]
async fn bad_proofs_at_the_api_get_a_dpop_challenge_and_their_own_count() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::random();
    let pair = dpop_login(&c, &s, &key).await;
    let url = s.url("/api/items/1");
    let base = || Proof::new("GET", &url).for_token(&pair.access);
    let auth = format!("DPoP {}", pair.access);
    let cases: Vec<(&str, Vec<String>, Counter)> = vec![
        ("no proof", vec![], |r| &mut r.missing),
        (
            "no ath",
            vec![base().without_claim("ath").sign(&key)],
            |r| &mut r.ath,
        ),
        (
            "ath of another token",
            vec![base().for_token("other").sign(&key)],
            |r| &mut r.ath,
        ),
        (
            "proof by another key",
            vec![base().sign(&Key::random())],
            |r| &mut r.wrong_key,
        ),
        (
            "wrong htm",
            vec![Proof::new("POST", &url).for_token(&pair.access).sign(&key)],
            |r| &mut r.htm,
        ),
        (
            "wrong htu",
            vec![
                Proof::new("GET", &s.url("/api/items/2"))
                    .for_token(&pair.access)
                    .sign(&key),
            ],
            |r| &mut r.htu,
        ),
        (
            "old iat",
            vec![base().claim("iat", now() - 120).sign(&key)],
            |r| &mut r.iat,
        ),
        (
            "alg none",
            vec![base().signing(Signing::None).sign(&key)],
            |r| &mut r.alg,
        ),
        (
            "alg HS256",
            vec![base().signing(Signing::Hs256).sign(&key)],
            |r| &mut r.alg,
        ),
        (
            "private key in jwk",
            vec![base().header("jwk", key.private_jwk()).sign(&key)],
            |r| &mut r.jwk,
        ),
        (
            "bad signature",
            vec![base().signing(Signing::OtherKey).sign(&key)],
            |r| &mut r.signature,
        ),
    ];
    let mut expected = DpopRejectedCounts::default();
    for (what, proofs, counter) in cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let reply = api_get(&c, &s, "/api/items/1", Some(&auth), &proofs).await;
        assert_dpop_challenge(&reply, "invalid_dpop_proof");
        *counter(&mut expected) += 1;
        assert_eq!(s.stats().dpop.proofs_rejected, expected, "{what}");
    }
    // A replayed proof.
    let proof = base().sign(&key);
    assert_ok_item(
        &api_get(&c, &s, "/api/items/1", Some(&auth), &[&proof]).await,
        "1",
    );
    let replay = api_get(&c, &s, "/api/items/1", Some(&auth), &[&proof]).await;
    assert_dpop_challenge(&replay, "invalid_dpop_proof");
    expected.replay += 1;
    let stats = s.stats();
    assert_eq!(stats.dpop.proofs_rejected, expected);
    assert_eq!(stats.dpop.jti_replays, 1);
    assert_eq!(stats.api_ok, 1);
    // Proof refusals are not token refusals.
    assert_eq!(stats.api_401_invalid + stats.api_401_expired, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn an_ed25519_key_works_like_a_p256_one() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::ed25519();
    let pair = dpop_login(&c, &s, &key).await;
    assert_ok_item(&dpop_get(&c, &s, &key, &pair.access).await, "1");
    let proof = key.proof("POST", &s.url("/oauth2/token"));
    let next = assert_bound_pair(&refresh_grant(&c, &s, &pair.refresh, &[&proof]).await, &key);
    assert_ok_item(&dpop_get(&c, &s, &key, &next.access).await, "1");
    // A P-256 proof for an Ed25519-bound token is another key.
    assert_dpop_challenge(
        &dpop_get(&c, &s, &Key::random(), &next.access).await,
        "invalid_dpop_proof",
    );
    let stats = s.stats();
    assert_eq!(stats.dpop.proofs_accepted, 4);
    assert_eq!(stats.dpop.proofs_rejected.wrong_key, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn a_stolen_token_is_useless_without_the_key() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::random();
    let pair = dpop_login(&c, &s, &key).await;

    // As a bearer token: refused, and the challenge says why.
    let reply = get_item(&c, &s, "1", Some(&pair.access)).await;
    assert_dpop_challenge(&reply, "invalid_token");
    // With the thief's own key.
    let thief = Key::random();
    assert_dpop_challenge(
        &dpop_get(&c, &s, &thief, &pair.access).await,
        "invalid_dpop_proof",
    );
    let stats = s.stats();
    assert_eq!(stats.dpop.bearer_downgrades, 1);
    assert_eq!(stats.dpop.proofs_rejected.wrong_key, 1);
    assert_eq!(stats.api_ok, 0);
    // The owner is still served.
    assert_ok_item(&dpop_get(&c, &s, &key, &pair.access).await, "1");
    s.shutdown().await;
}

#[tokio::test]
async fn bearer_tokens_still_work_and_are_refused_under_the_dpop_scheme() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    // The json contract is bearer-only.
    let pair = login(&c, &s, Contract::Json).await;
    assert_ok_item(&get_item(&c, &s, "1", Some(&pair.access)).await, "1");
    let key = Key::random();
    let reply = dpop_get(&c, &s, &key, &pair.access).await;
    assert_dpop_challenge(&reply, "invalid_token");
    let stats = s.stats();
    assert_eq!(stats.dpop.unbound_tokens, 1);
    // The proof was good (the token is what is wrong): counted once, as accepted.
    assert_eq!(stats.dpop.proofs_accepted, 1);
    assert_no_rejections(&s);
    // Without credentials, both schemes are offered.
    let reply = get_item(&c, &s, "1", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<&str> = reply
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        ["Bearer realm=\"tokenkeeper\"", "DPoP algs=\"ES256 EdDSA\""]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn an_expired_bound_token_gets_invalid_token_and_refreshes_with_its_key() {
    let s = dpop_server(DpopConfig::default()).await;
    s.set_access_ttl(Duration::from_millis(1));
    let c = client();
    let key = Key::random();
    let pair = dpop_login(&c, &s, &key).await;
    s.set_access_ttl(Duration::from_secs(60));
    // The token lives a millisecond: wait (on the wall clock the server reads) until it is
    // past its `exp`.
    let exp = claims(&pair.access)["exp"].as_f64().unwrap();
    while unix_now() <= exp {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let reply = dpop_get(&c, &s, &key, &pair.access).await;
    assert_dpop_challenge(&reply, "invalid_token");
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("expired")
    );
    assert_eq!(s.stats().api_401_expired, 1);
    let proof = key.proof("POST", &s.url("/oauth2/token"));
    let next = assert_bound_pair(&refresh_grant(&c, &s, &pair.refresh, &[&proof]).await, &key);
    assert_ok_item(&dpop_get(&c, &s, &key, &next.access).await, "1");
    assert_no_rejections(&s);
    s.shutdown().await;
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
