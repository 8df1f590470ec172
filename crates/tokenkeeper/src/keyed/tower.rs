//! [`KeyedLayer`]: the tower adapter of a [`Sessions`] collection (feature `tower`).
//!
//! Per request it finds the session of the request's [`Key`] extension and then does exactly
//! what [`AuthLayer`]'s service does for a lone session (the same code).

use super::{CachedSession, Key, LoginKey, Sessions};
use crate::adapter::tower::{
    AuthError, AuthLayer, Call, Config, ReplayBody, ResponseBody, take_ready,
};
use crate::error::Error;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// A tower [`Layer`] that authenticates each request with the session of its [`Key`]. Made by
/// [`Sessions::layer`].
///
/// A request to an origin that gets tokens must carry a [`Key`]; without one it fails with
/// [`AuthError::Auth`]`(`[`Error::NoKey`]`)` and is not sent.
///
/// ```no_run
/// # async fn example(logins: tokenkeeper::Sessions<u64>) -> Result<(), Box<dyn std::error::Error>> {
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tokenkeeper::keyed::Key;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
/// let api = ServiceBuilder::new().layer(logins.layer()).service(client);
/// let mut request = http::Request::get("https://api.example.com/items/1").body(Full::default())?;
/// request.extensions_mut().insert(Key(42u64));
/// let response = api.oneshot(request).await?;
/// # let _ = response; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KeyedLayer<K: LoginKey> {
    sessions: Sessions<K>,
    settings: AuthLayer,
}

impl<K: LoginKey> Sessions<K> {
    /// The tower layer for this collection (feature `tower`).
    pub fn layer(&self) -> KeyedLayer<K> {
        KeyedLayer {
            sessions: self.clone(),
            settings: AuthLayer::new(self.prototype().clone()),
        }
    }
}

impl<K: LoginKey> KeyedLayer<K> {
    /// As [`AuthLayer::relative_to`].
    pub fn relative_to(mut self, origin: &str) -> Result<Self, Error> {
        self.settings = self.settings.relative_to(origin)?;
        Ok(self)
    }

    /// As [`AuthLayer::replay_limit`].
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.settings = self.settings.replay_limit(bytes);
        self
    }
}

impl<S, K: LoginKey> Layer<S> for KeyedLayer<K> {
    type Service = KeyedService<S, K>;

    fn layer(&self, inner: S) -> KeyedService<S, K> {
        KeyedService {
            inner,
            sessions: self.sessions.clone(),
            config: Arc::clone(self.settings.config()),
        }
    }
}

/// The [`Service`] made by [`KeyedLayer`].
#[derive(Debug, Clone)]
pub struct KeyedService<S, K: LoginKey> {
    inner: S,
    sessions: Sessions<K>,
    config: Arc<Config>,
}

impl<S, K, B, ResBody> Service<Request<B>> for KeyedService<S, K>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    K: LoginKey,
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
        let inner = take_ready(&mut self.inner);
        let config = Arc::clone(&self.config);
        let call = move |session| Call {
            inner,
            session,
            config,
        };
        let Some(Key(key)) = request.extensions().get::<Key<K>>() else {
            return without_key(call(self.sessions.prototype().clone()), request);
        };
        match self.sessions.cached_ready(key) {
            Err(error) => Box::pin(std::future::ready(Err(AuthError::Auth(error)))),
            Ok(CachedSession::Ready(session)) => Box::pin(call(session).run(request)),
            Ok(CachedSession::Restore(first)) => Box::pin(async move {
                let session = first.restore().await.map_err(AuthError::Auth)?;
                call(session).run(request).await
            }),
        }
    }
}

/// What a keyed service call returns.
type Reply<ResBody, E> = BoxFuture<'static, Result<Response<ResponseBody<ResBody>>, AuthError<E>>>;

/// A request without a key goes out untouched if it is not ours (another origin, its own
/// `Authorization` header, [`NoAuth`](crate::NoAuth)); otherwise it fails with [`Error::NoKey`].
fn without_key<S, B, ResBody>(call: Call<S>, request: Request<B>) -> Reply<ResBody, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: ReplayBody + Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Send,
{
    match call.is_ours(&request) {
        Err(refusal) => Box::pin(std::future::ready(Err(AuthError::Auth(refusal)))),
        Ok(true) => Box::pin(std::future::ready(Err(AuthError::Auth(Error::NoKey)))),
        // The prototype never signed in: whatever is not ours goes out as it is.
        Ok(false) => Box::pin(call.send_untouched(request)),
    }
}
