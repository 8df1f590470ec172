//! The tower adapter: [`AuthLayer`] for any `Service<http::Request<B>>` (hyper clients, tonic
//! channels), with the same semantics as the reqwest middleware (feature `tower`).
//!
//! Per request: attach the current token (allowed origins only), send, classify the response,
//! and on an expiry refusal let the session refresh (once for everyone) and retry once, if the
//! body can be sent again ([`ReplayBody`]).
//!
//! ```no_run
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tokenkeeper::{refresh, Session, TokenSet};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn example(login_response: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let session = Session::builder()
//!     .refresher(refresh::OAuth2::new("https://auth.example.com/oauth2/token")?.client_id("app"))
//!     .attach_to(["https://api.example.com"])
//!     .build()?;
//! session.sign_in(TokenSet::from_response(login_response)?).await?;
//!
//! // Any connector; https needs a TLS one (e.g. hyper-rustls).
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
//! let api = ServiceBuilder::new().layer(session.layer()).service(client);
//!
//! let request = http::Request::get("https://api.example.com/items/1").body(Full::default())?;
//! let response = api.oneshot(request).await?;
//! let item = response.into_body().collect().await?.to_bytes();
//! # let _ = item; Ok(()) }
//! ```
//!
//! ## What it does, exactly
//! - **Which requests get the token.** Requests to the session's allowed origins
//!   ([`SessionBuilder::attach_to`](crate::SessionBuilder::attach_to)), judged by the request
//!   URI's scheme and authority. A request that already has an `Authorization` header, or
//!   carries the [`NoAuth`](crate::NoAuth) extension, is sent untouched. A URI that is only a
//!   path (tonic's generated clients send such requests into a `Channel`, which adds the origin
//!   further down) needs [`AuthLayer::relative_to`]; without it such a request fails with
//!   [`Error::Config`] rather than going out unauthenticated or to an unchecked place.
//! - **Verdicts** come from the session's [`Classifier`](crate::classify::Classifier), reading
//!   at most its body limit, only when a rule needs the body; the body is handed back intact
//!   in a [`ResponseBody`]. For gRPC add
//!   [`classify::rules::grpc_unauthenticated`](crate::classify::rules::grpc_unauthenticated):
//!   a trailers-only `grpc-status: 16` then means "refresh and retry".
//! - **Retry at most once**, with the refreshed token, when the body is replayable (see
//!   [`ReplayBody`]: buffered bodies up to [`AuthLayer::replay_limit`], never a stream that is
//!   still being produced). Otherwise the refusal goes back to the caller as it came, and the
//!   refresh still happens, so the caller's next attempt succeeds.
//! - **Generation stamping, single flight, failure policy**: the [`Session`]'s, shared with
//!   every other adapter and clone.
//! - **`poll_ready`**: the service waits for the inner service's readiness and sends the first
//!   attempt with that very instance (the usual clone-and-swap), so readiness-reserving layers
//!   below (concurrency limits, buffers) work; the retry waits for readiness again.
//! - **Redirects**: put redirect-following *above* this layer, so each hop is judged by origin.
//!   (The layer does not see redirects followed below it; the reqwest adapter, which does,
//!   accepts a refusal from another origin than the one the token went to.)
//!
//! Errors are [`AuthError`]: the inner service's own error, or a tokenkeeper [`Error`].

#[cfg(feature = "tonic")]
mod grpc;
mod replay_body;

pub use super::response_body::ResponseBody;
#[cfg(feature = "tonic")]
pub use grpc::SnapshotInterceptor;
pub use replay_body::{DEFAULT_REPLAY_LIMIT, ReplayBody};

use super::{attach, classify_head, classify_with_body, opted_out};
use crate::classify::Verdict;
use crate::config_error::ConfigError;
use crate::error::Error;
use crate::origin::Decision;
#[cfg(feature = "dpop")]
use crate::session::stats::Counters;
use crate::session::{AfterResponse, Credential, RouteKey, Session};
use bytes::Bytes;
use futures_util::future::{BoxFuture, poll_fn};
use http::{Request, Response, Uri};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};
use url::Url;

use crate::extensions::Retried;

