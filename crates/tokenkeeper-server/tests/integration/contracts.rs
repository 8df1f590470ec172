//! The full life of a session, once per contract: login, API, expiry, refresh,
//! reuse, revocation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokenkeeper_server::{Contract, ServerConfig, Stats};

use crate::common::*;

const TTL: Duration = Duration::from_millis(500);

async fn full_cycle(style: Contract) {
    let s = server(ServerConfig::default().with_access_ttl(TTL)).await;
    let c = client();

    let first = login(&c, &s, style).await;
    let claims = claims(&first.access);
    assert_eq!(claims["sub"], "demo");
    assert_eq!(claims["sty"], style.as_str());
    let lifetime = claims["exp"].as_f64().unwrap() - claims["iat"].as_f64().unwrap();
    assert!((lifetime - 0.5).abs() < 1e-3, "lifetime {lifetime}");
    assert!(claims["jti"].is_string() && claims["fam"].is_string());

    assert_ok_item(&get_item(&c, &s, "7", Some(&first.access)).await, "7");

    tokio::time::sleep(TTL + Duration::from_millis(150)).await;
    assert_refused(
        style,
        &get_item(&c, &s, "7", Some(&first.access)).await,
        true,
    );

    let second = refresh(&c, &s, style, &first.refresh)
        .await
        .pair
        .expect("the current refresh token rotates");
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(claims_fam(&second.access), claims["fam"]);
    assert_ok_item(&get_item(&c, &s, "8", Some(&second.access)).await, "8");

    // The old refresh token again: reuse. The whole family goes.
    let reuse = refresh(&c, &s, style, &first.refresh).await;
    assert!(reuse.pair.is_none());
    assert_refresh_rejected(style, &reuse.reply, false);

    let stats = s.stats();
    assert_eq!(stats.reuse_detections, 1);
    assert_eq!(stats.families_revoked, 1);
    assert_eq!(stats.refresh_rejected.reuse, 1);

    // The new access token, still unexpired, is refused as invalid.
    assert_refused(
        style,
        &get_item(&c, &s, "9", Some(&second.access)).await,
        false,
    );
    // And so is the family's current refresh token.
    let revoked = refresh(&c, &s, style, &second.refresh).await;
    assert_refresh_rejected(style, &revoked.reply, false);

    let mut expected = Stats {
        logins: 1,
        // The revoked family is kept (for the retention) so its tokens are answered as such.
        families: 1,
        refresh_calls: 3,
        rotations: 1,
        reuse_detections: 1,
        families_revoked: 1,
        api_ok: 2,
        api_401_expired: 1,
        api_401_invalid: 1,
        ..Stats::default()
    };
    expected.refresh_rejected.reuse = 1;
    expected.refresh_rejected.revoked = 1;
    assert_eq!(s.stats(), expected);
    assert_eq!(http_stats(&c, &s).await, expected);
    s.shutdown().await;
}

fn claims_fam(jwt: &str) -> serde_json::Value {
    claims(jwt)["fam"].clone()
}

#[tokio::test]
async fn oauth2_full_cycle() {
    full_cycle(Contract::OAuth2).await;
}

#[tokio::test]
async fn json_full_cycle() {
    full_cycle(Contract::Json).await;
}

#[tokio::test]
async fn header_full_cycle() {
    full_cycle(Contract::Header).await;
}

#[tokio::test]
async fn cookie_full_cycle() {
    full_cycle(Contract::Cookie).await;
}

