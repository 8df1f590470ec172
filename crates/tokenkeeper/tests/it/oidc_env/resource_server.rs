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
//! DPoP (RFC 9449 §7): an access token whose claims carry `cnf.jkt` is only accepted as
//! `Authorization: DPoP <jwt>` with exactly one `DPoP` proof that this server verifies itself
//! (jsonwebtoken): `typ` `dpop+jwt`, ES256 signature by the proof's own `jwk` (no private part),
//! the jwk's RFC 7638 thumbprint equal to `cnf.jkt`, `htm` and `htu` of this request, `iat`
//! within 60 s, `ath` the hash of the presented token, a `jti` never seen before and, once a
//! nonce is demanded ([`ResourceServer::demand_nonce`]), that nonce. A bound token sent as a
//! bearer token, a proof by another key or a bad proof is refused with a `DPoP` challenge
//! (`invalid_token` / `invalid_dpop_proof`); a missing or stale nonce with
//! `DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` header.
//!
//! A token whose signature was verified once is remembered (by its exact text) with its claims,
//! so later requests with it check only the expiry: an RSA verification per request would make
//! this server, not the client, the bottleneck of the 1,000-caller tests on a loaded machine.

use super::RESOURCE;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::Digest as _;
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
    /// DPoP proofs that passed every check (whatever the token's fate afterwards).
    pub proofs: u64,
    /// Requests refused for their proof (including a proof by another key than `cnf.jkt`).
    pub bad_proofs: u64,
    /// Proofs whose `jti` was seen before (also counted in `bad_proofs`).
    pub jti_reuse: u64,
    /// `use_dpop_nonce` challenges sent.
    pub nonce_demands: u64,
    /// DPoP-bound tokens presented as bearer tokens (also counted in `invalid`).
    pub bound_as_bearer: u64,
    /// Different keys (thumbprints) that signed accepted proofs.
    pub dpop_keys: u64,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    expired: AtomicU64,
    invalid: AtomicU64,
    missing: AtomicU64,
    jtis: Mutex<HashSet<String>>,
    proofs: AtomicU64,
    bad_proofs: AtomicU64,
    jti_reuse: AtomicU64,
    nonce_demands: AtomicU64,
    bound_as_bearer: AtomicU64,
    /// Every proof's `jti`, for the replay check.
    proof_jtis: Mutex<HashSet<String>>,
    /// Thumbprints of the keys of accepted proofs.
    jkts: Mutex<HashSet<String>>,
}

struct Api {
    /// `http://127.0.0.1:port`: the proofs' `htu` starts with it.
    url: String,
    keys: HashMap<String, DecodingKey>,
    /// Tokens whose signature and claims were verified, with their claims.
    verified: Mutex<HashMap<String, Claims>>,
    validation: Validation,
    latency: Duration,
    counters: Counters,
    /// The nonce proofs must carry, once demanded.
    nonce: Mutex<Option<String>>,
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
    /// RFC 9449 §6.1: the key the token is bound to.
    cnf: Option<Confirmation>,
}

#[derive(Clone, serde::Deserialize)]
struct Confirmation {
    jkt: Option<String>,
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
        let listener = crate::common::loopback_listener();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let api = Arc::new(Api {
            url: url.clone(),
            keys,
            verified: Mutex::default(),
            validation,
            latency,
            counters: Counters::default(),
            nonce: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/items/{id}", axum::routing::get(item))
            .with_state(Arc::clone(&api));
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
            proofs: counters.proofs.load(Relaxed),
            bad_proofs: counters.bad_proofs.load(Relaxed),
            jti_reuse: counters.jti_reuse.load(Relaxed),
            nonce_demands: counters.nonce_demands.load(Relaxed),
            bound_as_bearer: counters.bound_as_bearer.load(Relaxed),
            dpop_keys: counters.jkts.lock().unwrap().len() as u64,
        }
    }

    /// From now on every DPoP proof must carry `nonce` (a new value makes the old one stale).
    pub fn demand_nonce(&self, nonce: &str) {
        *self.api.nonce.lock().unwrap() = Some(nonce.to_owned());
    }

    /// The thumbprints of the keys that signed accepted proofs.
    pub fn dpop_keys(&self) -> HashSet<String> {
        self.api.counters.jkts.lock().unwrap().clone()
    }
}

enum Verdict {
    Ok(Claims),
    Expired,
    Invalid,
    Missing,
    /// The DPoP proof is wrong (why, for the failure messages).
    BadProof(&'static str),
    /// The proof lacks the nonce this server demands.
    NeedNonce,
}

/// How the request presented its token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bearer,
    Dpop,
}

