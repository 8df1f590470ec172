//! Bounded memory: dead sessions are pruned, live ones are kept (with reuse detection), and a
//! full session table refuses logins instead of evicting anyone.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokenkeeper_server::{Contract, ServerConfig};

use crate::common::*;

#[tokio::test]
async fn dead_sessions_are_pruned_and_live_ones_keep_reuse_detection() {
    // Every session dies 1.5 s after its last refresh; dead ones are forgotten at once.
    let ttl = Duration::from_millis(1500);
    let s = server(
        ServerConfig::default()
            .with_access_ttl(Duration::from_millis(200))
            .with_refresh_ttl(ttl)
            .with_family_retention(Duration::ZERO),
    )
    .await;
    let c = client();
    let started = Instant::now();
    let mut abandoned = Vec::new();
    for style in STYLES {
        for _ in 0..5 {
            abandoned.push((style, login(&c, &s, style).await));
        }
    }
    let first = login(&c, &s, Contract::Json).await;
    assert_eq!(s.stats().families, 21);

    // One session stays alive by refreshing well within its TTL, past the others' death.
    let mut current = first.clone();
    while started.elapsed() < ttl + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        current = refresh(&c, &s, Contract::Json, &current.refresh)
            .await
            .pair
            .expect("the live session refreshes");
    }
    // Refreshes and logins prune: the twenty abandoned sessions are gone, the live one stays.
    login(&c, &s, Contract::Json).await;
    let stats = http_stats(&c, &s).await;
    assert_eq!(stats.families_pruned, 20, "{stats:?}");
    assert_eq!(stats.families, 2, "{stats:?}");

    // A pruned session's tokens are refused as unknown (refresh) and invalid (API).
    for (style, pair) in &abandoned {
        let refused = refresh(&c, &s, *style, &pair.refresh).await;
        assert_refresh_rejected(*style, &refused.reply, false);
        assert_refused(
            *style,
            &get_item(&c, &s, "1", Some(&pair.access)).await,
            false,
        );
    }
    assert_eq!(s.stats().refresh_rejected.unknown, 20);

    // The live session still detects reuse of its first token, many rotations later.
    assert_ok_item(&get_item(&c, &s, "1", Some(&current.access)).await, "1");
    let reuse = refresh(&c, &s, Contract::Json, &first.refresh).await;
    assert_refresh_rejected(Contract::Json, &reuse.reply, false);
    let stats = s.stats();
    assert_eq!(stats.refresh_rejected.reuse, 1);
    assert_eq!(stats.families_revoked, 1);
    assert_refused(
        Contract::Json,
        &get_item(&c, &s, "1", Some(&current.access)).await,
        false,
    );
}

#[tokio::test]
async fn with_pruning_off_dead_sessions_stay() {
    let s = server(
        ServerConfig::default()
            .with_access_ttl(Duration::from_millis(100))
            .with_refresh_ttl(Duration::from_millis(200))
            .with_family_retention(Duration::ZERO)
            .with_prune_families(false),
    )
    .await;
    let c = client();
    let old = login(&c, &s, Contract::Json).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    login(&c, &s, Contract::Json).await;
    let stats = s.stats();
    assert_eq!((stats.families, stats.families_pruned), (2, 0));
    // Kept, so still answered as expired rather than unknown.
    let expired = refresh(&c, &s, Contract::Json, &old.refresh).await;
    assert_refresh_rejected(Contract::Json, &expired.reply, true);
}

#[tokio::test]
async fn a_full_session_table_refuses_logins_and_never_evicts_a_live_session() {
    let s = server(ServerConfig::default().with_max_families(3)).await;
    let c = client();
    let mut pairs = Vec::new();
    for style in [Contract::Json, Contract::OAuth2, Contract::Cookie] {
        pairs.push((style, login(&c, &s, style).await));
    }

    let refused = Reply::send(default_login_request(&c, &s)).await;
    refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "too_many_sessions");
    // The first session dies when its 24 h refresh token expires.
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((86_000..=86_400).contains(&retry_after), "{retry_after}");

    let refused = Reply::send(login_request(&c, &s, Contract::OAuth2)).await;
    refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    assert!(refused.header("retry-after").is_some());
    let stats = s.stats();
    assert_eq!(
        (stats.logins, stats.logins_refused, stats.families),
        (3, 2, 3)
    );

    // Every live session still works.
    for (style, pair) in &pairs {
        let next = refresh(&c, &s, *style, &pair.refresh).await.pair.unwrap();
        assert_ok_item(&get_item(&c, &s, "1", Some(&next.access)).await, "1");
    }

    // A logout frees a place at once (any token of the family names it).
    let logout = c
        .post(s.url("/logout"))
        .json(&json!({ "refreshToken": pairs[0].1.refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    login(&c, &s, Contract::Json).await;
    let stats = s.stats();
    assert_eq!(
        (stats.logins, stats.families, stats.families_pruned),
        (4, 3, 1)
    );
}
