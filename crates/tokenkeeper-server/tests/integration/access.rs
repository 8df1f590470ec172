//! Web pages cannot drive the server: operator routes need the admin header and never answer
//! CORS, unlisted origins are refused, and only loopback `Host` names are served.

use reqwest::StatusCode;
use serde_json::json;
use tokenkeeper_server::{ADMIN_HEADER, Contract, ServerConfig, Stats};

use crate::common::*;

const APP: &str = "http://localhost:5173";

fn assert_no_cors(reply: &Reply) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        assert!(
            reply.header(name).is_none(),
            "{name} in {:?}",
            reply.headers
        );
    }
}

#[tokio::test]
async fn operator_routes_need_the_admin_header() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    login(&c, &s, Contract::Json).await;
    for request in [
        c.get(s.url("/__stats")),
        c.post(s.url("/__reset")),
        c.get(s.url("/__faults")),
        c.post(s.url("/__faults"))
            .json(&json!({"refresh_failure_rate": 1.0})),
        c.get(s.url("/__anything_else")),
        c.get(s.url("/__stats")).header(ADMIN_HEADER, "0"),
        c.get(s.url("/__stats")).header(ADMIN_HEADER, "true"),
        c.post(s.url("/__reset")).header(ADMIN_HEADER, ""),
    ] {
        let reply = Reply::send(request).await;
        reply.assert_error(StatusCode::FORBIDDEN, "admin_header_required");
        assert_no_cors(&reply);
    }
    // Refused before the handler ran: nothing was reset, no fault was set.
    assert_eq!(s.stats().logins, 1);
    assert_eq!(s.faults(), Default::default());

    // With the header: served.
    assert_eq!(http_stats(&c, &s).await.logins, 1);
    Reply::send(admin_get(&c, &s, "/__anything_else"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let reset = admin_post(&c, &s, "/__reset").send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.stats(), Stats::default());
}

#[tokio::test]
async fn operator_routes_never_answer_cors_even_for_an_allowed_origin() {
    let s = server(ServerConfig::default().with_allowed_origin(APP)).await;
    let c = client();
    for (method, path) in [
        (reqwest::Method::GET, "/__stats"),
        (reqwest::Method::POST, "/__reset"),
        (reqwest::Method::POST, "/__faults"),
    ] {
        let preflight =
            Reply::send(preflight(&c, &s, path, APP, method.as_str(), ADMIN_HEADER)).await;
        preflight.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");
        assert_no_cors(&preflight);

        // Even a request that carries the header (a browser could only send it after a
        // successful preflight) is refused when it comes from a page.
        let request = Reply::send(admin_get(&c, &s, path).header("origin", APP)).await;
        request.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");
        assert_no_cors(&request);
    }
    assert_eq!(s.faults(), Default::default());
}

#[tokio::test]
async fn without_allowed_origins_pages_get_no_cors_and_cannot_act() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let preflight = Reply::send(preflight(&c, &s, "/login", APP, "POST", "content-type")).await;
    preflight.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");
    assert_no_cors(&preflight);

    // A cross-site form post needs no preflight: it is refused before it signs anyone in.
    let form_post = Reply::send(
        login_request(&c, &s, Contract::OAuth2).header("origin", "http://evil.example"),
    )
    .await;
    form_post.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");
    assert_no_cors(&form_post);
    assert_eq!(s.stats().logins, 0);

    // Clients that send no Origin (curl, reqwest, the library) are unaffected.
    let pair = login(&c, &s, Contract::Json).await;
    let reply = get_item(&c, &s, "1", Some(&pair.access)).await;
    assert_ok_item(&reply, "1");
    assert_no_cors(&reply);
}

