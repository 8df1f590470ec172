//! DPoP (RFC 9449): verifying proofs, binding tokens to keys, nonces and `jti` replay.
//!
//! [`Dpop`] holds what proof checking needs across requests (the replay cache and the nonce
//! key) and words the answers: the token endpoint refuses with `400 {"error":
//! "invalid_dpop_proof"}` or `400 {"error":"use_dpop_nonce"}` (RFC 9449 §5, §8), a resource
//! with `401` and `WWW-Authenticate: DPoP error="invalid_dpop_proof"` or
//! `error="use_dpop_nonce"` (§7.1, §9). A nonce challenge carries the nonce in `DPoP-Nonce`;
//! with nonces on, every answer of the token endpoint and the API carries the current one, so
//! a client learns a rotated nonce without being challenged first.
//!
//! Who counts what: [`Dpop::check`] counts refusals and nonce challenges; the caller counts a
//! proof as accepted (or refused for the wrong key) once it knows which key the token is
//! bound to, so every proof is counted exactly once.

mod htu;
mod nonce;
mod proof;
mod replay;

use std::fmt;
use std::time::Instant;

use axum::http::header::{HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;

use crate::config::DpopConfig;
use crate::errors::json_error;
use crate::stats::{Counters, bump};
use crate::tokens::unix_now;
use nonce::Nonces;
pub(crate) use proof::{ALGS, Proof, Rejection};
use replay::{ReplayCache, Seen};

/// The request header carrying a proof.
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The response header carrying a nonce.
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// Why [`Dpop::check`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A bad (or missing, or replayed) proof.
    Proof(Rejection),
    /// The proof lacks the current nonce: answer with one.
    UseNonce,
}

/// DPoP state shared by the handlers.
pub(crate) struct Dpop {
    config: DpopConfig,
    nonces: Option<Nonces>,
    replay: ReplayCache,
}

impl fmt::Debug for Dpop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dpop")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `http://<Host><path>`: the URI a client addressed, as `htu` must name it. The server
/// speaks plain HTTP and answers only for the `Host` names its host check lets through.
pub(crate) fn request_uri(headers: &HeaderMap, uri: &Uri) -> String {
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    format!("http://{host}{}", uri.path())
}

impl Dpop {
    pub(crate) fn new(config: &DpopConfig) -> Self {
        Self {
            config: config.clone(),
            nonces: config.nonce.then(|| Nonces::new(config.nonce_lifetime)),
            replay: ReplayCache::new(
                config.replay_capacity,
                config.max_age.saturating_add(config.future_leeway),
            ),
        }
    }

    /// Whether a grant without a proof is refused.
    pub(crate) fn required(&self) -> bool {
        self.config.required
    }

