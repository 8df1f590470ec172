use super::oauth2::OAuth2;
use super::token_endpoint::TokenEndpoint;
use super::{RefreshError, Refresher};
use crate::token::TokenSet;
use secrecy::SecretString;

/// Machine-to-machine tokens: the RFC 6749 §4.4 `client_credentials` grant.
///
/// There is no user and no refresh token: each "refresh" is a new grant with the same client
/// authentication, `scope`, `resource` (RFC 8707) and `audience`. A session with this strategy
/// needs no sign-in ([`Refresher::obtains_without_login`] is `true`): its first request obtains
/// the token. The session's single flight, proactive renewal and shared stores apply unchanged,
/// so a thousand concurrent callers, or every process sharing a store, make one token request
/// per token lifetime instead of one each (providers rate-limit and bill these).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use tokenkeeper::{refresh, Session};
///
/// let provider = refresh::OAuth2::discover("https://id.example.com")
///     .await?
///     .client_id("billing-worker")
///     .client_secret(std::env::var("CLIENT_SECRET")?);
/// let session = Session::builder()
///     .refresher(refresh::ClientCredentials::new(provider).scope("invoices:read"))
///     .attach_to(["https://api.example.com"])
///     .build()?;
/// # let _ = session; Ok(()) }
/// ```
///
/// A refresh token in the answer (RFC 6749 §4.4.3 says there should be none) is dropped: the
/// next token comes from a new grant, never from it.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    token: TokenEndpoint,
    audience: Option<String>,
}

impl ClientCredentials {
    /// The grant at `provider`'s token endpoint, with its client authentication, scope and
    /// resources.
    pub fn new(provider: OAuth2) -> Self {
        Self {
            token: provider.token,
            audience: None,
        }
    }

    /// The `scope` to request (replaces one set on the [`OAuth2`]).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.token.scope = Some(scope.into());
        self
    }

    /// An RFC 8707 resource indicator (`resource=`) to send; call again for several.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.token.resources.push(resource.into());
        self
    }

    /// An `audience` parameter, for providers that name the API that way instead of `resource`
    /// (Auth0, for one).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }
}

#[async_trait::async_trait]
impl Refresher for ClientCredentials {
    /// Obtains a new token; `current` is not used (the session passes an empty placeholder the
    /// first time).
    async fn refresh(&self, _current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let mut form = vec![("grant_type", SecretString::from("client_credentials"))];
        if let Some(audience) = &self.audience {
            form.push(("audience", SecretString::from(audience.clone())));
        }
        let tokens = self.token.grant(form, true).await?;
        Ok(tokens.with_refresh_secret(None))
    }

    fn obtains_without_login(&self) -> bool {
        true
    }
}
