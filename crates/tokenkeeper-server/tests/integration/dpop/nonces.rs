//! DPoP nonces: challenges at the token endpoint and the API, rotation, and the nonce on
//! every answer.

use reqwest::StatusCode;
use tokenkeeper_server::{Contract, DpopConfig};

use super::encoder::{Key, Proof};
use super::*;

#[tokio::test]
async fn the_token_endpoint_and_the_api_challenge_once_then_accept_the_nonce() {
    let s = dpop_server(DpopConfig::default().with_nonce(true)).await;
    let c = client();
    let key = Key::random();
    let token_url = s.url("/oauth2/token");

    // No nonce: 400 use_dpop_nonce with the nonce to use.
    let reply = password_grant(&c, &s, &[&key.proof("POST", &token_url)]).await;
    assert_token_error(&reply, "use_dpop_nonce");
    let nonce = reply
        .header("dpop-nonce")
        .expect("a DPoP-Nonce header")
        .to_owned();
    assert_eq!(s.stats().logins, 0);

    // Retried with it: served, and the answer carries the nonce too.
    let proof = Proof::new("POST", &token_url)
        .claim("nonce", nonce.as_str())
        .sign(&key);
    let reply = password_grant(&c, &s, &[&proof]).await;
    let pair = assert_bound_pair(&reply, &key);
    assert_eq!(reply.header("dpop-nonce"), Some(nonce.as_str()));

    // The API takes the same nonce.
    let url = s.url("/api/items/1");
    let auth = format!("DPoP {}", pair.access);
    let with_nonce = |nonce: &str| {
        Proof::new("GET", &url)
            .for_token(&pair.access)
            .claim("nonce", nonce)
            .sign(&key)
    };
    let reply = api_get(&c, &s, "/api/items/1", Some(&auth), &[&with_nonce(&nonce)]).await;
    assert_ok_item(&reply, "1");
    assert_eq!(reply.header("dpop-nonce"), Some(nonce.as_str()));

    // After a rotation the old nonce is stale: 401 use_dpop_nonce with the new one.
    let rotated = Reply::send(admin_post(&c, &s, "/__dpop/rotate-nonce")).await;
    assert_eq!(rotated.status, StatusCode::NO_CONTENT);
    let reply = api_get(&c, &s, "/api/items/1", Some(&auth), &[&with_nonce(&nonce)]).await;
    assert_dpop_challenge(&reply, "use_dpop_nonce");
    let fresh = reply
        .header("dpop-nonce")
        .expect("a DPoP-Nonce header")
        .to_owned();
    assert_ne!(fresh, nonce);
    assert_ok_item(
        &api_get(&c, &s, "/api/items/1", Some(&auth), &[&with_nonce(&fresh)]).await,
        "1",
    );

    // A nonce the server never issued is a challenge too, not a bad proof.
    let reply = api_get(
        &c,
        &s,
        "/api/items/1",
        Some(&auth),
        &[&with_nonce("made-up")],
    )
    .await;
    assert_dpop_challenge(&reply, "use_dpop_nonce");

    let stats = s.stats();
    assert_eq!(stats.dpop.nonce_challenges, 3);
    assert_eq!(stats.dpop.proofs_accepted, 3);
    assert_eq!(stats.refresh_calls, 0);
    assert_eq!(stats.api_401_expired + stats.api_401_invalid, 0);
    assert_no_rejections(&s);
    s.shutdown().await;
}

#[tokio::test]
async fn a_refresh_is_challenged_without_touching_the_session() {
    let s = dpop_server(DpopConfig::default().with_nonce(true)).await;
    let c = client();
    let key = Key::random();
    let token_url = s.url("/oauth2/token");
    let nonce = password_grant(&c, &s, &[&key.proof("POST", &token_url)])
        .await
        .header("dpop-nonce")
        .unwrap()
        .to_owned();
    let signed = |nonce: &str| {
        Proof::new("POST", &token_url)
            .claim("nonce", nonce)
            .sign(&key)
    };
    let pair = assert_bound_pair(&password_grant(&c, &s, &[&signed(&nonce)]).await, &key);

    assert!(s.rotate_dpop_nonce());
    let reply = refresh_grant(&c, &s, &pair.refresh, &[&signed(&nonce)]).await;
    assert_token_error(&reply, "use_dpop_nonce");
    let fresh = reply.header("dpop-nonce").unwrap().to_owned();
    let stats = s.stats();
    assert_eq!(stats.refresh_calls, 0, "a challenge is not a refresh call");
    assert_eq!(stats.rotations, 0);
    // The same refresh token, retried with the fresh nonce, rotates once.
    assert_bound_pair(
        &refresh_grant(&c, &s, &pair.refresh, &[&signed(&fresh)]).await,
        &key,
    );
    let stats = s.stats();
    assert_eq!(stats.rotations, 1);
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.dpop.nonce_challenges, 2);
    assert_no_rejections(&s);
    s.shutdown().await;
}

#[tokio::test]
async fn rotation_is_refused_when_nonces_are_off() {
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    assert!(!s.rotate_dpop_nonce());
    let reply = Reply::send(admin_post(&c, &s, "/__dpop/rotate-nonce")).await;
    reply.assert_error(StatusCode::CONFLICT, "dpop_nonces_off");
    // And no answer carries a nonce.
    let key = Key::random();
    let reply = password_grant(&c, &s, &[&key.proof("POST", &s.url("/oauth2/token"))]).await;
    assert_eq!(reply.header("dpop-nonce"), None);
    s.shutdown().await;
}

#[tokio::test]
async fn a_browser_app_may_send_proofs_and_read_the_nonce() {
    let origin = "http://localhost:5173";
    let s = server(
        tokenkeeper_server::ServerConfig::default()
            .with_allowed_origin(origin)
            .with_dpop(DpopConfig::default().with_nonce(true)),
    )
    .await;
    let c = client();
    let preflight = Reply::send(preflight(&c, &s, "/oauth2/token", origin, "POST", "dpop")).await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    let allowed = preflight.header("access-control-allow-headers").unwrap();
    assert!(allowed.split(", ").any(|h| h == "dpop"), "{allowed}");

    let key = Key::random();
    let reply = Reply::send(
        login_request(&c, &s, Contract::OAuth2)
            .header("origin", origin)
            .header("dpop", key.proof("POST", &s.url("/oauth2/token"))),
    )
    .await;
    assert_token_error(&reply, "use_dpop_nonce");
    assert!(reply.header("dpop-nonce").is_some());
    let exposed = reply.header("access-control-expose-headers").unwrap();
    assert!(exposed.split(", ").any(|h| h == "dpop-nonce"), "{exposed}");
    s.shutdown().await;
}
