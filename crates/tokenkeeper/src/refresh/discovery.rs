//! Authorization server metadata: OpenID Connect Discovery 1.0 with RFC 8414 as the fallback.
//!
//! A discovery document decides where refresh tokens and client secrets are sent, so it is read
//! as hostile input: the `issuer` it names must be the one asked for (OIDC Discovery §4.3,
//! RFC 8414 §3.3; otherwise a document served elsewhere could point the token endpoint anywhere),
//! every endpoint must be https (plain http only to loopback), redirects are not followed, and
//! the body is bounded.

use super::endpoint::plain_client;
use crate::origin::is_loopback;
use crate::untrusted::escape as echo;
use std::time::Duration;
use url::Url;

/// Discovery documents larger than this are refused (real ones are a few KiB).
pub(crate) const MAX_DOCUMENT: usize = 128 * 1024;
/// How long one discovery request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a provider's discovery document says, validated: the parts tokenkeeper uses.
///
/// ```no_run
/// # async fn example() -> Result<(), tokenkeeper::refresh::DiscoveryError> {
/// let metadata = tokenkeeper::refresh::ProviderMetadata::discover("https://id.example.com").await?;
/// println!("tokens from {}", metadata.token_endpoint());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    issuer: String,
    token_endpoint: Url,
    token_endpoint_auth_methods: Vec<String>,
    revocation_endpoint: Option<Url>,
    jwks_uri: Option<Url>,
    grant_types: Option<Vec<String>>,
}

impl ProviderMetadata {
    /// Reads `{issuer}/.well-known/openid-configuration`, or, when the provider has none (any
    /// 4xx), the RFC 8414 document at `/.well-known/oauth-authorization-server{path}`.
    pub async fn discover(issuer: &str) -> Result<Self, DiscoveryError> {
        let client = plain_client(None).map_err(|e| DiscoveryError::Client(e.to_string()))?;
        Self::discover_with(issuer, &client).await
    }

    /// Like [`discover`](Self::discover), with your own client (TLS roots, proxy). Build it with
    /// `redirect::Policy::none()`: a redirect is refused either way, but only a client that does
    /// not follow it lets tokenkeeper see and report it.
    pub async fn discover_with(
        issuer: &str,
        client: &reqwest::Client,
    ) -> Result<Self, DiscoveryError> {
        let base = parse_issuer(issuer)?;
        let openid = well_known_openid(&base);
        let document = match fetch(client, &openid).await {
            Err(DiscoveryError::Status { status, .. }) if (400..500).contains(&status) => {
                let rfc8414 = well_known_rfc8414(&base);
                tracing::debug!(%openid, %rfc8414, status, "no OpenID configuration; trying RFC 8414");
                fetch(client, &rfc8414).await?
            }
            other => other?,
        };
        Self::from_document(issuer, &document)
    }