/// The header contract answers with raw tokens by default and `Bearer <token>` with
/// `header_bearer_prefix`; the tokens are the same kind either way and rotate.
#[tokio::test]
async fn header_tokens_are_raw_by_default_and_prefixed_on_request() {
    let c = client();
    for prefixed in [false, true] {
        let s = server(ServerConfig::default().with_header_bearer_prefix(prefixed)).await;
        let mut refresh_token = login(&c, &s, Contract::Header).await.refresh;
        for _ in 0..2 {
            let reply = Reply::send(
                c.post(s.url("/api/refresh-token"))
                    .header("authorization-refresh", format!("Bearer {refresh_token}")),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            let token = |name: &str| {
                let value = reply.header(name).unwrap();
                let token = if prefixed {
                    value.strip_prefix("Bearer ").unwrap()
                } else {
                    value
                };
                assert!(!token.is_empty() && !token.contains(' '), "{name}: {value}");
                token.to_owned()
            };
            let access = token("authorization");
            assert_eq!(claims(&access)["sty"], "header");
            assert_ok_item(&get_item(&c, &s, "1", Some(&access)).await, "1");
            let rotated = token("authorization-refresh");
            assert_ne!(rotated, refresh_token);
            refresh_token = rotated;
        }
        assert_eq!(s.stats().rotations, 2);
        assert_eq!(s.stats().reuse_detections, 0);
        s.shutdown().await;
    }
}

#[tokio::test]
async fn login_answers_and_sets_the_cookie() {
    let s = server(ServerConfig::default().with_access_ttl(Duration::from_millis(1500))).await;
    let c = client();
    let reply = Reply::send(default_login_request(&c, &s)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["expiresIn"], json!(1.5));
    // Contract defaults to json.
    assert_eq!(claims(body["accessToken"].as_str().unwrap())["sty"], "json");
    let set_cookie = reply.header("set-cookie").unwrap();
    assert_eq!(
        set_cookie,
        format!(
            "tk_refresh={}; HttpOnly; SameSite=Strict; Path=/v3/jwt",
            body["refreshToken"].as_str().unwrap()
        )
    );

    // oauth2 expires_in is a number too, whole when the TTL is whole.
    let whole = server(ServerConfig::default().with_access_ttl(Duration::from_secs(2))).await;
    let reply = Reply::send(
        c.post(whole.url("/oauth2/token"))
            .basic_auth("my-app", Some("ignored"))
            .form(&[
                ("grant_type", "password"),
                ("username", "demo"),
                ("password", "demo"),
                ("scope", "items"),
            ]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["expires_in"], json!(2));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(s.stats().logins, 1);
}

#[tokio::test]
async fn configured_users_replace_the_default() {
    let s = server(ServerConfig::default().with_users([("alice", "wonderland")])).await;
    let c = client();
    let login = |user: &'static str, password: &'static str| {
        c.post(s.url("/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
    };
    assert_eq!(
        login("alice", "wonderland").await.unwrap().status(),
        StatusCode::OK
    );
    let demo = Reply::read(login("demo", "demo").await.unwrap()).await;
    demo.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn post_items_echoes_the_body() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let pair = login(&c, &s, Contract::Json).await;
    let item = json!({"name": "widget", "tags": ["a", "b"], "n": 3});
    let reply = Reply::send(
        c.post(s.url("/api/items"))
            .bearer_auth(&pair.access)
            .json(&item),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json(), json!({"owner": "demo", "item": item}));
    assert_eq!(s.stats().api_ok, 1);
}

#[tokio::test]
async fn cookie_contract_works_with_a_real_cookie_jar() {
    let s = server(ServerConfig::default()).await;
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let reply = login_request(&c, &s, Contract::Cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    for _ in 0..3 {
        let reply = Reply::send(c.post(s.url("/v3/jwt/reissue"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let access = reply.json()["accessToken"].as_str().unwrap().to_owned();
        assert_ok_item(&get_item(&c, &s, "1", Some(&access)).await, "1");
    }
    assert_eq!(s.stats().rotations, 3);
    assert_eq!(s.stats().refresh_rejected, Default::default());
}

#[tokio::test]
async fn logout_revokes_the_family() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let pair = login(&c, &s, Contract::Json).await;
    let reply = c
        .post(s.url("/logout"))
        .json(&json!({"refreshToken": pair.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);
    assert_refused(
        Contract::Json,
        &get_item(&c, &s, "1", Some(&pair.access)).await,
        false,
    );
    let refused = refresh(&c, &s, Contract::Json, &pair.refresh).await;
    assert_refresh_rejected(Contract::Json, &refused.reply, false);
    let stats = s.stats();
    assert_eq!(stats.families_revoked, 1);
    assert_eq!(stats.refresh_rejected.revoked, 1);
    assert_eq!(stats.reuse_detections, 0);
}

#[tokio::test]
async fn one_family_can_switch_contracts() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let mut pair = login(&c, &s, Contract::Json).await;
    for style in STYLES {
        pair = refresh(&c, &s, style, &pair.refresh).await.pair.unwrap();
        assert_eq!(claims(&pair.access)["sty"], style.as_str());
        assert_ok_item(&get_item(&c, &s, "2", Some(&pair.access)).await, "2");
    }
    assert_eq!(s.stats().rotations, 4);
}

#[tokio::test]
async fn browsers_can_call_from_an_allowed_origin() {
    let origin = "http://localhost:5173";
    let s = server(ServerConfig::default().with_allowed_origin(origin)).await;
    let c = client();
    let preflight = Reply::send(
        c.request(reqwest::Method::OPTIONS, s.url("/api/refresh-token"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization-refresh"),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(origin)
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("authorization-refresh")
    );

    let pair = login(&c, &s, Contract::Header).await;
    let reply = Reply::send(
        c.post(s.url("/api/refresh-token"))
            .header("origin", origin)
            .header("authorization-refresh", format!("Bearer {}", pair.refresh)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
    let exposed = reply.header("access-control-expose-headers").unwrap();
    assert!(exposed.contains("authorization-refresh") && exposed.contains("www-authenticate"));

    // Same-origin / non-browser requests are left alone.
    let plain = get_item(&c, &s, "1", None).await;
    assert!(plain.header("access-control-allow-origin").is_none());
}
