//! `GET /__stats`, `POST /__reset`, `POST /__faults`.

use reqwest::StatusCode;
use serde_json::json;
use tokenkeeper_server::{Contract, ServerConfig, Stats};

use crate::common::*;

#[tokio::test]
async fn stats_over_http_match_the_handle_and_reset_forgets_everything() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let pair = login(&c, &s, Contract::Cookie).await;
    let next = refresh(&c, &s, Contract::Cookie, &pair.refresh)
        .await
        .pair
        .unwrap();
    assert_ok_item(&get_item(&c, &s, "1", Some(&next.access)).await, "1");
    assert_missing(&get_item(&c, &s, "1", None).await);

    let stats = http_stats(&c, &s).await;
    assert_eq!(stats, s.stats());
    assert_eq!(
        (
            stats.logins,
            stats.refresh_calls,
            stats.rotations,
            stats.api_ok,
            stats.api_401_missing
        ),
        (1, 1, 1, 1, 1)
    );
    // The JSON uses the documented field names.
    let raw = Reply::send(admin_get(&c, &s, "/__stats")).await.json();
    for key in [
        "logins",
        "refresh_calls",
        "rotations",
        "refresh_rejected",
        "reuse_detections",
        "families_revoked",
        "grace_hits",
        "refresh_failures_injected",
        "refresh_hangs",
        "api_ok",
        "api_401_expired",
        "api_401_invalid",
        "api_401_missing",
        "dpop",
    ] {
        assert!(raw.get(key).is_some(), "missing {key} in {raw}");
    }
    assert_eq!(
        raw["refresh_rejected"],
        json!({"reuse": 0, "unknown": 0, "expired": 0, "revoked": 0, "malformed": 0, "wrong_key": 0})
    );
    assert_eq!(raw["dpop"]["proofs_rejected"]["replay"], 0, "{raw}");
    assert_eq!(raw["dpop"]["nonce_challenges"], 0, "{raw}");

    let reset = admin_post(&c, &s, "/__reset").send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.stats(), Stats::default());
    assert_eq!(http_stats(&c, &s).await, Stats::default());

    // Fresh state: earlier tokens are unknown / invalid.
    let stale = refresh(&c, &s, Contract::Cookie, &next.refresh).await;
    assert_refresh_rejected(Contract::Cookie, &stale.reply, false);
    assert_refused(
        Contract::Cookie,
        &get_item(&c, &s, "1", Some(&next.access)).await,
        false,
    );
    assert_eq!(s.stats().refresh_rejected.unknown, 1);
    assert_eq!(s.stats().api_401_invalid, 1);

    // In-process reset too, and new logins work.
    s.reset();
    assert_eq!(s.stats(), Stats::default());
    let fresh = login(&c, &s, Contract::Json).await;
    assert_ok_item(&get_item(&c, &s, "2", Some(&fresh.access)).await, "2");
}

#[tokio::test]
async fn faults_endpoint_reads_and_updates_the_live_settings() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let current = Reply::send(admin_get(&c, &s, "/__faults")).await.json();
    assert_eq!(
        current,
        json!({"refresh_failure_rate": 0.0, "refresh_hang": false})
    );

    let updated =
        Reply::send(admin_post(&c, &s, "/__faults").json(&json!({"refresh_failure_rate": 0.25})))
            .await;
    assert_eq!(updated.status, StatusCode::OK);
    let updated = updated.json();
    assert_eq!(
        updated,
        json!({"refresh_failure_rate": 0.25, "refresh_hang": false})
    );
    assert_eq!(s.faults().refresh_failure_rate, 0.25);

    let updated = Reply::send(admin_post(&c, &s, "/__faults").json(&json!({"refresh_hang": true})))
        .await
        .json();
    assert_eq!(
        updated,
        json!({"refresh_failure_rate": 0.25, "refresh_hang": true})
    );
    s.set_refresh_hang(false);
    s.set_refresh_failure_rate(0.0);
    assert_eq!(s.faults(), Default::default());
}

#[tokio::test]
async fn the_access_ttl_can_change_for_tokens_issued_from_now_on() {
    let s =
        server(ServerConfig::default().with_access_ttl(std::time::Duration::from_secs(2))).await;
    let c = client();
    let before = login(&c, &s, Contract::Json).await;
    s.set_access_ttl(std::time::Duration::from_secs(30));
    let after = login(&c, &s, Contract::Json).await;
    let lifetime = |jwt: &str| {
        let claims = claims(jwt);
        claims["exp"].as_f64().unwrap() - claims["iat"].as_f64().unwrap()
    };
    assert!((lifetime(&before.access) - 2.0).abs() < 1e-6);
    assert!((lifetime(&after.access) - 30.0).abs() < 1e-6);
}
