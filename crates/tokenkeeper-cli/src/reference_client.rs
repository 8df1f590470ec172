//! The reference server's four contracts as a hand-written client speaks them: log in, refresh,
//! and nothing else.
//!
//! The baselines use this (they must not use tokenkeeper), and every contender signs in through
//! it so all of them start from the same login call.

use anyhow::{Context, bail};
use reqwest::StatusCode;
use reqwest::cookie::Jar;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokenkeeper_server::Contract;

/// The header-contract's request and response header for the refresh token.
const AUTHORIZATION_REFRESH: HeaderName = HeaderName::from_static("authorization-refresh");

/// The demo user the reference server knows.
const USERNAME: &str = "demo";
const PASSWORD: &str = "demo";

/// An access token and (except for the cookie contract) a refresh token.
#[derive(Clone)]
pub struct Pair {
    /// The access token.
    pub access: String,
    /// The refresh token, when the contract hands it to the client (not the cookie contract).
    pub refresh: Option<String>,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("access", &"[REDACTED]")
            .field("refresh", &self.refresh.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// A successful login: the raw body (for `TokenSet::from_response`) and the parsed pair.
#[derive(Debug)]
pub struct Login {
    /// The response body as received.
    pub body: Vec<u8>,
    /// The tokens in it.
    pub pair: Pair,
}

/// Why a hand-written refresh failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshFailure {
    /// The server refused the refresh token (reused, revoked, expired).
    Rejected(String),
    /// 5xx, 429, network error, or an answer without tokens.
    Unavailable(String),
}

impl fmt::Display for RefreshFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshFailure::Rejected(why) => write!(f, "refresh rejected: {why}"),
            RefreshFailure::Unavailable(why) => write!(f, "refresh unavailable: {why}"),
        }
    }
}

/// One client's view of the reference server in one contract style.
///
/// Owns the HTTP client (with a cookie jar, which the cookie contract needs) that a contender
/// sends its API requests with, so every contender uses the same client settings.
#[derive(Debug, Clone)]
pub struct ReferenceClient {
    style: Contract,
    base_url: String,
    http: reqwest::Client,
    jar: Arc<Jar>,
}

