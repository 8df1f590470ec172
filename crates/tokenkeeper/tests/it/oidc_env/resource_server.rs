//! The API of the interop suite: validates the provider's JWT access tokens (RFC 9068) against
//! its JWKS, as a real resource server would, and answers RFC 6750 challenges.
//!
//! `GET /items/{id}` with `Authorization: Bearer <jwt>`:
//! - valid (signature by a key in the provider's JWKS, `iss` = the issuer, `aud` = [`RESOURCE`],
//!   `typ` = `at+jwt`, not expired, no leeway): `200 {"id", "sub", "client_id"}`;
//! - expired: `401 WWW-Authenticate: Bearer realm="interop", error="invalid_token",
//!   error_description="The access token expired"`;
//! - anything else wrong with it: the same with "The access token is invalid";
//! - no token: `401 WWW-Authenticate: Bearer realm="interop"` (RFC 6750 §3.1: no error code).
//!
//! The token is judged on arrival; the answer can be held back for a configured latency, so a
//! refusal can reach the client after its token was already replaced (the late-401 scenario).
//!
//! A token whose signature was verified once is remembered (by its exact text) with its claims,
//! so later requests with it check only the expiry: an RSA verification per request would make
//! this server, not the client, the bottleneck of the 1,000-caller tests on a loaded machine.

use super::RESOURCE;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the resource server saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub ok: u64,
    pub expired: u64,
    pub invalid: u64,
    pub missing: u64,
    /// Different access tokens (by `jti`) accepted at least once.
    pub distinct_tokens: u64,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    expired: AtomicU64,
    invalid: AtomicU64,
    missing: AtomicU64,
    jtis: Mutex<HashSet<String>>,
}

struct Api {
    keys: HashMap<String, DecodingKey>,
    /// Tokens whose signature and claims were verified, with their claims.
    verified: Mutex<HashMap<String, Claims>>,
    validation: Validation,
    latency: Duration,
    counters: Counters,
}

/// A running resource server.
#[derive(Clone)]
pub struct ResourceServer {
    url: String,
    api: Arc<Api>,
}

#[derive(Clone, serde::Deserialize)]
struct Claims {
    sub: String,
    client_id: String,
    jti: String,
    exp: u64,
}

impl ResourceServer {
    /// Reads the provider's JWKS (from its discovery document) and starts on 127.0.0.1.
    pub async fn start(issuer: &str, latency: Duration) -> Self {
        let metadata = tokenkeeper::refresh::ProviderMetadata::discover(issuer)
            .await
            .expect("discovery");
        let jwks_uri = metadata
            .jwks_uri()
            .expect("the provider publishes its keys");
        let jwks: JwkSet = reqwest::get(jwks_uri.clone())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let keys = jwks
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                Some((kid, DecodingKey::from_jwk(jwk).ok()?))
            })
            .collect::<HashMap<_, _>>();
        assert!(!keys.is_empty(), "no usable key in the provider's JWKS");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[RESOURCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 0;
        let api = Arc::new(Api {
            keys,
            verified: Mutex::default(),
            validation,
            latency,
            counters: Counters::default(),
        });
        let app = axum::Router::new()
            .route("/items/{id}", axum::routing::get(item))
            .with_state(Arc::clone(&api));
        let listener = crate::common::loopback_listener();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, api }
    }

    /// `scheme://host:port`, the origin to attach tokens to.
    pub fn origin(&self) -> &str {
        &self.url
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn seen(&self) -> Seen {
        let counters = &self.api.counters;
        Seen {
            ok: counters.ok.load(Relaxed),
            expired: counters.expired.load(Relaxed),
            invalid: counters.invalid.load(Relaxed),
            missing: counters.missing.load(Relaxed),
            distinct_tokens: counters.jtis.lock().unwrap().len() as u64,
        }
    }
}

enum Verdict {
    Ok(Claims),
    Expired,
    Invalid,
    Missing,
}

impl Api {
    fn judge(&self, headers: &HeaderMap) -> Verdict {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Verdict::Missing;
        };
        let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
            return Verdict::Invalid;
        };
        let Ok(head) = jsonwebtoken::decode_header(token) else {
            return Verdict::Invalid;
        };
        // RFC 9068 §4: the type tells an access token from an ID token signed by the same key.
        if !head
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"))
        {
            return Verdict::Invalid;
        }
        let Some(key) = head.kid.as_ref().and_then(|kid| self.keys.get(kid)) else {
            return Verdict::Invalid;
        };
        match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
            Ok(data) => {
                let mut verified = self.verified.lock().unwrap();
                verified.insert(token.to_owned(), data.claims.clone());
                Verdict::Ok(data.claims)
            }
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                Verdict::Expired
            }
            Err(_) => Verdict::Invalid,
        }
    }
}

async fn item(State(api): State<Arc<Api>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let verdict = api.judge(&headers);
    if !api.latency.is_zero() {
        tokio::time::sleep(api.latency).await;
    }
    let counters = &api.counters;
    let challenge = |description: &str| {
        let value = format!(
            r#"Bearer realm="interop", error="invalid_token", error_description="{description}""#
        );
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, value)],
        )
            .into_response()
    };
    match verdict {
        Verdict::Ok(claims) => {
            counters.ok.fetch_add(1, Relaxed);
            counters.jtis.lock().unwrap().insert(claims.jti);
            axum::Json(serde_json::json!({
                "id": id,
                "sub": claims.sub,
                "client_id": claims.client_id,
            }))
            .into_response()
        }
        Verdict::Expired => {
            counters.expired.fetch_add(1, Relaxed);
            challenge("The access token expired")
        }
        Verdict::Invalid => {
            counters.invalid.fetch_add(1, Relaxed);
            challenge("The access token is invalid")
        }
        Verdict::Missing => {
            counters.missing.fetch_add(1, Relaxed);
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, r#"Bearer realm="interop""#)],
            )
                .into_response()
        }
    }
}
