//! The client side of the server's own contracts: log in as the demo user, and call a
//! contract's refresh endpoint, as a hand-written client would (feature `client`).
//!
//! Tests, benchmarks and examples that need a signed-in user or a raw refresh call use this
//! instead of writing the requests again: the wire format lives next to the server that
//! defines it. It knows nothing of tokenkeeper (a client library under test must not sign
//! itself in); the login answer's raw body is handed back for whoever parses it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tokenkeeper_server::{Contract, client::Client};
//!
//! let server = tokenkeeper_server::start(Default::default()).await?;
//! let client = Client::new(Contract::Json, &server.base_url())?;
//! let login = client.login().await?;
//! let pair = client.refresh(login.pair.refresh.as_deref()).await?;
//! assert_ne!(pair.access, login.pair.access);
//! # Ok(()) }
//! ```

use crate::Contract;
use reqwest::StatusCode;
use reqwest::cookie::Jar;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderName};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The header contract's request and response header for the refresh token.
pub const AUTHORIZATION_REFRESH: HeaderName = HeaderName::from_static("authorization-refresh");

/// The demo user's name, which every login of this module uses.
pub const USERNAME: &str = "demo";
/// The demo user's password.
pub const PASSWORD: &str = "demo";

/// The path of `style`'s refresh endpoint.
///
/// ```
/// use tokenkeeper_server::{Contract, client::refresh_path};
/// assert_eq!(refresh_path(Contract::Cookie), "/v3/jwt/reissue");
/// ```
pub fn refresh_path(style: Contract) -> &'static str {
    match style {
        Contract::OAuth2 => "/oauth2/token",
        Contract::Json => "/refresh/token",
        Contract::Header => "/api/refresh-token",
        Contract::Cookie => "/v3/jwt/reissue",
    }
}

/// The demo user's login request in `style`: the password grant at `/oauth2/token` for oauth2,
/// `POST /login` with the style for the others. `base_url` is `http://127.0.0.1:PORT`.
pub fn login_request(
    http: &reqwest::Client,
    base_url: &str,
    style: Contract,
) -> reqwest::RequestBuilder {
    let base_url = base_url.trim_end_matches('/');
    match style {
        Contract::OAuth2 => http.post(format!("{base_url}/oauth2/token")).form(&[
            ("grant_type", "password"),
            ("username", USERNAME),
            ("password", PASSWORD),
        ]),
        style => http
            .post(format!("{base_url}/login"))
            .json(&serde_json::json!({
                "username": USERNAME,
                "password": PASSWORD,
                "style": style.as_str(),
            })),
    }
}

/// One refresh request in `style` carrying `refresh_token`. For the cookie contract the token
/// goes in the `Cookie` header when given; without it, a client with a cookie jar sends the
/// cookie the login set.
pub fn refresh_request(
    http: &reqwest::Client,
    base_url: &str,
    style: Contract,
    refresh_token: Option<&str>,
) -> reqwest::RequestBuilder {
    let url = format!("{}{}", base_url.trim_end_matches('/'), refresh_path(style));
    let token = refresh_token.unwrap_or_default();
    match style {
        Contract::OAuth2 => http.post(url).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "demo"),
        ]),
        Contract::Json => http
            .post(url)
            .json(&serde_json::json!({ "refreshToken": token })),
        Contract::Header => http
            .post(url)
            .header(AUTHORIZATION_REFRESH, format!("Bearer {token}")),
        Contract::Cookie => match refresh_token {
            Some(token) => http
                .post(url)
                .header(COOKIE, format!("{}={token}", crate::REFRESH_COOKIE)),
            None => http.post(url),
        },
    }
}

/// An access token and (except for the cookie contract, whose refresh token lives in the
/// cookie jar) a refresh token. `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
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

/// A successful login: the raw body (for a client library's own parser) and the parsed pair.
#[derive(Debug)]
pub struct Login {
    /// The response body as received.
    pub body: Vec<u8>,
    /// The tokens in it.
    pub pair: Pair,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The request could not be sent or its answer not read.
    #[error("login request failed: {0}")]
    Network(#[from] reqwest::Error),
    /// The server answered with an error status.
    #[error("login refused with {0}")]
    Refused(StatusCode),
    /// The answer is not what the contract promises.
    #[error("the login response {0}")]
    Malformed(&'static str),
}

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshFailure {
    /// The server refused the refresh token (reused, revoked, expired).
    #[error("refresh rejected: {0}")]
    Rejected(String),
    /// 5xx, 429, network error, or an answer without tokens.
    #[error("refresh unavailable: {0}")]
    Unavailable(String),
}

/// The tokens in a login answer's JSON `body`, read in both spellings (`access_token` or
/// `accessToken`). The cookie contract's login names its refresh token in the body too; the
/// pair keeps it only for the other contracts.
///
/// ```
/// use tokenkeeper_server::{Contract, client::parse_login};
/// let pair = parse_login(Contract::Json, br#"{"accessToken":"a","refreshToken":"r"}"#).unwrap();
/// assert_eq!((pair.access.as_str(), pair.refresh.as_deref()), ("a", Some("r")));
/// assert_eq!(parse_login(Contract::Cookie, br#"{"accessToken":"a","refreshToken":"r"}"#).unwrap().refresh, None);
/// ```
pub fn parse_login(style: Contract, body: &[u8]) -> Result<Pair, LoginError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| LoginError::Malformed("is not JSON"))?;
    let access = string_field(&value, "access_token", "accessToken")
        .ok_or(LoginError::Malformed("has no access token"))?;
    let refresh = match style {
        Contract::Cookie => None,
        _ => Some(
            string_field(&value, "refresh_token", "refreshToken")
                .ok_or(LoginError::Malformed("has no refresh token"))?,
        ),
    };
    Ok(Pair { access, refresh })
}

