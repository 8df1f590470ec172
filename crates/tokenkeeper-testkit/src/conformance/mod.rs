//! What every shared [`TokenStore`] promises, as async functions any store can run: each takes
//! a fresh [`Backend`] (a *place* of the store: a file, a Redis key, a PostgreSQL row, and the
//! factory of handles on it as separate processes would have them) and panics when the store
//! breaks a promise. A test binary calls each one from a test of its own; the library's
//! `store_conformance` module does it for every built-in store.
//!
//! | test                                                                      | needs       |
//! |---------------------------------------------------------------------------|-------------|
//! | [`the_lock_excludes_another_handle_and_is_released_on_drop`]              | [`Backend`] |
//! | [`a_cancelled_lock_attempt_leaves_nothing_behind`]                        | [`Backend`] |
//! | [`stale_writes_are_refused`] (compare-and-set)                            | [`Backend`] |
//! | [`racing_writers_of_one_generation_have_exactly_one_winner`] (1)          | [`Backend`] |
//! | [`kill_9_of_a_lock_holder_frees_the_lock_and_leaves_the_pair_whole`]      | [`Shared`]  |
//! | [`a_held_lease_is_renewed_past_its_ttl`]                                  | [`Leased`]  |
//! | [`a_dead_holders_lease_expires_and_is_taken_over`]                        | [`Leased`]  |
//! | [`a_lost_lease_is_reported_by_the_fence_and_never_taken_back`]            | [`Leased`]  |
//! | [`a_dropped_connection_mid_refresh_loses_the_lease_not_the_pair`]         | [`Leased`]  |
//!
//! (1) For stores whose compare-and-set is atomic among writers that do not hold the lock.
//! `FileStore`'s is a check, then a rename: atomic among the lock's holders (as the session's
//! writers are), so it does not run this one. A store that is one process's store
//! (`MemoryStore`) runs the two lock tests only.

// A conformance test fails by panicking, as any test does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backend;
pub mod proxy;

pub use backend::{Backend, Leased, Shared, is_unreachable};

use std::time::Duration;
use tokenkeeper::TokenSet;
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::store::{StoreError, StoredTokens, TokenStore};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// `kill -9` of a process, and reaps it (on a blocking thread: the runtime keeps serving).
async fn kill_9(mut process: std::process::Child) {
    tokio::task::spawn_blocking(move || {
        process.kill().expect("kill -9");
        process.wait().expect("reap the killed process");
    })
    .await
    .unwrap();
}

/// A pair whose access token is `access` (refresh token `<access>-refresh`) at `generation`.
pub fn pair(access: &str, generation: u64) -> StoredTokens {
    StoredTokens {
        tokens: TokenSet::new(access)
            .with_refresh_token(format!("{access}-refresh"))
            .with_expires_in(Duration::from_secs(60)),
        generation,
        login: None,
    }
}

/// Compare-and-set: an older generation never replaces a newer one, the same generation with
/// other secrets is a conflict too, re-saving exactly what is stored is not, and a newer
/// generation goes through and is what the other handle reads.
pub async fn stale_writes_are_refused<B: Backend>(place: B) {
    let one = place.handle(None).await;
    let other = place.handle(None).await;
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
        Err(StoreError::StaleWrite {
            stored: 5,
            attempted: 5
        })
    ));
    let five = other.load().await.unwrap().unwrap();
    assert_eq!(five.tokens.access_token().expose_secret(), "five");
    other.save(&five).await.unwrap();
    other.save(&pair("six", 6)).await.unwrap();
    let six = one.load().await.unwrap().unwrap();
    assert_eq!(six.generation, 6);
    assert_eq!(six.tokens.access_token().expose_secret(), "six");
    one.clear().await.unwrap();
}