#[tokio::test]
async fn only_listed_origins_are_reflected() {
    let s = server(ServerConfig::default().with_allowed_origin(APP)).await;
    let c = client();
    let pair = login(&c, &s, Contract::Json).await;
    for foreign in ["http://evil.example", "http://localhost:5174", "null", "*"] {
        let reply = Reply::send(
            c.get(s.url("/api/items/1"))
                .header("origin", foreign)
                .header("authorization", format!("Bearer {}", pair.access)),
        )
        .await;
        reply.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");
        assert_no_cors(&reply);
    }
    let listed = Reply::send(
        c.get(s.url("/api/items/1"))
            .header("origin", APP)
            .header("authorization", format!("Bearer {}", pair.access)),
    )
    .await;
    assert_ok_item(&listed, "1");
    assert_eq!(listed.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        listed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(listed.header("vary"), Some("origin"));
    // An unknown route is not a browser route: no CORS for it either.
    Reply::send(c.get(s.url("/nope")).header("origin", APP))
        .await
        .assert_error(StatusCode::FORBIDDEN, "origin_not_allowed");
}

#[tokio::test]
async fn a_wildcard_or_malformed_allowed_origin_is_refused_at_start() {
    for bad in ["*", "localhost:5173", "http://localhost:5173/app", "null"] {
        let error = tokenkeeper_server::start(ServerConfig::default().with_allowed_origin(bad))
            .await
            .expect_err(bad);
        assert!(
            error.to_string().contains("allowed origin"),
            "{bad}: {error}"
        );
    }
    for bad in ["http://dev.box", "dev.box:80", ""] {
        let error = tokenkeeper_server::start(ServerConfig::default().with_allowed_host(bad))
            .await
            .expect_err(bad);
        assert!(error.to_string().contains("allowed host"), "{bad}: {error}");
    }
}

#[tokio::test]
async fn hosts_that_are_not_loopback_are_refused_on_every_route() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let port = s.addr().port();
    let pair = login(&c, &s, Contract::Json).await;
    // DNS rebinding: the page's own name, now resolving to 127.0.0.1, is what the browser
    // sends as Host.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("localhost.evil.example:{port}"),
        format!("10.0.0.1:{port}"),
    ] {
        for request in [
            admin_get(&c, &s, "/__stats"),
            admin_post(&c, &s, "/__reset"),
            default_login_request(&c, &s),
            c.get(s.url("/api/items/1"))
                .header("authorization", format!("Bearer {}", pair.access)),
            c.post(s.url("/refresh/token"))
                .json(&json!({ "refreshToken": pair.refresh })),
        ] {
            let reply = Reply::send(request.header("host", &host)).await;
            reply.assert_error(StatusCode::MISDIRECTED_REQUEST, "misdirected_request");
        }
    }
    let stats = s.stats();
    assert_eq!((stats.logins, stats.refresh_calls, stats.api_ok), (1, 0, 0));

    // Loopback names are served.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
    ] {
        let reply = Reply::send(admin_get(&c, &s, "/__stats").header("host", &host)).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
    }
}

#[tokio::test]
async fn an_absolute_request_target_is_judged_by_its_authority() {
    let s = server(ServerConfig::default()).await;
    let port = s.addr().port();
    // The authority of an absolute-form target wins over Host (RFC 9112 §3.2.2).
    let reply = raw_exchange(
        s.addr(),
        format!(
            "GET http://evil.example:{port}/__stats HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             {ADMIN_HEADER}: 1\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 421"), "{reply}");
    let reply = raw_exchange(
        s.addr(),
        format!(
            "GET http://127.0.0.1:{port}/__stats HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             {ADMIN_HEADER}: 1\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // No Host at all (HTTP/1.0 allows it): nothing to check against, refused.
    let reply = raw_exchange(
        s.addr(),
        format!("GET /__stats HTTP/1.0\r\n{ADMIN_HEADER}: 1\r\n\r\n"),
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.0 421") || reply.starts_with("HTTP/1.1 421"),
        "{reply}"
    );
}

#[tokio::test]
async fn allowed_hosts_extend_loopback() {
    let s = server(ServerConfig::default().with_allowed_host("dev.box")).await;
    let c = client();
    let port = s.addr().port();
    let ok =
        Reply::send(admin_get(&c, &s, "/__stats").header("host", format!("Dev.Box:{port}"))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    Reply::send(admin_get(&c, &s, "/__stats").header("host", format!("other.box:{port}")))
        .await
        .assert_error(StatusCode::MISDIRECTED_REQUEST, "misdirected_request");
}