    /// Checks the request's `DPoP` header: `Ok(None)` when there is none (the caller decides
    /// whether that is allowed), `Ok(Some(proof))` for a valid proof whose `jti` was not seen
    /// before (remembered now). `access_token` is given on resource requests, for `ath`.
    /// Refusals and challenges are counted here.
    pub(crate) fn check(
        &self,
        counters: &Counters,
        headers: &HeaderMap,
        method: &Method,
        uri: &str,
        access_token: Option<&str>,
    ) -> Result<Option<Proof>, Refusal> {
        let result = self.verify(headers, method, uri, access_token);
        match result {
            Err(Refusal::Proof(reason)) => {
                counters.proof_rejected(reason);
                tracing::debug!(?reason, "DPoP proof refused");
            }
            Err(Refusal::UseNonce) => bump(&counters.dpop_nonce_challenges),
            Ok(_) => {}
        }
        result
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        uri: &str,
        access_token: Option<&str>,
    ) -> Result<Option<Proof>, Refusal> {
        let mut values = headers.get_all(DPOP).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Refusal::Proof(Rejection::Malformed));
        }
        let jwt = value
            .to_str()
            .map_err(|_| Refusal::Proof(Rejection::Malformed))?;
        let expected = proof::Expected {
            method: method.as_str(),
            uri,
            access_token,
            now: unix_now(),
            max_age: self.config.max_age.as_secs_f64(),
            future_leeway: self.config.future_leeway.as_secs_f64(),
        };
        let proof = proof::verify(jwt.trim(), &expected).map_err(Refusal::Proof)?;
        let now = Instant::now();
        if let Some(nonces) = &self.nonces
            && !proof
                .nonce
                .as_deref()
                .is_some_and(|nonce| nonces.is_fresh(nonce, now))
        {
            return Err(Refusal::UseNonce);
        }
        match self.replay.check(&proof.jti, proof.iat, now) {
            Seen::New => Ok(Some(proof)),
            Seen::Replay => Err(Refusal::Proof(Rejection::Replay)),
            Seen::BelowFloor => Err(Refusal::Proof(Rejection::Iat)),
        }
    }

    /// The nonce to hand out now, when nonces are on.
    pub(crate) fn nonce(&self) -> Option<HeaderValue> {
        let nonce = self.nonces.as_ref()?.current(Instant::now());
        HeaderValue::from_str(&nonce).ok()
    }

    /// Adds the current nonce to `response`, when nonces are on.
    pub(crate) fn with_nonce(&self, mut response: Response) -> Response {
        if let Some(nonce) = self.nonce() {
            response.headers_mut().insert(DPOP_NONCE, nonce);
        }
        response
    }

    /// Makes every nonce handed out so far stale. Returns false when nonces are off.
    pub(crate) fn rotate_nonce(&self) -> bool {
        self.nonces.as_ref().map(Nonces::rotate).is_some()
    }

    /// `(jtis held, jtis evicted)` of the replay cache.
    pub(crate) fn replay_stats(&self) -> (u64, u64) {
        (self.replay.len() as u64, self.replay.evictions())
    }

    /// Server reset: zeroes the replay cache's eviction count, keeps its `jti`s (see
    /// [`ReplayCache::reset_count`]).
    pub(crate) fn reset(&self) {
        self.replay.reset_count();
    }
}

/// The token endpoint's answer to a refusal: `400 invalid_dpop_proof` or
/// `400 use_dpop_nonce` (RFC 9449 §5, §8). The caller adds the nonce
/// ([`Dpop::with_nonce`]), as it does to every answer.
pub(crate) fn token_endpoint_refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Proof(reason) => json_error(
            StatusCode::BAD_REQUEST,
            "invalid_dpop_proof",
            reason.description(),
        ),
        Refusal::UseNonce => json_error(
            StatusCode::BAD_REQUEST,
            "use_dpop_nonce",
            "Authorization server requires nonce in DPoP proof",
        ),
    }
}

/// A resource's answer to a refusal: `401` with `WWW-Authenticate: DPoP
/// error="invalid_dpop_proof"` or `error="use_dpop_nonce"` (RFC 9449 §7.1, §9). The caller
/// adds the nonce ([`Dpop::with_nonce`]), as it does to every answer.
pub(crate) fn resource_refusal(refusal: Refusal) -> Response {
    let (code, description) = match refusal {
        Refusal::Proof(reason) => ("invalid_dpop_proof", reason.description()),
        Refusal::UseNonce => (
            "use_dpop_nonce",
            "Resource server requires nonce in DPoP proof",
        ),
    };
    challenge(code, description)
}

/// `401` with `WWW-Authenticate: DPoP error="<code>", error_description="<description>",
/// algs="ES256 EdDSA"` and the same error as JSON. `description` is our own text (no quotes).
pub(crate) fn challenge(code: &str, description: &str) -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, code, description);
    let value = format!(r#"DPoP error="{code}", error_description="{description}", algs="{ALGS}""#);
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// A `DPoP algs="ES256 EdDSA"` challenge without an error, for requests without credentials.
pub(crate) const BARE_CHALLENGE: HeaderValue =
    HeaderValue::from_static("DPoP algs=\"ES256 EdDSA\"");
