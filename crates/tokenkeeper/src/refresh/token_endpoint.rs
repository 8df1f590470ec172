//! What every grant sent to an OAuth 2.0 token endpoint shares: the endpoint, the client's
//! authentication, the requested scope and resources, and reading the answer.

use super::RefreshError;
use super::client_auth::ClientIdentity;
use super::endpoint::{Answer, Endpoint, string_at};
use crate::token::TokenSet;
use secrecy::{ExposeSecret, SecretString};

/// A token endpoint and the client that talks to it.
#[derive(Debug, Clone)]
pub(crate) struct TokenEndpoint {
    pub(crate) endpoint: Endpoint,
    pub(crate) client: ClientIdentity,
    pub(crate) scope: Option<String>,
    /// RFC 8707 resource indicators, one `resource` parameter each.
    pub(crate) resources: Vec<String>,
}

impl TokenEndpoint {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            client: ClientIdentity::default(),
            scope: None,
            resources: Vec::new(),
        }
    }

    /// Sends one grant (`grant_type` and its own parameters in `form`) with the client's
    /// authentication, the scope (when `with_scope`: an authorization code carries its own)
    /// and the resources, and reads the token response.
    pub(crate) async fn grant(
        &self,
        mut form: Vec<(&'static str, SecretString)>,
        with_scope: bool,
    ) -> Result<TokenSet, RefreshError> {
        if let Some(scope) = self.scope.as_ref().filter(|_| with_scope) {
            form.push(("scope", SecretString::from(scope.clone())));
        }
        for resource in &self.resources {
            form.push(("resource", SecretString::from(resource.clone())));
        }
        let url = &self.endpoint.url;
        let request = self.endpoint.client.post(url.clone());
        let request = self.client.authenticate(url, request, &mut form)?;
        let pairs: Vec<(&str, &str)> = form
            .iter()
            .map(|(name, value)| (*name, value.expose_secret()))
            .collect();
        let request = request
            .header(http::header::ACCEPT, "application/json")
            .form(&pairs);
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
