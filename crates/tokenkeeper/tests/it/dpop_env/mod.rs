//! An independent DPoP server for the DPoP tests (RFC 9449), written here with axum and
//! jsonwebtoken: it verifies every proof the library sends with code that shares nothing with
//! the library's encoder (the JWS by jsonwebtoken, the thumbprint by jsonwebtoken's RFC 7638
//! implementation), binds the tokens it issues to the proof's key (`jkt`), rotates refresh
//! tokens and detects their reuse, keeps a `jti` replay cache, and can demand nonces at the
//! token endpoint and at the API.
//!
//! - `POST /token`: `grant_type=refresh_token` (the refresh token must be bound to the proof's
//!   key; a rotated one is reuse) or `client_credentials`. Answers `token_type: DPoP`.
//! - `GET|POST /api/items`: `Authorization: DPoP <token>` with a proof carrying `ath`; a bearer
//!   presentation of a bound token, a missing or foreign proof, or an expired token is `401`.

#![allow(dead_code)]

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub grants: u64,
    pub refreshes: u64,
    pub refresh_reuse: u64,
    pub api_ok: u64,
    pub api_refused: u64,
    pub api_expired: u64,
    pub bad_proofs: u64,
    pub jti_reuse: u64,
    pub nonce_demands_token: u64,
    pub nonce_demands_api: u64,
    pub proofs: u64,
}

#[derive(Default)]
struct Counters {
    grants: AtomicU64,
    refreshes: AtomicU64,
    refresh_reuse: AtomicU64,
    api_ok: AtomicU64,
    api_refused: AtomicU64,
    api_expired: AtomicU64,
    bad_proofs: AtomicU64,
    jti_reuse: AtomicU64,
    nonce_demands_token: AtomicU64,
    nonce_demands_api: AtomicU64,
    proofs: AtomicU64,
}

struct Access {
    jkt: String,
    expired: bool,
}

struct Refresh {
    jkt: String,
    rotated: bool,
}

pub struct Inner {
    base: Mutex<String>,
    /// Demand a nonce at the token endpoint / at the API, until a proof carries the current one.
    pub nonce_at_token: AtomicBool,
    pub nonce_at_api: AtomicBool,
    nonce: Mutex<String>,
    nonce_counter: AtomicU64,
    access: Mutex<HashMap<String, Access>>,
    refresh: Mutex<HashMap<String, Refresh>>,
    jtis: Mutex<HashSet<String>>,
    /// Every key thumbprint a valid proof was signed with.
    pub jkts: Mutex<HashSet<String>>,
    counters: Counters,
    next: AtomicU64,
    /// Artificial latency of the token endpoint.
    pub token_delay: Mutex<Duration>,
}

#[derive(Clone)]
pub struct DpopServer(pub Arc<Inner>);

impl DpopServer {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner {
            base: Mutex::new(String::new()),
            nonce_at_token: AtomicBool::new(false),
            nonce_at_api: AtomicBool::new(false),
            nonce: Mutex::new("n-0".into()),
            nonce_counter: AtomicU64::new(0),
            access: Mutex::default(),
            refresh: Mutex::default(),
            jtis: Mutex::default(),
            jkts: Mutex::default(),
            counters: Counters::default(),
            next: AtomicU64::new(0),
            token_delay: Mutex::new(Duration::ZERO),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/api/items", any(api))
            .with_state(Arc::clone(&inner));
        let listener = crate::common::loopback_listener();
        *inner.base.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self(inner)
    }

