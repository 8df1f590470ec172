//! The reqwest-middleware adapter: [`AuthMiddleware`] (feature `reqwest`, default).
//!
//! ```no_run
//! use tokenkeeper::{refresh, Session, TokenSet};
//!
//! # async fn example(login_response: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let session = Session::builder()
//!     .refresher(refresh::OAuth2::new("https://auth.example.com/oauth2/token")?.client_id("app"))
//!     .attach_to(["https://api.example.com"])
//!     .build()?;
//! session.sign_in(TokenSet::from_response(login_response)?).await?;
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(session.middleware()) // or `AuthMiddleware::new(session)`
//!     .build();
//! let item = client.get("https://api.example.com/items/1").send().await?;
//! # let _ = item; Ok(()) }
//! ```
//!
//! Per request: attach the current token (allowed origins only), send, classify the response,
//! and on an expiry refusal let the session refresh (once for everyone) and retry once.
//!
//! Most responses are not refusals, so the per-request path does only what every request
//! needs, without allocating: the credential without awaiting, a copy of the request for a
//! possible retry (`Replay`), the token, the send, one bit test on the status. Everything
//! after a response that a rule could read as a refusal (classify, refresh, retry) lives in
//! `AuthMiddleware::after_candidate`, boxed on its own, so its large future is not part of
//! the per-request one (which stays below glibc's 1 KiB fast path; a test checks).

mod replay;

use super::{attach, classify_head, classify_with_body, opted_out};
use crate::classify::Verdict;
use crate::error::Error;
use crate::extensions::Retried;
use crate::origin::{Decision, same_origin};
use crate::session::{AfterResponse, Credential, RouteKey, Session};
use http::Extensions;
use replay::{KeptUrl, Replay};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use std::borrow::Borrow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use url::Url;

/// Attaches, refreshes and retries for one [`Session`]. Made by [`Session::middleware`] or
/// [`AuthMiddleware::new`].
///
/// Errors from tokenkeeper come back as [`reqwest_middleware::Error::Middleware`] wrapping an
/// [`Error`]; `downcast_ref::<tokenkeeper::Error>()` recovers it.
#[derive(Debug, Clone)]
pub struct AuthMiddleware {
    session: Session,
}

impl AuthMiddleware {
    /// The middleware for `session` (same as [`Session::middleware`]).
    ///
    /// ```
    /// # fn example(session: tokenkeeper::Session) {
    /// use tokenkeeper::adapter::reqwest::AuthMiddleware;
    ///
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(AuthMiddleware::new(session))
    ///     .build();
    /// # let _ = client; }
    /// ```
    pub fn new(session: Session) -> Self {
        Self { session }
    }
}

impl Session {
    /// The reqwest-middleware adapter for this session (feature `reqwest`, default).
    pub fn middleware(&self) -> AuthMiddleware {
        AuthMiddleware::new(self.clone())
    }
}

impl AuthMiddleware {
    pub(crate) fn for_session(session: Session) -> Self {
        Self { session }
    }
}

/// Whether `session` authenticates `request`: not when it carries its caller's own
/// `Authorization` header or the [`NoAuth`](crate::NoAuth) opt-out, nor when it goes to an
/// origin the session does not attach to; an allowed origin over plain HTTP is refused.
pub(crate) fn is_ours(
    session: &Session,
    request: &Request,
    extensions: &Extensions,
) -> Result<bool, Error> {
    if opted_out(request.headers(), extensions) {
        return Ok(false);
    }
    match session.decide(request.url()) {
        Decision::PassThrough => Ok(false),
        Decision::Insecure => Err(Error::InsecureTransport {
            origin: request.url().origin().ascii_serialization(),
        }),
        Decision::Attach => Ok(true),
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the cold path needs to know about the request that was sent.
struct Sent {
    /// The credential it carried.
    credential: Arc<Credential>,
    /// Where it went (a response from another origin followed a redirect there), and how: the
    /// route (method and path) of the per-route accounting of refusals.
    url: KeptUrl,
    method: http::Method,
    /// A copy to retry with; `None` for a streamed body or a request retried before.
    replay: Option<Replay>,
    /// Whether this request was retried before (by us, under another layer that replays it).
    already_retried: bool,
}

impl Sent {
    fn route(&self) -> RouteKey {
        let path = self.url.to_url();
        RouteKey::new(&self.method, path.as_ref().map_or("", Url::path))
    }
}

/// What to do with a request, decided without awaiting.
enum Plan {
    /// Not ours: send it untouched.
    PassThrough,
    /// Attach this credential and send it.
    Send(Arc<Credential>),
    /// The token is past its hard deadline: wait for the refresh first.
    WaitForToken,
}

/// A response, checked against the statuses any rule reads.
enum Checked {
    /// No rule reads this status: the caller gets it.
    Accepted(Response),
    /// A rule may read it as a refusal.
    Candidate(Response),
}

// Written out instead of with `#[async_trait]`: the decisions before sending need no waiting, so
// they run here, before any future exists. A request that is not ours is handed on as is (no
// future of ours at all), and the future of a request that is ours holds only what `send`
// needs, not the copies of its arguments `#[async_trait]` would keep.
impl Middleware for AuthMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        request: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> BoxFuture<'async_trait, reqwest_middleware::Result<Response>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        dispatch(self, request, extensions, next)
    }
}