    /// Validates a discovery document (already fetched) for `issuer`.
    ///
    /// ```
    /// use tokenkeeper::refresh::{DiscoveryError, ProviderMetadata};
    ///
    /// let document = br#"{"issuer":"https://id.example.com","token_endpoint":"https://id.example.com/token"}"#;
    /// let metadata = ProviderMetadata::from_document("https://id.example.com", document)?;
    /// assert_eq!(metadata.token_endpoint().as_str(), "https://id.example.com/token");
    /// // RFC 8414 §2: a provider that lists no methods supports client_secret_basic.
    /// assert_eq!(metadata.token_endpoint_auth_methods(), ["client_secret_basic"]);
    ///
    /// let elsewhere = ProviderMetadata::from_document("https://other.example.com", document);
    /// assert!(matches!(elsewhere, Err(DiscoveryError::IssuerMismatch { .. })));
    /// # Ok::<(), DiscoveryError>(())
    /// ```
    pub fn from_document(issuer: &str, document: &[u8]) -> Result<Self, DiscoveryError> {
        parse_issuer(issuer)?;
        if document.len() > MAX_DOCUMENT {
            return Err(DiscoveryError::TooLarge {
                limit: MAX_DOCUMENT,
            });
        }
        let json: serde_json::Value =
            serde_json::from_slice(document).map_err(|_| DiscoveryError::NotJson)?;
        let object = json.as_object().ok_or(DiscoveryError::NotJson)?;

        let found = required_string(object, "issuer")?;
        if found != issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: echo(found),
            });
        }
        let token_endpoint =
            endpoint(required_string(object, "token_endpoint")?, "token_endpoint")?;
        let revocation_endpoint = optional_string(object, "revocation_endpoint")?
            .map(|url| endpoint(url, "revocation_endpoint"))
            .transpose()?;
        let jwks_uri = optional_string(object, "jwks_uri")?
            .map(|url| endpoint(url, "jwks_uri"))
            .transpose()?;
        let token_endpoint_auth_methods =
            string_list(object, "token_endpoint_auth_methods_supported")?
                .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]);
        let grant_types = string_list(object, "grant_types_supported")?;
        Ok(Self {
            issuer: issuer.to_owned(),
            token_endpoint,
            token_endpoint_auth_methods,
            revocation_endpoint,
            jwks_uri,
            grant_types,
        })
    }

    /// The issuer identifier, exactly as the document (and the caller) gave it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where tokens are obtained and refreshed.
    pub fn token_endpoint(&self) -> &Url {
        &self.token_endpoint
    }

    /// `token_endpoint_auth_methods_supported` (default `["client_secret_basic"]`, RFC 8414 §2).
    pub fn token_endpoint_auth_methods(&self) -> &[String] {
        &self.token_endpoint_auth_methods
    }

    /// Where tokens are revoked (RFC 7009), if the provider has such an endpoint.
    pub fn revocation_endpoint(&self) -> Option<&Url> {
        self.revocation_endpoint.as_ref()
    }

    /// Where the provider's signing keys are published, if it says.
    pub fn jwks_uri(&self) -> Option<&Url> {
        self.jwks_uri.as_ref()
    }

    /// Whether the provider says it supports `grant_type` (`true` when it lists no grant types:
    /// the list is optional, and only the token endpoint can tell for sure).
    pub fn supports_grant(&self, grant_type: &str) -> bool {
        self.grant_types
            .as_ref()
            .is_none_or(|grants| grants.iter().any(|g| g == grant_type))
    }
}

