//! The grace period: the immediately previous refresh token is accepted once
//! more within the window and answers with the same pair.

use std::time::Duration;

use tokenkeeper_server::{Contract, ServerConfig};

use crate::common::*;

#[tokio::test]
async fn previous_token_is_accepted_once_with_the_same_pair() {
    for style in STYLES {
        let s = server(ServerConfig::default().with_grace_period(Duration::from_secs(30))).await;
        let c = client();
        let first = login(&c, &s, style).await;
        let second = refresh(&c, &s, style, &first.refresh).await.pair.unwrap();

        let replay = refresh(&c, &s, style, &first.refresh).await.pair;
        assert_eq!(
            replay.as_ref(),
            Some(&second),
            "{style}: grace returns the same pair"
        );
        assert_eq!(s.stats().grace_hits, 1);
        assert_eq!(s.stats().rotations, 1);
        assert_ok_item(&get_item(&c, &s, "1", Some(&second.access)).await, "1");

        // A second replay is reuse: the family is revoked.
        let again = refresh(&c, &s, style, &first.refresh).await;
        assert_refresh_rejected(style, &again.reply, false);
        let stats = s.stats();
        assert_eq!(stats.grace_hits, 1);
        assert_eq!(stats.refresh_rejected.reuse, 1);
        assert_eq!(stats.families_revoked, 1);
        assert_refused(
            style,
            &get_item(&c, &s, "1", Some(&second.access)).await,
            false,
        );
        s.shutdown().await;
    }
}

#[tokio::test]
async fn session_continues_after_a_grace_replay() {
    let s = server(ServerConfig::default().with_grace_period(Duration::from_secs(30))).await;
    let c = client();
    let first = login(&c, &s, Contract::OAuth2).await;
    let second = refresh(&c, &s, Contract::OAuth2, &first.refresh)
        .await
        .pair
        .unwrap();
    assert_eq!(
        refresh(&c, &s, Contract::OAuth2, &first.refresh).await.pair,
        Some(second.clone())
    );
    let third = refresh(&c, &s, Contract::OAuth2, &second.refresh)
        .await
        .pair
        .unwrap();
    assert_ok_item(&get_item(&c, &s, "3", Some(&third.access)).await, "3");
    // `first` is now two rotations back: reuse, even within the window.
    let old = refresh(&c, &s, Contract::OAuth2, &first.refresh).await;
    assert_refresh_rejected(Contract::OAuth2, &old.reply, false);
    assert_eq!(s.stats().rotations, 2);
    assert_eq!(s.stats().grace_hits, 1);
    assert_eq!(s.stats().refresh_rejected.reuse, 1);
}

#[tokio::test]
async fn after_the_window_the_previous_token_is_reuse() {
    let s = server(ServerConfig::default().with_grace_period(Duration::from_millis(200))).await;
    let c = client();
    let first = login(&c, &s, Contract::Json).await;
    refresh(&c, &s, Contract::Json, &first.refresh)
        .await
        .pair
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = refresh(&c, &s, Contract::Json, &first.refresh).await;
    assert_refresh_rejected(Contract::Json, &late.reply, false);
    let stats = s.stats();
    assert_eq!(stats.grace_hits, 0);
    assert_eq!(stats.reuse_detections, 1);
    assert_eq!(stats.families_revoked, 1);
}

#[tokio::test]
async fn without_grace_any_replay_is_reuse() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let first = login(&c, &s, Contract::Header).await;
    refresh(&c, &s, Contract::Header, &first.refresh)
        .await
        .pair
        .unwrap();
    let replay = refresh(&c, &s, Contract::Header, &first.refresh).await;
    assert_refresh_rejected(Contract::Header, &replay.reply, false);
    assert_eq!(s.stats().grace_hits, 0);
    assert_eq!(s.stats().families_revoked, 1);
}