/// How an [`AuthService`] treats requests, shared by all its clones.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    relative_to: Option<Url>,
    replay_limit: usize,
}

/// A tower [`Layer`] that authenticates requests with a [`Session`]. Made by
/// [`Session::layer`] or [`AuthLayer::new`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    session: Session,
    config: Arc<Config>,
}

impl Session {
    /// The tower layer for this session (feature `tower`).
    pub fn layer(&self) -> AuthLayer {
        AuthLayer::new(self.clone())
    }
}

impl AuthLayer {
    /// The settings its services share, for the keyed layer.
    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// A layer for `session`.
    pub fn new(session: Session) -> Self {
        Self {
            session,
            config: Arc::new(Config {
                relative_to: None,
                replay_limit: DEFAULT_REPLAY_LIMIT,
            }),
        }
    }

    /// Requests whose URI is only a path (`/pkg.Service/Method`, as tonic's generated clients
    /// send them into a `Channel`) are taken to go to `origin` (e.g. the URL the channel
    /// connects to), and get the token if the session attaches to that origin.
    pub fn relative_to(mut self, origin: &str) -> Result<Self, ConfigError> {
        let url = Url::parse(origin)
            .map_err(|e| ConfigError::new(format!("`{origin}` is not a URL: {e}")))?;
        Arc::make_mut(&mut self.config).relative_to = Some(url);
        Ok(self)
    }

    /// Request bodies up to this many bytes are kept for a retry (default
    /// [`DEFAULT_REPLAY_LIMIT`]); `0` keeps only empty ones.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).replay_limit = bytes;
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            session: self.session.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

/// The [`Service`] made by [`AuthLayer`]: attaches, classifies, refreshes and retries.
///
/// Its response body is [`ResponseBody`] (the inner body, intact) and its error
/// [`AuthError`]. It is `Clone` when the inner service is; each call works on its own clone.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    session: Session,
    config: Arc<Config>,
}

impl<S> AuthService<S> {
    /// Wraps `inner` with `session`'s authentication (same as `session.layer().layer(inner)`).
    pub fn new(inner: S, session: Session) -> Self {
        session.layer().layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What an [`AuthService`] call fails with.
///
/// Under tonic, the generated client turns it into a `Status` (code `Unknown`, the message of
/// this error) whose source chain holds it; [`auth_error`] finds the tokenkeeper part.
#[derive(Debug, thiserror::Error)]
pub enum AuthError<E> {
    /// tokenkeeper refused or could not authenticate the request (login required, session
    /// expired, refresh unavailable, insecure transport, configuration). See [`Error`].
    #[error("{0}")]
    Auth(#[source] Error),
    /// The inner service failed.
    #[error("{0}")]
    Inner(#[source] E),
}

impl<E> AuthError<E> {
    /// The tokenkeeper error, if that is what this is.
    pub fn auth(&self) -> Option<&Error> {
        match self {
            AuthError::Auth(error) => Some(error),
            AuthError::Inner(_) => None,
        }
    }

    /// The inner service's error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            AuthError::Inner(error) => Some(error),
            AuthError::Auth(_) => None,
        }
    }
}

/// Finds a tokenkeeper [`Error`] in an error's source chain: in an [`AuthError`], a boxed one,
/// or a `tonic::Status` made from one (`auth_error(&status)`).
pub fn auth_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<Error>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

impl<S, B, ResBody> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: ReplayBody + Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = AuthError<S::Error>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(AuthError::Inner)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let call = Call {
            inner: take_ready(&mut self.inner),
            session: self.session.clone(),
            config: Arc::clone(&self.config),
        };
        Box::pin(call.run(request))
    }
}

/// The instance of `inner` that was polled ready, to send the first attempt; a clone of it
/// stays behind (tower's clone-and-swap).
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// One request through the service.
pub(crate) struct Call<S> {
    pub(crate) inner: S,
    pub(crate) session: Session,
    pub(crate) config: Arc<Config>,
}