/// Why a discovery document could not be used. Text from the server is escaped and truncated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer asked for is not a usable issuer identifier.
    #[error("issuer `{issuer}`: {reason}")]
    InvalidIssuer {
        /// The issuer as given.
        issuer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("discovery client: {0}")]
    Client(String),
    /// The document could not be fetched (connection refused, timeout, reset).
    #[error("{url}: {reason}")]
    Unreachable {
        /// The document's URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The provider answered with a status other than 200 (after the RFC 8414 fallback).
    #[error("{url}: HTTP {status}")]
    Status {
        /// The document's URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The provider answered with a redirect, which is not followed: the document must be
    /// served at the issuer's own well-known address.
    #[error("{url}: HTTP {status} redirect, not followed")]
    Redirected {
        /// The document's URL.
        url: String,
        /// The redirect's status code.
        status: u16,
    },
    /// The document is larger than any real one.
    #[error("the discovery document is larger than {limit} bytes")]
    TooLarge {
        /// The size limit.
        limit: usize,
    },
    /// The document is not a JSON object.
    #[error("the discovery document is not a JSON object")]
    NotJson,
    /// The document names another issuer: it must not be trusted for this one.
    #[error("the discovery document is for issuer `{found}`, not `{expected}`")]
    IssuerMismatch {
        /// The issuer asked for.
        expected: String,
        /// The issuer the document names (escaped, truncated).
        found: String,
    },
    /// A required field is absent.
    #[error("the discovery document has no `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong type or an unusable value (an endpoint over plain http, say).
    #[error("the discovery document's `{field}` {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks the issuer identifier (RFC 8414 §2: https, no query, no fragment; http only to
/// loopback here, for development and tests).
fn parse_issuer(issuer: &str) -> Result<Url, DiscoveryError> {
    let invalid = |reason| DiscoveryError::InvalidIssuer {
        issuer: echo(issuer),
        reason,
    };
    let url = Url::parse(issuer).map_err(|_| invalid("not a URL"))?;
    if !is_secure(&url) {
        return Err(invalid("must be https (plain http only to loopback)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must have no query or fragment"));
    }
    Ok(url)
}

fn is_secure(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host_str().is_some(),
        "http" => url.host_str().is_some_and(is_loopback),
        _ => false,
    }
}

/// OIDC Discovery §4: the well-known suffix goes after the issuer's path.
fn well_known_openid(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = issuer.path().trim_end_matches('/');
    url.set_path(&format!("{path}/.well-known/openid-configuration"));
    url
}

/// RFC 8414 §3: the well-known prefix goes between the host and the issuer's path.
fn well_known_rfc8414(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = issuer.path().trim_end_matches('/');
    url.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    url
}

async fn fetch(client: &reqwest::Client, url: &Url) -> Result<Vec<u8>, DiscoveryError> {
    let shown = url.to_string();
    let unreachable = |error: reqwest::Error| DiscoveryError::Unreachable {
        url: shown.clone(),
        reason: if error.is_timeout() {
            "timed out".to_owned()
        } else if error.is_connect() {
            "could not connect".to_owned()
        } else {
            error.without_url().to_string()
        },
    };
    let mut response = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if status.is_redirection() {
        return Err(DiscoveryError::Redirected {
            url: shown,
            status: status.as_u16(),
        });
    }
    if status != http::StatusCode::OK {
        return Err(DiscoveryError::Status {
            url: shown,
            status: status.as_u16(),
        });
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_DOCUMENT as u64)
    {
        return Err(DiscoveryError::TooLarge {
            limit: MAX_DOCUMENT,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(DiscoveryError::TooLarge {
                limit: MAX_DOCUMENT,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

type Object = serde_json::Map<String, serde_json::Value>;

fn optional_string<'a>(
    object: &'a Object,
    field: &'static str,
) -> Result<Option<&'a str>, DiscoveryError> {
    match object.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DiscoveryError::InvalidField {
            field,
            reason: "is not a string".into(),
        }),
    }
}

fn required_string<'a>(object: &'a Object, field: &'static str) -> Result<&'a str, DiscoveryError> {
    optional_string(object, field)?.ok_or(DiscoveryError::MissingField(field))
}

fn string_list(
    object: &Object,
    field: &'static str,
) -> Result<Option<Vec<String>>, DiscoveryError> {
    let invalid = || DiscoveryError::InvalidField {
        field,
        reason: "is not a list of strings".into(),
    };
    match object.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

fn endpoint(url: &str, field: &'static str) -> Result<Url, DiscoveryError> {
    let invalid = |reason: &str| DiscoveryError::InvalidField {
        field,
        reason: format!("`{}` {reason}", echo(url)),
    };
    let parsed = Url::parse(url).map_err(|_| invalid("is not a URL"))?;
    if !is_secure(&parsed) {
        return Err(invalid("must be https (plain http only to loopback)"));
    }
    if parsed.fragment().is_some() {
        return Err(invalid("must have no fragment"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://id.example.com";

    fn document(fields: serde_json::Value) -> Vec<u8> {
        let mut base = serde_json::json!({
            "issuer": ISSUER,
            "token_endpoint": "https://id.example.com/oauth/token",
        });
        if let (Some(base), Some(fields)) = (base.as_object_mut(), fields.as_object()) {
            for (key, value) in fields {
                base.insert(key.clone(), value.clone());
            }
        }
        serde_json::to_vec(&base).unwrap()
    }

    fn parse(fields: serde_json::Value) -> Result<ProviderMetadata, DiscoveryError> {
        ProviderMetadata::from_document(ISSUER, &document(fields))
    }

    #[test]
    fn a_good_document_gives_endpoints_and_methods() {
        let metadata = parse(serde_json::json!({
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_post"],
            "revocation_endpoint": "https://id.example.com/oauth/revoke",
            "jwks_uri": "https://id.example.com/jwks",
            "grant_types_supported": ["refresh_token"],
            "unknown_extension": {"nested": [1, 2]},
        }))
        .unwrap();
        assert_eq!(metadata.issuer(), ISSUER);
        assert_eq!(
            metadata.token_endpoint().as_str(),
            "https://id.example.com/oauth/token"
        );
        assert_eq!(
            metadata.token_endpoint_auth_methods(),
            ["private_key_jwt", "client_secret_post"]
        );
        assert_eq!(
            metadata.revocation_endpoint().map(Url::as_str),
            Some("https://id.example.com/oauth/revoke")
        );
        assert!(metadata.jwks_uri().is_some());
        assert!(metadata.supports_grant("refresh_token"));
        assert!(!metadata.supports_grant("client_credentials"));
    }

    #[test]
    fn a_document_for_another_issuer_is_refused() {
        let cases = [
            "https://evil.example.com",
            "https://id.example.com/",
            "https://ID.example.com",
            "http://id.example.com",
        ];
        for issuer in cases {
            let error = parse(serde_json::json!({ "issuer": issuer })).unwrap_err();
            assert!(
                matches!(&error, DiscoveryError::IssuerMismatch { found, .. } if found == issuer),
                "{issuer}: {error:?}"
            );
        }
    }

    #[test]
    fn insecure_or_odd_endpoints_are_refused() {
        for url in [
            "http://id.example.com/token",
            "ftp://id.example.com/token",
            "/token",
            "javascript:alert(1)",
            "https://id.example.com/token#frag",
            "data:text/plain,x",
        ] {
            let error = parse(serde_json::json!({ "token_endpoint": url })).unwrap_err();
            assert!(
                matches!(
                    error,
                    DiscoveryError::InvalidField {
                        field: "token_endpoint",
                        ..
                    }
                ),
                "{url}: {error:?}"
            );
        }
        let error = parse(serde_json::json!({ "revocation_endpoint": "http://10.0.0.1/revoke" }))
            .unwrap_err();
        assert!(matches!(
            error,
            DiscoveryError::InvalidField {
                field: "revocation_endpoint",
                ..
            }
        ));
        // Loopback over plain http is fine (development, tests).
        let local =
            br#"{"issuer":"http://127.0.0.1:9","token_endpoint":"http://127.0.0.1:9/token"}"#;
        assert!(ProviderMetadata::from_document("http://127.0.0.1:9", local).is_ok());
    }

    #[test]
    fn wrong_types_and_missing_fields_are_typed_errors() {
        let no_token = br#"{"issuer":"https://id.example.com"}"#;
        assert_eq!(
            ProviderMetadata::from_document(ISSUER, no_token),
            Err(DiscoveryError::MissingField("token_endpoint"))
        );
        let no_issuer = br#"{"token_endpoint":"https://id.example.com/token"}"#;
        assert_eq!(
            ProviderMetadata::from_document(ISSUER, no_issuer),
            Err(DiscoveryError::MissingField("issuer"))
        );
        for (fields, field) in [
            (serde_json::json!({"issuer": 5}), "issuer"),
            (
                serde_json::json!({"token_endpoint": ["x"]}),
                "token_endpoint",
            ),
            (
                serde_json::json!({"token_endpoint_auth_methods_supported": "client_secret_basic"}),
                "token_endpoint_auth_methods_supported",
            ),
            (
                serde_json::json!({"token_endpoint_auth_methods_supported": [1]}),
                "token_endpoint_auth_methods_supported",
            ),
            (
                serde_json::json!({"grant_types_supported": {}}),
                "grant_types_supported",
            ),
        ] {
            let error = parse(fields).unwrap_err();
            assert!(
                matches!(error, DiscoveryError::InvalidField { field: f, .. } if f == field),
                "{field}: {error:?}"
            );
        }
        for body in [&b"<html>"[..], b"[]", b"\"issuer\"", b"", b"\xff\xfe"] {
            assert_eq!(
                ProviderMetadata::from_document(ISSUER, body),
                Err(DiscoveryError::NotJson)
            );
        }
        let huge = vec![b' '; MAX_DOCUMENT + 1];
        assert!(matches!(
            ProviderMetadata::from_document(ISSUER, &huge),
            Err(DiscoveryError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_issuers_are_refused_before_anything_is_fetched() {
        for issuer in [
            "id.example.com",
            "http://id.example.com",
            "https://id.example.com?tenant=1",
            "https://id.example.com#x",
            "file:///etc/passwd",
        ] {
            assert!(
                matches!(
                    parse_issuer(issuer),
                    Err(DiscoveryError::InvalidIssuer { .. })
                ),
                "{issuer}"
            );
        }
    }

    #[test]
    fn well_known_addresses_follow_both_specifications() {
        let with_path = Url::parse("https://id.example.com/realms/main").unwrap();
        assert_eq!(
            well_known_openid(&with_path).as_str(),
            "https://id.example.com/realms/main/.well-known/openid-configuration"
        );
        assert_eq!(
            well_known_rfc8414(&with_path).as_str(),
            "https://id.example.com/.well-known/oauth-authorization-server/realms/main"
        );
        let bare = Url::parse("https://id.example.com").unwrap();
        assert_eq!(
            well_known_openid(&bare).as_str(),
            "https://id.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            well_known_rfc8414(&bare).as_str(),
            "https://id.example.com/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn hostile_text_is_escaped_and_truncated_in_errors() {
        let hostile = format!("https://x\n\u{1b}[31m{}", "a".repeat(1000));
        let error = parse(serde_json::json!({ "issuer": hostile })).unwrap_err();
        let shown = error.to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(shown.len() < 400, "{}", shown.len());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_documents_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = ProviderMetadata::from_document(ISSUER, &body);
        }

        #[test]
        fn arbitrary_issuers_never_panic(issuer in "\\PC{0,80}") {
            let _ = parse_issuer(&issuer);
            let _ = ProviderMetadata::from_document(&issuer, &document(serde_json::json!({})));
        }
    }
}
