//! The tower layer over a hyper client, against the reference server on 127.0.0.1: replay,
//! origin rules and tower's readiness contract. The core guarantees (bursts refresh once, late
//! 401s do not refresh again) run through this layer in `contracts.rs` (`contracts::tower_layer`),
//! the same suite as the reqwest middleware's.

use crate::common;

use bytes::Bytes;
use common::*;
use futures_util::stream;
use http::header::AUTHORIZATION;
use http::{Request, Uri};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use tokenkeeper::adapter::tower::{AuthError, AuthService, ResponseBody};
use tokenkeeper::classify::Classifier;
use tokenkeeper::{Error, LogoutReason, NoAuth, RefreshMode, Session, SessionBuilder, TokenSet};
use tower::{Service, ServiceBuilder, ServiceExt};

pub type Api<B = Full<Bytes>> = AuthService<Client<HttpConnector, B>>;
type Failure = AuthError<hyper_util::client::legacy::Error>;

fn hyper_client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(2048)
        .build_http()
}

/// A session signed in with the access token `token`, whose refresher hands out "fresh";
/// `attach` says where it attaches.
async fn signed_in_as(
    token: &str,
    attach: impl FnOnce(SessionBuilder) -> SessionBuilder,
) -> Session {
    let builder = Session::builder().refresher(tokenkeeper::refresh::from_fn(|_| async {
        Ok(TokenSet::new("fresh"))
    }));
    let session = attach(builder).build().unwrap();
    session.sign_in(TokenSet::new(token)).await.unwrap();
    session
}

/// A signed-in session for `contract`, and a hyper client behind its layer.
async fn tower_session<B>(
    server: &ServerHandle,
    contract: Contract,
    configure: impl FnOnce(SessionBuilder) -> SessionBuilder,
) -> (Session, Api<B>)
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let session = signed_in_session(server, contract, configure).await;
    let api = ServiceBuilder::new()
        .layer(session.layer())
        .service(hyper_client());
    (session, api)
}

async fn read(response: http::Response<ResponseBody<hyper::body::Incoming>>) -> (u16, Bytes) {
    let status = response.status().as_u16();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn get(api: &Api, url: &str) -> Result<(u16, Bytes), Failure> {
    let request = Request::get(url).body(Full::default()).unwrap();
    Ok(read(api.clone().oneshot(request).await?).await)
}

/// The contract suite's adapter (`contracts::tower_layer::*`): the tower layer over hyper.
impl crate::contracts::Adapter for Api {
    async fn signed_in(
        server: &ServerHandle,
        contract: Contract,
        configure: impl FnOnce(SessionBuilder) -> SessionBuilder + Send,
    ) -> (Session, Self) {
        tower_session(server, contract, configure).await
    }

    fn get(&self, url: String) -> impl Future<Output = Result<u16, String>> + Send {
        let api = self.clone();
        async move {
            match get(&api, &url).await {
                Ok((status, _)) => Ok(status),
                Err(error) => Err(format!("{error:?}")),
            }
        }
    }
}

/// A session whose access token is already expired (reactive mode: the refusal drives the
/// refresh), and a client with boxed bodies.
async fn expired_session() -> (ServerHandle, Session, Api<BoxBody<Bytes, Infallible>>) {
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let (session, api) = tower_session(&server, Contract::Json, |b| {
        b.mode(RefreshMode::Reactive)
            .classifier(Classifier::well_known())
    })
    .await;
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;
    (server, session, api)
}

fn post(url: &str, body: BoxBody<Bytes, Infallible>) -> Request<BoxBody<Bytes, Infallible>> {
    Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn a_streamed_body_is_not_retried_but_the_refresh_happens() {
    let (server, session, api) = expired_session().await;
    // The body is still being produced when the request goes out: it cannot be kept.
    let streamed = StreamBody::new(stream::once(async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(br#"{"name":"streamed"}"#)))
    }))
    .boxed();
    let before = server.stats();
    let response = api
        .clone()
        .oneshot(post(&server.url("/api/items"), streamed))
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 401);
    assert_eq!(
        &body[..],
        br#"{"message":"TokenExpiredError"}"#,
        "the refusal, intact"
    );
    let stats = session.stats();
    assert_eq!((stats.not_replayable, stats.retries), (1, 0), "{stats:?}");
    assert_eq!(stats.refreshes, 1);
    assert_eq!(delta(&before, &server.stats()).refresh_calls, 1);

    // The caller's next attempt carries the new token.
    let buffered = Full::new(Bytes::from_static(br#"{"name":"again"}"#)).boxed();
    let response = api
        .oneshot(post(&server.url("/api/items"), buffered))
        .await
        .unwrap();
    assert_eq!(read(response).await.0, 200);
    assert_eq!(session.stats().refreshes, 1);
}

#[tokio::test]
async fn a_buffered_body_is_replayed_intact() {
    let (server, session, api) = expired_session().await;
    // Ready at once (several frames), so it is kept for the retry.
    let frames = [&b"{\"name\":"[..], b"\"replayed\"", b"}"];
    let body = StreamBody::new(stream::iter(
        frames.map(|part| Ok::<_, Infallible>(Frame::data(Bytes::from_static(part)))),
    ))
    .boxed();
    let response = api
        .oneshot(post(&server.url("/api/items"), body))
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body:?}");
    let created: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(created["item"], serde_json::json!({"name": "replayed"}));
    let stats = session.stats();
    assert_eq!((stats.retries, stats.refreshes), (1, 1), "{stats:?}");
}

#[tokio::test]
async fn bodies_over_the_replay_limit_are_not_retried() {
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let session = signed_in_session(&server, Contract::Json, |b| {
        b.mode(RefreshMode::Reactive)
            .classifier(Classifier::well_known())
    })
    .await;
    let api = ServiceBuilder::new()
        .layer(session.layer().replay_limit(8))
        .service(hyper_client::<Full<Bytes>>());
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;
    let request = Request::post(server.url("/api/items"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"name":"too long to keep"}"#,
        )))
        .unwrap();
    let (status, _) = read(api.oneshot(request).await.unwrap()).await;
    assert_eq!(status, 401);
    let stats = session.stats();
    assert_eq!((stats.not_replayable, stats.refreshes), (1, 1), "{stats:?}");
}

