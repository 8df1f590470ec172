//! `RedisStore` against a real Redis (`TOKENKEEPER_REDIS_URL`, started by `scripts/redis.sh`):
//! format, the lock's Redis-specific parts (token-checked release, the fence's answers, a failed
//! renewal) and a session that keeps working when Redis misbehaves. What every shared store
//! promises (compare-and-set, exclusion, renewal, expiry, cancellation, kill -9, a dropped
//! connection) is in `store_conformance`.
//!
//! Without `TOKENKEEPER_REDIS_URL` these tests fail when `CI` is set, and otherwise skip with a
//! loud message.

use crate::common;
use crate::redis_env;
use crate::store_conformance::pair;

use common::*;
use redis_env::{raw, redis_url, unique_key};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tokenkeeper::Event;
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::store::{FileStore, MAX_GENERATION, RedisStore, StoreError, TokenStore};

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

/// A document as another writer (or an older build) may have left it, with any generation.
fn document_with_generation(generation: &str) -> String {
    format!(
        r#"{{"version":1,"generation":{generation},"access_token":"old","refresh_token":null,"received_at_ms":0,"expires_at_ms":null}}"#
    )
}

/// Generations out of range are corrupt when loaded, never wrapped; and a save over such a
/// document really writes. (Before, the save script returned the out-of-range generation, Redis
/// turned the double 1.8e19 into the integer reply i64::MIN, and the save reported success
/// without writing anything.)
#[tokio::test]
async fn generations_out_of_range_are_corrupt_and_get_replaced_by_a_save() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("overflow");
    let store = store(&url, &key).await;
    for generation in [u64::MAX.to_string(), (MAX_GENERATION + 1).to_string()] {
        let () = raw(
            &url,
            redis::cmd("SET")
                .arg(&key)
                .arg(document_with_generation(&generation)),
        )
        .await;
        match store.load().await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("generation"), "{message}");
            }
            other => panic!("generation {generation}: expected Corrupt, got {other:?}"),
        }
        store.save(&pair("fresh", 3)).await.unwrap();
        let loaded = store.load().await.unwrap().unwrap();
        assert_eq!(loaded.generation, 3, "the save was not written");
        assert_eq!(loaded.tokens.access_token().expose_secret(), "fresh");
    }
    // The largest generation is stored, loaded and compared exactly.
    store.save(&pair("largest", MAX_GENERATION)).await.unwrap();
    assert_eq!(
        store.load().await.unwrap().unwrap().generation,
        MAX_GENERATION
    );
    assert!(matches!(
        store.save(&pair("older", MAX_GENERATION - 1)).await,
        Err(StoreError::StaleWrite {
            stored: MAX_GENERATION,
            ..
        })
    ));
    assert!(matches!(
        store.save(&pair("beyond", u64::MAX)).await,
        Err(StoreError::GenerationOutOfRange {
            generation: u64::MAX
        })
    ));
    store.clear().await.unwrap();
}

/// The lock is a lease, so its guard is fenced: it reports whether the lock is still ours.
#[tokio::test]
async fn a_held_lock_reports_when_it_was_deleted_expired_or_taken() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("fence");
    let store = store(&url, &key).await.lock_ttl(Duration::from_secs(5));
    assert_eq!(store.lock_lease(), Some(Duration::from_secs(5)));
    assert_eq!(
        Arc::new(store.clone()).lock_lease(),
        Some(Duration::from_secs(5))
    );

    let held = store.lock().await.unwrap();
    assert!(held.still_held().await.unwrap());
    let () = raw(&url, redis::cmd("DEL").arg(store.lock_key())).await;
    assert!(!held.still_held().await.unwrap(), "deleted");
    drop(held);

    let held = store.lock().await.unwrap();
    let _: i64 = raw(&url, redis::cmd("PEXPIRE").arg(store.lock_key()).arg(1)).await;
    tokio::time::sleep(ms(20)).await;
    assert!(!held.still_held().await.unwrap(), "expired");
    drop(held);

    let held = store.lock().await.unwrap();
    let () = raw(
        &url,
        redis::cmd("SET")
            .arg(store.lock_key())
            .arg("someone-else")
            .arg("PX")
            .arg(10_000),
    )
    .await;
    assert!(!held.still_held().await.unwrap(), "taken by another holder");
    drop(held);
    let () = raw(&url, redis::cmd("DEL").arg(store.lock_key())).await;
}

