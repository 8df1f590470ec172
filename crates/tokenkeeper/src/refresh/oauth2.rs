use super::http::{Answer, Endpoint, string_at};
use super::{RefreshError, Refresher};
use crate::TokenSet;
use crate::error::Error;
use secrecy::{ExposeSecret, SecretString};

/// How an OAuth 2.0 client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_id` (and `client_secret`) in the form body.
    #[default]
    Post,
    /// HTTP Basic with the client id and secret.
    Basic,
}

/// RFC 6749 §6 refresh: `POST {token_url}` with `grant_type=refresh_token&refresh_token=…`.
///
/// `200 {access_token, token_type, expires_in?, refresh_token?}`: a missing `refresh_token`
/// keeps the old one. `400 {"error":"invalid_grant"}` (and any other 400/401/403) is terminal;
/// 5xx, 429 and network errors are transient.
///
/// ```
/// let refresher = tokenkeeper::refresh::OAuth2::new("https://auth.example.com/oauth2/token")?
///     .client_id("my-app")
///     .scope("read write");
/// # Ok::<(), tokenkeeper::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OAuth2 {
    endpoint: Endpoint,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    auth: ClientAuth,
    scope: Option<String>,
}

impl OAuth2 {
    /// A refresher for this token URL (https, or http to loopback).
    pub fn new(token_url: &str) -> Result<Self, Error> {
        Ok(Self {
            endpoint: Endpoint::new(token_url)?,
            client_id: None,
            client_secret: None,
            auth: ClientAuth::default(),
            scope: None,
        })
    }

    /// The client id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client secret, for confidential clients.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(SecretString::from(secret.into()));
        self
    }

    /// How the client id and secret are sent (default: in the form body).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The `scope` to request.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The HTTP client to send with (default: a plain `reqwest::Client` that follows no
    /// redirects). Give it your TLS and proxy settings; never a client that goes through the
    /// session's own middleware, and best one with `redirect::Policy::none()`: a 307 would
    /// re-send the refresh token elsewhere.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.endpoint.client = client;
        self
    }
}

#[async_trait::async_trait]
impl Refresher for OAuth2 {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let refresh_token = current
            .refresh_token()
            .ok_or(RefreshError::NoRefreshToken)?;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let mut request = self.endpoint.client.post(self.endpoint.url.clone());
        match (self.auth, &self.client_id) {
            (ClientAuth::Basic, Some(id)) => {
                let secret = self.client_secret.as_ref().map(|s| s.expose_secret());
                request = request.basic_auth(id, secret);
            }
            (ClientAuth::Post, Some(id)) => {
                form.push(("client_id", id));
                if let Some(secret) = &self.client_secret {
                    form.push(("client_secret", secret.expose_secret()));
                }
            }
            (_, None) => {}
        }
        let request = request
            .header(http::header::ACCEPT, "application/json")
            .form(&form);
        let answer = Answer::fetch(request).await?;
        let json = answer.success()?.json()?;
        if let Some(kind) = string_at(&json, "/token_type")
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(RefreshError::InvalidResponse(format!(
                "token_type `{}` is not Bearer",
                crate::untrusted::escape(kind)
            )));
        }
        TokenSet::from_json(&json).map_err(|e| RefreshError::InvalidResponse(e.to_string()))
    }
}