/// A concurrency limit below the layer hands out its permit in `poll_ready`: the attempt must
/// be sent by the very instance that was polled ready, and the retry must wait for readiness
/// again (a clone called without it would panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reserved_below_the_layer_is_respected() {
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let session =
        signed_in_session(&server, Contract::OAuth2, |b| b.mode(RefreshMode::Reactive)).await;
    let api = ServiceBuilder::new()
        .layer(session.layer())
        .concurrency_limit(3)
        .service(hyper_client::<Full<Bytes>>());
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let mut api = api.clone();
            let url = server.url(&format!("/api/items/{i}"));
            tokio::spawn(async move {
                let request = Request::get(url).body(Full::default()).unwrap();
                let response = api.ready().await.unwrap().call(request).await.unwrap();
                read(response).await.0
            })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(session.stats().refreshes, 1);
}

/// What the echo server saw as the request's Authorization header.
fn authorization_seen(body: &[u8]) -> Option<String> {
    String::from_utf8_lossy(body)
        .lines()
        .find_map(|line| line.strip_prefix("authorization: ").map(str::to_owned))
}

#[tokio::test]
async fn only_our_requests_get_the_token() {
    let ours = echo_server().await;
    let foreign = echo_server().await;
    let session = signed_in_as("secret-token", |b| b.attach_to([ours.as_str()])).await;
    let api = ServiceBuilder::new()
        .layer(session.layer())
        .service(hyper_client::<Full<Bytes>>());
    let echo = |request: Request<Full<Bytes>>| {
        let api = api.clone();
        async move { authorization_seen(&read(api.oneshot(request).await.unwrap()).await.1) }
    };
    let plain = |url: String| Request::get(url).body(Full::default()).unwrap();

    assert_eq!(
        echo(plain(format!("{ours}/echo"))).await.as_deref(),
        Some("Bearer secret-token")
    );
    assert_eq!(echo(plain(format!("{foreign}/echo"))).await, None);
    let mut opted_out = plain(format!("{ours}/echo"));
    opted_out.extensions_mut().insert(NoAuth);
    assert_eq!(echo(opted_out).await, None);
    let mut own = plain(format!("{ours}/echo"));
    own.headers_mut()
        .insert(AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
    assert_eq!(echo(own).await.as_deref(), Some("Basic dXNlcjpwdw=="));
    // Plain http to a host that is not loopback: refused before anything is sent.
    let anywhere = signed_in_as("t", |b| b.attach_to_any()).await;
    let error = ServiceBuilder::new()
        .layer(anywhere.layer())
        .service(hyper_client::<Full<Bytes>>())
        .oneshot(plain("http://api.example.com/items".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(error.auth(), Some(Error::InsecureTransport { .. })),
        "{error}"
    );
}

/// Bare-path URIs (as tonic's generated clients send them into a channel) are judged by the
/// origin the layer is told, and refused when it was not told one.
#[tokio::test]
async fn bare_path_uris_need_an_origin() {
    let ours = echo_server().await;
    let session = signed_in_as("t", |b| b.attach_to([ours.as_str()])).await;
    let base: Uri = ours.parse().unwrap();
    // Below the layer, like tonic's channel, something adds the origin.
    let add_origin = move |request: Request<Full<Bytes>>| {
        let (mut parts, body) = request.into_parts();
        let mut uri = parts.uri.into_parts();
        uri.scheme = base.scheme().cloned();
        uri.authority = base.authority().cloned();
        parts.uri = Uri::from_parts(uri).unwrap();
        Request::from_parts(parts, body)
    };
    let path = || Request::get("/echo").body(Full::default()).unwrap();

    let unset = ServiceBuilder::new()
        .layer(session.layer())
        .map_request(add_origin.clone())
        .service(hyper_client::<Full<Bytes>>());
    let error = unset.oneshot(path()).await.unwrap_err();
    assert!(matches!(error.auth(), Some(Error::Config(_))), "{error}");

    let set = ServiceBuilder::new()
        .layer(session.layer().relative_to(&ours).unwrap())
        .map_request(add_origin)
        .service(hyper_client::<Full<Bytes>>());
    let response = set.oneshot(path()).await.unwrap();
    assert_eq!(
        authorization_seen(&read(response).await.1).as_deref(),
        Some("Bearer t")
    );
}

#[tokio::test]
async fn no_tokens_means_nothing_is_sent() {
    let server = start(ServerConfig::default()).await;
    let session = Session::builder()
        .refresher(tokenkeeper::refresh::from_fn(|_| async {
            Ok(TokenSet::new("fresh"))
        }))
        .attach_to([server.base_url()])
        .build()
        .unwrap();
    let api = ServiceBuilder::new()
        .layer(session.layer())
        .service(hyper_client::<Full<Bytes>>());
    let before = server.stats();
    let error = get(&api, &server.url("/api/items/1")).await.unwrap_err();
    assert!(
        matches!(error.auth(), Some(Error::LoginRequired)),
        "{error}"
    );
    assert_eq!(delta(&before, &server.stats()).api_401_missing, 0);
}

/// A token the API calls invalid (not expired) ends the session without a refresh, under the
/// strict policy.
#[tokio::test]
async fn an_invalid_token_ends_the_session_without_refreshing() {
    let server = start(ServerConfig::default()).await;
    let (tokens, refresher) = login(&server, Contract::Json).await;
    // Same claims (json style), broken signature.
    let access = {
        use tokenkeeper::secrecy::ExposeSecret;
        let real = tokens.access_token().expose_secret().to_owned();
        let (signed, _) = real.rsplit_once('.').unwrap();
        format!("{signed}.AAAA")
    };
    let session = Session::builder()
        .refresher_arc(refresher)
        .attach_to([server.base_url()])
        .classifier(Classifier::well_known())
        .invalid_token_policy(tokenkeeper::InvalidTokenPolicy::EndSession)
        .build()
        .unwrap();
    session
        .sign_in(TokenSet::new(access).with_refresh_token("unused"))
        .await
        .unwrap();
    let api = ServiceBuilder::new()
        .layer(session.layer())
        .service(hyper_client::<Full<Bytes>>());
    let error = get(&api, &server.url("/api/items/1")).await.unwrap_err();
    assert!(
        matches!(
            error.auth(),
            Some(Error::SessionExpired(LogoutReason::TokenInvalid))
        ),
        "{error}"
    );
    assert_eq!(session.stats().refresh_attempts, 0);
    assert!(matches!(
        get(&api, &server.url("/api/items/1"))
            .await
            .unwrap_err()
            .auth(),
        Some(Error::LoginRequired)
    ));
}

/// A refusal right after a refresh is handed back; the request is not retried a second time.
#[tokio::test]
async fn a_request_is_retried_at_most_once() {
    let echo = echo_server().await;
    let session = Session::builder()
        .refresher(tokenkeeper::refresh::from_fn(|_| async {
            Ok(TokenSet::new("fresh").with_refresh_token("r"))
        }))
        .attach_to([echo.as_str()])
        .mode(RefreshMode::Reactive)
        .build()
        .unwrap();
    session
        .sign_in(TokenSet::new("t").with_refresh_token("r"))
        .await
        .unwrap();
    let api = ServiceBuilder::new()
        .layer(session.layer())
        .service(hyper_client::<Full<Bytes>>());
    let (status, _) = get(&api, &format!("{echo}/unauthorized")).await.unwrap();
    assert_eq!(status, 401);
    let stats = session.stats();
    assert_eq!((stats.retries, stats.refreshes), (1, 1), "{stats:?}");
}