impl AuthMiddleware {
    /// [`Middleware::handle`] for a middleware the future owns: the keyed middleware makes one
    /// per request around the key's session.
    pub(crate) fn handle_owned<'a>(
        self,
        request: Request,
        extensions: &'a mut Extensions,
        next: Next<'a>,
    ) -> BoxFuture<'a, reqwest_middleware::Result<Response>> {
        // The future owns the middleware itself rather than wrapping a borrowing future in
        // another that owns it: a wrapper would keep its captured arguments beside the inner
        // future, above glibc's fast path (a test checks).
        dispatch(self, request, extensions, next)
    }

    /// Everything before sending that needs no waiting: the opt-outs, the origin, the
    /// credential.
    fn plan(&self, request: &Request, extensions: &Extensions) -> Result<Plan, Error> {
        if !is_ours(&self.session, request, extensions)? {
            return Ok(Plan::PassThrough);
        }
        Ok(match self.session.credential_now()? {
            Some(credential) => Plan::Send(credential),
            None => Plan::WaitForToken,
        })
    }

    /// Whether a rule may read this response as a refusal. Every other response was accepted:
    /// this does what `after_response` does for `Verdict::Accept`, without its future.
    fn check(&self, response: Response, sent: &Sent) -> Checked {
        if self.session.classifier().is_candidate(response.status()) {
            Checked::Candidate(response)
        } else {
            // The route is only worked out when some route is being tracked (rare).
            self.session.note_accepted(|| sent.route());
            Checked::Accepted(response)
        }
    }

    /// The response's status is one a rule reads: classify it, let the session decide, and
    /// retry once with the fresh token when it says so.
    fn after_candidate<'a>(
        &'a self,
        response: Response,
        sent: Sent,
        extensions: &'a mut Extensions,
        next: Next<'a>,
    ) -> BoxFuture<'a, reqwest_middleware::Result<Response>> {
        Box::pin(async move {
            let session = &self.session;
            let Sent {
                credential,
                url,
                method,
                replay,
                already_retried,
            } = sent;
            let Some(sent_to) = url.to_url() else {
                return Ok(response);
            };
            let (verdict, response) = self.classify(response, &sent_to).await;
            // From the request, not the response: a response rebuilt after its body was read
            // has no URL.
            let route = RouteKey::new(&method, sent_to.path());
            let fresh = match session
                .after_response(
                    &credential,
                    verdict,
                    replay.is_some(),
                    already_retried,
                    || route,
                )
                .await
            {
                AfterResponse::Deliver => return Ok(response),
                AfterResponse::Fail(error) => return Err(fail(error)),
                AfterResponse::Retry(fresh) => fresh,
            };
            let Some(replay) = replay else {
                return Ok(response);
            };
            let mut retry = replay.into_request(sent_to.clone());
            extensions.insert(Retried);
            put_credential(&mut retry, &fresh)?;
            let response = next.run(retry, extensions).await?;
            // A demand for a nonce is no verdict on the fresh token.
            #[cfg(feature = "dpop")]
            if dpop_nonce_demand(&fresh, &response) {
                return Ok(response);
            }
            let (verdict, response) = self.classify(response, &sent_to).await;
            session
                .after_retry(&fresh, verdict, || route)
                .await
                .map_err(fail)?;
            Ok(response)
        })
    }

    /// Classifies a response, reading at most the classifier's limit of its body when a rule
    /// needs it, and hands the response back with its body intact.
    async fn classify(&self, response: Response, sent_to: &Url) -> (Verdict, Response) {
        let classifier = self.session.classifier();
        // After a redirect to another origin (which reqwest sent without our token), a refusal
        // is that origin's business, not a verdict on our token. Only this adapter sees
        // redirects: reqwest follows them below the middleware.
        if !classifier.is_candidate(response.status()) || !same_origin(response.url(), sent_to) {
            return (Verdict::Accept, response);
        }
        if let Some(verdict) = classify_head(classifier, response.status(), response.headers()) {
            return (verdict, response);
        }
        let response = http::Response::<reqwest::Body>::from(response);
        let (verdict, response) = classify_with_body(classifier, response).await;
        let response = response.map(|body| match body.into_bytes() {
            Ok(whole) => reqwest::Body::from(whole),
            Err(partly_read) => reqwest::Body::wrap(partly_read),
        });
        (verdict, Response::from(response))
    }
}

