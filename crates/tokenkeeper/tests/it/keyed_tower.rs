//! `Sessions::layer` over a hyper client, against the reference server on 127.0.0.1: each
//! request gets its own key's token, a burst over expired keys refreshes each key once, and a
//! request without a key is refused without being sent.

use crate::common::*;
use crate::keyed::{expiring_after, sign_in_users};
use crate::keyed_env::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokenkeeper::keyed::Key;
use tokenkeeper::{Error, Sessions};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_picks_each_requests_session_by_key() {
    // A burst: never beside a test that loads both cores (see `crate::heavy`).
    let _load = crate::load().await;
    const KEYS: usize = 20;
    let server = server_with_users(KEYS, expiring_after(ms(1000))).await;
    let logins = Sessions::<String>::builder()
        .session(template(&server))
        .capacity(8)
        .build()
        .unwrap();
    let tokens = sign_in_users(&logins, &server, KEYS).await;
    server.set_access_ttl(LONG_TTL);
    until_expired(&tokens).await;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http::<Full<Bytes>>();
    let api = ServiceBuilder::new().layer(logins.layer()).service(client);

    let before = server.stats();
    let requests: Vec<_> = (0..200)
        .map(|i| {
            let api = api.clone();
            let key = user(i % KEYS);
            let mut request = Request::get(server.url(&format!("/api/items/{i}")))
                .body(Full::default())
                .unwrap();
            request.extensions_mut().insert(Key(key.clone()));
            tokio::spawn(async move {
                let response = api.oneshot(request).await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                (key, body["owner"].as_str().unwrap().to_owned())
            })
        })
        .collect();
    for request in requests {
        let (key, owner) = request.await.unwrap();
        assert_eq!(key, owner);
    }
    let stats = delta(&before, &server.stats());
    // Keys evicted after their refresh come back from the store: still one refresh each.
    assert_eq!(
        (stats.refresh_calls, stats.reuse_detections),
        (KEYS as u64, 0),
        "{stats:?}"
    );

    let keyless = Request::get(server.url("/api/items/1"))
        .body(Full::default())
        .unwrap();
    let refused = api.oneshot(keyless).await.unwrap_err();
    assert!(matches!(refused.auth(), Some(Error::NoKey)), "{refused}");
    assert_eq!(delta(&before, &server.stats()).api_401_missing, 0);
}
