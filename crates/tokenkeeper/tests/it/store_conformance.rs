//! What every shared `TokenStore` promises, run over each of them (FileStore, RedisStore,
//! PostgresStore) with two handles on one place, as two processes would have. A store-specific
//! suite keeps only what is particular to its backend.

use std::time::Duration;
use tokenkeeper::TokenSet;
use tokenkeeper::secrecy::ExposeSecret;
use tokenkeeper::store::{StoreError, StoredTokens, TokenStore};

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
pub async fn stale_writes_are_refused(one: &dyn TokenStore, other: &dyn TokenStore) {
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

#[tokio::test]
async fn file_store_refuses_stale_writes() {
    use tokenkeeper::store::FileStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let one = FileStore::open(&path).unwrap();
    let other = FileStore::open(&path).unwrap();
    stale_writes_are_refused(&one, &other).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store_refuses_stale_writes() {
    use crate::redis_env::{redis_url, unique_key};
    use tokenkeeper::store::RedisStore;
    let Some(url) = redis_url() else { return };
    let key = unique_key("cas");
    let one = RedisStore::connect(&url, key.clone()).await.unwrap();
    let other = RedisStore::connect(&url, key).await.unwrap();
    stale_writes_are_refused(&one, &other).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_refuses_stale_writes() {
    use crate::postgres_env::{postgres_url, store, unique_key};
    let Some(url) = postgres_url() else { return };
    let key = unique_key("cas");
    let one = store(&url, &key).await;
    let other = store(&url, &key).await;
    stale_writes_are_refused(&one, &other).await;
}
