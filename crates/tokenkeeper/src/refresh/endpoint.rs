//! What the built-in HTTP strategies share: endpoint validation, a bounded body read, and the
//! mapping of an answer to success, rejection or transient failure.

use super::RefreshError;
use crate::config_error::ConfigError;
use crate::origin::is_loopback;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use std::time::Duration;
use url::Url;

/// Refresh responses larger than this are refused: no token response is that big.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// A refresh endpoint and the plain client that calls it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) client: reqwest::Client,
    pub(crate) url: Url,
}

impl Endpoint {
    /// Refuses anything but https, or http to loopback: the refresh token must not cross a
    /// network in clear text.
    pub(crate) fn new(url: &str) -> Result<Self, ConfigError> {
        let url =
            Url::parse(url).map_err(|e| ConfigError::new(format!("refresh URL `{url}`: {e}")))?;
        let secure = match url.scheme() {
            "https" => true,
            "http" => url.host_str().is_some_and(is_loopback),
            _ => false,
        };
        if !secure {
            return Err(ConfigError::new(format!(
                "refresh URL `{url}` must be https (plain http only to loopback)"
            )));
        }
        Ok(Self {
            client: plain_client(None)?,
            url,
        })
    }
}

/// The strategies' own client. It never follows redirects: a 307/308 re-sends the body, which
/// holds the refresh token, to wherever the `Location` points.
pub(crate) fn plain_client(
    jar: Option<std::sync::Arc<reqwest::cookie::Jar>>,
) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(jar) = jar {
        builder = builder.cookie_provider(jar);
    }
    builder
        .build()
        .map_err(|e| ConfigError::new(format!("refresh client: {}", e.without_url())))
}

/// A refresh endpoint's answer, its body read up to [`MAX_BODY`].
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    truncated: bool,
}

impl Answer {
    /// Sends and reads the answer. Network failures are transient.
    pub(crate) async fn fetch(request: reqwest::RequestBuilder) -> Result<Self, RefreshError> {
        let mut response = request.send().await.map_err(network_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = BytesMut::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(network_error)? {
            if body.len() + chunk.len() > MAX_BODY {
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Self {
            status,
            headers,
            body: body.freeze(),
            truncated,
        })
    }

    /// `Ok` for a complete 2xx answer; otherwise what the answer means for the session.
    ///
    /// Only what the contracts define as "this refresh token is dead" is terminal: 401, 403,
    /// and 400 `invalid_grant`. 5xx, 408, 425, 429 and `temporarily_unavailable` are transient.
    /// Everything else (a redirect, 404, 405, 407, 409, 421, another 4xx, a 2xx HTML page or
    /// an oversized body) is no verdict on the refresh token: a misrouted gateway, a proxy
    /// wanting credentials or a captive portal must not log every user out.
    pub(crate) fn success(&self) -> Result<&Self, RefreshError> {
        let status = self.status;
        if status.is_success() {
            if self.truncated {
                return Err(RefreshError::Inconclusive(format!(
                    "HTTP {}: the body is larger than {MAX_BODY} bytes",
                    status.as_u16()
                )));
            }
            if is_html(&self.headers, &self.body) {
                return Err(RefreshError::Inconclusive(format!(
                    "HTTP {} with an HTML page (a captive portal or a proxy?)",
                    status.as_u16()
                )));
            }
            return Ok(self);
        }
        let code = error_code(&self.body);
        let what = match &code {
            Some(code) => format!("HTTP {} {code}", status.as_u16()),
            None => format!("HTTP {}", status.as_u16()),
        };
        if status.is_redirection() {
            return Err(RefreshError::Inconclusive(format!(
                "HTTP {} redirect: not followed with a refresh token",
                status.as_u16()
            )));
        }
        let transient = status.is_server_error()
            || matches!(status.as_u16(), 408 | 425 | 429)
            // RFC 6749 defines this code for the authorization endpoint; some token endpoints use it too.
            || code.as_deref() == Some("temporarily_unavailable");
        if transient {
            return Err(RefreshError::Transient {
                reason: what,
                retry_after: retry_after(&self.headers),
            });
        }
        let rejected = matches!(status.as_u16(), 401 | 403)
            || (status == StatusCode::BAD_REQUEST && code.as_deref() == Some("invalid_grant"));
        if rejected {
            return Err(RefreshError::Rejected(what));
        }
        Err(RefreshError::Inconclusive(what))
    }

    /// Parses the JSON body, or says precisely why not. A body that is not JSON at all (empty,
    /// HTML, text) did not come from a JSON token endpoint: no verdict on the refresh token. A
    /// JSON body without usable tokens is the server's fault and is judged by the caller.
    pub(crate) fn json(&self) -> Result<serde_json::Value, RefreshError> {
        serde_json::from_slice(&self.body).map_err(|_| {
            RefreshError::Inconclusive(if self.body.trim_ascii().is_empty() {
                format!("HTTP {} with an empty body", self.status.as_u16())
            } else {
                format!("HTTP {}: the body is not JSON", self.status.as_u16())
            })
        })
    }
}

/// An HTML page: by its content type, or by its first bytes when the type is missing or wrong.
fn is_html(headers: &HeaderMap, body: &[u8]) -> bool {
    let typed_html = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/html")
        });
    let start = body.trim_ascii_start();
    let looks_html = start.len() >= 5
        && (start[..5].eq_ignore_ascii_case(b"<html") || start[..5].eq_ignore_ascii_case(b"<!doc"));
    typed_html || looks_html
}

