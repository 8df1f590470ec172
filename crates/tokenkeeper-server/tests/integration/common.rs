//! Helpers: a client for each contract and assertions on each contract's
//! wording.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, SET_COOKIE, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tokenkeeper_server::{
    ADMIN_HEADER, ADMIN_HEADER_VALUE, Contract, ServerConfig, ServerHandle, Stats, client, start,
};

/// Something to build URLs from: a server handle or a base URL.
pub trait Base {
    fn url(&self, path: &str) -> String;
}

impl Base for ServerHandle {
    fn url(&self, path: &str) -> String {
        ServerHandle::url(self, path)
    }
}

impl Base for str {
    fn url(&self, path: &str) -> String {
        format!("{self}{path}")
    }
}

/// Every contract.
pub const STYLES: [Contract; 4] = Contract::ALL;

/// Starts a server (random port, random secret).
pub async fn server(config: ServerConfig) -> ServerHandle {
    start(config).await.expect("server starts")
}

/// A plain client: no cookie jar (cookies are sent by hand), a safety timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A response, read fully.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// Sends `request` and reads its reply.
    pub async fn send(request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.unwrap()).await
    }

    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn content_type(&self) -> &str {
        self.header(CONTENT_TYPE.as_str()).unwrap_or("")
    }

    /// Asserts a 4xx with a JSON body; returns the body.
    pub fn assert_json_4xx(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert!(
            self.content_type().starts_with("application/json"),
            "content type {:?}, body {:?}",
            self.content_type(),
            self.body
        );
        self.json()
    }

    /// Asserts a JSON error `{"error": code, "error_description": ...}`.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        let body = self.assert_json_4xx(status);
        assert_eq!(body["error"], code, "body: {body}");
        assert!(body["error_description"].is_string(), "body: {body}");
    }

    /// The value of the `tk_refresh` cookie this response sets.
    pub fn refresh_cookie(&self) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find_map(|v| v.strip_prefix("tk_refresh="))
            .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
    }
}

/// An access token and its refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub access: String,
    pub refresh: String,
}

/// The login request of `style` as the reference client sends it: demo/demo, through the
/// password grant for oauth2 and `POST /login` for the others.
pub fn login_request(
    c: &reqwest::Client,
    s: &(impl Base + ?Sized),
    style: Contract,
) -> reqwest::RequestBuilder {
    client::login_request(c, &s.url(""), style)
}

/// `POST /login` as demo/demo without a `style`: the JSON contract, the default.
pub fn default_login_request(
    c: &reqwest::Client,
    s: &(impl Base + ?Sized),
) -> reqwest::RequestBuilder {
    c.post(s.url("/login"))
        .json(&json!({"username": "demo", "password": "demo"}))
}