impl Api {
    fn judge(&self, headers: &HeaderMap, htu: &str) -> (Scheme, Verdict) {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return (Scheme::Bearer, Verdict::Missing);
        };
        let value = value.to_str().unwrap_or_default();
        let (scheme, token) = if let Some(token) = value.strip_prefix("Bearer ") {
            (Scheme::Bearer, token)
        } else if let Some(token) = value.strip_prefix("DPoP ") {
            (Scheme::Dpop, token)
        } else {
            return (Scheme::Bearer, Verdict::Invalid);
        };
        (scheme, self.judge_token(scheme, token, headers, htu))
    }

    fn judge_token(&self, scheme: Scheme, token: &str, headers: &HeaderMap, htu: &str) -> Verdict {
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
        // The token's own signature first: `cnf.jkt` is only worth what the signature is.
        let claims = match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                // Expired, but the proof is still judged: it says whether the caller holds the
                // key, and a refusal for expiry must not reach a caller without it.
                let mut lenient = self.validation.clone();
                lenient.validate_exp = false;
                match jsonwebtoken::decode::<Claims>(token, key, &lenient) {
                    Ok(data) => Err(data.claims),
                    Err(_) => return Verdict::Invalid,
                }
            }
            Err(_) => return Verdict::Invalid,
        };
        let bound_to = match &claims {
            Ok(claims) | Err(claims) => claims.cnf.as_ref().and_then(|cnf| cnf.jkt.clone()),
        };
        match (scheme, bound_to) {
            (Scheme::Bearer, None) => {}
            (Scheme::Bearer, Some(_)) => {
                // RFC 9449 §7.1: a bound token is no bearer token.
                self.counters.bound_as_bearer.fetch_add(1, Relaxed);
                return Verdict::Invalid;
            }
            // The DPoP scheme for a token bound to nothing: refused (RFC 9449 §7.1).
            (Scheme::Dpop, None) => return Verdict::Invalid,
            (Scheme::Dpop, Some(jkt)) => {
                if let Err(verdict) = self.check_proof(headers, htu, token, &jkt) {
                    return verdict;
                }
            }
        }
        match claims {
            Ok(claims) => {
                let mut verified = self.verified.lock().unwrap();
                verified.insert(token.to_owned(), claims.clone());
                Verdict::Ok(claims)
            }
            Err(_) => Verdict::Expired,
        }
    }

    /// RFC 9449 §4.3 and §7.1: the request's one proof, for this request, this token, the key
    /// `jkt` the token is bound to.
    fn check_proof(
        &self,
        headers: &HeaderMap,
        htu: &str,
        token: &str,
        jkt: &str,
    ) -> Result<(), Verdict> {
        let bad = |why: &'static str| {
            self.counters.bad_proofs.fetch_add(1, Relaxed);
            Verdict::BadProof(why)
        };
        let mut proofs = headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(bad("not exactly one DPoP header"));
        };
        let proof = proof.to_str().map_err(|_| bad("not ASCII"))?;
        let head = jsonwebtoken::decode_header(proof).map_err(|_| bad("header"))?;
        if head.typ.as_deref() != Some("dpop+jwt") || head.alg != Algorithm::ES256 {
            return Err(bad("typ or alg"));
        }
        let jwk = head.jwk.ok_or_else(|| bad("no jwk"))?;
        let raw_head: serde_json::Value = proof
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| bad("header JSON"))?;
        if raw_head["jwk"].get("d").is_some() {
            return Err(bad("a private key in the proof"));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("jwk"))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(proof, &key, &validation)
            .map_err(|_| bad("signature"))?
            .claims;
        let thumbprint = jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(|_| bad("thumbprint"))?;
        if thumbprint != jkt {
            return Err(bad("signed by another key than cnf.jkt"));
        }
        if claims["htm"].as_str() != Some("GET") {
            return Err(bad("htm"));
        }
        if claims["htu"].as_str() != Some(htu) {
            return Err(bad("htu"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let iat = claims["iat"].as_u64().ok_or_else(|| bad("iat"))?;
        if iat.abs_diff(now) > 60 {
            return Err(bad("iat outside the window"));
        }
        let ath = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(token.as_bytes()));
        if claims["ath"].as_str() != Some(ath.as_str()) {
            return Err(bad("ath"));
        }
        let jti = claims["jti"].as_str().ok_or_else(|| bad("jti"))?;
        if !self
            .counters
            .proof_jtis
            .lock()
            .unwrap()
            .insert(jti.to_owned())
        {
            self.counters.jti_reuse.fetch_add(1, Relaxed);
            return Err(bad("jti seen before"));
        }
        let demanded = self.nonce.lock().unwrap().clone();
        if let Some(nonce) = demanded
            && claims["nonce"].as_str() != Some(nonce.as_str())
        {
            return Err(Verdict::NeedNonce);
        }
        self.counters.proofs.fetch_add(1, Relaxed);
        self.counters.jkts.lock().unwrap().insert(thumbprint);
        Ok(())
    }
}

async fn item(State(api): State<Arc<Api>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    // No query on these requests: the URL is the proof's `htu` (RFC 9449 §4.3).
    let htu = format!("{}/items/{id}", api.url);
    let (scheme, verdict) = api.judge(&headers, &htu);
    if !api.latency.is_zero() {
        tokio::time::sleep(api.latency).await;
    }
    let counters = &api.counters;
    let challenge = |description: &str| {
        let value = match scheme {
            Scheme::Bearer => format!(
                r#"Bearer realm="interop", error="invalid_token", error_description="{description}""#
            ),
            Scheme::Dpop => format!(
                r#"DPoP algs="ES256", error="invalid_token", error_description="{description}""#
            ),
        };
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
        Verdict::BadProof(why) => {
            counters.invalid.fetch_add(1, Relaxed);
            let value = format!(
                r#"DPoP algs="ES256", error="invalid_dpop_proof", error_description="{why}""#
            );
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, value)],
            )
                .into_response()
        }
        Verdict::NeedNonce => {
            counters.nonce_demands.fetch_add(1, Relaxed);
            let nonce = api.nonce.lock().unwrap().clone().unwrap_or_default();
            (
                StatusCode::UNAUTHORIZED,
                [
                    (
                        header::WWW_AUTHENTICATE,
                        r#"DPoP algs="ES256", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#.to_owned(),
                    ),
                    (header::HeaderName::from_static("dpop-nonce"), nonce),
                ],
            )
                .into_response()
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
