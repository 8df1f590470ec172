//! `PostgresStore` shared by real child processes: one refresh per expiry across eight processes.
//!
//! Needs `TOKENKEEPER_POSTGRES_URL` (see `scripts/postgres.sh`): without it this test fails when
//! `CI` is set, and otherwise skips with a loud message.

use crate::postgres_env::{postgres_url, unique_key};
use crate::store_worker::{self, StoreSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_share_one_login_through_postgres_and_refresh_once_per_expiry() {
    let Some(url) = postgres_url() else { return };
    // The default lease (10 s). With a 2 s lease the session caps its refresh timeout, lock wait
    // included, at 1.5 s, and under eight processes' contention on two cores a few waits ran
    // past it (47 of ~40,000 requests answered 401 in one run): see the report to the lead.
    store_worker::eight_processes_share_one_login_and_refresh_once_per_expiry(
        StoreSpec::Postgres {
            url,
            key: unique_key("eight"),
            lock_ttl_ms: Some(10_000),
        },
    )
    .await;
}