fn network_error(error: reqwest::Error) -> RefreshError {
    // Without the URL: a query string could hold a client secret.
    let error = error.without_url();
    let reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        format!("request failed: {error}")
    };
    RefreshError::transient(reason)
}

/// A short, safe error code from a rejection body: RFC 6749 `error`, a `message`, a nested
/// `errorCode`, or a one-word plain body. Never the raw body, which could echo a token.
fn error_code(body: &[u8]) -> Option<String> {
    let candidate = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => ["/error", "/message", "/result/errorCode", "/code"]
            .iter()
            .find_map(|pointer| json.pointer(pointer)?.as_str().map(str::to_owned))?,
        Err(_) => std::str::from_utf8(body).ok()?.trim().to_owned(),
    };
    let safe = !candidate.is_empty()
        && candidate.len() <= 64
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    safe.then_some(candidate)
}

/// `Retry-After` in seconds (the HTTP-date form is rare on APIs and ignored), capped at 10 min.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(600)))
}

/// Reads a string at a JSON pointer.
pub(crate) fn string_at<'a>(json: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
    json.pointer(pointer)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_extracted_safely() {
        assert_eq!(
            error_code(br#"{"error":"invalid_grant","error_description":"x"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            error_code(br#"{"result":{"errorCode":"INVALID_REFRESH_TOKEN"}}"#).as_deref(),
            Some("INVALID_REFRESH_TOKEN")
        );
        assert_eq!(
            error_code(b"InvalidRefreshToken\n").as_deref(),
            Some("InvalidRefreshToken")
        );
        assert_eq!(error_code(b"token abc.def is invalid"), None);
        assert_eq!(error_code(b"\xff"), None);
    }

    fn answer(status: u16, content_type: Option<&'static str>, body: &'static [u8]) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from_static(body),
            truncated: false,
        }
    }

    #[test]
    fn only_real_rejections_are_terminal() {
        let terminal = [
            answer(400, None, br#"{"error":"invalid_grant"}"#),
            answer(401, None, b""),
            answer(403, None, b"Forbidden"),
        ];
        for answer in &terminal {
            assert!(
                matches!(answer.success(), Err(RefreshError::Rejected(_))),
                "{answer:?}"
            );
        }
        let no_verdict = [
            answer(301, None, b""),
            answer(307, None, b""),
            answer(400, None, br#"{"error":"invalid_client"}"#),
            answer(404, Some("text/html"), b"<html>not found</html>"),
            answer(405, None, b""),
            answer(407, None, b""),
            answer(409, None, b""),
            answer(421, None, b""),
            answer(418, None, b""),
            answer(
                200,
                Some("text/html; charset=utf-8"),
                b"<html>portal</html>",
            ),
            answer(200, None, b"  <!DOCTYPE html><html>"),
        ];
        for answer in &no_verdict {
            assert!(
                matches!(answer.success(), Err(RefreshError::Inconclusive(_))),
                "{answer:?}"
            );
        }
        for answer in [
            answer(503, None, b""),
            answer(429, None, b""),
            answer(408, None, b""),
        ] {
            assert!(
                matches!(answer.success(), Err(RefreshError::Transient { .. })),
                "{answer:?}"
            );
        }
        let empty = answer(200, Some("application/json"), b"");
        assert!(matches!(empty.json(), Err(RefreshError::Inconclusive(_))));
        let garbage = answer(200, None, b"hello");
        assert!(matches!(garbage.json(), Err(RefreshError::Inconclusive(_))));
    }

    #[test]
    fn only_secure_endpoints_are_accepted() {
        assert!(Endpoint::new("https://auth.example.com/token").is_ok());
        assert!(Endpoint::new("http://127.0.0.1:8080/token").is_ok());
        assert!(Endpoint::new("http://localhost/token").is_ok());
        assert!(Endpoint::new("http://auth.example.com/token").is_err());
        assert!(Endpoint::new("ftp://auth.example.com/token").is_err());
        assert!(Endpoint::new("nope").is_err());
    }

    proptest::proptest! {
        #[test]
        fn error_codes_never_echo_long_or_odd_text(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Some(code) = error_code(&body) {
                proptest::prop_assert!(code.len() <= 64);
                proptest::prop_assert!(code.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)));
            }
        }
    }
}
