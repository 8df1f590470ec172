//! Injected refresh faults: 503s that leave the family untouched, and hangs
//! that still end on shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokenkeeper_server::{Contract, ServerConfig};

use crate::common::*;

#[tokio::test]
async fn failure_rate_one_answers_503_and_leaves_the_family_alone() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let mut pairs = Vec::new();
    for style in STYLES {
        pairs.push((style, login(&c, &s, style).await));
    }
    let set = admin_post(&c, &s, "/__faults")
        .json(&json!({"refresh_failure_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);

    for (style, pair) in &pairs {
        let failed = refresh(&c, &s, *style, &pair.refresh).await;
        let code = if *style == Contract::OAuth2 {
            "temporarily_unavailable"
        } else {
            "unavailable"
        };
        failed
            .reply
            .assert_error(StatusCode::SERVICE_UNAVAILABLE, code);
        // The cookie is not cleared by a failure.
        assert!(failed.reply.header("set-cookie").is_none());
    }
    // Login is not subject to refresh faults.
    let during = login(&c, &s, Contract::OAuth2).await;
    assert_ok_item(&get_item(&c, &s, "1", Some(&during.access)).await, "1");

    let stats = s.stats();
    assert_eq!(stats.refresh_calls, 4);
    assert_eq!(stats.refresh_failures_injected, 4);
    assert_eq!(stats.rotations, 0);
    assert_eq!(stats.refresh_rejected, Default::default());

    s.set_refresh_failure_rate(0.0);
    for (style, pair) in &pairs {
        let next = refresh(&c, &s, *style, &pair.refresh).await.pair;
        assert!(
            next.is_some(),
            "{style}: the token still works once faults are cleared"
        );
    }
    assert_eq!(s.stats().rotations, 4);
    assert_eq!(s.stats().reuse_detections, 0);
}

#[tokio::test]
async fn configured_failure_rate_applies_from_the_start() {
    let s = server(ServerConfig::default().with_refresh_failure_rate(1.0)).await;
    let c = client();
    let pair = login(&c, &s, Contract::Json).await;
    let failed = refresh(&c, &s, Contract::Json, &pair.refresh).await;
    failed
        .reply
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(
        tokenkeeper_server::start(ServerConfig::default().with_refresh_failure_rate(1.5))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn hung_refreshes_never_answer_but_shutdown_completes() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let pair = login(&c, &s, Contract::Json).await;
    s.set_refresh_hang(true);

    let timed_out = c
        .post(s.url("/refresh/token"))
        .json(&json!({"refreshToken": pair.refresh}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());

    // Another one stays in flight while the server shuts down.
    let in_flight = {
        let c = c.clone();
        let url = s.url("/api/refresh-token");
        let refresh = pair.refresh.clone();
        tokio::spawn(async move {
            c.post(url)
                .header("authorization-refresh", format!("Bearer {refresh}"))
                .send()
                .await
        })
    };
    while s.stats().refresh_hangs < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = s.stats();
    assert_eq!(stats.refresh_calls, 2);
    assert_eq!(stats.rotations, 0);

    tokio::time::timeout(Duration::from_secs(5), s.shutdown())
        .await
        .expect("shutdown completes despite hung requests");
    let released = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the hung request ends with the server")
        .unwrap();
    if let Ok(response) = released {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
