//! The `jti` replay cache is bounded and forgetting never lets a replay through.

use tokenkeeper_server::DpopConfig;

use super::encoder::{Key, Proof, now};
use super::*;

#[tokio::test]
async fn the_replay_cache_is_bounded_without_a_replay_hole() {
    let s = dpop_server(DpopConfig::default().with_replay_capacity(4)).await;
    let c = client();
    let key = Key::random();
    // The login's proof is older than every proof below.
    let login = Proof::new("POST", &s.url("/oauth2/token"))
        .claim("iat", now() - 40)
        .sign(&key);
    let pair = assert_bound_pair(&password_grant(&c, &s, &[&login]).await, &key);
    let auth = format!("DPoP {}", pair.access);
    let url = s.url("/api/items/1");
    // Ten proofs, each a second newer than the one before (all within the window).
    let proofs: Vec<String> = (0..10)
        .map(|i| {
            Proof::new("GET", &url)
                .for_token(&pair.access)
                .claim("iat", now() - 30 + i)
                .sign(&key)
        })
        .collect();
    for proof in &proofs {
        assert_ok_item(
            &api_get(&c, &s, "/api/items/1", Some(&auth), &[proof]).await,
            "1",
        );
    }
    let stats = s.stats();
    assert_eq!(stats.dpop.replay_cache_len, 4);
    // The login's proof and the first six of these were forgotten.
    assert_eq!(stats.dpop.replay_cache_evictions, 7);
    assert_no_rejections(&s);

    // Replaying a forgotten proof is still refused (it is no newer than what was forgotten),
    // and so is replaying a remembered one.
    let forgotten = api_get(&c, &s, "/api/items/1", Some(&auth), &[&proofs[0]]).await;
    assert_dpop_challenge(&forgotten, "invalid_dpop_proof");
    let remembered = api_get(&c, &s, "/api/items/1", Some(&auth), &[&proofs[9]]).await;
    assert_dpop_challenge(&remembered, "invalid_dpop_proof");
    let stats = s.stats();
    assert_eq!(stats.dpop.proofs_rejected.iat, 1);
    assert_eq!(stats.dpop.proofs_rejected.replay, 1);

    // A fresh proof is fine, and the cache stays at its bound.
    let fresh = Proof::new("GET", &url).for_token(&pair.access).sign(&key);
    assert_ok_item(
        &api_get(&c, &s, "/api/items/1", Some(&auth), &[&fresh]).await,
        "1",
    );
    assert_eq!(s.stats().dpop.replay_cache_len, 4);
    s.shutdown().await;
}

#[tokio::test]
async fn a_reset_keeps_the_remembered_jtis() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::random();
    let proof = key.proof("POST", &s.url("/oauth2/token"));
    assert_bound_pair(&password_grant(&c, &s, &[&proof]).await, &key);
    let reset = admin_post(&c, &s, "/__reset").send().await.unwrap();
    assert_eq!(reset.status(), reqwest::StatusCode::NO_CONTENT);
    let stats = s.stats();
    assert_eq!(stats.dpop.proofs_accepted, 0);
    assert_eq!(stats.dpop.replay_cache_len, 1);
    // The proof from before the reset cannot log in again after it.
    assert_token_error(
        &password_grant(&c, &s, &[&proof]).await,
        "invalid_dpop_proof",
    );
    assert_eq!(s.stats().dpop.jti_replays, 1);
    assert_eq!(s.stats().logins, 0);
    s.shutdown().await;
}