impl ReferenceClient {
    /// A client for the server at `base_url` (`http://127.0.0.1:PORT`) speaking `style`.
    pub fn new(style: Contract, base_url: &str) -> anyhow::Result<Self> {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            style,
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            jar,
        })
    }

    /// The contract style.
    pub fn style(&self) -> Contract {
        self.style
    }

    /// The HTTP client (keep-alive pool, cookie jar).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The cookie jar the client and the cookie contract's refresher share.
    pub fn jar(&self) -> Arc<Jar> {
        Arc::clone(&self.jar)
    }

    /// `base_url` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The URL of this style's refresh endpoint.
    pub fn refresh_url(&self) -> String {
        self.url(match self.style {
            Contract::OAuth2 => "/oauth2/token",
            Contract::Json => "/refresh/token",
            Contract::Header => "/api/refresh-token",
            Contract::Cookie => "/v3/jwt/reissue",
        })
    }

    /// Logs the demo user in (oauth2: password grant; others: `POST /login` with the style).
    pub async fn login(&self) -> anyhow::Result<Login> {
        let request = match self.style {
            Contract::OAuth2 => self.http.post(self.url("/oauth2/token")).form(&[
                ("grant_type", "password"),
                ("username", USERNAME),
                ("password", PASSWORD),
            ]),
            style => self.http.post(self.url("/login")).json(&serde_json::json!({
                "username": USERNAME,
                "password": PASSWORD,
                "style": style.as_str(),
            })),
        };
        let response = request.send().await.context("sending the login request")?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("reading the login response")?;
        if !status.is_success() {
            bail!("login refused with {status}");
        }
        let value: serde_json::Value =
            serde_json::from_slice(&body).context("the login response is not JSON")?;
        let access = string_field(&value, "access_token", "accessToken")
            .context("the login response has no access token")?;
        let refresh = match self.style {
            // The cookie contract's refresh token lives in the jar only.
            Contract::Cookie => None,
            _ => Some(
                string_field(&value, "refresh_token", "refreshToken")
                    .context("the login response has no refresh token")?,
            ),
        };
        Ok(Login {
            body: body.to_vec(),
            pair: Pair { access, refresh },
        })
    }

    /// One call to the refresh endpoint with `refresh_token` (ignored by the cookie contract,
    /// whose jar sends the cookie).
    pub async fn refresh(&self, refresh_token: Option<&str>) -> Result<Pair, RefreshFailure> {
        let url = self.refresh_url();
        let token = refresh_token.unwrap_or_default();
        let request = match self.style {
            Contract::OAuth2 => self.http.post(url).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "demo"),
            ]),
            Contract::Json => self
                .http
                .post(url)
                .json(&serde_json::json!({ "refreshToken": token })),
            Contract::Header => self
                .http
                .post(url)
                .header(AUTHORIZATION_REFRESH, format!("Bearer {token}")),
            Contract::Cookie => self.http.post(url),
        };
        let response = request
            .send()
            .await
            .map_err(|e| RefreshFailure::Unavailable(format!("network: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| RefreshFailure::Unavailable(format!("reading the body: {e}")))?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RefreshFailure::Unavailable(status.to_string()));
        }
        if !status.is_success() {
            return Err(RefreshFailure::Rejected(status.to_string()));
        }
        self.parse_refreshed(&headers, &body)
            .ok_or_else(|| RefreshFailure::Unavailable("no tokens in the answer".into()))
    }

    fn parse_refreshed(&self, headers: &HeaderMap, body: &[u8]) -> Option<Pair> {
        if self.style == Contract::Header {
            // The article's client stores the header values as they are (the server sends
            // them raw); a `Bearer ` prefix, which `serve --header-bearer-prefix` adds, is
            // dropped so the next call does not send `Bearer Bearer …`.
            let token = |name: &HeaderName| {
                let value = headers.get(name)?.to_str().ok()?.trim();
                let token = match value.split_once(' ') {
                    Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                    _ if value.eq_ignore_ascii_case("bearer") => "",
                    _ => value,
                };
                (!token.is_empty()).then(|| token.to_owned())
            };
            return Some(Pair {
                access: token(&AUTHORIZATION)?,
                refresh: Some(token(&AUTHORIZATION_REFRESH)?),
            });
        }
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let access = string_field(&value, "access_token", "accessToken")?;
        let refresh = match self.style {
            Contract::Cookie => None,
            _ => Some(string_field(&value, "refresh_token", "refreshToken")?),
        };
        Some(Pair { access, refresh })
    }
}

fn string_field(value: &serde_json::Value, snake: &str, camel: &str) -> Option<String> {
    value
        .get(snake)
        .or_else(|| value.get(camel))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_never_print_their_tokens() {
        let pair = Pair {
            access: "secret-access".into(),
            refresh: Some("secret-refresh".into()),
        };
        let printed = format!("{pair:?}");
        assert!(!printed.contains("secret"), "{printed}");
    }

    #[test]
    fn header_tokens_are_read_raw_or_prefixed() {
        let wire = ReferenceClient::new(Contract::Header, "http://127.0.0.1:1").unwrap();
        for (access, refresh) in [("a-1", "r-1"), ("Bearer a-1", "Bearer r-1")] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, access.parse().unwrap());
            headers.insert(AUTHORIZATION_REFRESH, refresh.parse().unwrap());
            let pair = wire.parse_refreshed(&headers, b"{}").unwrap();
            assert_eq!(pair.access, "a-1");
            assert_eq!(pair.refresh.as_deref(), Some("r-1"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        headers.insert(AUTHORIZATION_REFRESH, "r-1".parse().unwrap());
        assert!(wire.parse_refreshed(&headers, b"{}").is_none());
    }

    #[test]
    fn fields_are_read_in_both_spellings() {
        let snake = serde_json::json!({"access_token": "a"});
        let camel = serde_json::json!({"accessToken": "b"});
        assert_eq!(
            string_field(&snake, "access_token", "accessToken").as_deref(),
            Some("a")
        );
        assert_eq!(
            string_field(&camel, "access_token", "accessToken").as_deref(),
            Some("b")
        );
    }
}
