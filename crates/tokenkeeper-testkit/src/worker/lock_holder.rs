//! The workers without a server: [`churn`] rewrites the store under its lock as fast as it can,
//! [`hold`] takes the lock and keeps it (for a test to `kill -9` the holder).

use super::{Summary, WorkerConfig, WorkerError, stop_when};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tokenkeeper::TokenSet;
use tokenkeeper::store::{StoredTokens, TokenStore};

/// Rewrites the store under its lock as fast as it can, with tokens of random length so a torn
/// write would show.
pub(super) async fn churn(
    config: &WorkerConfig,
    store: &dyn TokenStore,
) -> Result<Summary, WorkerError> {
    let running = Arc::new(AtomicBool::new(true));
    let stopper = stop_when(&config.load(), Arc::clone(&running));
    let mut saves = 0;
    while running.load(Relaxed) {
        let _lock = store.lock().await?;
        save_next(store).await?;
        saves += 1;
    }
    stopper.abort();
    Ok(Summary {
        saves,
        ..Summary::default()
    })
}

/// Takes the lock, saves the next generation (random secrets) under it and holds the lock until
/// killed; a run that is not killed lets go after `duration_ms`.
pub(super) async fn hold(
    config: &WorkerConfig,
    store: &dyn TokenStore,
) -> Result<Summary, WorkerError> {
    let held = store.lock().await?;
    save_next(store).await?;
    tokio::time::sleep(Duration::from_millis(config.duration_ms)).await;
    drop(held);
    Ok(Summary {
        saves: 1,
        ..Summary::default()
    })
}

/// Saves the next generation with random secrets (the caller holds the lock).
async fn save_next(store: &dyn TokenStore) -> Result<(), WorkerError> {
    let generation = store.load().await?.map_or(0, |s| s.generation) + 1;
    store
        .save(&StoredTokens {
            tokens: random_tokens(),
            generation,
            login: None,
        })
        .await?;
    Ok(())
}

/// A pair with random secrets of random length (up to a few KiB, so a write spans pages).
pub fn random_tokens() -> TokenSet {
    use rand::Rng as _;
    let mut rng = rand::rng();
    let mut secret = |max: usize| -> String {
        let len = rng.random_range(1..max);
        (0..len)
            .map(|_| char::from(rng.random_range(0x21u8..0x7f)))
            .collect()
    };
    TokenSet::new(secret(6000))
        .with_refresh_token(secret(200))
        .with_expires_in(Duration::from_secs(60))
}