    pub fn base(&self) -> String {
        self.0.base.lock().unwrap().clone()
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base())
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/items", self.base())
    }

    /// Issues a login's first pair bound to `jkt` (what an authorization-code grant would have
    /// returned), as a token response body.
    pub fn issue_login(&self, jkt: &str) -> Vec<u8> {
        issue(&self.0, jkt, true).to_string().into_bytes()
    }

    /// Every access token issued so far expires now (the next API call with one is a 401).
    pub fn expire_access_tokens(&self) {
        for access in self.0.access.lock().unwrap().values_mut() {
            access.expired = true;
        }
    }

    /// A new nonce: proofs with the old one are answered with a demand.
    pub fn rotate_nonce(&self) {
        let n = self.0.nonce_counter.fetch_add(1, SeqCst) + 1;
        *self.0.nonce.lock().unwrap() = format!("n-{n}");
    }

    pub fn stats(&self) -> Stats {
        let c = &self.0.counters;
        Stats {
            grants: c.grants.load(SeqCst),
            refreshes: c.refreshes.load(SeqCst),
            refresh_reuse: c.refresh_reuse.load(SeqCst),
            api_ok: c.api_ok.load(SeqCst),
            api_refused: c.api_refused.load(SeqCst),
            api_expired: c.api_expired.load(SeqCst),
            bad_proofs: c.bad_proofs.load(SeqCst),
            jti_reuse: c.jti_reuse.load(SeqCst),
            nonce_demands_token: c.nonce_demands_token.load(SeqCst),
            nonce_demands_api: c.nonce_demands_api.load(SeqCst),
            proofs: c.proofs.load(SeqCst),
        }
    }
}

fn issue(inner: &Inner, jkt: &str, with_refresh: bool) -> serde_json::Value {
    let n = inner.next.fetch_add(1, SeqCst);
    let access = format!("at-{n}-{}", B64.encode(rand_bytes()));
    inner.access.lock().unwrap().insert(
        access.clone(),
        Access {
            jkt: jkt.to_owned(),
            expired: false,
        },
    );
    let mut body = serde_json::json!({
        "access_token": access,
        "token_type": "DPoP",
        "expires_in": 3600,
    });
    if with_refresh {
        let refresh = format!("rt-{n}-{}", B64.encode(rand_bytes()));
        inner.refresh.lock().unwrap().insert(
            refresh.clone(),
            Refresh {
                jkt: jkt.to_owned(),
                rotated: false,
            },
        );
        body["refresh_token"] = refresh.into();
    }
    body
}

fn rand_bytes() -> [u8; 16] {
    rand::random()
}