/// A failed renewal is recorded by the renewal task: from then on the guard says "not held"
/// without asking Redis, even if the lock's value later reads as ours again.
#[tokio::test]
async fn a_failed_renewal_makes_the_lock_lost_for_good() {
    let Some(url) = redis_url() else { return };
    let key = unique_key("renewal");
    let store = store(&url, &key).await.lock_ttl(ms(300));
    let held = store.lock().await.unwrap();
    let ours: String = raw(&url, redis::cmd("GET").arg(store.lock_key())).await;
    // Someone else holds it while a renewal runs (every 100 ms)...
    let () = raw(
        &url,
        redis::cmd("SET")
            .arg(store.lock_key())
            .arg("someone-else")
            .arg("PX")
            .arg(10_000),
    )
    .await;
    tokio::time::sleep(ms(250)).await;
    // ...then the value is ours again: the lease was still interrupted.
    let () = raw(
        &url,
        redis::cmd("SET")
            .arg(store.lock_key())
            .arg(&ours)
            .arg("PX")
            .arg(10_000),
    )
    .await;
    assert!(!held.still_held().await.unwrap());
    drop(held);
    let () = raw(&url, redis::cmd("DEL").arg(store.lock_key())).await;
}

/// A TCP proxy in front of Redis that can stop answering: it keeps every connection open and
/// reads what clients send, but delivers nothing in either direction once frozen (a hung Redis,
/// a network partition without resets).
struct FreezingProxy {
    url: String,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    async fn start(redis_url: &str) -> Self {
        let target = redis_url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}/", listener.local_addr().unwrap());
        let frozen = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let frozen = Arc::clone(&frozen);
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(client_read, server_write, Arc::clone(&frozen)));
                    tokio::spawn(pump(server_read, client_write, Arc::clone(&frozen)));
                }
            }
        });
        Self { url, frozen, task }
    }

    fn freeze(&self) {
        self.frozen.store(true, Relaxed);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if frozen.load(Relaxed) {
            // Swallow it: the peer waits for an answer that never comes.
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Every store call against a Redis that stopped answering fails within the store's own command
/// timeout (2 s) with a typed error, and a held lock whose renewal timed out reports itself lost
/// without another round trip. The outer timeouts only catch a hang; they are not the measure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_an_error_within_the_command_timeout_not_a_hang() {
    let Some(url) = redis_url() else { return };
    let proxy = FreezingProxy::start(&url).await;
    let key = unique_key("hung");
    let store = RedisStore::connect(&proxy.url, &key)
        .await
        .unwrap()
        .lock_ttl(ms(300));
    store.save(&pair("before", 1)).await.unwrap();
    let held = store.lock().await.unwrap();
    assert!(held.still_held().await.unwrap());

    proxy.freeze();
    let bound = Duration::from_secs(20);
    let load = tokio::time::timeout(bound, store.load()).await;
    assert!(matches!(load, Ok(Err(StoreError::Backend(_)))), "{load:?}");
    let save = tokio::time::timeout(bound, store.save(&pair("after", 2))).await;
    assert!(matches!(save, Ok(Err(StoreError::Backend(_)))), "{save:?}");
    let other = RedisStore::connect(&url, &key).await.unwrap();
    let lock = tokio::time::timeout(bound, store.lock()).await;
    assert!(matches!(lock, Ok(Err(StoreError::Backend(_)))), "{lock:?}");
    // By now a renewal of the held lock has timed out too: lost, answered without Redis.
    let still_held = tokio::time::timeout(bound, held.still_held()).await;
    assert!(matches!(still_held, Ok(Ok(false))), "{still_held:?}");
    drop(held);
    other.clear().await.unwrap();
    let () = raw(&url, redis::cmd("DEL").arg(other.lock_key())).await;
}

/// A server that accepts the connection and never says a word: connecting fails within the
/// connection timeout instead of waiting forever for the handshake's answer.
#[tokio::test]
async fn a_redis_that_accepts_and_never_answers_is_an_error_not_a_hang() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let connected =
        tokio::time::timeout(Duration::from_secs(20), RedisStore::connect(&url, "silent")).await;
    match connected {
        Ok(Err(StoreError::Backend(message))) => assert!(message.contains("Redis"), "{message}"),
        Ok(Ok(store)) => {
            let load = tokio::time::timeout(Duration::from_secs(20), store.load()).await;
            assert!(matches!(load, Ok(Err(StoreError::Backend(_)))), "{load:?}");
        }
        Ok(Err(other)) => panic!("expected a backend error, got {other:?}"),
        Err(_) => panic!("connecting to a silent server hung"),
    }
    silent.abort();
}
