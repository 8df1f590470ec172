//! The shared-store figures of `tokenkeeper bench`: real `tokenkeeper __store-worker` processes
//! sharing one login refresh once per expiry, with no reuse detection.
//!
//! The Redis case needs `TOKENKEEPER_REDIS_URL` (see `scripts/redis.sh`): without it, it fails
//! when `CI` is set and otherwise skips with a loud message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;
use tokenkeeper_cli::bench::shared_store::{SharedStoreBench, StoreKind, WORKER_SUBCOMMAND};

fn quick() -> SharedStoreBench {
    SharedStoreBench {
        processes: 4,
        tasks_per_process: 10,
        duration: Duration::from_millis(2_500),
        access_ttl: Duration::from_millis(500),
        ..SharedStoreBench::new(env!("CARGO_BIN_EXE_tokenkeeper"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_file_store_refresh_once_per_expiry() {
    let figures = quick().run(&StoreKind::File).await.unwrap();
    eprintln!("{figures:?}");
    assert!(figures.passed(), "{figures:?}");
    assert!(figures.expiries >= 3, "{figures:?}");
    assert!(figures.adopted > 0, "{figures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_redis_store_refresh_once_per_expiry() {
    let Ok(url) = std::env::var("TOKENKEEPER_REDIS_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TOKENKEEPER_REDIS_URL is not set and CI is: run `eval \"$(bash scripts/redis.sh)\"`"
        );
        eprintln!(
            "\n*** SKIPPED: TOKENKEEPER_REDIS_URL is not set; run `eval \"$(bash scripts/redis.sh)\"` ***\n"
        );
        return;
    };
    let figures = quick().run(&StoreKind::Redis { url }).await.unwrap();
    eprintln!("{figures:?}");
    assert!(figures.passed(), "{figures:?}");
    assert!(figures.expiries >= 3, "{figures:?}");
}

#[test]
fn the_worker_subcommand_exists_and_refuses_to_run_on_its_own() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenkeeper"))
        .arg(WORKER_SUBCOMMAND)
        .env_remove("TOKENKEEPER_STORE_WORKER")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("started by `tokenkeeper bench` only"),
        "{stderr}"
    );
}
