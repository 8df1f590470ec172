//! tonic over the tower layer, for real: a small gRPC server on 127.0.0.1 that checks each
//! call's token with the reference server (and answers `UNAUTHENTICATED` when it refuses it),
//! called through a tonic `Channel` wrapped in `AuthLayer`, or through the snapshot interceptor.

use crate::common;

use bytes::Bytes;
use common::*;
use futures_util::stream::{self, Stream};
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::time::Duration;
use tokenkeeper::classify::Classifier;
use tokenkeeper::classify::rules::grpc_unauthenticated;
use tokenkeeper::{Error, Event, Proactive, RefreshMode, Session, SessionBuilder};
use tonic::client::GrpcService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// The messages, derived in Rust: no .proto file, no protoc.
#[derive(Clone, PartialEq, prost::Message)]
struct GetItem {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Item {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    owner: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Count {
    #[prost(uint32, tag = "1")]
    items: u32,
}

const GET: &str = "/items.Items/Get";
/// Client streaming: counts the `GetItem`s sent.
const COUNT: &str = "/items.Items/Count";

/// The gRPC server's view of a token: it asks the reference server's API.
#[derive(Clone)]
struct Checker {
    api: String,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl Checker {
    async fn item(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        id: &str,
    ) -> Result<Item, Status> {
        let mut request = http::Request::get(format!("{}/api/items/{id}", self.api));
        if let Some(token) = metadata.get("authorization") {
            request = request.header(http::header::AUTHORIZATION, token.as_bytes());
        }
        let response = self
            .http
            .request(request.body(Empty::new()).unwrap())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        match status.as_u16() {
            200 => {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let field = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
                Ok(Item {
                    id: field("id"),
                    name: field("name"),
                    owner: field("owner"),
                })
            }
            401 => Err(Status::unauthenticated("the token was refused")),
            other => Err(Status::internal(format!("API answered {other}"))),
        }
    }
}

/// Starts the gRPC server; returns its URL.
async fn grpc_server(reference: &ServerHandle) -> String {
    let checker = Checker {
        api: reference.base_url(),
        http: Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build_http(),
    };
    let service = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let checker = checker.clone();
        async move {
            let response = match request.uri().path() {
                GET => {
                    let get = tower::service_fn(move |call: tonic::Request<GetItem>| {
                        let checker = checker.clone();
                        async move {
                            let item = checker.item(call.metadata(), &call.get_ref().id).await?;
                            Ok::<_, Status>(tonic::Response::new(item))
                        }
                    });
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                    grpc.unary(get, request).await
                }
                COUNT => {
                    let count = tower::service_fn(
                        move |call: tonic::Request<tonic::Streaming<GetItem>>| {
                            let checker = checker.clone();
                            async move {
                                // The token first, before reading the stream.
                                checker.item(call.metadata(), "count").await?;
                                let mut messages = call.into_inner();
                                let mut items = 0;
                                while messages.message().await?.is_some() {
                                    items += 1;
                                }
                                Ok::<_, Status>(tonic::Response::new(Count { items }))
                            }
                        },
                    );
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                    grpc.client_streaming(count, request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let listener = crate::common::loopback_listener();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(service, incoming));
    url
}

/// One unary `Get` through any tonic-compatible service.
async fn get_item<T>(channel: T, id: &str) -> Result<Item, Status>
where
    T: GrpcService<tonic::body::Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let request = tonic::Request::new(GetItem { id: id.to_owned() });
    let response = grpc
        .unary(
            request,
            PathAndQuery::from_static(GET),
            ProstCodec::default(),
        )
        .await?;
    Ok(response.into_inner())
}

/// One client-streaming `Count` through any tonic-compatible service.
async fn count<T, S>(channel: T, messages: S) -> Result<u32, Status>
where
    T: GrpcService<tonic::body::Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
    S: Stream<Item = GetItem> + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let response: tonic::Response<Count> = grpc
        .client_streaming(
            tonic::Request::new(messages),
            PathAndQuery::from_static(COUNT),
            ProstCodec::default(),
        )
        .await?;
    Ok(response.into_inner().items)
}

/// A reference server with `ttl` tokens, the gRPC server in front of it, and a session signed
/// in (json contract) that attaches to the gRPC server and reads `UNAUTHENTICATED` as expiry.
async fn setup(
    ttl: Duration,
    configure: impl FnOnce(SessionBuilder) -> SessionBuilder,
) -> (ServerHandle, String, Session) {
    let reference = start(ServerConfig::default().with_access_ttl(ttl)).await;
    let grpc = grpc_server(&reference).await;
    let (tokens, refresher) = login(&reference, Contract::Json).await;
    let builder = Session::builder()
        .refresher_arc(refresher)
        .attach_to([grpc.as_str()])
        .classifier(Classifier::well_known().rule(grpc_unauthenticated()));
    let session = configure(builder).build().unwrap();
    session.sign_in(tokens).await.unwrap();
    (reference, grpc, session)
}

/// A channel to `url` behind the session's layer. tonic's clients send bare paths into a
/// channel, so the layer is told the origin.
async fn layered(
    session: &Session,
    url: &str,
) -> tokenkeeper::adapter::tower::AuthService<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tower::ServiceBuilder::new()
        .layer(session.layer().relative_to(url).unwrap())
        .service(channel)
}

/// 200 concurrent unary calls meet an expired token: one refresh, no failures.
async fn concurrent_calls_refresh_once(mode: RefreshMode) {
    let reactive = mode == RefreshMode::Reactive;
    let (reference, grpc, session) = setup(ms(400), |b| b.mode(mode)).await;
    let channel = layered(&session, &grpc).await;
    // Only the first token expires during the test, however slow the machine.
    reference.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(500)).await;

