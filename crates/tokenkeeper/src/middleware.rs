//! The reqwest-middleware adapter: [`AuthMiddleware`].
//!
//! Per request: attach the current token (allowed origins only), send, classify the response,
//! and on an expiry refusal let the session refresh (once for everyone) and retry once.

use crate::classify::{ResponseView, Verdict};
use crate::error::Error;
use crate::markers::{NoAuth, Retried};
use crate::origin::{Decision, OriginKey};
use crate::session::{AfterResponse, Credential, RouteKey, Session};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use http::Extensions;
use http::header::AUTHORIZATION;
use http_body_util::BodyExt;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

/// Attaches, refreshes and retries for one [`Session`]. Made by [`Session::middleware`].
///
/// Errors from tokenkeeper come back as `reqwest_middleware::Error::Middleware` wrapping an
/// [`Error`]; `downcast_ref::<tokenkeeper::Error>()` recovers it.
#[derive(Debug, Clone)]
pub struct AuthMiddleware {
    session: Session,
}

impl Session {
    /// The reqwest-middleware adapter for this session.
    pub fn middleware(&self) -> AuthMiddleware {
        AuthMiddleware {
            session: self.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // The caller's own Authorization header, an opt-out, or a foreign origin: not ours.
        if extensions.get::<NoAuth>().is_some() || request.headers().contains_key(AUTHORIZATION) {
            return next.run(request, extensions).await;
        }
        match self.session.decide(request.url()) {
            Decision::PassThrough => return next.run(request, extensions).await,
            Decision::Insecure => {
                let origin = request.url().origin().ascii_serialization();
                return Err(fail(Error::InsecureTransport { origin }));
            }
            Decision::Attach => {}
        }
        let session = &self.session;
        let origin = OriginKey::of(request.url());
        let credential = session.credential().await.map_err(fail)?;
        let already_retried = extensions.get::<Retried>().is_some();
        // A standard method clones without allocating; the route is only hashed on a refusal.
        let method = request.method().clone();
        // Cloning costs a refcount for buffered bodies; streams cannot be cloned (`None`).
        let replay = if already_retried {
            None
        } else {
            request.try_clone()
        };
        attach(&mut request, &credential);

        let response = next.clone().run(request, extensions).await?;
        let (verdict, response) = self.classify(response, &origin).await;
        let route = || RouteKey::new(&method, response.url().path());
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
            AfterResponse::Fail(error) => return Err(fail(error)),
            AfterResponse::Retry(fresh) => fresh,
        };
        let Some(mut retry) = replay else {
            return Ok(response);
        };
        extensions.insert(Retried);
        attach(&mut retry, &fresh);
        let response = next.run(retry, extensions).await?;
        let (verdict, response) = self.classify(response, &origin).await;
        let route = || RouteKey::new(&method, response.url().path());
        session
            .after_retry(&fresh, verdict, route)
            .await
            .map_err(fail)?;
        Ok(response)
    }
}

impl AuthMiddleware {
    /// Classifies a response, reading at most the classifier's limit of its body when a rule
    /// needs it, and hands the response back with its body intact.
    async fn classify(&self, response: Response, sent_to: &OriginKey) -> (Verdict, Response) {
        let classifier = self.session.classifier();
        let status = response.status();
        // After a redirect to another origin (which reqwest sent without our token), a refusal
        // is that origin's business, not a verdict on our token.
        if !classifier.is_candidate(status) || OriginKey::of(response.url()) != *sent_to {
            return (Verdict::Accept, response);
        }
        if !classifier.needs_body(status) {
            let view = ResponseView {
                status,
                headers: response.headers(),
                body: &[],
            };
            return (classifier.classify(&view), response);
        }
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let (prefix, rest) = read_prefix(body, classifier.max_body()).await;
        let view = ResponseView {
            status,
            headers: &parts.headers,
            body: &prefix,
        };
        let verdict = classifier.classify(&view);
        let body = match rest {
            Rest::Done => reqwest::Body::from(prefix),
            Rest::More(rest) => reqwest::Body::wrap_stream(
                stream::once(async move { Ok(prefix) }).chain(rest.into_data_stream()),
            ),
            Rest::Failed(error) => {
                reqwest::Body::wrap_stream(stream::iter([Ok(prefix), Err(error)]))
            }
        };
        // `parts` keeps the response's extensions, URL included.
        (
            verdict,
            Response::from(http::Response::from_parts(parts, body)),
        )
    }
}

fn attach(request: &mut Request, credential: &Credential) {
    request
        .headers_mut()
        .insert(AUTHORIZATION, credential.header_value());
}

fn fail(error: Error) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(error)
}

/// What is left of a body after its first bytes were read.
enum Rest {
    Done,
    More(reqwest::Body),
    Failed(reqwest::Error),
}

/// Reads up to `limit` bytes (stopping at a frame boundary past it).
async fn read_prefix(mut body: reqwest::Body, limit: usize) -> (Bytes, Rest) {
    let mut prefix = BytesMut::new();
    while prefix.len() < limit {
        match body.frame().await {
            None => return (prefix.freeze(), Rest::Done),
            Some(Ok(frame)) => {
                // Trailers carry nothing a classifier reads; data frames are kept in order.
                if let Ok(data) = frame.into_data() {
                    prefix.extend_from_slice(&data);
                }
            }
            Some(Err(error)) => return (prefix.freeze(), Rest::Failed(error)),
        }
    }
    (prefix.freeze(), Rest::More(body))
}
