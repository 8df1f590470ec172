use super::endpoint::{Answer, Endpoint, string_at};
use super::{RefreshError, Refresher};
use crate::config_error::ConfigError;
use crate::token::TokenSet;
use secrecy::ExposeSecret;
use std::time::Duration;

/// JSON refresh: `POST {url}` with `{"refreshToken": …}` → `{"accessToken": …, "refreshToken": …}`.
///
/// Field names are configurable; the response fields are JSON pointers, so nested answers such
/// as `{"data":{"accessToken":…}}` work too. Without an expiry field the JWT claims are used.
///
/// ```
/// let refresher = tokenkeeper::refresh::Json::new("https://api.example.com/refresh/token")?
///     .request_field("refresh_token")
///     .access_token_at("/data/access")
///     .refresh_token_at("/data/refresh");
/// # Ok::<(), tokenkeeper::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Json {
    endpoint: Endpoint,
    request_field: String,
    access_at: String,
    refresh_at: String,
    expires_in_at: String,
}

impl Json {
    /// A refresher for this endpoint with the default field names.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            endpoint: Endpoint::new(url)?,
            request_field: "refreshToken".into(),
            access_at: "/accessToken".into(),
            refresh_at: "/refreshToken".into(),
            expires_in_at: "/expiresIn".into(),
        })
    }

    /// The request body's field for the refresh token (default `refreshToken`).
    pub fn request_field(mut self, name: impl Into<String>) -> Self {
        self.request_field = name.into();
        self
    }

    /// JSON pointer to the new access token (default `/accessToken`).
    pub fn access_token_at(mut self, pointer: impl Into<String>) -> Self {
        self.access_at = pointer.into();
        self
    }

    /// JSON pointer to the rotated refresh token (default `/refreshToken`).
    pub fn refresh_token_at(mut self, pointer: impl Into<String>) -> Self {
        self.refresh_at = pointer.into();
        self
    }

    /// JSON pointer to the lifetime in seconds (default `/expiresIn`).
    pub fn expires_in_at(mut self, pointer: impl Into<String>) -> Self {
        self.expires_in_at = pointer.into();
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
impl Refresher for Json {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let refresh_token = current
            .refresh_token()
            .ok_or(RefreshError::NoRefreshToken)?;
        let mut body = serde_json::Map::new();
        body.insert(
            self.request_field.clone(),
            serde_json::Value::String(refresh_token.expose_secret().to_owned()),
        );
        let request = self
            .endpoint
            .client
            .post(self.endpoint.url.clone())
            .json(&body);
        let answer = Answer::fetch(request).await?;
        let json = answer.success()?.json()?;
        let access = string_at(&json, &self.access_at).ok_or_else(|| {
            RefreshError::InvalidResponse(format!("no access token at `{}`", self.access_at))
        })?;
        let mut tokens = TokenSet::new(checked(access, "access token")?);
        if let Some(refresh) = string_at(&json, &self.refresh_at) {
            tokens = tokens.with_refresh_token(checked(refresh, "refresh token")?);
        }
        if let Some(seconds) = json.pointer(&self.expires_in_at).and_then(|v| v.as_f64())
            && seconds.is_finite()
            && (0.0..1e10).contains(&seconds)
        {
            tokens = tokens.with_expires_in(Duration::from_secs_f64(seconds));
        }
        Ok(tokens)
    }
}

/// A token must be non-empty visible ASCII to go in a header.
pub(super) fn checked<'a>(token: &'a str, what: &str) -> Result<&'a str, RefreshError> {
    let plausible = !token.is_empty()
        && token.len() <= 16 * 1024
        && token.bytes().all(|b| (0x21..0x7f).contains(&b));
    if plausible {
        Ok(token)
    } else {
        Err(RefreshError::InvalidResponse(format!(
            "the {what} is not a usable token"
        )))
    }
}
