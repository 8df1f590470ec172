//! What the reqwest adapter keeps of a request to send it again after a refresh, built so that
//! keeping it costs no allocation for a typical API request.
//!
//! `reqwest::Request::try_clone` would do, but it allocates on every request even when nothing
//! needs it: a copy of the URL, and a timeout map in the request's extensions even when no
//! timeout is set. For a request without a body (most API calls: GET, HEAD, DELETE) the parts
//! are kept directly: the URL in an inline buffer when short enough (parsed back only if a retry
//! happens), the timeout only when set, the headers as they are (an empty header map costs
//! nothing to clone). A request with a buffered body is copied by `try_clone`, which shares the
//! body's bytes instead of copying them and keeps whatever else reqwest carries in the request
//! (a request converted from an `http::Request` keeps its extensions there, and always has a
//! body).

use http::{HeaderMap, Method, Version};
use reqwest::Request;
use std::time::Duration;
use url::Url;

/// URLs up to this many bytes are kept without allocating. API URLs are mostly far shorter;
/// longer ones are cloned.
const INLINE_URL: usize = 128;

/// A request's URL, kept for after the response.
#[derive(Clone)]
pub(crate) enum KeptUrl {
    /// The serialization, in place.
    Inline { len: u8, bytes: [u8; INLINE_URL] },
    /// Too long to keep in place.
    Owned(Box<Url>),
}

impl KeptUrl {
    pub(crate) fn of(url: &Url) -> Self {
        let text = url.as_str().as_bytes();
        match (u8::try_from(text.len()), text.len() <= INLINE_URL) {
            (Ok(len), true) => {
                let mut bytes = [0; INLINE_URL];
                bytes[..text.len()].copy_from_slice(text);
                Self::Inline { len, bytes }
            }
            _ => Self::Owned(Box::new(url.clone())),
        }
    }

    /// The URL again. Parsing a URL's own serialization gives back the same URL; `None` only if
    /// that ever failed.
    pub(crate) fn to_url(&self) -> Option<Url> {
        match self {
            Self::Inline { len, bytes } => {
                let text = std::str::from_utf8(bytes.get(..usize::from(*len))?).ok()?;
                Url::parse(text).ok()
            }
            Self::Owned(url) => Some(Url::clone(url)),
        }
    }
}

/// What is needed to send a request again.
pub(crate) enum Replay {
    /// A request without a body, in parts; its URL is kept apart (see [`KeptUrl`]).
    Bodiless {
        method: Method,
        /// `None` for no headers: cloning (and dropping) even an empty map is not free.
        headers: Option<HeaderMap>,
        version: Version,
        timeout: Option<Duration>,
    },
    /// A request with a buffered body: reqwest's own copy (boxed: the per-request future
    /// keeps a `Replay`, and most requests have no body).
    Cloned(Box<Request>),
}

impl Replay {
    /// What to keep of `request` (before the token is attached); `None` for a streamed body,
    /// which cannot be sent twice.
    pub(crate) fn of(request: &Request) -> Option<Self> {
        if request.body().is_some() {
            return request.try_clone().map(|copy| Self::Cloned(Box::new(copy)));
        }
        Some(Self::Bodiless {
            method: request.method().clone(),
            headers: (!request.headers().is_empty()).then(|| request.headers().clone()),
            version: request.version(),
            timeout: request.timeout().copied(),
        })
    }

    /// The request again; `url` is the one it was sent to (a copy already has it).
    pub(crate) fn into_request(self, url: Url) -> Request {
        match self {
            Self::Bodiless {
                method,
                headers,
                version,
                timeout,
            } => {
                let mut request = Request::new(method, url);
                if let Some(headers) = headers {
                    *request.headers_mut() = headers;
                }
                *request.version_mut() = version;
                if timeout.is_some() {
                    *request.timeout_mut() = timeout;
                }
                request
            }
            Self::Cloned(request) => *request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_come_back_as_they_were_short_or_long() {
        for text in [
            "https://api.example.com/items/1?x=%20y#frag",
            "http://[::1]:8080/",
            &format!("https://api.example.com/{}", "a".repeat(300)),
        ] {
            let url = Url::parse(text).unwrap();
            let kept = KeptUrl::of(&url);
            assert_eq!(
                matches!(kept, KeptUrl::Inline { .. }),
                url.as_str().len() <= INLINE_URL
            );
            assert_eq!(kept.to_url().unwrap(), url);
        }
    }

    #[test]
    fn a_replayed_request_is_the_request() {
        let mut request = Request::new(
            Method::PUT,
            Url::parse("https://api.example.com/x").unwrap(),
        );
        request
            .headers_mut()
            .insert("x-test", http::HeaderValue::from_static("1"));
        *request.timeout_mut() = Some(Duration::from_secs(3));
        *request.version_mut() = Version::HTTP_2;
        *request.body_mut() = Some(reqwest::Body::from("payload"));
        let url = request.url().clone();
        let replay = Replay::of(&request).unwrap().into_request(url.clone());
        assert_eq!(replay.method(), Method::PUT);
        assert_eq!(replay.url(), &url);
        assert_eq!(replay.headers(), request.headers());
        assert_eq!(replay.timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(replay.version(), Version::HTTP_2);
        assert_eq!(
            replay.body().and_then(reqwest::Body::as_bytes),
            Some(&b"payload"[..])
        );

        for headers in [0, 2] {
            let mut bodiless = Request::new(Method::GET, url.clone());
            for i in 0..headers {
                bodiless.headers_mut().insert(
                    http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                    http::HeaderValue::from_static("v"),
                );
            }
            let replay = Replay::of(&bodiless).unwrap().into_request(url.clone());
            assert!(replay.body().is_none());
            assert_eq!(replay.timeout(), None);
            assert_eq!(replay.headers(), bodiless.headers());
            assert_eq!(replay.method(), Method::GET);
        }
    }

    #[test]
    fn a_streamed_body_is_not_kept() {
        let mut request = Request::new(
            Method::POST,
            Url::parse("https://api.example.com/x").unwrap(),
        );
        let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("a"), Ok("b")];
        *request.body_mut() = Some(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )));
        assert!(Replay::of(&request).is_none());
    }
}