impl<S> Call<S> {
    pub(crate) async fn run<B, ResBody>(
        self,
        mut request: Request<B>,
    ) -> Result<Response<ResponseBody<ResBody>>, AuthError<S::Error>>
    where
        S: Service<Request<B>, Response = Response<ResBody>>,
        B: ReplayBody,
        ResBody: http_body::Body<Data = Bytes> + Unpin,
    {
        if !self.is_ours(&request).map_err(AuthError::Auth)? {
            return self.send_untouched(request).await;
        }
        let Call {
            mut inner,
            session,
            config,
        } = self;
        let session = &session;
        let credential = session.credential().await.map_err(AuthError::Auth)?;
        let already_retried = request.extensions().get::<Retried>().is_some();
        let replay = if already_retried {
            None
        } else {
            let (parts, body) = request.into_parts();
            let (body, copy) = body.try_replay(config.replay_limit);
            let replay = copy.map(|copy| Request::from_parts(parts.clone(), copy));
            request = Request::from_parts(parts, body);
            replay
        };
        let base = config.relative_to.as_ref();
        put_credential(&mut request, &credential, base).map_err(AuthError::Auth)?;
        // For the per-route accounting of refusals; both clones are reference counts.
        let method = request.method().clone();
        let uri = request.uri().clone();
        let route = || RouteKey::new(&method, uri.path());

        #[cfg_attr(not(feature = "dpop"), allow(unused_mut))]
        let mut replay = replay;
        let response = send(&mut inner, request).await?;
        // RFC 9449 §9: a demand for a nonce is answered once, with no refresh and no retry
        // mark; it is never judged as a refusal of the token.
        #[cfg(feature = "dpop")]
        let response = if dpop_nonce_demand(&credential, &uri, base, &response) {
            let Some(again) = replay.take() else {
                return Ok(wrap(response));
            };
            drop(response);
            let (parts, body) = again.into_parts();
            let (body, copy) = body.try_replay(config.replay_limit);
            replay = copy.map(|copy| Request::from_parts(parts.clone(), copy));
            let mut again = Request::from_parts(parts, body);
            put_credential(&mut again, &credential, base).map_err(AuthError::Auth)?;
            Counters::bump(&session.counters().dpop_nonce_retries);
            poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(AuthError::Inner)?;
            let response = send(&mut inner, again).await?;
            if dpop_nonce_demand(&credential, &uri, base, &response) {
                return Ok(wrap(response));
            }
            response
        } else {
            response
        };
        let (verdict, response) = classify(session, response).await;
        let fresh = match session
            .after_response(
                &credential,
                verdict,
                replay.is_some(),
                already_retried,
                route,
            )
            .await
        {
            AfterResponse::Deliver => return Ok(response),
            AfterResponse::Fail(error) => return Err(AuthError::Auth(error)),
            AfterResponse::Retry(fresh) => fresh,
        };
        let Some(mut retry) = replay else {
            return Ok(response);
        };
        // Let the refused response (and its connection) go before sending again.
        drop(response);
        retry.extensions_mut().insert(Retried);
        put_credential(&mut retry, &fresh, base).map_err(AuthError::Auth)?;
        poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(AuthError::Inner)?;
        let response = send(&mut inner, retry).await?;
        #[cfg(feature = "dpop")]
        if dpop_nonce_demand(&fresh, &uri, base, &response) {
            return Ok(wrap(response));
        }
        let (verdict, response) = classify(session, response).await;
        session
            .after_retry(&fresh, verdict, route)
            .await
            .map_err(AuthError::Auth)?;
        Ok(response)
    }

    /// Sends a request that is not ours as it is.
    pub(crate) async fn send_untouched<B, ResBody>(
        mut self,
        request: Request<B>,
    ) -> Result<Response<ResponseBody<ResBody>>, AuthError<S::Error>>
    where
        S: Service<Request<B>, Response = Response<ResBody>>,
        ResBody: http_body::Body<Data = Bytes> + Unpin,
    {
        send(&mut self.inner, request).await.map(wrap)
    }

