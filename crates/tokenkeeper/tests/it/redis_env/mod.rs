//! Where the Redis tests find Redis: `TOKENKEEPER_REDIS_URL` (see `scripts/redis.sh`).

#![allow(dead_code)]

/// The Redis to test against. Without `TOKENKEEPER_REDIS_URL`: a failure under CI (`CI` set),
/// otherwise `None` after a loud message, and the test returns early.
pub fn redis_url() -> Option<String> {
    if let Ok(url) = std::env::var("TOKENKEEPER_REDIS_URL") {
        return Some(url);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "TOKENKEEPER_REDIS_URL is not set and CI is: the Redis tests must run in CI. \
             Start Redis with `eval \"$(bash scripts/redis.sh)\"`."
        );
    }
    eprintln!(
        "\n*** SKIPPED: TOKENKEEPER_REDIS_URL is not set, so this RedisStore test did not run. \
         Run `eval \"$(bash scripts/redis.sh)\"` first (installs and starts redis-server on \
         127.0.0.1:6390). ***\n"
    );
    None
}

/// A key no other test (or earlier run) uses.
pub fn unique_key(name: &str) -> String {
    format!("tokenkeeper-test:{name}:{:016x}", rand::random::<u64>())
}

/// Runs one raw command on a fresh connection.
pub async fn raw<T: redis::FromRedisValue>(url: &str, command: &mut redis::Cmd) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    command.query_async(&mut connection).await.unwrap()
}
