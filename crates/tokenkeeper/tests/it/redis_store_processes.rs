//! `RedisStore` shared by real child processes: one refresh per expiry across eight processes,
//! and a lock holder killed mid-refresh.
//!
//! Needs `TOKENKEEPER_REDIS_URL` (see `scripts/redis.sh`): without it these tests fail when `CI`
//! is set, and otherwise skip with a loud message.

use crate::common;
use crate::redis_env;
use crate::store_worker;

use common::*;
use redis_env::{redis_url, unique_key};
use std::sync::Arc;
use std::time::Duration;
use store_worker::{Mode, StoreSpec, WorkerConfig};
use tokenkeeper::store::{RedisStore, TokenStore};
use tokenkeeper::{Error, LogoutReason, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_share_one_login_through_redis_and_refresh_once_per_expiry() {
    let Some(url) = redis_url() else { return };
    store_worker::eight_processes_share_one_login_and_refresh_once_per_expiry(StoreSpec::Redis {
        url,
        key: unique_key("eight"),
        lock_ttl_ms: Some(2_000),
    })
    .await;
}

/// One child process takes the Redis lock and calls the refresh endpoint (slow here), and is
/// killed with SIGKILL before the answer. Another instance waits out the lock's TTL, takes over,
/// and refreshes; nothing hangs.
///
/// The server had already rotated when the holder died, so the new refresh token died with it:
/// with a grace period the next instance's refresh with the previous token succeeds; without
/// one it is reuse, and the session ends cleanly, once (see the next test).
async fn kill_the_lock_holder_mid_refresh(
    grace: Duration,
) -> (Session, Arc<dyn TokenStore>, Stats, Result<u16, Error>) {
    let url = redis_url().expect("checked by the caller");
    let key = unique_key("holder");
    let server = start(
        ServerConfig::default()
            .with_access_ttl(ms(600))
            .with_grace_period(grace)
            .with_latency(Latency {
                refresh: Duration::from_secs(3),
                ..Latency::default()
            }),
    )
    .await;
    let lock_ttl = ms(1000);
    let store: Arc<dyn TokenStore> = Arc::new(
        RedisStore::connect(&url, key.clone())
            .await
            .unwrap()
            .lock_ttl(lock_ttl),
    );
    let first = store_worker::sign_in(&server.base_url(), Arc::clone(&store)).await;

    // The instance that will take over, restored now, before anything is refreshed.
    let survivor = Session::builder()
        .refresher(tokenkeeper::refresh::Json::new(&server.url("/refresh/token")).unwrap())
        .store_arc(Arc::clone(&store))
        .attach_to([server.base_url()])
        .build()
        .unwrap();
    assert!(survivor.restore().await.unwrap());

    let worker = store_worker::spawn(&WorkerConfig {
        store: StoreSpec::Redis {
            url: url.clone(),
            key: key.clone(),
            lock_ttl_ms: Some(u64::try_from(lock_ttl.as_millis()).unwrap()),
        },
        mode: Mode::Requests,
        base_url: server.base_url(),
        tasks: 2,
        duration_ms: 30_000,
        pause_ms: 20,
        stop_file: None,
    });
    // Wait until the child's refresh reached the server (it holds the lock, and the server has
    // rotated), then kill it before the answer arrives.
    let lock_key = format!("{key}:lock");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let holder: Option<String> =
                redis_env::raw(&url, redis::cmd("GET").arg(&lock_key)).await;
            if holder.is_some() && server.stats().refresh_calls == 1 {
                break;
            }
            tokio::time::sleep(ms(10)).await;
        }
    })
    .await
    .expect("the child refreshes");
    crate::child::kill(worker).await;
    assert_eq!(
        server.stats().rotations,
        1,
        "the server rotated before the kill"
    );
    server.set_latency(Latency::default());
    assert_eq!(
        store.load().await.unwrap().unwrap().generation,
        first,
        "nothing was saved"
    );

    // The survivor's token expires; its refresh waits out the dead holder's lock and proceeds.
    tokio::time::sleep(ms(600)).await;
    let client = client(&survivor);
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        match client
            .get(server.url("/api/items/after-takeover"))
            .send()
            .await
        {
            Ok(response) => Ok(response.status().as_u16()),
            Err(error) => Err(tk_error(&error).cloned().expect("a tokenkeeper error")),
        }
    })
    .await
    .expect("nothing hangs");
    let stats = server.stats();
    eprintln!(
        "grace {grace:?}: survivor got {outcome:?}; server: {} refresh calls, {} rotations, {} \
         grace hits, {} reuse detections",
        stats.refresh_calls, stats.rotations, stats.grace_hits, stats.reuse_detections
    );
    server.shutdown().await;
    (survivor, store, stats, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_is_taken_over_after_the_ttl() {
    if redis_url().is_none() {
        return;
    }
    let _heavy = crate::heavy().await;
    let (survivor, store, stats, outcome) =
        kill_the_lock_holder_mid_refresh(Duration::from_secs(30)).await;
    assert_eq!(outcome.unwrap(), 200);
    // The survivor presented the dead holder's (already rotated) token within the grace period.
    // The pair it got back is the one issued to the dead holder, possibly expired by now, in
    // which case one more (ordinary) refresh follows.
    assert_eq!(stats.grace_hits, 1);
    assert_eq!(stats.reuse_detections, 0);
    assert!(survivor.stats().refreshes >= 1);
    assert_eq!(survivor.stats().logouts, 0);
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.generation, survivor.snapshot().unwrap().generation());
    store.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_without_server_grace_ends_the_session_cleanly() {
    if redis_url().is_none() {
        return;
    }
    let _heavy = crate::heavy().await;
    let (survivor, store, stats, outcome) = kill_the_lock_holder_mid_refresh(Duration::ZERO).await;
    assert_eq!(
        stats.refresh_calls, 2,
        "the survivor tried once after taking over"
    );
    assert_eq!(stats.reuse_detections, 1);
    match outcome {
        Err(Error::SessionExpired(LogoutReason::RefreshRejected(_))) => {}
        other => panic!("expected the session to end, got {other:?}"),
    }
    assert_eq!(survivor.stats().logouts, 1);
    assert!(matches!(survivor.snapshot(), Err(Error::LoginRequired)));
    assert!(
        store.load().await.unwrap().is_none(),
        "the dead login is cleared for everyone"
    );
}
