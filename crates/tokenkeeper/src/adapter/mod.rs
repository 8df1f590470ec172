//! Adapters: a [`Session`](crate::Session) put in front of an HTTP client.
//!
//! - [`reqwest`]: [`AuthMiddleware`](reqwest::AuthMiddleware), a reqwest-middleware
//!   middleware (feature `reqwest`, default).
//! - [`tower`]: [`AuthLayer`](tower::AuthLayer), a tower `Layer` for any
//!   `Service<http::Request<B>>`: hyper clients, tonic channels (feature `tower`; feature
//!   `tonic` adds the gRPC body and a synchronous interceptor).
//!
//! Both have the same semantics: attach the current token to the allowed origins, send,
//! classify the response, and on an expiry refusal let the session refresh (once for everyone)
//! and retry once. They differ only in how they move requests and bodies; the step they share
//! is here: what is not ours, attaching the token, and classifying a response (reading at most
//! the classifier's limit of its body, generic over [`http_body::Body`], handed back intact).
//! What to do after a response is decided by the session, once, for both.
#![cfg_attr(
    not(feature = "reqwest"),
    doc = "\n[`reqwest`]: #\n\n[`reqwest::AuthMiddleware`]: #"
)]
#![cfg_attr(
    not(feature = "tower"),
    doc = "\n[`tower`]: #\n\n[`tower::AuthLayer`]: #"
)]

#[cfg(feature = "reqwest")]
pub mod reqwest;
mod response_body;
#[cfg(test)]
mod test_bodies;
#[cfg(feature = "tower")]
pub mod tower;

use crate::classify::{Classifier, ResponseView, Verdict};
use crate::extensions::NoAuth;
use crate::session::Credential;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, Response, StatusCode};
use response_body::{ResponseBody, read_prefix};

/// Whether a request is not ours to authenticate: it carries its caller's own `Authorization`
/// header, or the [`NoAuth`] opt-out.
fn opted_out(headers: &HeaderMap, extensions: &Extensions) -> bool {
    extensions.get::<NoAuth>().is_some() || headers.contains_key(AUTHORIZATION)
}

/// Puts `credential`'s header (marked sensitive) on a request.
fn attach(headers: &mut HeaderMap, credential: &Credential) {
    headers.insert(AUTHORIZATION, credential.header_value());
}

/// Puts a fresh DPoP proof for `method` and `url` on a request when `credential` is
/// DPoP-bound (RFC 9449 §7); a bearer credential gets none.
#[cfg(feature = "dpop")]
fn attach_dpop_proof(
    headers: &mut HeaderMap,
    credential: &Credential,
    method: &http::Method,
    url: &url::Url,
) -> Result<(), crate::Error> {
    if let Some(proof) = credential.dpop_proof(method, url) {
        let proof = proof.map_err(|e| crate::ConfigError::new(e.to_string()))?;
        headers.insert(crate::dpop::DPOP, proof);
    }
    Ok(())
}

/// Takes a response's `DPoP-Nonce` for the origin of `url` when `credential` is DPoP-bound;
/// whether the response demands a nonce (RFC 9449 §9), which is no verdict on the token.
#[cfg(feature = "dpop")]
fn dpop_nonce_demand(
    credential: &Credential,
    url: &url::Url,
    status: StatusCode,
    headers: &HeaderMap,
) -> bool {
    let Some(key) = credential.dpop_key() else {
        return false;
    };
    key.nonces().take_from(url, headers);
    crate::dpop::nonce::is_resource_challenge(status, headers)
}

/// The verdict on a response from its status and headers, or `None` when a rule needs its body
/// (then [`classify_with_body`]). Most responses end here: a status no rule reads is accepted.
fn classify_head(
    classifier: &Classifier,
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<Verdict> {
    if !classifier.is_candidate(status) {
        return Some(Verdict::Accept);
    }
    if classifier.needs_body(status) {
        return None;
    }
    Some(classifier.classify(&ResponseView {
        status,
        headers,
        body: &[],
    }))
}

/// The verdict on a response a rule reads the body of: reads at most the classifier's limit of
/// it and hands the response back with its body intact.
async fn classify_with_body<B>(
    classifier: &Classifier,
    response: Response<B>,
) -> (Verdict, Response<ResponseBody<B>>)
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let (parts, body) = response.into_parts();
    let (prefix, body) = read_prefix(body, classifier.max_body()).await;
    let verdict = classifier.classify(&ResponseView {
        status: parts.status,
        headers: &parts.headers,
        body: &prefix,
    });
    // `parts` keeps the response's extensions (reqwest keeps the URL there).
    (verdict, Response::from_parts(parts, body))
}
