//! `PostgresStore` against a real PostgreSQL (`TOKENKEEPER_POSTGRES_URL`, started by
//! `scripts/postgres.sh`): format, the schema migration, compare-and-set raced, the lease's
//! PostgreSQL-specific parts (its `Debug`, the renewal's stop), a dropped connection reopened,
//! corrupt rows, and two sessions sharing one login. What every shared store promises
//! (compare-and-set, exclusion, renewal, expiry, fencing, cancellation, kill -9, a dropped
//! connection mid-refresh) is in `store_conformance`.
//!
//! Without `TOKENKEEPER_POSTGRES_URL` these tests fail when `CI` is set, and otherwise skip with
//! a loud message.

use crate::common;
use crate::postgres_env;
use crate::store_conformance::pair;

use common::*;
use postgres_env::{execute, postgres_url, query, store, unique_key};
use std::time::{Duration, Instant};
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::store::{FileStore, MAX_GENERATION, PostgresStore, StoreError, TokenStore};
use tokenkeeper::{Event, Session};

async fn lease_holder(url: &str, key: &str) -> Option<String> {
    query(
        url,
        "SELECT holder FROM tokenkeeper_locks WHERE key = $1",
        &[&key],
    )
    .await
    .first()
    .map(|row| row.get(0))
}

#[tokio::test]
async fn saves_loads_and_clears_the_same_document_as_the_file_store() {
    let Some(url) = postgres_url() else { return };
    let key = unique_key("roundtrip");
    let store = store(&url, &key).await;
    store.migrate().await.unwrap(); // idempotent
    assert!(store.load().await.unwrap().is_none());
    let stored = pair("postgres-access", 3);
    store.save(&stored).await.unwrap();
    let loaded = store.load().await.unwrap().unwrap();
    assert_eq!(loaded.generation, 3);
    assert_eq!(
        loaded.tokens.access_token().expose_secret(),
        "postgres-access"
    );

    // Byte for byte what a FileStore writes, and the generation column agrees.
    let dir = tempfile::tempdir().unwrap();
    let file = FileStore::open(dir.path().join("t.json")).unwrap();
    file.save(&stored).await.unwrap();
    let rows = query(
        &url,
        "SELECT generation, tokens FROM tokenkeeper_tokens WHERE key = $1",
        &[&key],
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 3);
    assert_eq!(
        rows[0].get::<_, Vec<u8>>(1),
        std::fs::read(file.path()).unwrap()
    );

    store.clear().await.unwrap();
    assert!(store.load().await.unwrap().is_none());
    let debug = format!("{store:?}");
    assert!(
        debug.contains(&key) && !debug.contains("postgres-access") && !debug.contains("://"),
        "{debug}"
    );
}

#[tokio::test]
async fn corrupt_rows_are_typed_errors() {
    let Some(url) = postgres_url() else { return };
    let key = unique_key("corrupt");
    let store = store(&url, &key).await;
    let upsert = "INSERT INTO tokenkeeper_tokens (key, generation, tokens) VALUES ($1, $2, $3) \
                  ON CONFLICT (key) DO UPDATE SET generation = $2, tokens = $3";
    let max = i64::MAX;
    let rows: [(i64, Vec<u8>, &str); 7] = [
        (0, b"".to_vec(), "empty"),
        (0, b"garbage".to_vec(), "not valid JSON"),
        (
            0,
            b"{\"version\":1,\"generation\":0,\"access_tok".to_vec(),
            "truncated",
        ),
        // The columns disagree with the document.
        (0, file_document(2).await, "differ"),
        // At the column's limit: the next refresh could never be saved.
        (max, file_document(0).await, "out of range"),
        // Above what any store holds (and the document agrees).
        (
            i64::try_from(MAX_GENERATION).unwrap() + 1,
            file_document(0).await,
            "out of range",
        ),
        (
            0,
            file_document(0)
                .await
                .into_iter()
                .map(|b| if b == b'{' { b'[' } else { b })
                .collect(),
            "JSON",
        ),
    ];
    for (generation, document, why) in rows {
        execute(&url, upsert, &[&key, &generation, &document]).await;
        match store.load().await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(&key), "{message}");
                assert!(message.contains(why), "expected {why:?} in {message}");
                assert!(!message.contains("good"), "{message}");
            }
            other => panic!("expected Corrupt ({why}), got {other:?}"),
        }
    }
    // A generation PostgreSQL cannot hold is refused before anything is sent.
    match store.save(&pair("huge", u64::MAX)).await {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("bigint"), "{message}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A refresh may write a good pair over a corrupt row (the session reports the failed load
    // first).
    execute(&url, upsert, &[&key, &0i64, &b"garbage".to_vec()]).await;
    store.save(&pair("fresh", 1)).await.unwrap();
    assert_eq!(store.load().await.unwrap().unwrap().generation, 1);
    store.clear().await.unwrap();
}

