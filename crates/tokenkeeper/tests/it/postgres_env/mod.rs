//! Where the PostgreSQL tests find PostgreSQL: `TOKENKEEPER_POSTGRES_URL` (see
//! `scripts/postgres.sh`).

#![allow(dead_code)]

use tokenkeeper::store::PostgresStore;
use tokio_postgres::types::ToSql;

/// The PostgreSQL to test against. Without `TOKENKEEPER_POSTGRES_URL`: a failure under CI (`CI`
/// set), otherwise `None` after a loud message, and the test returns early.
pub fn postgres_url() -> Option<String> {
    if let Ok(url) = std::env::var("TOKENKEEPER_POSTGRES_URL") {
        return Some(url);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "TOKENKEEPER_POSTGRES_URL is not set and CI is: the PostgreSQL tests must run in CI. \
             Start PostgreSQL with `eval \"$(bash scripts/postgres.sh)\"`."
        );
    }
    eprintln!(
        "\n*** SKIPPED: TOKENKEEPER_POSTGRES_URL is not set, so this PostgresStore test did not \
         run. Run `eval \"$(bash scripts/postgres.sh)\"` first (installs and starts PostgreSQL on \
         127.0.0.1:6393). ***\n"
    );
    None
}

/// A key no other test (or earlier run) uses.
pub fn unique_key(name: &str) -> String {
    format!("tokenkeeper-test:{name}:{:016x}", rand::random::<u64>())
}

/// A store for `key`, with the schema in place.
pub async fn store(url: &str, key: &str) -> PostgresStore {
    let store = PostgresStore::connect(url, key).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// A fresh connection of its own, outside any store.
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Runs one statement on a fresh connection; returns the rows it touched.
pub async fn execute(url: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
    raw_client(url).await.execute(sql, params).await.unwrap()
}

/// Runs one query on a fresh connection.
pub async fn query(
    url: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Vec<tokio_postgres::Row> {
    raw_client(url).await.query(sql, params).await.unwrap()
}