/// Sixteen handles write the same next generation at once, round after round, without the
/// lock: exactly one write per generation wins, and every other writer is told which
/// generation beat it (the compare-and-set is atomic, not a read then a write).
pub async fn racing_writers_of_one_generation_have_exactly_one_winner<B: Backend>(place: B) {
    let mut writers = Vec::new();
    for _ in 0..16 {
        writers.push(place.handle(None).await);
    }
    for generation in 1..=5u64 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(writers.len()));
        let attempts = writers.iter().enumerate().map(|(i, writer)| {
            let writer = writer.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let result = writer.save(&pair(&format!("writer-{i}"), generation)).await;
                (i, result)
            })
        });
        let results = futures_util::future::join_all(attempts).await;
        let mut winners = Vec::new();
        for result in results {
            match result.unwrap() {
                (i, Ok(())) => winners.push(i),
                (_, Err(StoreError::StaleWrite { stored, attempted })) => {
                    assert_eq!((stored, attempted), (generation, generation));
                }
                (_, Err(other)) => panic!("unexpected error: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "generation {generation}: {winners:?}");
        let stored = writers[0].load().await.unwrap().unwrap();
        assert_eq!(stored.generation, generation);
        assert_eq!(
            stored.tokens.access_token().expose_secret(),
            format!("writer-{}", winners[0])
        );
    }
    writers[0].clear().await.unwrap();
}

/// Waits until nobody holds the place's lock (a lease's release is spawned when its guard
/// drops); panics if that never happens.
async fn wait_until_released<B: Backend>(place: &B) {
    for _ in 0..500 {
        if !place.lock_is_held().await {
            return;
        }
        tokio::time::sleep(ms(10)).await;
    }
    panic!("the lock was never released");
}

/// While one handle holds the lock, another handle's `lock()` waits (so do clones of one
/// handle); dropping the guard lets the next one in, and the backend shows the lock free.
pub async fn the_lock_excludes_another_handle_and_is_released_on_drop<B: Backend>(place: B) {
    let first = place.handle(None).await;
    let second = place.handle(None).await;
    // A lease for the stores whose lock is one; an OS file lock or a mutex has none.
    assert_eq!(first.lock_lease(), B::DEFAULT_LEASE);

    let held = first.lock().await.unwrap();
    assert!(held.still_held().await.unwrap());
    assert!(place.lock_is_held().await);
    let waiting = tokio::time::timeout(ms(200), second.lock()).await;
    assert!(waiting.is_err(), "a second holder got the lock");
    drop(held);
    // Well within a lease (10 s): released on drop, not by running out.
    let again = tokio::time::timeout(Duration::from_secs(5), second.lock())
        .await
        .expect("the lock is free after the guard dropped")
        .unwrap();
    // Clones of one handle exclude each other too.
    let clone = second.clone();
    let queued = tokio::spawn(async move { clone.lock().await.map(drop) });
    tokio::time::sleep(ms(50)).await;
    assert!(!queued.is_finished(), "a clone got the held lock");
    drop(again);
    tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    wait_until_released(&place).await;
}

/// A `lock()` future dropped while it waits, or at any instant of an uncontended attempt (after
/// the request went out, say), gives back whatever it may have taken: the next attempt gets the
/// lock at once, not after a lease (10 s by default) ran out, and never never.
pub async fn a_cancelled_lock_attempt_leaves_nothing_behind<B: Backend>(place: B) {
    let first = place.handle(None).await;
    let second = place.handle(None).await;
    for _ in 0..5 {
        let held = first.lock().await.unwrap();
        let waiting = tokio::time::timeout(ms(50), second.lock()).await;
        assert!(waiting.is_err(), "a second holder got the lock");
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), second.lock())
            .await
            .expect("not left locked by the cancelled waiter")
            .unwrap();
        drop(again);
    }
    for _ in 0..20 {
        let _ = tokio::time::timeout(
            Duration::from_micros(rand::random_range(0..600)),
            first.lock(),
        )
        .await;
        tokio::time::timeout(Duration::from_secs(5), first.lock())
            .await
            .expect("not left locked for the lease")
            .unwrap();
    }
}

/// A child process takes the lock, saves under it and is killed with SIGKILL while holding
/// it: the other handle waits while the child lives, gets the lock once the OS released it or
/// the child's lease ran out, and finds the child's pair whole.
pub async fn kill_9_of_a_lock_holder_frees_the_lock_and_leaves_the_pair_whole<B: Shared>(place: B) {
    let lease = Duration::from_secs(1);
    let store = place.handle(Some(lease)).await;
    store.save(&pair("before", 1)).await.unwrap();
    let holder = place.start_lock_holder(lease);
    // The child saves generation 2 once it holds the lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.load().await.unwrap().unwrap().generation < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child never saved"
        );
        tokio::time::sleep(ms(5)).await;
    }
    assert!(place.lock_is_held().await, "the child holds the lock");
    let waiting = tokio::time::timeout(ms(200), store.lock()).await;
    assert!(waiting.is_err(), "the lock was taken from a live holder");

    kill_9(holder).await;
    let taken = tokio::time::timeout(lease + Duration::from_secs(10), store.lock())
        .await
        .expect("the dead holder's lock comes free")
        .unwrap();
    let stored = store
        .load()
        .await
        .expect("a whole pair after the kill")
        .expect("the pair is still there");
    assert_eq!(stored.generation, 2);
    assert!(stored.tokens.refresh_token().is_some());
    store.save(&pair("after", 3)).await.unwrap();
    drop(taken);
    store.clear().await.unwrap();
}

/// A held lease outlives several TTLs: it is renewed while its guard lives.
pub async fn a_held_lease_is_renewed_past_its_ttl<B: Leased>(place: B) {
    let holder = place.handle(Some(ms(500))).await;
    let other = place.handle(Some(ms(500))).await;
    let held = holder.lock().await.unwrap();
    // Three TTLs later, the lease is still ours.
    assert!(tokio::time::timeout(ms(1500), other.lock()).await.is_err());
    assert!(place.lock_is_held().await, "the lease is unexpired");
    assert!(held.still_held().await.unwrap());
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), other.lock())
        .await
        .expect("released on drop")
        .unwrap();
}

