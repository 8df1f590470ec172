//! Proofs racing each other: a `jti` is accepted exactly once, however many copies arrive at
//! the same moment.

use reqwest::StatusCode;
use tokenkeeper_server::DpopConfig;

use super::encoder::{Key, Proof};
use super::*;

/// `GET /api/items/1` with `authorization` and `proof`, from a spawned task.
fn spawn_get(
    c: &reqwest::Client,
    base: &str,
    authorization: &str,
    proof: &str,
) -> tokio::task::JoinHandle<Reply> {
    let request = c
        .get(format!("{base}/api/items/1"))
        .header("authorization", authorization)
        .header("dpop", proof);
    tokio::spawn(async move { Reply::read(request.send().await.unwrap()).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_proofs_sent_at_once_are_accepted_once_each() {
    const PROOFS: usize = 50;
    const COPIES: usize = 4;
    let s = dpop_server(DpopConfig::default()).await;
    let c = client();
    let key = Key::random();
    let pair = dpop_login(&c, &s, &key).await;
    let auth = format!("DPoP {}", pair.access);
    let url = s.url("/api/items/1");
    let proofs: Vec<String> = (0..PROOFS)
        .map(|_| Proof::new("GET", &url).for_token(&pair.access).sign(&key))
        .collect();
    // Every copy of every proof in flight together, copies interleaved.
    let tasks: Vec<_> = (0..COPIES)
        .flat_map(|_| proofs.iter())
        .map(|proof| spawn_get(&c, &s.base_url(), &auth, proof))
        .collect();
    let mut ok = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_dpop_challenge(&reply, "invalid_dpop_proof");
        }
    }
    assert_eq!(ok, PROOFS);
    let stats = s.stats();
    assert_eq!(stats.api_ok, PROOFS as u64);
    assert_eq!(stats.dpop.jti_replays, (PROOFS * (COPIES - 1)) as u64);
    assert_eq!(stats.dpop.proofs_rejected.replay, stats.dpop.jti_replays);
    // The login's proof and the first copy of each.
    assert_eq!(stats.dpop.proofs_accepted, PROOFS as u64 + 1);
    assert_eq!(stats.dpop.replay_cache_len, PROOFS as u64 + 1);
    s.shutdown().await;
}
