//! Expiry of refresh tokens, and "decided at arrival, answered after the
//! latency".

use std::time::Duration;

use reqwest::StatusCode;
use tokenkeeper_server::{Latency, ServerConfig};

use crate::common::*;

#[tokio::test]
async fn expired_refresh_tokens_are_refused_as_expired() {
    let s = server(ServerConfig::default().with_refresh_ttl(Duration::from_millis(300))).await;
    let c = client();
    let mut pairs = Vec::new();
    for style in STYLES {
        pairs.push((style, login(&c, &s, style).await));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    for (style, pair) in &pairs {
        let expired = refresh(&c, &s, *style, &pair.refresh).await;
        assert_refresh_rejected(*style, &expired.reply, true);
    }
    let stats = s.stats();
    assert_eq!(stats.refresh_rejected.expired, 4);
    assert_eq!(stats.families_revoked, 0);
    assert_eq!(stats.rotations, 0);
}

#[tokio::test]
async fn api_validates_on_arrival_then_waits_the_latency() {
    let ttl = Duration::from_millis(300);
    let s = server(
        ServerConfig::default()
            .with_access_ttl(ttl)
            .with_latency(Latency {
                api: Duration::from_millis(600),
                ..Latency::default()
            }),
    )
    .await;
    let c = client();
    let pair = login(&c, &s, tokenkeeper_server::Contract::Json).await;
    // Valid on arrival: served, although it expires while the server waits.
    let reply = get_item(&c, &s, "1", Some(&pair.access)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(s.stats().api_ok, 1);

    // Latency is live: with it gone, the now-expired token is refused.
    s.set_latency(Latency::default());
    let reply = get_item(&c, &s, "1", Some(&pair.access)).await;
    assert_refused(tokenkeeper_server::Contract::Json, &reply, true);
}
