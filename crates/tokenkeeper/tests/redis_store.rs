//! `RedisStore` against a real Redis (`TOKENKEEPER_REDIS_URL`, started by `scripts/redis.sh`):
//! format, compare-and-set, the lock (exclusion, renewal, expiry, token-checked release) and
//! a session that keeps working when Redis misbehaves.
//!
//! Without `TOKENKEEPER_REDIS_URL` these tests fail when `CI` is set, and otherwise skip with a
//! loud message.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod redis_env;

use common::*;
use redis_env::{raw, redis_url, unique_key};
use std::time::Duration;
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::store::{FileStore, RedisStore, StoreError, StoredTokens, TokenStore};
use tokenkeeper::{Event, TokenSet};

fn pair(access: &str, generation: u64) -> StoredTokens {
    StoredTokens {
        tokens: TokenSet::new(access)
            .with_refresh_token(format!("{access}-refresh"))
            .with_expires_in(Duration::from_secs(60)),
        generation,
    }
}

async fn store(url: &str, key: &str) -> RedisStore {
    RedisStore::connect(url, key).await.unwrap()
}

#[tokio::test]
async fn saves_loads_and_clears_the_same_document_as_the_file_store() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("roundtrip");
    let store = store(&url, &key).await;
    assert!(store.load().await.unwrap().is_none());
    let stored = pair("redis-access", 3);
    store.save(&stored).await.unwrap();
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!(loaded.generation, 3);
    assert_eq!(loaded.tokens.access_token().expose_secret(), "redis-access");

    // Byte for byte what a FileStore writes.
    let dir = tempfile::tempdir().unwrap();
    let file = FileStore::open(dir.path().join("t.json")).unwrap();
    file.save(&stored).await.unwrap();
    let in_redis: Vec<u8> = raw(&url, redis::cmd("GET").arg(&key)).await;
    assert_eq!(in_redis, std::fs::read(file.path()).unwrap());

    store.clear().await.unwrap();
    assert!(store.load().await.unwrap().is_none());
    let debug = format!("{store:?}");
    assert!(
        debug.contains(&key) && !debug.contains("redis-access"),
        "{debug}"
    );
}

#[tokio::test]
async fn compare_and_set_refuses_stale_writers() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("cas");
    let one = store(&url, &key).await;
    let other = store(&url, &key).await;
    one.save(&pair("five", 5)).await.unwrap();
    match other.save(&pair("four", 4)).await {
        Err(StoreError::StaleWrite {
            stored: 5,
            attempted: 4,
        }) => {}
        other => panic!("expected a stale write, got {other:?}"),
    }
    assert!(matches!(
        other.save(&pair("another-five", 5)).await,
        Err(StoreError::StaleWrite { .. })
    ));
    // Re-saving exactly what is stored is not a conflict.
    let five = other.load().await.unwrap().unwrap();
    other.save(&five).await.unwrap();
    other.save(&pair("six", 6)).await.unwrap();
    assert_eq!(one.load().await.unwrap().unwrap().generation, 6);
    one.clear().await.unwrap();
}

#[tokio::test]
async fn corrupt_values_are_typed_errors() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("corrupt");
    let store = store(&url, &key).await;
    for bad in [
        &b""[..],
        b"garbage",
        b"{\"version\":1,\"generation\":2,\"access_tok",
    ] {
        let () = raw(&url, redis::cmd("SET").arg(&key).arg(bad)).await;
        match store.load().await {
            Err(StoreError::Corrupt(message)) => assert!(message.contains(&key), "{message}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // A refresh may write a good pair over it (the session reports the failed load first).
    store.save(&pair("fresh", 1)).await.unwrap();
    assert_eq!(store.load().await.unwrap().unwrap().generation, 1);
    store.clear().await.unwrap();
}

#[tokio::test]
async fn the_lock_excludes_other_instances_and_is_released_on_drop() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("lock");
    let first = store(&url, &key).await;
    let second = store(&url, &key).await;
    let held = first.lock().await.unwrap();
    assert!(tokio::time::timeout(ms(200), second.lock()).await.is_err());
    drop(held);
    let again = tokio::time::timeout(Duration::from_secs(10), second.lock())
        .await
        .expect("released on drop")
        .unwrap();
    drop(again);
    // The release is spawned: wait for the key to go.
    wait_until_gone(&url, second.lock_key()).await;
}

#[tokio::test]
async fn a_held_lock_is_renewed_past_its_ttl() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("renew");
    let holder = store(&url, &key).await.lock_ttl(ms(500));
    let other = store(&url, &key).await.lock_ttl(ms(500));
    let held = holder.lock().await.unwrap();
    // Three TTLs later, the lock is still ours.
    assert!(tokio::time::timeout(ms(1500), other.lock()).await.is_err());
    let ttl: i64 = raw(&url, redis::cmd("PTTL").arg(holder.lock_key())).await;
    assert!(ttl > 0, "the lock is alive with a TTL ({ttl})");
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), other.lock())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_dead_holders_lock_expires_and_is_taken_over() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("dead");
    let store = store(&url, &key).await;
    // A holder that will never renew nor release.
    let () = raw(
        &url,
        redis::cmd("SET")
            .arg(store.lock_key())
            .arg("a-dead-process")
            .arg("PX")
            .arg(400),
    )
    .await;
    let taken = tokio::time::timeout(Duration::from_secs(10), store.lock()).await;
    assert!(taken.is_ok(), "taken over after the TTL");
}