    /// Whether the session authenticates `request`: not when it carries its caller's own
    /// `Authorization` header or the [`NoAuth`](crate::NoAuth) opt-out, nor when it goes to an
    /// origin the session does not attach to; an allowed origin over plain HTTP is refused.
    pub(crate) fn is_ours<B>(&self, request: &Request<B>) -> Result<bool, Error> {
        if opted_out(request.headers(), request.extensions()) {
            return Ok(false);
        }
        match self.decide(request.uri())? {
            (Decision::PassThrough, _) => Ok(false),
            (Decision::Insecure, origin) => Err(Error::InsecureTransport { origin }),
            (Decision::Attach, _) => Ok(true),
        }
    }

    /// Where a request goes, by its URI (or the configured origin for a bare path), and that
    /// origin for messages.
    fn decide(&self, uri: &Uri) -> Result<(Decision, String), Error> {
        let url = match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                let Ok(url) = Url::parse(&format!("{scheme}://{authority}/")) else {
                    // Not an http(s) origin we could have allowed.
                    return Ok((Decision::PassThrough, String::new()));
                };
                url
            }
            _ => match &self.config.relative_to {
                Some(url) => url.clone(),
                None => {
                    return Err(ConfigError::new(format!(
                        "the request URI `{}` has no origin: set AuthLayer::relative_to to the \
                         origin the inner service sends to",
                        uri.path()
                    ))
                    .into());
                }
            },
        };
        let decision = self.session.decide(&url);
        Ok((decision, url.origin().ascii_serialization()))
    }
}

/// Sends with `inner`, which the caller made ready.
async fn send<S, B, ResBody>(
    inner: &mut S,
    request: Request<B>,
) -> Result<Response<ResBody>, AuthError<S::Error>>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    inner.call(request).await.map_err(AuthError::Inner)
}

fn wrap<B: http_body::Body>(response: Response<B>) -> Response<ResponseBody<B>> {
    response.map(ResponseBody::new)
}

/// Puts `credential` on a request: its header, and a DPoP proof for the request's method and
/// absolute URL when the credential is DPoP-bound.
#[cfg_attr(not(feature = "dpop"), allow(clippy::unnecessary_wraps))]
fn put_credential<B>(
    request: &mut Request<B>,
    credential: &Credential,
    base: Option<&Url>,
) -> Result<(), Error> {
    attach(request.headers_mut(), credential);
    #[cfg(feature = "dpop")]
    if credential.is_dpop_bound() {
        let url = absolute(request.uri(), base)?;
        let method = request.method().clone();
        super::attach_dpop_proof(request.headers_mut(), credential, &method, &url)?;
    }
    #[cfg(not(feature = "dpop"))]
    let _ = base;
    Ok(())
}

/// The request's URL: its URI when absolute, else the path on the configured origin.
#[cfg(feature = "dpop")]
fn absolute(uri: &Uri, base: Option<&Url>) -> Result<Url, Error> {
    let parsed = match (uri.scheme_str(), base) {
        (Some(_), _) => Url::parse(&uri.to_string()),
        (None, Some(base)) => base.join(uri.path_and_query().map_or("/", |p| p.as_str())),
        (None, None) => {
            return Err(ConfigError::new(
                "a DPoP proof needs the request's absolute URL: set AuthLayer::relative_to",
            )
            .into());
        }
    };
    parsed.map_err(|_| ConfigError::new("the request URI is not a URL a proof can name").into())
}

/// Takes the response's `DPoP-Nonce` for the request's origin; whether it demands one.
#[cfg(feature = "dpop")]
fn dpop_nonce_demand<B>(
    credential: &Credential,
    uri: &Uri,
    base: Option<&Url>,
    response: &Response<B>,
) -> bool {
    let Ok(url) = absolute(uri, base) else {
        return false;
    };
    super::dpop_nonce_demand(credential, &url, response.status(), response.headers())
}

/// Classifies a response, reading at most the classifier's limit of its body when a rule needs
/// it, and hands the response back with its body intact.
async fn classify<B>(
    session: &Session,
    response: Response<B>,
) -> (Verdict, Response<ResponseBody<B>>)
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let classifier = session.classifier();
    match classify_head(classifier, response.status(), response.headers()) {
        Some(verdict) => (verdict, wrap(response)),
        None => classify_with_body(classifier, response).await,
    }
}