    let before = reference.stats();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let channel = channel.clone();
            tokio::spawn(async move { get_item(channel, &i.to_string()).await })
        })
        .collect();
    let mut failures = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Ok(item) => assert_eq!(item.name, format!("item {i}")),
            Err(status) => failures.push(status),
        }
    }
    let server_delta = delta(&before, &reference.stats());
    crate::contracts::assert_one_refresh_served_all(
        &failures,
        &server_delta,
        200,
        &session.stats(),
    );
    let stats = session.stats();
    assert_eq!(stats.refreshes, 1);
    assert_eq!(session.snapshot().unwrap().generation(), 2);
    if reactive {
        // The refusals were seen (as trailers-only UNAUTHENTICATED) and the calls retried.
        assert!(server_delta.api_401_expired >= 1, "{server_delta:?}");
        assert_eq!(stats.retries, server_delta.api_401_expired, "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_200_concurrent_calls_with_an_expired_token_refresh_once_reactive() {
    // Every call goes out with the expired token and comes back UNAUTHENTICATED (trailers-only):
    // the classifier reads that header, one refresh, each call retried once.
    concurrent_calls_refresh_once(RefreshMode::Reactive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_200_concurrent_calls_with_an_expired_token_refresh_once_proactive() {
    concurrent_calls_refresh_once(RefreshMode::default()).await;
}

#[tokio::test]
async fn unauthenticated_unary_calls_are_retried_with_the_new_token() {
    let (reference, grpc, session) = setup(ms(300), |b| b.mode(RefreshMode::Reactive)).await;
    let channel = layered(&session, &grpc).await;
    tokio::time::sleep(ms(400)).await;
    let item = get_item(channel, "7").await.unwrap();
    assert_eq!((item.id.as_str(), item.owner.as_str()), ("7", "demo"));
    let stats = session.stats();
    assert_eq!((stats.retries, stats.refreshes), (1, 1), "{stats:?}");
    assert_eq!(reference.stats().api_401_expired, 1);
}

#[tokio::test]
async fn a_client_stream_still_being_produced_is_not_retried_but_the_refresh_happens() {
    let (reference, grpc, session) = setup(ms(300), |b| b.mode(RefreshMode::Reactive)).await;
    let channel = layered(&session, &grpc).await;
    tokio::time::sleep(ms(400)).await;

    // The first message is not there yet when the call starts: the body cannot be kept.
    let later = stream::once(async {
        tokio::task::yield_now().await;
        GetItem { id: "1".into() }
    });
    let status = count(channel.clone(), later).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let stats = session.stats();
    assert_eq!((stats.not_replayable, stats.retries), (1, 0), "{stats:?}");
    assert_eq!(stats.refreshes, 1);
    assert_eq!(reference.stats().refresh_calls, 1);

    // The next call carries the new token. A stream that is complete up front is replayable.
    let ready = stream::iter((0..3).map(|i| GetItem { id: i.to_string() }));
    assert_eq!(count(channel, ready).await.unwrap(), 3);
    assert_eq!(session.stats().refreshes, 1);
}

#[tokio::test]
async fn a_complete_client_stream_is_replayed() {
    let (_reference, grpc, session) = setup(ms(300), |b| b.mode(RefreshMode::Reactive)).await;
    let channel = layered(&session, &grpc).await;
    tokio::time::sleep(ms(400)).await;
    let ready = stream::iter((0..5).map(|i| GetItem { id: i.to_string() }));
    assert_eq!(count(channel, ready).await.unwrap(), 5);
    let stats = session.stats();
    assert_eq!((stats.retries, stats.refreshes), (1, 1), "{stats:?}");
}

#[tokio::test]
async fn layer_errors_reach_the_caller_inside_the_status() {
    let reference = start(ServerConfig::default()).await;
    let grpc = grpc_server(&reference).await;
    let session = Session::builder()
        .refresher(tokenkeeper::refresh::from_fn(|_| async {
            Ok(tokenkeeper::TokenSet::new("never"))
        }))
        .attach_to([grpc.as_str()])
        .build()
        .unwrap();
    // Never signed in.
    let status = get_item(layered(&session, &grpc).await, "1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            tokenkeeper::adapter::tower::auth_error(&status),
            Some(Error::LoginRequired)
        ),
        "{status:?}"
    );
    assert_eq!(reference.stats().api_401_missing, 0, "nothing was sent");
}

/// Waits for the session's next `Refreshed` event (a guard against hanging, not a timing check).
async fn refreshed(events: &mut tokio::sync::broadcast::Receiver<Event>) -> u64 {
    let wait = async {
        loop {
            if let Event::Refreshed { generation } = events.recv().await.unwrap() {
                return generation;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("a refresh")
}

fn intercepted(
    session: &Session,
    grpc: &str,
) -> InterceptedService<Channel, tokenkeeper::adapter::tower::SnapshotInterceptor> {
    let channel = tonic::transport::Endpoint::from_shared(grpc.to_owned())
        .unwrap()
        .connect_lazy();
    InterceptedService::new(channel, session.interceptor(grpc).unwrap())
}

/// The interceptor style: `snapshot()` never waits; near expiry it attaches the still-valid
/// token and refreshes in the background, so steady traffic never sees UNAUTHENTICATED.
#[tokio::test]
async fn the_interceptor_refreshes_in_the_background_before_expiry() {
    let mode = RefreshMode::Proactive(Proactive {
        refresh_at: 0.25,
        jitter: 0.0,
        ..Proactive::default()
    });
    let (reference, grpc, session) = setup(Duration::from_secs(4), |b| b.mode(mode)).await;
    let mut events = session.events();
    let channel = intercepted(&session, &grpc);
    assert_eq!(get_item(channel.clone(), "1").await.unwrap().id, "1");
    assert_eq!(session.stats().refreshes, 0);

    // Past a quarter of the lifetime: still valid, and due for a refresh.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get_item(channel.clone(), "2").await.unwrap().id, "2");
    assert_eq!(refreshed(&mut events).await, 2);
    assert_eq!(get_item(channel, "3").await.unwrap().id, "3");
    assert_eq!(session.snapshot().unwrap().generation(), 2);
    let stats = reference.stats();
    assert_eq!((stats.refresh_calls, stats.api_401_expired), (1, 0));
}

/// What the interceptor cannot do: react to a refusal. An expired token fails that call, the
/// refresh it started lets the next one through.
#[tokio::test]
async fn the_interceptor_cannot_retry_but_the_next_call_succeeds() {
    let (_reference, grpc, session) = setup(ms(300), |b| b).await;
    let mut events = session.events();
    let channel = intercepted(&session, &grpc);
    tokio::time::sleep(ms(400)).await;
    let status = get_item(channel.clone(), "1").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    refreshed(&mut events).await;
    assert_eq!(get_item(channel, "1").await.unwrap().id, "1");
}

#[tokio::test]
async fn the_interceptor_is_only_for_allowed_origins() {
    let session = Session::builder()
        .refresher(tokenkeeper::refresh::from_fn(|_| async {
            Ok(tokenkeeper::TokenSet::new("never"))
        }))
        .attach_to(["https://api.example.com"])
        .build()
        .unwrap();
    assert!(session.interceptor("https://api.example.com").is_ok());
    assert!(matches!(
        session.interceptor("https://other.example.com"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        session.interceptor("not a url"),
        Err(Error::Config(_))
    ));
}
