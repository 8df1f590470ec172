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
    /// The DPoP key for grants that start a login (authorization code, client credentials);
    /// a refresh signs with the login's own key.
    #[cfg(feature = "dpop")]
    pub(crate) dpop: Option<crate::dpop::DpopKey>,
}

impl TokenEndpoint {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            client: ClientIdentity::default(),
            scope: None,
            resources: Vec::new(),
            #[cfg(feature = "dpop")]
            dpop: None,
        }
    }

    /// Sends one grant (`grant_type` and its own parameters in `form`) with the client's
    /// authentication, the scope (when `with_scope`: an authorization code carries its own)
    /// and the resources, and reads the token response.
    ///
    /// With a DPoP key (`login`'s, else the configured one) every attempt carries a proof, a
    /// demand for a nonce is answered once, and the tokens come back carrying the key.
    pub(crate) async fn grant(
        &self,
        mut form: Vec<(&'static str, SecretString)>,
        with_scope: bool,
        login: Option<&TokenSet>,
    ) -> Result<TokenSet, RefreshError> {
        if let Some(scope) = self.scope.as_ref().filter(|_| with_scope) {
            form.push(("scope", SecretString::from(scope.clone())));
        }
        for resource in &self.resources {
            form.push(("resource", SecretString::from(resource.clone())));
        }
        #[cfg(feature = "dpop")]
        let dpop = login.and_then(TokenSet::dpop_key).or(self.dpop.as_ref());
        #[cfg(not(feature = "dpop"))]
        let _ = login;
        #[cfg(feature = "dpop")]
        let mut answer_nonce_demand = true;
        let answer = loop {
            let request = self.request(form.clone())?;
            #[cfg(feature = "dpop")]
            let request = match dpop {
                Some(key) => request.header(
                    "dpop",
                    crate::dpop::proof::token_endpoint(key, &self.endpoint.url)?,
                ),
                None => request,
            };
            let answer = Answer::fetch(request).await?;
            #[cfg(feature = "dpop")]
            if let Some(key) = dpop {
                use crate::dpop::nonce;
                let fresh_nonce = key.nonces().take_from(&self.endpoint.url, &answer.headers);
                // RFC 9449 §8: one more attempt with the nonce; a second demand is the answer.
                if answer_nonce_demand
                    && fresh_nonce
                    && nonce::is_token_endpoint_challenge(answer.status, &answer.body)
                {
                    answer_nonce_demand = false;
                    tracing::debug!(
                        "the token endpoint demands a DPoP nonce; sending again with it"
                    );
                    continue;
                }
            }
            break answer;
        };
        let json = answer.success()?.json()?;
        let kind = string_at(&json, "/token_type");
        #[cfg(feature = "dpop")]
        let dpop_type =
            dpop.is_some() && kind.is_some_and(|kind| kind.eq_ignore_ascii_case("dpop"));
        #[cfg(not(feature = "dpop"))]
        let dpop_type = false;
        if let Some(kind) = kind
            && !kind.eq_ignore_ascii_case("bearer")
            && !dpop_type
        {
            return Err(RefreshError::InvalidResponse(format!(
                "token_type `{}` is not Bearer",
                crate::untrusted::escape(kind)
            )));
        }
        let tokens =
            TokenSet::from_json(&json).map_err(|e| RefreshError::InvalidResponse(e.to_string()))?;
        #[cfg(feature = "dpop")]
        let tokens = match dpop {
            // Even a bearer access token keeps the key: the refresh token may be bound to it
            // (RFC 9449 §5, public clients).
            Some(key) => tokens.with_dpop_key(key.clone()),
            None => tokens,
        };
        Ok(tokens)
    }

    /// One attempt's request: the client's authentication and the form.
    fn request(
        &self,
        mut form: Vec<(&'static str, SecretString)>,
    ) -> Result<reqwest::RequestBuilder, RefreshError> {
        let url = &self.endpoint.url;
        let request = self.endpoint.client.post(url.clone());
        let request = self.client.authenticate(url, request, &mut form)?;
        let pairs: Vec<(&str, &str)> = form
            .iter()
            .map(|(name, value)| (*name, value.expose_secret()))
            .collect();
        Ok(request
            .header(http::header::ACCEPT, "application/json")
            .form(&pairs))
    }
}