/// [`Middleware::handle`]'s body, for a middleware borrowed (a single session's) or owned (the
/// keyed middleware makes one per request around the key's session): everything before sending
/// is decided without awaiting, and only a request that is ours gets a future of ours.
fn dispatch<'a, M>(
    middleware: M,
    request: Request,
    extensions: &'a mut Extensions,
    next: Next<'a>,
) -> BoxFuture<'a, reqwest_middleware::Result<Response>>
where
    M: Borrow<AuthMiddleware> + Send + 'a,
{
    let already_retried = extensions.get::<Retried>().is_some();
    match middleware.borrow().plan(&request, extensions) {
        Err(error) => Box::pin(std::future::ready(Err(fail(error)))),
        Ok(Plan::PassThrough) => next.run(request, extensions),
        Ok(Plan::Send(credential)) => Box::pin(send(
            middleware,
            request,
            credential,
            already_retried,
            extensions,
            next,
        )),
        Ok(Plan::WaitForToken) => Box::pin(async move {
            // Past the hard deadline: wait for the refresh first (rare; a larger future).
            let credential = middleware
                .borrow()
                .session
                .credential()
                .await
                .map_err(fail)?;
            send(
                middleware,
                request,
                credential,
                already_retried,
                extensions,
                next,
            )
            .await
        }),
    }
}

/// Keeps what a retry needs, attaches `credential`'s token and sends the request, for a
/// middleware the future borrows (`&AuthMiddleware`, the single-session middleware) or owns
/// (`AuthMiddleware`, made per request by the keyed one).
///
/// An `async move` block rather than an `async fn`: an `async fn` copies its arguments into
/// locals (the future would hold them twice). The response is only moved, never borrowed: a
/// borrowed local stays in the future until its scope ends, awaits included.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn send<'a, M>(
    middleware: M,
    mut request: Request,
    credential: Arc<Credential>,
    already_retried: bool,
    extensions: &'a mut Extensions,
    next: Next<'a>,
) -> impl Future<Output = reqwest_middleware::Result<Response>> + Send + 'a
where
    M: Borrow<AuthMiddleware> + Send + 'a,
{
    async move {
        #[cfg_attr(not(feature = "dpop"), allow(unused_mut))]
        let mut sent = Sent {
            url: KeptUrl::of(request.url()),
            // A standard method clones without allocating.
            method: request.method().clone(),
            replay: if already_retried {
                None
            } else {
                Replay::of(&request)
            },
            credential,
            already_retried,
        };
        put_credential(&mut request, &sent.credential)?;
        let response = next.clone().run(request, extensions).await?;
        #[cfg(feature = "dpop")]
        let response = if sent.credential.is_dpop_bound() {
            match middleware
                .borrow()
                .after_dpop(response, &mut sent, extensions, next.clone())
                .await?
            {
                Nonced::Deliver(response) => return Ok(response),
                Nonced::Go(response) => response,
            }
        } else {
            response
        };
        let checked = middleware.borrow().check(response, &sent);
        match checked {
            Checked::Accepted(response) => Ok(response),
            Checked::Candidate(response) => {
                middleware
                    .borrow()
                    .after_candidate(response, sent, extensions, next)
                    .await
            }
        }
    }
}