/// A holder that died without releasing (its lease recorded in the backend, never renewed):
/// the lock waits for the lease to run out, then is taken over.
pub async fn a_dead_holders_lease_expires_and_is_taken_over<B: Leased>(place: B) {
    let store = place.handle(None).await;
    place.plant_dead_holder(ms(400)).await;
    assert!(
        tokio::time::timeout(ms(100), store.lock()).await.is_err(),
        "held until it expires"
    );
    let taken = tokio::time::timeout(Duration::from_secs(10), store.lock()).await;
    assert!(taken.is_ok(), "taken over after the TTL");
    assert_ne!(place.holder().await.as_deref(), Some("a-dead-process"));
}

/// The fence: a holder paused past its lease (here: the lease expired under it) learns it lost
/// the lease before it would present a refresh token, for good, and its release leaves the new
/// holder's lease alone.
pub async fn a_lost_lease_is_reported_by_the_fence_and_never_taken_back<B: Leased>(place: B) {
    let store = place.handle(Some(ms(300))).await;
    let held = store.lock().await.unwrap();
    assert!(held.still_held().await.unwrap());
    // Expired, nobody has taken it yet: lost all the same (someone may be about to).
    place.expire_lease().await;
    assert!(!held.still_held().await.unwrap());

    let other = place.handle(None).await;
    let taken = tokio::time::timeout(Duration::from_secs(5), other.lock())
        .await
        .expect("free once expired")
        .unwrap();
    let new_holder = place.holder().await;
    assert!(new_holder.is_some());
    assert!(!held.still_held().await.unwrap(), "taken back");
    drop(held);
    // The old guard's release (spawned) must not delete the new holder's lease.
    tokio::time::sleep(ms(200)).await;
    assert_eq!(place.holder().await, new_holder);
    assert!(place.lock_is_held().await);
    drop(taken);
    wait_until_released(&place).await;
}

/// Mid-refresh (lock held, pair re-read, successor not yet saved), the holder's connection is
/// ended on the server and it cannot reach the server again until its lease ran out: its calls
/// fail with typed errors, the other handle takes the lock over after the lease and finds the
/// pair whole, and once the holder is back, its lease is lost for good and its late save is a
/// refused stale write. Nothing panics or hangs.
pub async fn a_dropped_connection_mid_refresh_loses_the_lease_not_the_pair<B: Leased>(place: B) {
    let proxy = proxy::Proxy::start(&place.server()).await;
    let lease = Duration::from_secs(1);
    let other = place.handle(None).await;
    other.save(&pair("one", 1)).await.unwrap();
    let holder = place.handle_through(&proxy, lease).await;
    let held = holder.lock().await.unwrap();
    let read = holder.load().await.unwrap().unwrap();
    assert_eq!(read.generation, 1);

    let ports = proxy.cut();
    assert!(
        !ports.is_empty(),
        "the holder's connection goes through the proxy"
    );
    place.kill_connections(&ports).await;
    match holder.save(&pair("holder-two", 2)).await {
        Err(error) if is_unreachable(&error) => {}
        other => panic!("expected a typed error for the cut-off holder, got {other:?}"),
    }
    match held.still_held().await {
        Ok(false) => {}
        Err(error) if is_unreachable(&error) => {}
        Ok(true) => panic!("the cut-off holder still believes it holds the lease"),
        Err(other) => panic!("unexpected error: {other:?}"),
    }

    let taken = tokio::time::timeout(lease + Duration::from_secs(10), other.lock())
        .await
        .expect("taken over after the lease")
        .unwrap();
    let stored = other.load().await.unwrap().unwrap();
    assert_eq!(stored.generation, 1);
    assert_eq!(stored.tokens.access_token().expose_secret(), "one");
    other.save(&pair("two", 2)).await.unwrap();

    proxy.heal();
    let late = loop {
        match holder.save(&pair("holder-two", 2)).await {
            Err(error) if is_unreachable(&error) => tokio::time::sleep(ms(50)).await,
            late => break late,
        }
    };
    assert!(
        matches!(
            late,
            Err(StoreError::StaleWrite {
                stored: 2,
                attempted: 2
            })
        ),
        "{late:?}"
    );
    let fenced = loop {
        match held.still_held().await {
            Err(error) if is_unreachable(&error) => tokio::time::sleep(ms(50)).await,
            fenced => break fenced.unwrap(),
        }
    };
    assert!(!fenced, "a lost lease is never taken back");
    let stored = other.load().await.unwrap().unwrap();
    assert_eq!(stored.tokens.access_token().expose_secret(), "two");
    drop(held);
    drop(taken);
    other.clear().await.unwrap();
}
