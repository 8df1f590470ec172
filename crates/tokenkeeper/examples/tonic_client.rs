//! A tonic client behind tokenkeeper's tower layer, and the interceptor style, against a small
//! gRPC server that checks tokens issued by the reference server (both started in-process).
//!
//! `cargo run -p tokenkeeper --example tonic_client --features tonic`
//!
//! The gRPC server answers `UNAUTHENTICATED` for an expired token. Through the layer such a
//! call is refreshed (once, for every call that needs it) and retried; the interceptor attaches
//! `session.snapshot()` synchronously and refreshes in the background ahead of expiry. No
//! protoc: the messages are derived with prost in Rust and the calls use `tonic::client::Grpc`.

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokenkeeper::classify::Classifier;
use tokenkeeper::classify::rules::grpc_unauthenticated;
use tokenkeeper::{Proactive, RefreshMode, Session, TokenSet, refresh};
use tokenkeeper_server::Contract;
use tonic::client::GrpcService;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, PartialEq, prost::Message)]
struct GetItem {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Item {
    #[prost(string, tag = "1")]
    json: String,
}

const GET: &str = "/items.Items/Get";

/// The gRPC server: checks each call's bearer token by asking the reference server's API.
async fn grpc_server(api: String) -> Result<String, BoxError> {
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = tower::service_fn(move |call: Request<GetItem>| {
        let (api, http) = (api.clone(), http.clone());
        async move {
            let mut check = http::Request::get(format!("{api}/api/items/{}", call.get_ref().id));
            if let Some(token) = call.metadata().get("authorization") {
                check = check.header(http::header::AUTHORIZATION, token.as_bytes());
            }
            let unavailable = |e: &dyn std::fmt::Display| Status::unavailable(e.to_string());
            let check = check.body(Empty::new()).map_err(|e| unavailable(&e))?;
            let response = http.request(check).await.map_err(|e| unavailable(&e))?;
            if response.status() == http::StatusCode::UNAUTHORIZED {
                return Err(Status::unauthenticated("expired or invalid token"));
            }
            let body = response.into_body().collect().await;
            let json = body.map_err(|e| unavailable(&e))?.to_bytes();
            let json = String::from_utf8_lossy(&json).into_owned();
            Ok(Response::new(Item { json }))
        }
    });
    let service = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let get = get.clone();
        async move {
            Ok::<_, std::convert::Infallible>(match request.uri().path() {
                GET => {
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                    grpc.unary(get, request).await
                }
                _ => Status::unimplemented("").into_http(),
            })
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(service, incoming));
    Ok(url)
}

/// One unary call, as a generated client would make it.
async fn get_item<T>(channel: T, id: String) -> Result<String, Status>
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
    let request = Request::new(GetItem { id });
    let codec = ProstCodec::default();
    let item: Response<Item> = grpc
        .unary(request, PathAndQuery::from_static(GET), codec)
        .await?;
    Ok(item.into_inner().json)
}

/// Logs in at the reference server (json contract).
async fn login(server: &tokenkeeper_server::ServerHandle) -> Result<TokenSet, BoxError> {
    let client = reqwest::Client::new();
    let login =
        tokenkeeper_server::client::login(&client, &server.base_url(), Contract::Json).await?;
    Ok(TokenSet::from_response(&login.body)?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let config =
        tokenkeeper_server::ServerConfig::default().with_access_ttl(Duration::from_secs(1));
    let server = tokenkeeper_server::start(config).await?;
    let grpc_url = grpc_server(server.base_url()).await?;

    // The session attaches to the gRPC server and reads UNAUTHENTICATED as "expired".
    let session = Session::builder()
        .refresher(refresh::Json::new(&server.url("/refresh/token"))?)
        .attach_to([grpc_url.as_str()])
        .classifier(Classifier::well_known().rule(grpc_unauthenticated()))
        .mode(RefreshMode::Reactive)
        .build()?;
    session.sign_in(login(&server).await?).await?;

    // 1. The layer: generated clients send bare paths into the channel, so name its origin.
    let channel = tonic::transport::Endpoint::from_shared(grpc_url.clone())?
        .connect()
        .await?;
    let layered = tower::ServiceBuilder::new()
        .layer(session.layer().relative_to(&grpc_url)?)
        .service(channel.clone());
    tokio::time::sleep(Duration::from_millis(1100)).await; // the token expires
    let calls = (1..=5).map(|id| get_item(layered.clone(), id.to_string()));
    for item in futures_util::future::join_all(calls).await {
        println!("layer:       {}", item?);
    }
    let stats = session.stats();
    println!(
        "refreshes: {}, retried calls: {}",
        stats.refreshes, stats.retries
    );

    // 2. The interceptor: synchronous, never waits; past half the token's lifetime it starts a
    //    background refresh. It cannot retry a refused call, so it wants the proactive mode.
    let proactive = Session::builder()
        .refresher(refresh::Json::new(&server.url("/refresh/token"))?)
        .attach_to([grpc_url.as_str()])
        .mode(RefreshMode::Proactive(Proactive {
            refresh_at: 0.5,
            ..Proactive::default()
        }))
        .build()?;
    proactive.sign_in(login(&server).await?).await?;
    let intercepted = InterceptedService::new(channel, proactive.interceptor(&grpc_url)?);
    for id in 6..=10 {
        let item = get_item(intercepted.clone(), id.to_string()).await?;
        let generation = proactive.snapshot()?.generation();
        println!("interceptor: {item} (token generation {generation})");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!("background refreshes: {}", proactive.stats().refreshes);
    server.shutdown().await;
    Ok(())
}
