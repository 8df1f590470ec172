//! An independent server for the header contract, written from the header-contract article
//! (seed 002) and nothing else, so that the reference server is not the only evidence that
//! `refresh::Header` speaks the contract as it is written.
//!
//! What the article's client implies about its server, and what this one does:
//! - `POST /login` answers `200` with the tokens **raw** in the `Authorization` and
//!   `Authorization-refresh` response headers (the client stores header values as they are).
//! - API calls carry `Authorization: Bearer <access>`; a refused one gets `401` with the plain
//!   body `ExpiredToken` (expired) or `InvalidToken` (anything else): the client compares
//!   `data === "ExpiredToken"`.
//! - `POST /api/refresh-token`, `Content-Type: application/json`, no body, with
//!   `Authorization-refresh: Bearer <refresh>` → `200` with the new pair raw in the same two
//!   response headers. Every refresh rotates; a refresh token presented twice is reuse and
//!   revokes the login (the client logs out on anything but `200` with both headers).
//!
//! Tokens are opaque random strings (the client never decodes them), so a client learns of
//! an expiry only from an `ExpiredToken` answer.

#![allow(dead_code)]

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AUTHORIZATION_REFRESH: HeaderName = HeaderName::from_static("authorization-refresh");

/// What the server counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub logins: u64,
    pub refresh_calls: u64,
    pub rotations: u64,
    pub reuse_detections: u64,
    pub api_ok: u64,
    pub api_expired: u64,
    pub api_invalid: u64,
}

#[derive(Default)]
struct Tokens {
    /// Access token → when it expires.
    access: HashMap<String, Instant>,
    /// Refresh token → whether it was already used.
    refresh: HashMap<String, bool>,
    counts: Counts,
}

struct State {
    tokens: Mutex<Tokens>,
    access_ttl_ms: AtomicU64,
}

/// The running server.
#[derive(Clone)]
pub struct ArticleHeaderServer {
    state: Arc<State>,
    base_url: String,
}

impl ArticleHeaderServer {
    /// Starts on 127.0.0.1 with access tokens living `access_ttl`.
    pub async fn start(access_ttl: Duration) -> Self {
        let state = Arc::new(State {
            tokens: Mutex::default(),
            access_ttl_ms: AtomicU64::new(access_ttl.as_millis() as u64),
        });
        let app = axum::Router::new()
            .route("/login", post(login))
            .route("/api/refresh-token", post(refresh))
            .route("/api/items/{id}", get(item))
            .with_state(Arc::clone(&state));
        let listener = crate::common::loopback_listener();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { state, base_url }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Tokens issued from now on live `ttl`.
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.state
            .access_ttl_ms
            .store(ttl.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn counts(&self) -> Counts {
        self.state.tokens.lock().unwrap().counts
    }
}

fn new_token(kind: &str) -> String {
    format!("{kind}{:032x}", rand::random::<u128>())
}

/// Issues a pair and answers it raw in the two headers.
fn issue(state: &State, tokens: &mut Tokens) -> Response {
    let ttl = Duration::from_millis(state.access_ttl_ms.load(Ordering::SeqCst));
    let access = new_token("a");
    let refresh = new_token("r");
    tokens.access.insert(access.clone(), Instant::now() + ttl);
    tokens.refresh.insert(refresh.clone(), false);
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&access).unwrap());
    headers.insert(
        AUTHORIZATION_REFRESH,
        HeaderValue::from_str(&refresh).unwrap(),
    );
    response
}

fn bearer(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

async fn login(axum::extract::State(state): axum::extract::State<Arc<State>>) -> Response {
    let mut tokens = state.tokens.lock().unwrap();
    tokens.counts.logins += 1;
    issue(&state, &mut tokens)
}

async fn refresh(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
) -> Response {
    let mut tokens = state.tokens.lock().unwrap();
    tokens.counts.refresh_calls += 1;
    let presented = bearer(&headers, &AUTHORIZATION_REFRESH);
    match presented
        .as_ref()
        .and_then(|t| tokens.refresh.get(t).copied())
    {
        Some(false) => {
            if let Some(token) = presented {
                tokens.refresh.insert(token, true);
            }
            tokens.counts.rotations += 1;
            issue(&state, &mut tokens)
        }
        Some(true) => {
            // Reuse: revoke everything this (single-user) server issued.
            tokens.counts.reuse_detections += 1;
            tokens.access.clear();
            tokens.refresh.clear();
            (StatusCode::UNAUTHORIZED, "InvalidToken").into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "InvalidToken").into_response(),
    }
}

async fn item(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
) -> Response {
    let mut tokens = state.tokens.lock().unwrap();
    let expiry = bearer(&headers, &AUTHORIZATION).and_then(|t| tokens.access.get(&t).copied());
    match expiry {
        Some(expiry) if Instant::now() < expiry => {
            tokens.counts.api_ok += 1;
            (StatusCode::OK, "{}").into_response()
        }
        Some(_) => {
            tokens.counts.api_expired += 1;
            (StatusCode::UNAUTHORIZED, "ExpiredToken").into_response()
        }
        None => {
            tokens.counts.api_invalid += 1;
            (StatusCode::UNAUTHORIZED, "InvalidToken").into_response()
        }
    }
}
