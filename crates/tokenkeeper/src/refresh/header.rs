use super::http::{Answer, Endpoint};
use super::json::checked;
use super::{RefreshError, Refresher};
use crate::TokenSet;
use crate::error::Error;
use http::{HeaderName, HeaderValue};
use secrecy::ExposeSecret;

/// Header refresh: `POST {url}` with `Authorization-refresh: Bearer <refresh>` → the new tokens
/// in the response headers `Authorization` and `Authorization-refresh`.
///
/// ```
/// let refresher = tokenkeeper::refresh::Header::new("https://api.example.com/api/refresh-token")?;
/// # Ok::<(), tokenkeeper::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Header {
    endpoint: Endpoint,
    refresh_header: HeaderName,
    access_header: HeaderName,
}

impl Header {
    /// A refresher for this endpoint with the default header names.
    pub fn new(url: &str) -> Result<Self, Error> {
        Ok(Self {
            endpoint: Endpoint::new(url)?,
            refresh_header: HeaderName::from_static("authorization-refresh"),
            access_header: http::header::AUTHORIZATION,
        })
    }

    /// The header that carries the refresh token, both ways (default `Authorization-refresh`).
    pub fn refresh_header(mut self, name: HeaderName) -> Self {
        self.refresh_header = name;
        self
    }

    /// The response header with the new access token (default `Authorization`).
    pub fn access_header(mut self, name: HeaderName) -> Self {
        self.access_header = name;
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
            .header(self.refresh_header.clone(), value);
        let answer = Answer::fetch(request).await?;
        let answer = answer.success()?;
        let bearer = |name: &HeaderName| -> Result<Option<String>, RefreshError> {
            let Some(value) = answer.headers.get(name) else {
                return Ok(None);
            };
            let value = value.to_str().map_err(|_| {
                RefreshError::InvalidResponse(format!("header `{name}` is not ASCII"))
            })?;
            let token = strip_bearer(value).ok_or_else(|| {
                RefreshError::InvalidResponse(format!("header `{name}` is not `Bearer <token>`"))
            })?;
            Ok(Some(checked(token, name.as_str())?.to_owned()))
        };
        let access = bearer(&self.access_header)?.ok_or_else(|| {
            RefreshError::InvalidResponse(format!("no `{}` header", self.access_header))
        })?;
        let mut tokens = TokenSet::new(access);
        if let Some(refresh) = bearer(&self.refresh_header)? {
            tokens = tokens.with_refresh_token(refresh);
        }
        Ok(tokens)
    }
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
