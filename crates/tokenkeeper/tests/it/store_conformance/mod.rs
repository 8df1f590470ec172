//! What every shared `TokenStore` promises (`tokenkeeper_testkit::conformance`), run over each
//! of them with handles on one place as separate processes would have them:
//! `store_conformance::<store>::<test>`. A store-specific suite (`file_store`, `redis_store`,
//! `postgres_store`) keeps only what is particular to its backend.
//!
//! | test                                         | memory | file | redis | postgres |
//! |----------------------------------------------|--------|------|-------|----------|
//! | the lock excludes, released on drop          | x      | x    | x     | x        |
//! | a cancelled lock attempt leaves nothing      | x      | x    | x     | x        |
//! | stale writes are refused (compare-and-set)   |        | x    | x     | x        |
//! | racing writers of one generation: one wins   |        | (1)  | x     | x        |
//! | kill -9 of a lock holder (a child process)   |        | x    | x     | x        |
//! | a held lease is renewed past its TTL         |        |      | x     | x        |
//! | a dead holder's lease is taken over          |        |      | x     | x        |
//! | a lost lease is fenced, its release spares   |        |      | x     | x        |
//! | a dropped connection mid-refresh             |        |      | x     | x        |
//!
//! (1) Not run: `FileStore`'s compare-and-set is atomic only among writers holding its lock.
//!
//! `MemoryStore` is one process's store (its handles are clones): it has the lock, but no
//! compare-and-set and nothing another process could share.

mod backends;

/// The suite's pair, for the store-specific suites.
pub use tokenkeeper_testkit::conformance::pair;

/// The tests of one store: `store_conformance::<store>::<test>`, each on a fresh place. The
/// tests after `heavy:` start child processes: each holds [`crate::heavy`] for its whole run
/// (alone among the tests that load both cores, see main.rs).
macro_rules! suite {
    (
        $(#[$cfg:meta])* $store:ident: $backend:ty => $($test:ident),+
        $(; heavy: $($heavy_test:ident),+)? $(,)?
    ) => {
        $(#[$cfg])*
        mod $store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(place) = <$backend>::place(stringify!($test)).await else {
                        return;
                    };
                    tokenkeeper_testkit::conformance::$test(place).await;
                }
            )+
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $heavy_test() {
                    let _heavy = crate::heavy().await;
                    let Some(place) = <$backend>::place(stringify!($heavy_test)).await else {
                        return;
                    };
                    tokenkeeper_testkit::conformance::$heavy_test(place).await;
                }
            )+)?
        }
    };
}

suite!(memory: super::backends::Memory =>
    the_lock_excludes_another_handle_and_is_released_on_drop,
    a_cancelled_lock_attempt_leaves_nothing_behind,
);

// FileStore's compare-and-set is a check, then a rename: atomic among writers that hold its
// lock (as the session's do), not among racing writers without it (16 unlocked writers of one
// generation all "won" when tried), so the racing test is not run for it.
suite!(file: super::backends::File =>
    the_lock_excludes_another_handle_and_is_released_on_drop,
    a_cancelled_lock_attempt_leaves_nothing_behind,
    stale_writes_are_refused;
    heavy: kill_9_of_a_lock_holder_frees_the_lock_and_leaves_the_pair_whole,
);

suite!(#[cfg(feature = "redis")] redis: super::backends::Redis =>
    the_lock_excludes_another_handle_and_is_released_on_drop,
    a_cancelled_lock_attempt_leaves_nothing_behind,
    stale_writes_are_refused,
    racing_writers_of_one_generation_have_exactly_one_winner,
    a_held_lease_is_renewed_past_its_ttl,
    a_dead_holders_lease_expires_and_is_taken_over,
    a_lost_lease_is_reported_by_the_fence_and_never_taken_back,
    a_dropped_connection_mid_refresh_loses_the_lease_not_the_pair;
    heavy: kill_9_of_a_lock_holder_frees_the_lock_and_leaves_the_pair_whole,
);

suite!(#[cfg(feature = "postgres")] postgres: super::backends::Postgres =>
    the_lock_excludes_another_handle_and_is_released_on_drop,
    a_cancelled_lock_attempt_leaves_nothing_behind,
    stale_writes_are_refused,
    racing_writers_of_one_generation_have_exactly_one_winner,
    a_held_lease_is_renewed_past_its_ttl,
    a_dead_holders_lease_expires_and_is_taken_over,
    a_lost_lease_is_reported_by_the_fence_and_never_taken_back,
    a_dropped_connection_mid_refresh_loses_the_lease_not_the_pair;
    heavy: kill_9_of_a_lock_holder_frees_the_lock_and_leaves_the_pair_whole,
);
