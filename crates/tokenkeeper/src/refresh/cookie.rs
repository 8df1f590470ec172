use super::http::{Answer, Endpoint, plain_client, string_at};
use super::json::checked;
use super::{RefreshError, Refresher};
use crate::TokenSet;
use crate::error::Error;
use std::sync::Arc;

/// Cookie refresh: the refresh token lives in an HttpOnly cookie; `POST {url}` (the cookie jar
/// sends it) → `{"accessToken": …}` and a `Set-Cookie` with the rotated refresh token, which the
/// jar keeps.
///
/// The jar must be the one the login response went through, so share it with the client that
/// signs in. Token sets of this contract carry no refresh token of their own: the jar is the
/// refresh token's only home, and it is sent only where the cookie's `Path` allows.
///
/// ```
/// use std::sync::Arc;
///
/// let jar = Arc::new(reqwest::cookie::Jar::default());
/// let login_client = reqwest::Client::builder().cookie_provider(Arc::clone(&jar)).build()?;
/// let refresher = tokenkeeper::refresh::Cookie::new("https://api.example.com/v3/jwt/reissue", jar)?;
/// # let _ = (login_client, refresher);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Cookie {
    endpoint: Endpoint,
    access_at: String,
}

impl Cookie {
    /// A refresher for this endpoint, sending the cookies in `jar`.
    pub fn new(url: &str, jar: Arc<reqwest::cookie::Jar>) -> Result<Self, Error> {
        let mut endpoint = Endpoint::new(url)?;
        endpoint.client = plain_client(Some(jar))?;
        Ok(Self {
            endpoint,
            access_at: "/accessToken".into(),
        })
    }

    /// JSON pointer to the new access token (default `/accessToken`).
    pub fn access_token_at(mut self, pointer: impl Into<String>) -> Self {
        self.access_at = pointer.into();
        self
    }

    /// The HTTP client to send with. It must carry the cookie jar.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.endpoint.client = client;
        self
    }
}

#[async_trait::async_trait]
impl Refresher for Cookie {
    async fn refresh(&self, _current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let request = self.endpoint.client.post(self.endpoint.url.clone());
        let answer = Answer::fetch(request).await?;
        let json = answer.success()?.json()?;
        let access = string_at(&json, &self.access_at).ok_or_else(|| {
            RefreshError::InvalidResponse(format!("no access token at `{}`", self.access_at))
        })?;
        Ok(TokenSet::new(checked(access, "access token")?))
    }
}
