//! The reqwest adapter's copy of a request for its retry: the retry is the request as the caller
//! made it (URL, method, headers, body), also when the refusal came back from where a redirect
//! within the same origin led, and also for URLs too long to keep in place.
//!
//! The server is a small real HTTP server on 127.0.0.1 that refuses every token but the fresh
//! one; the session's refresher hands out that fresh token.

use crate::common;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::*;
use std::sync::{Arc, Mutex};
use tokenkeeper::{Session, TokenSet};

const FRESH: &str = "Bearer fresh-token";

/// Every request the server saw: (method, path and query, authorization, x-trace, body).
type Seen = Arc<Mutex<Vec<(String, String, String, String, String)>>>;

/// `/start…` answers 307 to `/target` with the same query; everything else answers 401 unless
/// the fresh token came with it, then 200 echoing the body.
async fn server() -> (String, Seen) {
    async fn any(State(seen): State<Seen>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        let path = parts.uri.path_and_query().unwrap().as_str().to_owned();
        seen.lock().unwrap().push((
            parts.method.to_string(),
            path.clone(),
            header("authorization"),
            header("x-trace"),
            body.clone(),
        ));
        if let Some(rest) = path.strip_prefix("/start") {
            let to = format!("/target{rest}");
            return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
        }
        if header("authorization") == FRESH {
            (StatusCode::OK, body).into_response()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        }
    }
    let seen = Seen::default();
    let app = axum::Router::new()
        .fallback(any)
        .with_state(Arc::clone(&seen));
    let listener = crate::common::loopback_listener();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn signed_in(base: &str) -> Session {
    let session = Session::builder()
        .refresher(tokenkeeper::refresh::from_fn(|_| async {
            Ok(TokenSet::new("fresh-token"))
        }))
        .attach_to([base])
        .build()
        .unwrap();
    session.sign_in(TokenSet::new("stale-token")).await.unwrap();
    session
}

/// A refusal from where a same-origin redirect led is ours: one refresh, and the retry is the
/// caller's request again (to the URL it asked for, with its headers), which the server
/// redirects again and now accepts.
#[tokio::test]
async fn a_refusal_after_a_same_origin_redirect_retries_the_original_request() {
    let (base, seen) = server().await;
    let long_query = format!("?q={}", "x".repeat(200));
    for query in ["?page=2", long_query.as_str()] {
        seen.lock().unwrap().clear();
        let session = signed_in(&base).await;
        let response = client(&session)
            .get(format!("{base}/start{query}"))
            .header("x-trace", "t-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{query}");
        assert_eq!(session.stats().refreshes, 1, "{query}");
        let seen = seen.lock().unwrap().clone();
        let paths: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
        let start = format!("/start{query}");
        let target = format!("/target{query}");
        assert_eq!(paths, [&start, &target, &start, &target], "{query}");
        assert!(
            seen.iter().all(|s| s.0 == "GET" && s.3 == "t-1"),
            "{seen:?}"
        );
        assert_eq!(seen[2].2, FRESH);
    }
}

/// A body the request can send again is sent again, byte for byte.
#[tokio::test]
async fn a_refused_request_with_a_body_is_retried_with_the_same_body() {
    let (base, seen) = server().await;
    let session = signed_in(&base).await;
    let response = client(&session)
        .put(format!("{base}/items/7"))
        .header("x-trace", "t-2")
        .body("{\"name\":\"seven\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{\"name\":\"seven\"}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "PUT");
    assert_eq!(seen[1].0, "PUT");
    assert_eq!(seen[1].2, FRESH);
    assert_eq!(seen[1].3, "t-2");
    assert_eq!(seen[1].4, seen[0].4);
}