/// The renewal keeps the fence's answer honest: a lease taken over by someone else is noticed
/// by the renewal task too, which stops renewing it.
#[tokio::test]
async fn the_renewal_stops_once_another_holder_has_the_lease() {
    let Some(url) = postgres_url() else { return };
    let key = unique_key("stolen");
    let store = store(&url, &key).await.lock_ttl(ms(300));
    let lease = store.lease().await.unwrap();
    assert!(format!("{lease:?}").contains("lost: false"), "{lease:?}");
    execute(
        &url,
        "UPDATE tokenkeeper_locks SET holder = 'someone-else', \
         expires_at = clock_timestamp() + interval '10 seconds' WHERE key = $1",
        &[&key],
    )
    .await;
    // Past a renewal: it found the lease gone and marked it lost.
    tokio::time::sleep(ms(250)).await;
    assert!(format!("{lease:?}").contains("lost: true"), "{lease:?}");
    assert!(!lease.still_held().await.unwrap());
    assert_eq!(
        lease_holder(&url, &key).await.as_deref(),
        Some("someone-else")
    );
    drop(lease);
    execute(
        &url,
        "DELETE FROM tokenkeeper_locks WHERE key = $1",
        &[&key],
    )
    .await;
}

/// The server ends the store's connection (a restart, a failover, an idle-session killer): the
/// call that meets the dead connection fails, the next one reconnects.
#[tokio::test]
async fn a_dropped_connection_is_reopened_by_the_next_call() {
    let Some(url) = postgres_url() else { return };
    let key = unique_key("dropped");
    let name = format!("tk-dropped-{:08x}", rand::random::<u32>());
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = PostgresStore::connect(&format!("{url}{separator}application_name={name}"), &key)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.save(&pair("before", 1)).await.unwrap();
    let killed = query(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        &[&name],
    )
    .await;
    assert_eq!(killed.len(), 1, "the store's one connection");
    let mut failures = 0;
    let loaded = loop {
        match store.load().await {
            Ok(loaded) => break loaded,
            Err(StoreError::Backend(message)) if failures == 0 => {
                assert!(message.contains("PostgreSQL"), "{message}");
                failures += 1;
            }
            Err(other) => panic!("not reconnected: {other:?}"),
        }
    };
    assert_eq!(loaded.unwrap().generation, 1);
    store.clear().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_or_silent_server_is_an_error_not_a_hang() {
    let started = Instant::now();
    match PostgresStore::connect("postgres://u:hunter2@127.0.0.1:1/db", "nowhere").await {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("PostgreSQL"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let invalid = PostgresStore::connect("postgres://user:hunter2@[bad", "k").await;
    let message = invalid.unwrap_err().to_string();
    assert!(!message.contains("hunter2"), "{message}");

    // Accepts the TCP connection, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://u@127.0.0.1:{port}/db");
    match PostgresStore::connect_with_timeout(&url, "k", ms(300)).await {
        Err(StoreError::Timeout { operation, after }) => {
            assert_eq!((operation, after), ("connect", ms(300)));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Two sessions (two processes' worth) over one row: after expiry, both get requests at once;
/// one refreshes, the other adopts the pair it saved under the lease. The server sees one
/// refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_sharing_a_row_refresh_once_per_expiry() {
    let Some(url) = postgres_url() else { return };
    let key = unique_key("sessions");
    let server = start(
        ServerConfig::default()
            .with_access_ttl(ms(400))
            .with_grace_period(Duration::ZERO),
    )
    .await;
    let first_store = store(&url, &key).await;
    let (first, first_client) = session(&server, Contract::Json, |b| b.store(first_store)).await;
    let (_, refresher) = login(&server, Contract::Json).await;
    let second = Session::builder()
        .refresher_arc(refresher)
        .store(store(&url, &key).await)
        .attach_to([server.base_url()])
        .build()
        .unwrap();
    assert!(second.restore().await.unwrap());
    let second_client = client(&second);
    let mut first_events = first.events();
    let mut second_events = second.events();
    let before = server.stats();

    for round in 0..3 {
        tokio::time::sleep(ms(420)).await;
        let requests = (0..20).map(|i| {
            let client = if i % 2 == 0 {
                first_client.clone()
            } else {
                second_client.clone()
            };
            let url = server.url(&format!("/api/items/{round}-{i}"));
            async move { client.get(url).send().await.unwrap().status().as_u16() }
        });
        let statuses = futures_util::future::join_all(requests).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    let stats = delta(&before, &server.stats());
    assert_eq!(stats.reuse_detections, 0);
    assert_eq!(stats.refresh_calls, 3, "one refresh per expiry: {stats:?}");
    let events: Vec<Event> = std::iter::from_fn(|| first_events.try_recv().ok())
        .chain(std::iter::from_fn(|| second_events.try_recv().ok()))
        .collect();
    let refreshed = events
        .iter()
        .filter(|e| matches!(e, Event::Refreshed { .. }))
        .count();
    let adopted = events
        .iter()
        .filter(|e| matches!(e, Event::Adopted { .. }))
        .count();
    assert_eq!(refreshed, 3, "{events:?}");
    assert!(adopted >= 3, "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::StoreFailed { .. } | Event::LoggedOut { .. })),
        "{events:?}"
    );
    let stored = store(&url, &key).await.load().await.unwrap().unwrap();
    assert_eq!(stored.generation, first.snapshot().unwrap().generation());
    assert_eq!(stored.generation, second.snapshot().unwrap().generation());
    first.sign_out().await.unwrap();
    server.shutdown().await;
}

/// Exactly what a FileStore writes for `pair("good", generation)`.
async fn file_document(generation: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = FileStore::open(dir.path().join("t.json")).unwrap();
    file.save(&pair("good", generation)).await.unwrap();
    std::fs::read(file.path()).unwrap()
}