/// Puts `credential` on a request: its header, and a DPoP proof for the request's method and
/// URL when the credential is DPoP-bound.
#[cfg_attr(not(feature = "dpop"), allow(clippy::unnecessary_wraps))]
fn put_credential(
    request: &mut Request,
    credential: &Credential,
) -> reqwest_middleware::Result<()> {
    attach(request.headers_mut(), credential);
    #[cfg(feature = "dpop")]
    if credential.is_dpop_bound() {
        let (method, url) = (request.method().clone(), request.url().clone());
        super::attach_dpop_proof(request.headers_mut(), credential, &method, &url).map_err(fail)?;
    }
    Ok(())
}

/// What became of a response to a DPoP-bound request after a nonce was dealt with.
#[cfg(feature = "dpop")]
enum Nonced {
    /// A demand for a nonce that was not (or could not be) answered: the caller gets it as it
    /// is. It says nothing about the token.
    Deliver(Response),
    /// Any other response: judged as usual.
    Go(Response),
}

/// Takes the response's `DPoP-Nonce` for its origin; whether it demands one (RFC 9449 §9).
#[cfg(feature = "dpop")]
fn dpop_nonce_demand(credential: &Credential, response: &Response) -> bool {
    super::dpop_nonce_demand(
        credential,
        response.url(),
        response.status(),
        response.headers(),
    )
}

#[cfg(feature = "dpop")]
impl AuthMiddleware {
    /// A response to a DPoP-bound request: keeps its nonce, and answers a demand for one by
    /// sending the request once more with a proof that carries it. No refresh, no retry mark:
    /// the request can still be retried once after a refresh. A body that cannot be replayed
    /// gets the demand back.
    fn after_dpop<'b>(
        &'b self,
        response: Response,
        sent: &'b mut Sent,
        extensions: &'b mut Extensions,
        next: Next<'b>,
    ) -> BoxFuture<'b, reqwest_middleware::Result<Nonced>> {
        Box::pin(async move {
            if !dpop_nonce_demand(&sent.credential, &response) {
                return Ok(Nonced::Go(response));
            }
            let (Some(sent_to), Some(replay)) = (sent.url.to_url(), sent.replay.take()) else {
                return Ok(Nonced::Deliver(response));
            };
            if !same_origin(response.url(), &sent_to) {
                return Ok(Nonced::Deliver(response));
            }
            crate::session::stats::Counters::bump(&self.session.counters().dpop_nonce_retries);
            drop(response);
            let mut again = replay.into_request(sent_to);
            // Kept for the one retry a refresh may still call for.
            sent.replay = Replay::of(&again);
            put_credential(&mut again, &sent.credential)?;
            let response = next.run(again, extensions).await?;
            if dpop_nonce_demand(&sent.credential, &response) {
                return Ok(Nonced::Deliver(response));
            }
            Ok(Nonced::Go(response))
        })
    }
}

pub(crate) fn fail(error: Error) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(error)
}

/// For the tests of this adapter and the keyed one: the size of the per-request future.
#[cfg(test)]
pub(crate) mod future_size {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A middleware in front of ours that records the size of the future ours returns for a
    /// request, without polling it (nothing is sent).
    pub(crate) struct FutureSize(pub(crate) Arc<AtomicUsize>);

    #[async_trait::async_trait]
    impl Middleware for FutureSize {
        async fn handle(
            &self,
            request: Request,
            extensions: &mut Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<Response> {
            let future = next.run(request, extensions);
            self.0
                .store(std::mem::size_of_val(&*future), Ordering::Relaxed);
            Err(reqwest_middleware::Error::middleware(Error::LoginRequired))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::future_size::FutureSize;

    /// glibc serves blocks up to 1032 bytes from its per-thread cache; above that every request
    /// would pay for the general allocator (and copy the larger future into its box).
    #[tokio::test]
    async fn the_per_request_future_fits_glibcs_fast_path() {
        let session = Session::builder()
            .refresher(crate::refresh::from_fn(|_| async {
                Ok(TokenSet::new("a"))
            }))
            .attach_to(["https://api.example.com"])
            .build()
            .unwrap();
        session.sign_in(TokenSet::new("token")).await.unwrap();
        let size = Arc::new(AtomicUsize::new(0));
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with_arc(Arc::new(FutureSize(Arc::clone(&size))))
            .with(session.middleware())
            .build();
        let _ = client.get("https://api.example.com/items/1").send().await;
        let size = size.load(Ordering::Relaxed);
        eprintln!("the per-request future: {size} bytes");
        assert!(size > 0);
        assert!(size <= 1024, "the per-request future is {size} bytes");
    }
}
