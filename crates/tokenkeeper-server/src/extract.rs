//! Reading requests without ever letting axum's plain-text rejections out:
//! bodies (JSON, forms) with size and content-type checks, bearer
//! credentials, cookies. Handlers take `Result<Bytes, BytesRejection>` and call
//! these helpers, then word failures in their own contract's shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::header::{CONTENT_TYPE, COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::errors::json_error;

/// Largest request body accepted, in bytes (16 KiB). Larger ones get 413.
pub const BODY_LIMIT: usize = 16 * 1024;

/// A request body as handlers receive it.
pub(crate) type RawBody = Result<Bytes, BytesRejection>;

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadBody {
    /// Over [`BODY_LIMIT`].
    TooLarge,
    /// Missing or wrong `Content-Type`; carries the expected one.
    WrongContentType(&'static str),
    /// Syntax error, wrong shape, missing or empty field.
    Malformed(String),
    /// The body could not be read at all.
    Unreadable,
}

impl BadBody {
    /// 413, 415 or 400.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            BadBody::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BadBody::WrongContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BadBody::Malformed(_) | BadBody::Unreadable => StatusCode::BAD_REQUEST,
        }
    }

    /// The generic error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            BadBody::TooLarge => "payload_too_large",
            BadBody::WrongContentType(_) => "unsupported_media_type",
            BadBody::Malformed(_) | BadBody::Unreadable => "invalid_request",
        }
    }

    /// Human text.
    pub(crate) fn description(&self) -> String {
        match self {
            BadBody::TooLarge => format!("The request body is larger than {BODY_LIMIT} bytes"),
            BadBody::WrongContentType(expected) => {
                format!("The request body must be sent as Content-Type: {expected}")
            }
            BadBody::Malformed(why) => why.clone(),
            BadBody::Unreadable => "The request body could not be read".to_owned(),
        }
    }

    /// The generic JSON error response.
    pub(crate) fn response(&self) -> Response {
        json_error(self.status(), self.code(), &self.description())
    }
}

/// The media type of the request, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim();
    Some(essence.to_ascii_lowercase())
}

fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

fn bytes(body: RawBody) -> Result<Bytes, BadBody> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BadBody::TooLarge
        } else {
            BadBody::Unreadable
        }
    })
}

/// Parses a JSON body (`Content-Type: application/json` or `*/*+json`).
pub(crate) fn json<T: DeserializeOwned>(headers: &HeaderMap, body: RawBody) -> Result<T, BadBody> {
    let bytes = bytes(body)?;
    if !media_type(headers).is_some_and(|m| is_json(&m)) {
        return Err(BadBody::WrongContentType("application/json"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| BadBody::Malformed(format!("The JSON body is not acceptable: {e}")))
}

/// Parses an `application/x-www-form-urlencoded` body into its pairs, in
/// order, duplicates kept.
pub(crate) fn form(headers: &HeaderMap, body: RawBody) -> Result<Vec<(String, String)>, BadBody> {
    let bytes = bytes(body)?;
    if media_type(headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(BadBody::WrongContentType(
            "application/x-www-form-urlencoded",
        ));
    }
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| BadBody::Malformed(format!("The form body is not acceptable: {e}")))
}

/// The token of a `Bearer <token>` credential (scheme case-insensitive), or
/// `None` when the value is not a non-empty bearer credential.
pub(crate) fn bearer(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let parse = |s: &str| bearer(&HeaderValue::from_str(s).unwrap()).map(str::to_owned);
        assert_eq!(parse("Bearer abc"), Some("abc".to_owned()));
        assert_eq!(parse("bearer  abc "), Some("abc".to_owned()));
        assert_eq!(parse("Bearer"), None);
        assert_eq!(parse("Bearer "), None);
        assert_eq!(parse("Basic abc"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn cookie_parsing() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; tk_refresh=xyz"));
        assert_eq!(cookie(&headers, "tk_refresh"), Some("xyz"));
        assert_eq!(cookie(&headers, "a"), Some("1"));
        assert_eq!(cookie(&headers, "b"), None);
        headers.append(COOKIE, HeaderValue::from_static("b="));
        assert_eq!(cookie(&headers, "b"), None);
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        let value: serde_json::Value = json(&headers, Ok(Bytes::from_static(b"{}"))).unwrap();
        assert_eq!(value, serde_json::json!({}));
    }
}
