//! Concurrent refreshes of one family are decided atomically.

use std::time::Duration;

use reqwest::StatusCode;
use tokenkeeper_server::{Contract, ServerConfig};

use crate::common::*;

const N: usize = 100;

async fn burst(
    s: &tokenkeeper_server::ServerHandle,
    style: Contract,
    token: &str,
) -> Vec<Refreshed> {
    let c = client();
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let c = c.clone();
            let token = token.to_owned();
            let base = s.base_url();
            tokio::spawn(async move { refresh(&c, base.as_str(), style, &token).await })
        })
        .collect();
    let mut results = Vec::with_capacity(N);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_refreshes_rotate_exactly_once() {
    let s = server(ServerConfig::default()).await;
    let c = client();
    let pair = login(&c, &s, Contract::Json).await;
    let results = burst(&s, Contract::Json, &pair.refresh).await;
    let ok: Vec<_> = results.iter().filter(|r| r.pair.is_some()).collect();
    assert_eq!(ok.len(), 1);
    for rejected in results.iter().filter(|r| r.pair.is_none()) {
        assert_eq!(rejected.reply.status, StatusCode::UNAUTHORIZED);
        assert_refresh_rejected(Contract::Json, &rejected.reply, false);
    }
    let stats = s.stats();
    assert_eq!(stats.refresh_calls, N as u64);
    assert_eq!(stats.rotations, 1);
    assert_eq!(stats.refresh_rejected.reuse, (N - 1) as u64);
    assert_eq!(stats.reuse_detections, (N - 1) as u64);
    assert_eq!(stats.families_revoked, 1);
    assert_eq!(stats.grace_hits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grace_one_rotation_one_replay_and_the_rest_reuse() {
    let s = server(ServerConfig::default().with_grace_period(Duration::from_secs(30))).await;
    let c = client();
    let pair = login(&c, &s, Contract::OAuth2).await;
    let results = burst(&s, Contract::OAuth2, &pair.refresh).await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.pair.clone()).collect();
    assert_eq!(ok.len(), 2, "one rotation and one grace replay");
    assert_eq!(ok[0], ok[1], "the grace replay returns the rotation's pair");
    let stats = s.stats();
    assert_eq!(stats.rotations, 1);
    assert_eq!(stats.grace_hits, 1);
    assert_eq!(stats.refresh_rejected.reuse, (N - 2) as u64);
    assert_eq!(stats.families_revoked, 1);
}