#[tokio::test]
async fn the_release_only_deletes_our_own_lock() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("token");
    let store = store(&url, &key).await.lock_ttl(ms(300));
    let held = store.lock().await.unwrap();
    // Our lock vanished (say we were paused past the TTL) and someone else took it.
    let () = raw(
        &url,
        redis::cmd("SET")
            .arg(store.lock_key())
            .arg("someone-else")
            .arg("PX")
            .arg(10_000),
    )
    .await;
    drop(held);
    tokio::time::sleep(ms(400)).await;
    let owner: Option<String> = raw(&url, redis::cmd("GET").arg(store.lock_key())).await;
    assert_eq!(owner.as_deref(), Some("someone-else"));
    let () = raw(&url, redis::cmd("DEL").arg(store.lock_key())).await;
}

#[tokio::test]
async fn a_cancelled_lock_attempt_leaves_nothing_behind() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("cancel");
    let store = store(&url, &key).await;
    for _ in 0..20 {
        // Cancelled at every stage, including after the SET went out: whatever we took is given
        // back, so the next attempt succeeds at once rather than after the TTL.
        let _ = tokio::time::timeout(
            Duration::from_micros(rand::random_range(0..400)),
            store.lock(),
        )
        .await;
        tokio::time::timeout(Duration::from_secs(5), store.lock())
            .await
            .expect("not left locked for the TTL")
            .unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let started = std::time::Instant::now();
    let connected = RedisStore::connect("redis://127.0.0.1:1/", "nowhere").await;
    match connected {
        Err(StoreError::Backend(message)) => assert!(message.contains("Redis"), "{message}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let invalid = RedisStore::connect("redis://user:hunter2@[bad", "k").await;
    let message = invalid.unwrap_err().to_string();
    assert!(!message.contains("hunter2"), "{message}");
}

/// Redis refuses the writes (the key holds another type): the session keeps working on the
/// tokens in memory and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_redis_keeps_the_session_working_and_emits_store_failed() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("wrongtype");
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let redis_store = store(&url, &key).await;
    let (session, client) = session(&server, Contract::Json, |b| b.store(redis_store)).await;
    let mut events = session.events();
    let () = raw(&url, redis::cmd("DEL").arg(&key)).await;
    let _: i64 = raw(&url, redis::cmd("LPUSH").arg(&key).arg("not-a-token")).await;
    for round in 0..2 {
        tokio::time::sleep(ms(320)).await;
        let response = client
            .get(server.url(&format!("/api/items/{round}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let events: Vec<Event> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    let saves = events
        .iter()
        .filter(|e| matches!(e, Event::StoreFailed { reason } if reason.starts_with("save: ")))
        .count();
    assert!(saves >= 2, "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::LoggedOut { .. })));
    let () = raw(&url, redis::cmd("DEL").arg(&key)).await;
    server.shutdown().await;
}

async fn wait_until_gone(url: &str, key: &str) {
    for _ in 0..200 {
        let exists: i64 = raw(url, redis::cmd("EXISTS").arg(key)).await;
        if exists == 0 {
            return;
        }
        tokio::time::sleep(ms(10)).await;
    }
    panic!("{key} was never released");
}
