//! Bad input everywhere gets a clear 4xx, never a 500.

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;
use tokenkeeper_server::{BODY_LIMIT, Contract, ServerConfig};

use crate::common::*;

fn oversized() -> String {
    format!("{{\"username\":\"{}\"}}", "x".repeat(BODY_LIMIT + 1))
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    Reply::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn login_refuses_bad_bodies() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let post = || c.post(s.url("/login"));
    let json_body = |body: &'static str| post().header(CONTENT_TYPE, "application/json").body(body);

    send(json_body("{\"username\": "))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(json_body(""))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(json_body("[1, 2]"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(json_body("{\"username\": \"demo\"}"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(json_body("{\"username\": 1, \"password\": \"demo\"}"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(json_body(
        "{\"username\": \"demo\", \"password\": \"demo\", \"style\": \"soap\"}",
    ))
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(
        post()
            .header(CONTENT_TYPE, "text/plain")
            .body("{\"username\":\"demo\",\"password\":\"demo\"}"),
    )
    .await
    .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(post().body("{\"username\":\"demo\",\"password\":\"demo\"}"))
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(
        post()
            .header(CONTENT_TYPE, "application/json")
            .body(oversized()),
    )
    .await
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    send(post().json(&json!({"username": "demo", "password": "nope"})))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    send(post().json(&json!({"username": "nobody", "password": "demo"})))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(s.stats().logins, 0);
}

#[tokio::test]
async fn oauth2_token_endpoint_errors_follow_rfc6749() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let post = || c.post(s.url("/oauth2/token"));
    let form = |body: &'static str| {
        post()
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    };
    let invalid_request = |reply: Reply| {
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    };

    invalid_request(send(post().json(&json!({"grant_type": "password"}))).await);
    invalid_request(send(post().body("grant_type=password")).await);
    invalid_request(send(form("")).await);
    invalid_request(send(form("username=demo&password=demo")).await);
    invalid_request(send(form("grant_type=password&username=demo")).await);
    invalid_request(
        send(form(
            "grant_type=password&username=demo&password=demo&password=demo",
        ))
        .await,
    );
    invalid_request(send(form("grant_type=refresh_token")).await);
    invalid_request(send(form("grant_type=refresh_token&refresh_token=")).await);
    invalid_request(
        send(form(
            "grant_type=refresh_token&refresh_token=a&refresh_token=b",
        ))
        .await,
    );
    send(form("grant_type=authorization_code"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    send(form("grant_type=client_credentials"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    send(form("grant_type=password&username=demo&password=wrong"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    send(form("grant_type=refresh_token&refresh_token=never-issued"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let big = format!("grant_type=password&username={}", "x".repeat(BODY_LIMIT));
    send(
        post()
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(big),
    )
    .await
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");

    let stats = s.stats();
    assert_eq!(stats.logins, 0);
    // Well-formed refresh grants count as refresh calls (a repeated
    // parameter is refused before the grant is looked at).
    assert_eq!(stats.refresh_calls, 3);
    assert_eq!(stats.refresh_rejected.malformed, 2);
    assert_eq!(stats.refresh_rejected.unknown, 1);
}

#[tokio::test]
async fn json_refresh_refuses_bad_bodies() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let post = || c.post(s.url("/refresh/token"));
    let json_body = |body: &'static str| post().header(CONTENT_TYPE, "application/json").body(body);
    let check = |reply: Reply, status: StatusCode| {
        let body = reply.assert_json_4xx(status);
        assert_eq!(body["message"], "InvalidRefreshTokenError", "{body}");
        assert!(body["error"].is_string());
    };

    check(send(json_body("{not json")).await, StatusCode::BAD_REQUEST);
    check(send(json_body("{}")).await, StatusCode::BAD_REQUEST);
    check(
        send(json_body("{\"refreshToken\": 42}")).await,
        StatusCode::BAD_REQUEST,
    );
    check(
        send(json_body("{\"refreshToken\": \"\"}")).await,
        StatusCode::BAD_REQUEST,
    );
    check(
        send(
            post()
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("refreshToken=x"),
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    check(
        send(
            post()
                .header(CONTENT_TYPE, "application/json")
                .body(oversized()),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    let unknown = send(post().json(&json!({"refreshToken": "never-issued"}))).await;
    assert_refresh_rejected(Contract::Json, &unknown, false);

    let stats = s.stats();
    assert_eq!(stats.refresh_calls, 7);
    assert_eq!(stats.refresh_rejected.malformed, 6);
    assert_eq!(stats.refresh_rejected.unknown, 1);
}

#[tokio::test]
async fn header_and_cookie_refresh_refuse_missing_tokens() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let header = || c.post(s.url("/api/refresh-token"));
    for request in [
        header(),
        header().header("authorization-refresh", ""),
        header().header("authorization-refresh", "Bearer"),
        header().header("authorization-refresh", "Basic abc"),
        header().header("authorization-refresh", "Bearer never-issued"),
    ] {
        assert_refresh_rejected(Contract::Header, &send(request).await, false);
    }
    let cookie = || c.post(s.url("/v3/jwt/reissue"));
    for request in [
        cookie(),
        cookie().header("cookie", "other=1"),
        cookie().header("cookie", "tk_refresh="),
        cookie().header("cookie", "tk_refresh=never-issued"),
    ] {
        assert_refresh_rejected(Contract::Cookie, &send(request).await, false);
    }
    let stats = s.stats();
    assert_eq!(stats.refresh_rejected.malformed, 7);
    assert_eq!(stats.refresh_rejected.unknown, 2);
}

#[tokio::test]
async fn api_refuses_missing_garbage_and_forged_tokens() {
    let s = server(ServerConfig::default()).await;
    let other = server(ServerConfig::default()).await;
    let c = client();
    let item = || c.get(s.url("/api/items/1"));

    // No bearer credentials at all: 401 without an error code.
    for request in [
        item(),
        item().header(AUTHORIZATION, ""),
        item().header(AUTHORIZATION, "Bearer"),
        item().header(AUTHORIZATION, "Bearer    "),
        item().header(AUTHORIZATION, "Basic ZGVtbzpkZW1v"),
        item().header(AUTHORIZATION, "Token abc"),
    ] {
        assert_missing(&send(request).await);
    }
    assert_eq!(s.stats().api_401_missing, 6);

    // Garbage: invalid, worded oauth2 (nothing to read a style from).
    for garbage in ["garbage", "a.b.c", "e30.e30.e30", "...."] {
        let reply = send(item().header(AUTHORIZATION, format!("Bearer {garbage}"))).await;
        assert_refused(Contract::OAuth2, &reply, false);
    }

    // Signed by another server: invalid, worded in the token's own style.
    for style in STYLES {
        let forged = login(&c, &other, style).await;
        assert_refused(
            style,
            &get_item(&c, &s, "1", Some(&forged.access)).await,
            false,
        );
        // A genuine token with its signature swapped for another's.
        let genuine = login(&c, &s, style).await;
        let mut parts: Vec<&str> = genuine.access.split('.').collect();
        let foreign_signature = forged.access.rsplit('.').next().unwrap();
        parts[2] = foreign_signature;
        let tampered = parts.join(".");
        assert_refused(style, &get_item(&c, &s, "1", Some(&tampered)).await, false);
    }
    assert_eq!(s.stats().api_401_invalid, 4 + 8);
    assert_eq!(s.stats().api_ok, 0);

    // The protected POST: token first, then the body.
    let pair = login(&c, &s, Contract::Json).await;
    let post = || c.post(s.url("/api/items"));
    assert_missing(&send(post().json(&json!({"a": 1}))).await);
    send(
        post()
            .bearer_auth(&pair.access)
            .header(CONTENT_TYPE, "application/json")
            .body("{oops"),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(post().bearer_auth(&pair.access).body("plain"))
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(
        post()
            .bearer_auth(&pair.access)
            .header(CONTENT_TYPE, "application/json")
            .body(oversized()),
    )
    .await
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    send(c.get(s.url("/nope")))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    send(c.post(s.url("/api/items/1/extra")))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    send(c.get(s.url("/login")))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    send(c.delete(s.url("/api/items/1")))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    send(admin_post(&c, &s, "/__faults").json(&json!({"refresh_failure_rate": 2.0})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(admin_post(&c, &s, "/__faults").json(&json!({"refresh_hang": "yes"})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(c.post(s.url("/logout")).json(&json!({})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
    send(c.post(s.url("/logout")))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_request");
}