/// Logs the demo user in at `base_url` in `style` with `http` ([`login_request`]): the raw
/// answer and its tokens ([`parse_login`]), or why not.
pub async fn login(
    http: &reqwest::Client,
    base_url: &str,
    style: Contract,
) -> Result<Login, LoginError> {
    let response = login_request(http, base_url, style).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(LoginError::Refused(status));
    }
    let pair = parse_login(style, &body)?;
    Ok(Login {
        body: body.to_vec(),
        pair,
    })
}

/// The tokens in a successful refresh answer of `style`: the header contract's in the
/// `Authorization` / `Authorization-refresh` headers (raw, or `Bearer `-prefixed as
/// `serve --header-bearer-prefix` sends them), the others' in the JSON body. `None` when the
/// answer carries no tokens.
pub fn parse_refreshed(style: Contract, headers: &HeaderMap, body: &[u8]) -> Option<Pair> {
    if style == Contract::Header {
        // The article's client stores the header values as they are (the server sends
        // them raw); a `Bearer ` prefix is dropped so the next call does not send
        // `Bearer Bearer …`.
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
    let refresh = match style {
        Contract::Cookie => None,
        _ => Some(string_field(&value, "refresh_token", "refreshToken")?),
    };
    Some(Pair { access, refresh })
}

fn string_field(value: &serde_json::Value, snake: &str, camel: &str) -> Option<String> {
    value
        .get(snake)
        .or_else(|| value.get(camel))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// One client's view of the reference server in one contract style: an HTTP client with a
/// cookie jar (which the cookie contract needs) and a keep-alive pool, so whoever sends API
/// requests with [`Client::http`] uses the same settings as the login did.
#[derive(Debug, Clone)]
pub struct Client {
    style: Contract,
    base_url: String,
    http: reqwest::Client,
    jar: Arc<Jar>,
}

impl Client {
    /// A client for the server at `base_url` (`http://127.0.0.1:PORT`) speaking `style`.
    pub fn new(style: Contract, base_url: &str) -> Result<Self, reqwest::Error> {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
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

    /// The cookie jar the client and a cookie-contract refresher share.
    pub fn jar(&self) -> Arc<Jar> {
        Arc::clone(&self.jar)
    }

    /// `base_url` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The URL of this style's refresh endpoint.
    pub fn refresh_url(&self) -> String {
        self.url(refresh_path(self.style))
    }

    /// Logs the demo user in ([`login`]); the cookie contract's refresh cookie lands in
    /// [`Client::jar`].
    pub async fn login(&self) -> Result<Login, LoginError> {
        login(&self.http, &self.base_url, self.style).await
    }

    /// One call to the refresh endpoint with `refresh_token` ([`refresh_request`]; the cookie
    /// contract's jar sends the cookie when `None`).
    pub async fn refresh(&self, refresh_token: Option<&str>) -> Result<Pair, RefreshFailure> {
        let response = refresh_request(&self.http, &self.base_url, self.style, refresh_token)
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
        parse_refreshed(self.style, &headers, &body)
            .ok_or_else(|| RefreshFailure::Unavailable("no tokens in the answer".into()))
    }
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
        for (access, refresh) in [("a-1", "r-1"), ("Bearer a-1", "Bearer r-1")] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, access.parse().unwrap());
            headers.insert(AUTHORIZATION_REFRESH, refresh.parse().unwrap());
            let pair = parse_refreshed(Contract::Header, &headers, b"{}").unwrap();
            assert_eq!(pair.access, "a-1");
            assert_eq!(pair.refresh.as_deref(), Some("r-1"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        headers.insert(AUTHORIZATION_REFRESH, "r-1".parse().unwrap());
        assert!(parse_refreshed(Contract::Header, &headers, b"{}").is_none());
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
