//! The core guarantees, for each of the reference server's four refresh contracts, over real
//! HTTP on 127.0.0.1, once per adapter (reqwest middleware, tower layer).

use crate::common;

use common::*;
use reqwest_middleware::ClientWithMiddleware;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokenkeeper::classify::Classifier;
use tokenkeeper::{RefreshMode, Session, SessionBuilder};

/// What the contract suite needs of an adapter: a signed-in session with a client behind the
/// adapter, and a GET sent through it. The suite below runs once per adapter.
pub trait Adapter: Clone + Send + Sync + 'static {
    /// A session signed in for `contract` at `server`, configured further by `configure`, and a
    /// client that goes through this adapter.
    fn signed_in(
        server: &ServerHandle,
        contract: Contract,
        configure: impl FnOnce(SessionBuilder) -> SessionBuilder + Send,
    ) -> impl Future<Output = (Session, Self)> + Send;

    /// GET `url` through the adapter, the body read: the status, or the error as text.
    fn get(&self, url: String) -> impl Future<Output = Result<u16, String>> + Send;
}

/// The reqwest-middleware adapter.
impl Adapter for ClientWithMiddleware {
    async fn signed_in(
        server: &ServerHandle,
        contract: Contract,
        configure: impl FnOnce(SessionBuilder) -> SessionBuilder + Send,
    ) -> (Session, Self) {
        session(server, contract, configure).await
    }

    fn get(&self, url: String) -> impl Future<Output = Result<u16, String>> + Send {
        let client = self.clone();
        async move {
            match client.get(url).send().await {
                Ok(response) => Ok(response.status().as_u16()),
                Err(error) => Err(error.to_string()),
            }
        }
    }
}

/// Asserts that none of a burst's requests failed (`failures` holds those that did).
#[track_caller]
pub fn assert_no_failures<F: std::fmt::Debug>(failures: &[F]) {
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        failures.first()
    );
}

/// Asserts that a burst of `requests` requests met an expired token and all succeeded
/// (`failures` holds those that did not) with one refresh at the server and no reuse detected;
/// `server_delta` is what the server counted during the burst.
#[track_caller]
pub fn assert_one_refresh_served_all<F: std::fmt::Debug>(
    failures: &[F],
    server_delta: &Stats,
    requests: u64,
    session: &tokenkeeper::SessionStats,
) {
    assert_no_failures(failures);
    assert_eq!(
        server_delta.refresh_calls, 1,
        "server: {server_delta:?}; session: {session:?}"
    );
    assert_eq!(server_delta.reuse_detections, 0);
    assert_eq!(server_delta.api_ok, requests);
}

/// 1,000 concurrent requests meet an expired token: exactly one refresh, 1,000 successes,
/// no reuse detection.
pub async fn burst_refreshes_once<A: Adapter>(contract: Contract, mode: RefreshMode) {
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let (session, client) = A::signed_in(&server, contract, |b| {
        b.mode(mode).classifier(Classifier::well_known())
    })
    .await;
    // Only the first token expires during the test: however slow the machine, the burst
    // finishes long before the refreshed token's refresh point.
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;

    let before = server.stats();
    let outcomes = {
        let _load = crate::load().await;
        let requests: Vec<_> = (0..1000)
            .map(|i| {
                let (client, url) = (client.clone(), server.url(&format!("/api/items/{i}")));
                tokio::spawn(async move { client.get(url).await })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(request.await.unwrap());
        }
        outcomes
    };
    let server_delta = delta(&before, &server.stats());

    let failures: Vec<_> = outcomes.iter().filter(|o| **o != Ok(200)).collect();
    let stats = session.stats();
    assert_one_refresh_served_all(&failures, &server_delta, 1000, &stats);
    assert_eq!(stats.refreshes, 1, "{stats:?}");
    assert_eq!(session.credential().await.unwrap().generation(), 2);
}

/// Requests stay in flight across several expiries, and the server answers late (its latency
/// comes after the token check), so 401s for a token arrive after it was already replaced.
/// Those must be retried with the new token without another refresh.
pub async fn late_401s_do_not_refresh_again<A: Adapter>(contract: Contract) {
    let _load = crate::load().await;
    let server = late_401_server().await;
    let run_for = LATE_RUN;
    let (session, client) = A::signed_in(&server, contract, |b| {
        b.mode(RefreshMode::Reactive)
            .classifier(Classifier::well_known())
    })
    .await;
    let before = server.stats();
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // The workers send for `LATE_RUN` and until the third refresh at least: on a saturated
    // machine the time from one expiry to the next refresh grows, and 8 s may hold only two
    // expiries. `LATE_GIVE_UP` bounds the run if refreshes stop altogether (then the verdict
    // below fails).
    let enough = {
        let session = session.clone();
        move || {
            started.elapsed() >= LATE_GIVE_UP
                || (started.elapsed() >= run_for && session.stats().refreshes >= 3)
        }
    };
    let workers: Vec<_> = (0..20)
        .map(|worker| {
            let (client, ok, enough) = (client.clone(), Arc::clone(&ok), enough.clone());
            let url = server.url(&format!("/api/items/{worker}"));
            tokio::spawn(async move {
                while !enough() {
                    let status = client.get(url.clone()).await.expect("no error");
                    assert_eq!(status, 200);
                    ok.fetch_add(1, Ordering::Relaxed);
                    // Stagger the workers so some request is always in flight.
                    tokio::time::sleep(ms(worker % 7 * 5)).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let server_delta = delta(&before, &server.stats());
    assert_late_401s_did_not_refresh_again(
        &server_delta,
        &session.stats(),
        elapsed,
        ok.load(Ordering::Relaxed),
    );
}

/// The suite for one adapter: every contract, both refresh modes.
macro_rules! contract_suite {
    ($adapter:ty => $($module:ident => $contract:expr),* $(,)?) => {$(
        mod $module {
            use crate::common::Contract;
            use crate::contracts::{burst_refreshes_once, late_401s_do_not_refresh_again};
            use tokenkeeper::RefreshMode;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn burst_of_1000_reactive_refreshes_once() {
                burst_refreshes_once::<$adapter>($contract, RefreshMode::Reactive).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn burst_of_1000_proactive_refreshes_once() {
                burst_refreshes_once::<$adapter>($contract, RefreshMode::default()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn late_401s_are_retried_without_refreshing() {
                late_401s_do_not_refresh_again::<$adapter>($contract).await;
            }
        }
    )*};
}

// The reqwest-middleware adapter: `contracts::json::burst_of_1000_reactive_refreshes_once`, ...
contract_suite! {
    reqwest_middleware::ClientWithMiddleware =>
    oauth2 => Contract::OAuth2,
    json => Contract::Json,
    header => Contract::Header,
    cookie => Contract::Cookie,
}

/// The same suite through the tower layer over a hyper client (`crate::tower::Api`):
/// `contracts::tower_layer::json::burst_of_1000_reactive_refreshes_once`, ...
#[cfg(all(feature = "tower", feature = "reqwest"))]
mod tower_layer {
    contract_suite! {
        crate::tower::Api =>
        oauth2 => Contract::OAuth2,
        json => Contract::Json,
        header => Contract::Header,
        cookie => Contract::Cookie,
    }
}