/// A browser's CORS preflight from `origin` for a `method` request to `path` that sends
/// `headers`.
pub fn preflight(
    c: &reqwest::Client,
    s: &(impl Base + ?Sized),
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::RequestBuilder {
    c.request(reqwest::Method::OPTIONS, s.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
}

/// Logs in as demo/demo in `style` (oauth2 through the password grant, the
/// others through `POST /login`).
pub async fn login(c: &reqwest::Client, s: &(impl Base + ?Sized), style: Contract) -> Pair {
    let reply = Reply::send(login_request(c, s, style)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    if style == Contract::OAuth2 {
        let body = reply.json();
        return Pair {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        };
    }
    let body = reply.json();
    let pair = Pair {
        access: body["accessToken"].as_str().unwrap().to_owned(),
        refresh: body["refreshToken"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        reply.refresh_cookie().as_deref(),
        Some(pair.refresh.as_str())
    );
    pair
}

/// The outcome of a refresh request: the reply, and the new pair on success.
#[derive(Debug)]
pub struct Refreshed {
    pub reply: Reply,
    pub pair: Option<Pair>,
}

/// Refreshes `refresh` through `style`'s endpoint.
pub async fn refresh(
    c: &reqwest::Client,
    s: &(impl Base + ?Sized),
    style: Contract,
    refresh: &str,
) -> Refreshed {
    let request = client::refresh_request(c, &s.url(""), style, Some(refresh));
    let reply = Reply::send(request).await;
    if reply.status != StatusCode::OK {
        return Refreshed { reply, pair: None };
    }
    let pair = match style {
        Contract::OAuth2 => {
            let body = reply.json();
            assert_eq!(body["token_type"], "Bearer");
            assert!(body["expires_in"].is_number());
            assert_eq!(reply.header("cache-control"), Some("no-store"));
            Pair {
                access: body["access_token"].as_str().unwrap().to_owned(),
                refresh: body["refresh_token"].as_str().unwrap().to_owned(),
            }
        }
        Contract::Json => {
            let body = reply.json();
            assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
            Pair {
                access: body["accessToken"].as_str().unwrap().to_owned(),
                refresh: body["refreshToken"].as_str().unwrap().to_owned(),
            }
        }
        Contract::Header => {
            assert_eq!(reply.json(), json!({}));
            // Raw, as the header-contract article's server sends them (the default).
            let raw = |name: &str| {
                let value = reply.header(name).unwrap();
                assert!(
                    !value.is_empty() && !value.contains(' '),
                    "{name} is not a raw token"
                );
                value.to_owned()
            };
            Pair {
                access: raw("authorization"),
                refresh: raw("authorization-refresh"),
            }
        }
        Contract::Cookie => {
            let body = reply.json();
            assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
            let set_cookie = reply.header("set-cookie").unwrap();
            for attribute in ["HttpOnly", "SameSite=Strict", "Path=/v3/jwt"] {
                assert!(set_cookie.contains(attribute), "{set_cookie}");
            }
            Pair {
                access: body["accessToken"].as_str().unwrap().to_owned(),
                refresh: reply.refresh_cookie().unwrap(),
            }
        }
    };
    Refreshed {
        reply,
        pair: Some(pair),
    }
}

/// `GET /api/items/{id}` with an optional bearer token.
pub async fn get_item(
    c: &reqwest::Client,
    s: &(impl Base + ?Sized),
    id: &str,
    access: Option<&str>,
) -> Reply {
    let mut request = c.get(s.url(&format!("/api/items/{id}")));
    if let Some(access) = access {
        request = request.header(AUTHORIZATION, format!("Bearer {access}"));
    }
    Reply::send(request).await
}

/// Asserts the API accepted the token.
pub fn assert_ok_item(reply: &Reply, id: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"id": id, "name": format!("item {id}"), "owner": "demo"})
    );
}

/// Asserts the API refused a token of `style` as expired (or invalid).
pub fn assert_refused(style: Contract, reply: &Reply, expired: bool) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let challenge = reply.header(WWW_AUTHENTICATE.as_str()).unwrap_or_default();
    match style {
        Contract::OAuth2 => {
            let description = if expired {
                "The access token expired"
            } else {
                "The access token is invalid"
            };
            assert_eq!(
                challenge,
                format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
            );
            assert_eq!(
                reply.json(),
                json!({"error": "invalid_token", "error_description": description})
            );
        }
        Contract::Json => {
            assert_eq!(challenge, "Bearer realm=\"tokenkeeper\"");
            let message = if expired {
                "TokenExpiredError"
            } else {
                "JsonWebTokenError"
            };
            assert_eq!(reply.json(), json!({ "message": message }));
        }
        Contract::Header => {
            assert_eq!(challenge, "Bearer realm=\"tokenkeeper\"");
            assert!(reply.content_type().starts_with("text/plain"));
            assert_eq!(
                reply.body,
                if expired {
                    "ExpiredToken"
                } else {
                    "InvalidToken"
                }
            );
        }
        Contract::Cookie => {
            assert_eq!(challenge, "Bearer realm=\"tokenkeeper\"");
            let code = if expired {
                "EXPIRED_TOKEN"
            } else {
                "INVALID_TOKEN"
            };
            assert_eq!(reply.json(), json!({"result": {"errorCode": code}}));
        }
    }
}

/// Asserts the 401 for a request without any bearer token (RFC 6750 §3.1).
pub fn assert_missing(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(
        reply.header(WWW_AUTHENTICATE.as_str()),
        Some("Bearer realm=\"tokenkeeper\"")
    );
    assert_eq!(reply.json()["error"], "unauthorized");
}

/// Asserts `style`'s refresh rejection (expired wording, or invalid wording).
pub fn assert_refresh_rejected(style: Contract, reply: &Reply, expired: bool) {
    match style {
        Contract::OAuth2 => {
            reply.assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
            assert_eq!(reply.header("cache-control"), Some("no-store"));
        }
        Contract::Json => {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
            let message = if expired {
                "RefreshTokenExpiredError"
            } else {
                "InvalidRefreshTokenError"
            };
            assert_eq!(reply.json(), json!({ "message": message }));
        }
        Contract::Header => {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
            assert!(reply.content_type().starts_with("text/plain"));
            let text = if expired {
                "ExpiredRefreshToken"
            } else {
                "InvalidRefreshToken"
            };
            assert_eq!(reply.body, text);
        }
        Contract::Cookie => {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
            let code = if expired {
                "EXPIRED_REFRESH_TOKEN"
            } else {
                "INVALID_REFRESH_TOKEN"
            };
            assert_eq!(reply.json(), json!({"result": {"errorCode": code}}));
            // The cookie is cleared.
            assert_eq!(reply.refresh_cookie().as_deref(), Some(""));
            assert!(reply.header("set-cookie").unwrap().contains("Max-Age=0"));
        }
    }
}

/// `GET path` with the operator header.
pub fn admin_get(c: &reqwest::Client, s: &ServerHandle, path: &str) -> reqwest::RequestBuilder {
    c.get(s.url(path)).header(ADMIN_HEADER, ADMIN_HEADER_VALUE)
}

/// `POST path` with the operator header.
pub fn admin_post(c: &reqwest::Client, s: &ServerHandle, path: &str) -> reqwest::RequestBuilder {
    c.post(s.url(path)).header(ADMIN_HEADER, ADMIN_HEADER_VALUE)
}

/// `GET /__stats` (with the operator header).
pub async fn http_stats(c: &reqwest::Client, s: &ServerHandle) -> Stats {
    let reply = Reply::send(admin_get(c, s, "/__stats")).await;
    assert_eq!(reply.status, StatusCode::OK);
    serde_json::from_str(&reply.body).unwrap()
}

/// The claims of a JWT, decoded without verification.
pub fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Sends `request` as is over a new TCP connection and reads the answer until the server
/// closes (at most 10 s).
pub async fn raw_exchange(addr: std::net::SocketAddr, request: String) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
