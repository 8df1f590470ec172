use super::endpoint::{Answer, Endpoint};
use super::json::checked;
use super::{RefreshError, Refresher};
use crate::config_error::ConfigError;
use crate::token::TokenSet;
use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;

/// Default request header carrying the refresh token, and default response header with the
/// rotated one.
const AUTHORIZATION_REFRESH: HeaderName = HeaderName::from_static("authorization-refresh");

/// Header refresh: `POST {url}` with `Authorization-refresh: Bearer <refresh>` → `200` with the
/// new tokens in the response headers `Authorization` and `Authorization-refresh`.
///
/// The response values are accepted **raw** (`Authorization: eyJ…`, as the header-contract
/// article's server sends them and its client stores them) and `Bearer `-prefixed
/// (`Authorization: Bearer eyJ…`): the scheme is matched case-insensitively and surrounding
/// whitespace is trimmed. A value that is empty after trimming (or only `Bearer`) counts as
/// missing. A missing access-token header is an invalid answer (the session ends, as the
/// article's client logs out); a missing refresh-token header keeps the current refresh token,
/// as RFC 6749 allows for servers that do not rotate.
///
/// | what | default | builder method |
/// |---|---|---|
/// | request header with `Bearer <refresh>` | `Authorization-refresh` | [`request_header`](Self::request_header) |
/// | response header with the new access token | `Authorization` | [`access_header`](Self::access_header) |
/// | response header with the rotated refresh token | `Authorization-refresh` | [`refresh_header`](Self::refresh_header) |
///
/// ```
/// use http::HeaderName;
///
/// let refresher = tokenkeeper::refresh::Header::new("https://api.example.com/api/refresh-token")?
///     .request_header(HeaderName::from_static("x-refresh-token"))
///     .access_header(HeaderName::from_static("x-access-token"))
///     .refresh_header(HeaderName::from_static("x-refresh-token"));
/// # let _ = refresher;
/// # Ok::<(), tokenkeeper::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Header {
    endpoint: Endpoint,
    request_header: HeaderName,
    access_header: HeaderName,
    refresh_header: HeaderName,
}

impl Header {
    /// A refresher for this endpoint with the default header names.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            endpoint: Endpoint::new(url)?,
            request_header: AUTHORIZATION_REFRESH,
            access_header: http::header::AUTHORIZATION,
            refresh_header: AUTHORIZATION_REFRESH,
        })
    }

    /// The request header that carries `Bearer <refresh token>` (default `Authorization-refresh`).
    pub fn request_header(mut self, name: HeaderName) -> Self {
        self.request_header = name;
        self
    }

    /// The response header with the new access token (default `Authorization`).
    pub fn access_header(mut self, name: HeaderName) -> Self {
        self.access_header = name;
        self
    }

    /// The response header with the rotated refresh token (default `Authorization-refresh`).
    pub fn refresh_header(mut self, name: HeaderName) -> Self {
        self.refresh_header = name;
        self
    }

    /// The HTTP client to send with (default: a plain `reqwest::Client` that follows no
    /// redirects). Never a client that goes through the session's own middleware, and best one
    /// with `redirect::Policy::none()`: a 307 would re-send the refresh token elsewhere.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.endpoint.client = client;
        self
    }
}

#[async_trait::async_trait]
impl Refresher for Header {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let refresh_token = current
            .refresh_token()
            .ok_or(RefreshError::NoRefreshToken)?;
        let mut value = HeaderValue::try_from(format!("Bearer {}", refresh_token.expose_secret()))
            .map_err(|_| RefreshError::NoRefreshToken)?;
        value.set_sensitive(true);
        let request = self
            .endpoint
            .client
            .post(self.endpoint.url.clone())
            .header(self.request_header.clone(), value);
        let answer = Answer::fetch(request).await?;
        let answer = answer.success()?;
        let access = token_in(&answer.headers, &self.access_header)?.ok_or_else(|| {
            RefreshError::InvalidResponse(format!(
                "no token in the `{}` header",
                self.access_header
            ))
        })?;
        let mut tokens = TokenSet::new(access);
        if let Some(refresh) = token_in(&answer.headers, &self.refresh_header)? {
            tokens = tokens.with_refresh_token(refresh);
        }
        Ok(tokens)
    }
}