enum ProofError {
    Invalid(&'static str),
    NeedNonce,
}

/// Verifies the request's proof; returns the key's thumbprint (`jkt`).
fn verify(
    inner: &Inner,
    headers: &HeaderMap,
    method: &Method,
    htu: &str,
    access_token: Option<&str>,
    nonce_required: bool,
) -> Result<String, ProofError> {
    use ProofError::*;
    let mut values = headers.get_all("dpop").iter();
    let (Some(proof), None) = (values.next(), values.next()) else {
        return Err(Invalid("exactly one DPoP header"));
    };
    let proof = proof.to_str().map_err(|_| Invalid("not ASCII"))?;
    let header = jsonwebtoken::decode_header(proof).map_err(|_| Invalid("header"))?;
    if header.typ.as_deref() != Some("dpop+jwt") || header.alg != jsonwebtoken::Algorithm::ES256 {
        return Err(Invalid("typ/alg"));
    }
    let jwk = header.jwk.ok_or(Invalid("no jwk"))?;
    let raw_header: serde_json::Value = serde_json::from_slice(
        &B64.decode(proof.split('.').next().unwrap_or_default())
            .map_err(|_| Invalid("header b64"))?,
    )
    .map_err(|_| Invalid("header json"))?;
    if raw_header["jwk"].get("d").is_some() {
        return Err(Invalid("private key in the proof"));
    }
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|_| Invalid("jwk"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(proof, &key, &validation)
        .map_err(|_| Invalid("signature"))?
        .claims;
    if claims["htm"].as_str() != Some(method.as_str()) {
        return Err(Invalid("htm"));
    }
    if claims["htu"].as_str() != Some(htu) {
        return Err(Invalid("htu"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iat = claims["iat"].as_u64().ok_or(Invalid("iat"))?;
    if iat.abs_diff(now) > 60 {
        return Err(Invalid("iat window"));
    }
    let expected_ath = access_token.map(|t| B64.encode(Sha256::digest(t.as_bytes())));
    if claims["ath"].as_str() != expected_ath.as_deref() {
        return Err(Invalid("ath"));
    }
    let jti = claims["jti"].as_str().ok_or(Invalid("jti"))?;
    if !inner.jtis.lock().unwrap().insert(jti.to_owned()) {
        inner.counters.jti_reuse.fetch_add(1, SeqCst);
        return Err(Invalid("jti reused"));
    }
    if nonce_required && claims["nonce"].as_str() != Some(inner.nonce.lock().unwrap().as_str()) {
        return Err(NeedNonce);
    }
    let jkt = jwk
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .map_err(|_| Invalid("thumbprint"))?;
    inner.counters.proofs.fetch_add(1, SeqCst);
    inner.jkts.lock().unwrap().insert(jkt.clone());
    Ok(jkt)
}

fn nonce_header(inner: &Inner) -> HeaderValue {
    HeaderValue::from_str(&inner.nonce.lock().unwrap()).unwrap()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

async fn token(
    State(inner): State<Arc<Inner>>,
    method: Method,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let delay = *inner.token_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let htu = format!("{}/token", inner.base.lock().unwrap());
    let nonce_required = inner.nonce_at_token.load(SeqCst);
    let jkt = match verify(&inner, &headers, &method, &htu, None, nonce_required) {
        Ok(jkt) => jkt,
        Err(ProofError::NeedNonce) => {
            inner.counters.nonce_demands_token.fetch_add(1, SeqCst);
            let mut response = oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
            response
                .headers_mut()
                .insert("dpop-nonce", nonce_header(&inner));
            return response;
        }
        Err(ProofError::Invalid(_)) => {
            inner.counters.bad_proofs.fetch_add(1, SeqCst);
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
        }
    };
    let body = match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            {
                let mut refresh = inner.refresh.lock().unwrap();
                match refresh.get_mut(&presented) {
                    Some(entry) if entry.jkt != jkt => {
                        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                    }
                    Some(entry) if entry.rotated => {
                        inner.counters.refresh_reuse.fetch_add(1, SeqCst);
                        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                    }
                    Some(entry) => entry.rotated = true,
                    None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
                }
            }
            inner.counters.refreshes.fetch_add(1, SeqCst);
            issue(&inner, &jkt, true)
        }
        Some("client_credentials") => {
            inner.counters.grants.fetch_add(1, SeqCst);
            issue(&inner, &jkt, false)
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let mut response = axum::Json(body).into_response();
    if nonce_required {
        response
            .headers_mut()
            .insert("dpop-nonce", nonce_header(&inner));
    }
    response
}

fn unauthorized(error: &str) -> Response {
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    response.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_str(&format!(r#"DPoP algs="ES256", error="{error}""#)).unwrap(),
    );
    response
}

async fn api(
    State(inner): State<Arc<Inner>>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let refuse = |response: Response| {
        inner.counters.api_refused.fetch_add(1, SeqCst);
        response
    };
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(token) = authorization.strip_prefix("DPoP ") else {
        // A bound token presented as a bearer token (or no token): refused.
        return refuse(unauthorized("invalid_token"));
    };
    let htu = format!("{}/api/items", inner.base.lock().unwrap());
    let nonce_required = inner.nonce_at_api.load(SeqCst);
    let jkt = match verify(&inner, &headers, &method, &htu, Some(token), nonce_required) {
        Ok(jkt) => jkt,
        Err(ProofError::NeedNonce) => {
            inner.counters.nonce_demands_api.fetch_add(1, SeqCst);
            let mut response = unauthorized("use_dpop_nonce");
            response
                .headers_mut()
                .insert("dpop-nonce", nonce_header(&inner));
            return response;
        }
        Err(ProofError::Invalid(_)) => {
            inner.counters.bad_proofs.fetch_add(1, SeqCst);
            return refuse(unauthorized("invalid_dpop_proof"));
        }
    };
    match inner.access.lock().unwrap().get(token) {
        Some(access) if access.jkt != jkt => return refuse(unauthorized("invalid_token")),
        Some(access) if access.expired => {
            inner.counters.api_expired.fetch_add(1, SeqCst);
            return refuse(unauthorized("invalid_token"));
        }
        Some(_) => {}
        None => return refuse(unauthorized("invalid_token")),
    }
    inner.counters.api_ok.fetch_add(1, SeqCst);
    let mut response = (StatusCode::OK, body).into_response();
    if nonce_required {
        response
            .headers_mut()
            .insert("dpop-nonce", nonce_header(&inner));
    }
    response
}
