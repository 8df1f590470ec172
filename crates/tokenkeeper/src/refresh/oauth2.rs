use super::client_auth::ClientAuth;
#[cfg(feature = "private-key-jwt")]
use super::client_auth::assertion::ClientKey;
use super::discovery::{DiscoveryError, ProviderMetadata};
use super::endpoint::Endpoint;
use super::token_endpoint::TokenEndpoint;
use super::{RefreshError, Refresher};
use crate::config_error::ConfigError;
use crate::token::TokenSet;
use secrecy::SecretString;
use url::Url;

/// RFC 6749 §6 refresh: `POST {token_url}` with `grant_type=refresh_token&refresh_token=…`.
///
/// `200 {access_token, token_type, expires_in?, refresh_token?}`: a missing `refresh_token`
/// keeps the old one. `400 {"error":"invalid_grant"}` (and any other 400/401/403) is terminal;
/// 5xx, 429 and network errors are transient.
///
/// Client authentication: `client_secret_post`, `client_secret_basic` or `private_key_jwt`
/// (see [`ClientAuth`]). From a provider's discovery document with [`OAuth2::discover`]:
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let refresher = tokenkeeper::refresh::OAuth2::discover("https://id.example.com")
///     .await?
///     .client_id("my-app")
///     .client_secret(std::env::var("CLIENT_SECRET")?);
/// # let _ = refresher; Ok(()) }
/// ```
///
/// Or with a known token URL:
///
/// ```
/// let refresher = tokenkeeper::refresh::OAuth2::new("https://auth.example.com/oauth2/token")?
///     .client_id("my-app")
///     .scope("read write");
/// # Ok::<(), tokenkeeper::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OAuth2 {
    pub(crate) token: TokenEndpoint,
    metadata: Option<ProviderMetadata>,
}

impl OAuth2 {
    /// A refresher for this token URL (https, or http to loopback).
    pub fn new(token_url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            token: TokenEndpoint::new(Endpoint::new(token_url)?),
            metadata: None,
        })
    }

    /// A refresher for the provider whose issuer identifier is `issuer`, from its discovery
    /// document (OpenID Connect Discovery, or RFC 8414 as the fallback; see
    /// [`ProviderMetadata::discover`]). The token endpoint and the client authentication methods
    /// the provider supports come from the document.
    pub async fn discover(issuer: &str) -> Result<Self, DiscoveryError> {
        Self::from_metadata(ProviderMetadata::discover(issuer).await?)
            .map_err(|e| DiscoveryError::Client(e.to_string()))
    }

    /// A refresher for a provider whose metadata you already fetched. Fails only if the HTTP
    /// client cannot be built.
    pub fn from_metadata(metadata: ProviderMetadata) -> Result<Self, ConfigError> {
        let mut token = TokenEndpoint::new(Endpoint::new(metadata.token_endpoint().as_str())?);
        token.client.supported = Some(metadata.token_endpoint_auth_methods().to_vec());
        Ok(Self {
            token,
            metadata: Some(metadata),
        })
    }

    /// The client id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.token.client.id = Some(client_id.into());
        self
    }

    /// The client secret, for `client_secret_basic` and `client_secret_post`.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.token.client.secret = Some(SecretString::from(secret.into()));
        self
    }

    /// How the client authenticates. Without this, the method follows from the credentials
    /// given and the provider's discovery document (see [`ClientAuth`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.token.client.method = Some(auth);
        self
    }

    /// Authenticate with `private_key_jwt` (RFC 7523): every token request carries a fresh JWT
    /// signed with `key`. Register the matching public key with the provider.
    ///
    /// ```
    /// use tokenkeeper::refresh::{ClientKey, KeyAlgorithm, OAuth2};
    ///
    /// # fn example(pem: &[u8]) -> Result<(), tokenkeeper::Error> {
    /// let refresher = OAuth2::new("https://id.example.com/token")?
    ///     .client_id("my-service")
    ///     .private_key_jwt(ClientKey::from_pem(pem, KeyAlgorithm::ES256)?.key_id("2025-01"));
    /// # let _ = refresher; Ok(()) }
    /// ```
    #[cfg(feature = "private-key-jwt")]
    pub fn private_key_jwt(mut self, key: ClientKey) -> Self {
        self.token.client.key = Some(key);
        self.token.client.method = Some(ClientAuth::PrivateKeyJwt);
        self
    }

    /// The `aud` of `private_key_jwt` assertions. Default: the token endpoint URL, which OIDC
    /// Core §9 names and every provider accepts. Some providers (and the 2025 revision of the
    /// guidance, after the audience-confusion advisory) want the issuer identifier instead.
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.token.client.assertion_audience = Some(audience.into());
        self
    }

    /// The `scope` to request.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.token.scope = Some(scope.into());
        self
    }

    /// An RFC 8707 resource indicator (`resource=`) to send; call again for several.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.token.resources.push(resource.into());
        self
    }

    /// The HTTP client to send with (default: a plain `reqwest::Client` that follows no
    /// redirects). Give it your TLS and proxy settings; never a client that goes through the
    /// session's own middleware, and best one with `redirect::Policy::none()`: a 307 would
    /// re-send the refresh token elsewhere.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.token.endpoint.client = client;
        self
    }

    /// The token endpoint this refresher posts to.
    pub fn token_endpoint(&self) -> &Url {
        &self.token.endpoint.url
    }

    /// The provider's metadata, when this refresher was made from discovery.
    pub fn metadata(&self) -> Option<&ProviderMetadata> {
        self.metadata.as_ref()
    }

    /// Exchanges an authorization code for the first token set (RFC 6749 §4.1.3), with the
    /// PKCE `code_verifier` (RFC 7636) when the authorization request had a challenge. The
    /// client authenticates exactly as it does for refreshes; pass the result to
    /// [`Session::sign_in`](crate::Session::sign_in).
    ///
    /// ```no_run
    /// # async fn example(code: &str, verifier: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// use tokenkeeper::{refresh, Session};
    ///
    /// let provider = refresh::OAuth2::discover("https://id.example.com").await?.client_id("web");
    /// let tokens = provider
    ///     .exchange_code(code, "https://app.example.com/callback", Some(verifier))
    ///     .await?;
    /// let session = Session::builder()
    ///     .refresher(provider)
    ///     .attach_to(["https://api.example.com"])
    ///     .build()?;
    /// session.sign_in(tokens).await?;
    /// # Ok(()) }
    /// ```
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
    ) -> Result<TokenSet, RefreshError> {
        let mut form = vec![
            ("grant_type", SecretString::from("authorization_code")),
            ("code", SecretString::from(code.to_owned())),
            ("redirect_uri", SecretString::from(redirect_uri.to_owned())),
        ];
        if let Some(verifier) = code_verifier {
            form.push(("code_verifier", SecretString::from(verifier.to_owned())));
        }
        self.token.grant(form, false).await
    }
}

#[async_trait::async_trait]
impl Refresher for OAuth2 {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let refresh_token = current
            .refresh_token()
            .ok_or(RefreshError::NoRefreshToken)?;
        self.token
            .grant(
                vec![
                    ("grant_type", SecretString::from("refresh_token")),
                    ("refresh_token", refresh_token.clone()),
                ],
                true,
            )
            .await
    }
}