/// The token in response header `name`, raw or `Bearer `-prefixed. `Ok(None)` when the header
/// is absent or holds no token.
fn token_in(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, RefreshError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| RefreshError::InvalidResponse(format!("header `{name}` is not ASCII")))?;
    match token_of(value) {
        Token::Missing => Ok(None),
        Token::Found(token) => Ok(Some(checked(token, name.as_str())?.to_owned())),
        Token::OtherScheme => Err(RefreshError::InvalidResponse(format!(
            "header `{name}` is neither a token nor `Bearer <token>`"
        ))),
    }
}

/// What a response header value holds.
#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    /// Empty, whitespace, or a `Bearer` scheme without a token.
    Missing,
    /// A raw token, or the token of `Bearer <token>`.
    Found(&'a str),
    /// `<scheme> <credentials>` with a scheme other than Bearer (e.g. `Basic …`).
    OtherScheme,
}

fn token_of(value: &str) -> Token<'_> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
        return Token::Missing;
    }
    let Some((scheme, rest)) = value.split_once(|c: char| c.is_ascii_whitespace()) else {
        // No space: the raw token, as the header-contract article's server sends it.
        return Token::Found(value);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Token::OtherScheme;
    }
    match rest.trim() {
        "" => Token::Missing,
        token => Token::Found(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_bearer_values_are_both_tokens() {
        let cases = [
            ("eyJ.a.b", Token::Found("eyJ.a.b")),
            ("  eyJ.a.b\t", Token::Found("eyJ.a.b")),
            ("Bearer eyJ.a.b", Token::Found("eyJ.a.b")),
            ("bearer eyJ.a.b", Token::Found("eyJ.a.b")),
            ("BEARER   eyJ.a.b  ", Token::Found("eyJ.a.b")),
            (" Bearer\teyJ.a.b", Token::Found("eyJ.a.b")),
            // A raw token that merely starts with the word is still a raw token.
            ("BearerToken123", Token::Found("BearerToken123")),
            ("", Token::Missing),
            ("   ", Token::Missing),
            ("Bearer", Token::Missing),
            ("bearer   ", Token::Missing),
            ("Basic dXNlcjpwdw==", Token::OtherScheme),
        ];
        for (value, expected) in cases {
            assert_eq!(token_of(value), expected, "{value:?}");
        }
    }

    #[test]
    fn headers_are_read_or_refused_precisely() {
        let name = AUTHORIZATION_REFRESH;
        let mut headers = HeaderMap::new();
        assert_eq!(token_in(&headers, &name), Ok(None));
        headers.insert(&name, HeaderValue::from_static(" "));
        assert_eq!(token_in(&headers, &name), Ok(None));
        headers.insert(&name, HeaderValue::from_static("r-1"));
        assert_eq!(token_in(&headers, &name), Ok(Some("r-1".to_owned())));
        headers.insert(&name, HeaderValue::from_static("Bearer r-2"));
        assert_eq!(token_in(&headers, &name), Ok(Some("r-2".to_owned())));
        headers.insert(&name, HeaderValue::from_static("Basic abc"));
        assert!(matches!(
            token_in(&headers, &name),
            Err(RefreshError::InvalidResponse(_))
        ));
        // Two words after the scheme are not a token; neither is non-ASCII.
        headers.insert(&name, HeaderValue::from_static("Bearer a b"));
        assert!(matches!(
            token_in(&headers, &name),
            Err(RefreshError::InvalidResponse(_))
        ));
        headers.insert(&name, HeaderValue::from_bytes(b"\xe2\x9c\x93").unwrap());
        assert!(matches!(
            token_in(&headers, &name),
            Err(RefreshError::InvalidResponse(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_header_value_is_read_without_panicking(value in proptest::collection::vec(0x20u8..0x7f, 0..64)) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.insert(AUTHORIZATION_REFRESH, value);
            }
            if let Ok(Some(token)) = token_in(&headers, &AUTHORIZATION_REFRESH) {
                proptest::prop_assert!(!token.is_empty());
                proptest::prop_assert!(token.bytes().all(|b| (0x21..0x7f).contains(&b)));
            }
        }
    }
}
