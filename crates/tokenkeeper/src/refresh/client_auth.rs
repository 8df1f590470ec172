//! How an OAuth 2.0 client proves who it is at the token endpoint: `client_secret_basic`,
//! `client_secret_post` (RFC 6749 §2.3.1) and `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9).

use super::RefreshError;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use url::form_urlencoded;

/// How an OAuth 2.0 client authenticates to the token endpoint.
///
/// Without an explicit choice, the strategy picks one from what it was given: a signing key
/// means `private_key_jwt`; a secret means `client_secret_basic` when the provider's discovery
/// document lists it (or lists nothing, RFC 8414 §2), `client_secret_post` when only that is
/// listed, and `client_secret_post` when there was no discovery (what earlier versions sent);
/// no credential at all means a public client that sends only its `client_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_post`: `client_id` (and `client_secret`) in the form body.
    #[default]
    Post,
    /// `client_secret_basic`: HTTP Basic with the client id and secret, each form-urlencoded
    /// first as RFC 6749 §2.3.1 requires (a secret with `:`, `+` or `%` survives).
    Basic,
    /// `private_key_jwt`: a short-lived JWT signed with the client's private key (RFC 7523),
    /// set with `private_key_jwt(ClientKey)` (feature `private-key-jwt`).
    PrivateKeyJwt,
}

impl ClientAuth {
    /// The method's name in discovery documents and client registrations.
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::Post => "client_secret_post",
            ClientAuth::Basic => "client_secret_basic",
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// Who the client is and how it proves it: shared by every grant sent to a token endpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientIdentity {
    pub(crate) id: Option<String>,
    pub(crate) secret: Option<SecretString>,
    #[cfg(feature = "private-key-jwt")]
    pub(crate) key: Option<assertion::ClientKey>,
    /// Chosen by the user; `None` picks one from the credentials and `supported`.
    pub(crate) method: Option<ClientAuth>,
    /// From discovery: the methods the provider lists.
    pub(crate) supported: Option<Vec<String>>,
    /// The `aud` of client assertions (default: the token endpoint URL).
    pub(crate) assertion_audience: Option<String>,
}

impl ClientIdentity {
    fn has_key(&self) -> bool {
        #[cfg(feature = "private-key-jwt")]
        return self.key.is_some();
        #[cfg(not(feature = "private-key-jwt"))]
        false
    }

    /// The method this client uses.
    pub(crate) fn method(&self) -> ClientAuth {
        if let Some(method) = self.method {
            return method;
        }
        if self.has_key() {
            return ClientAuth::PrivateKeyJwt;
        }
        if self.secret.is_none() {
            return ClientAuth::Post;
        }
        let Some(supported) = &self.supported else {
            return ClientAuth::Post;
        };
        let lists = |method: ClientAuth| supported.iter().any(|m| m == method.name());
        if !lists(ClientAuth::Basic) && lists(ClientAuth::Post) {
            ClientAuth::Post
        } else {
            ClientAuth::Basic
        }
    }

    /// Adds this client's authentication to a token request: a header, form fields, or both.
    pub(crate) fn authenticate(
        &self,
        token_endpoint: &url::Url,
        mut request: reqwest::RequestBuilder,
        form: &mut Vec<(&'static str, SecretString)>,
    ) -> Result<reqwest::RequestBuilder, RefreshError> {
        let method = self.method();
        if let Some(supported) = &self.supported
            && !supported.iter().any(|m| m == method.name())
        {
            tracing::warn!(
                method = method.name(),
                ?supported,
                "the provider does not list this client authentication method"
            );
        }
        match method {
            ClientAuth::Basic => {
                let id = self.id.as_deref().ok_or_else(|| {
                    RefreshError::Rejected("client_secret_basic needs a client id".into())
                })?;
                let secret = self.secret.as_ref().map_or("", |s| s.expose_secret());
                request = request.header(http::header::AUTHORIZATION, basic_header(id, secret)?);
            }
            ClientAuth::Post => {
                if let Some(id) = &self.id {
                    form.push(("client_id", SecretString::from(id.clone())));
                }
                if let Some(secret) = &self.secret {
                    form.push(("client_secret", secret.clone()));
                }
            }
            ClientAuth::PrivateKeyJwt => {
                let assertion = self.assertion(token_endpoint)?;
                if let Some(id) = &self.id {
                    form.push(("client_id", SecretString::from(id.clone())));
                }
                form.push((
                    "client_assertion_type",
                    SecretString::from("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        Ok(request)
    }

    #[cfg(feature = "private-key-jwt")]
    fn assertion(&self, token_endpoint: &url::Url) -> Result<SecretString, RefreshError> {
        let (Some(key), Some(id)) = (&self.key, &self.id) else {
            return Err(RefreshError::Rejected(
                "private_key_jwt needs a client id and a ClientKey".into(),
            ));
        };
        let audience = self
            .assertion_audience
            .as_deref()
            .unwrap_or(token_endpoint.as_str());
        key.sign(id, audience)
    }

    #[cfg(not(feature = "private-key-jwt"))]
    fn assertion(&self, _token_endpoint: &url::Url) -> Result<SecretString, RefreshError> {
        Err(RefreshError::Rejected(
            "private_key_jwt needs tokenkeeper's `private-key-jwt` feature and a ClientKey".into(),
        ))
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, marked sensitive.
fn basic_header(id: &str, secret: &str) -> Result<http::HeaderValue, RefreshError> {
    let encode = |text: &str| form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(id), encode(secret));
    let value = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    let mut value = http::HeaderValue::try_from(value)
        .map_err(|_| RefreshError::Rejected("the client credentials are not a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(feature = "private-key-jwt")]
pub(crate) mod assertion {
    //! RFC 7523 client assertions, signed with the rust_crypto backend of `jsonwebtoken`.

    use super::RefreshError;
    use crate::config_error::ConfigError;
    use base64::Engine as _;
    use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    use jsonwebtoken::{Algorithm, EncodingKey};
    use secrecy::SecretString;
    use std::fmt;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// How long a client assertion is valid: long enough for a slow round trip and a skewed
    /// clock, short enough that a leaked one is soon useless (providers also refuse a `jti`
    /// twice).
    const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

    /// The signature algorithm of a [`ClientKey`] (the `token_endpoint_auth_signing_alg`
    /// registered for the client).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum KeyAlgorithm {
        /// RSASSA-PKCS1-v1_5 with SHA-256 (an RSA key of at least 2048 bits).
        RS256,
        /// RSASSA-PKCS1-v1_5 with SHA-384.
        RS384,
        /// RSASSA-PKCS1-v1_5 with SHA-512.
        RS512,
        /// RSASSA-PSS with SHA-256.
        PS256,
        /// RSASSA-PSS with SHA-384.
        PS384,
        /// RSASSA-PSS with SHA-512.
        PS512,
        /// ECDSA on P-256 with SHA-256.
        ES256,
        /// ECDSA on P-384 with SHA-384.
        ES384,
        /// Ed25519.
        EdDSA,
    }

    impl KeyAlgorithm {
        fn jwt(self) -> Algorithm {
            match self {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            }
        }

        fn name(self) -> &'static str {
            match self {
                KeyAlgorithm::RS256 => "RS256",
                KeyAlgorithm::RS384 => "RS384",
                KeyAlgorithm::RS512 => "RS512",
                KeyAlgorithm::PS256 => "PS256",
                KeyAlgorithm::PS384 => "PS384",
                KeyAlgorithm::PS512 => "PS512",
                KeyAlgorithm::ES256 => "ES256",
                KeyAlgorithm::ES384 => "ES384",
                KeyAlgorithm::EdDSA => "EdDSA",
            }
        }
    }

    /// A client's private key for `private_key_jwt`: signs a fresh assertion (`iss` = `sub` =
    /// the client id, `aud` = the token endpoint, a random `jti`, `iat`, `exp` one minute later)
    /// for every token request.
    ///
    /// The key material never appears in `Debug` or errors.
    ///
    /// ```
    /// use tokenkeeper::refresh::{ClientKey, KeyAlgorithm};
    ///
    /// let refused = ClientKey::from_pem(b"not a key", KeyAlgorithm::ES256);
    /// assert!(refused.is_err());
    /// ```
    #[derive(Clone)]
    pub struct ClientKey {
        key: EncodingKey,
        algorithm: KeyAlgorithm,
        key_id: Option<String>,
    }

    impl fmt::Debug for ClientKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ClientKey")
                .field("algorithm", &self.algorithm)
                .field("key_id", &self.key_id)
                .finish_non_exhaustive()
        }
    }

    impl ClientKey {
        /// A private key in PEM form: PKCS#1 or PKCS#8 for RSA, PKCS#8 for EC and Ed25519.
        /// The key is checked here, against the algorithm, so a refresh never meets a bad one.
        pub fn from_pem(pem: &[u8], algorithm: KeyAlgorithm) -> Result<Self, ConfigError> {
            let family = || {
                ConfigError::new(format!(
                    "the private key is not a usable {} key in PEM form",
                    algorithm.name()
                ))
            };
            let key = match algorithm {
                KeyAlgorithm::ES256 | KeyAlgorithm::ES384 => EncodingKey::from_ec_pem(pem),
                KeyAlgorithm::EdDSA => EncodingKey::from_ed_pem(pem),
                _ => EncodingKey::from_rsa_pem(pem),
            }
            .map_err(|_| family())?;
            // The signer parses the key for this algorithm: a P-384 key for ES256 fails here.
            (DEFAULT_PROVIDER.signer_factory)(&algorithm.jwt(), &key).map_err(|_| family())?;
            Ok(Self {
                key,
                algorithm,
                key_id: None,
            })
        }

        /// The `kid` to put in the assertion's header, when the client registered several keys.
        pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
            self.key_id = Some(key_id.into());
            self
        }

        /// A fresh assertion for `client_id` at `audience`.
        pub(crate) fn sign(
            &self,
            client_id: &str,
            audience: &str,
        ) -> Result<SecretString, RefreshError> {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let header = serde_json::json!({
                "alg": self.algorithm.name(),
                "typ": "JWT",
                "kid": self.key_id,
            });
            let claims = serde_json::json!({
                "iss": client_id,
                "sub": client_id,
                "aud": audience,
                "jti": format!("{:032x}", rand::random::<u128>()),
                "iat": now,
                "exp": now + ASSERTION_LIFETIME.as_secs(),
            });
            let b64 = |value: &serde_json::Value| {
                let mut value = value.clone();
                if let Some(object) = value.as_object_mut() {
                    object.retain(|_, v| !v.is_null());
                }
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
            };
            let message = format!("{}.{}", b64(&header), b64(&claims));
            // The rust_crypto provider directly, not jsonwebtoken's process-wide default: that
            // one panics when another crate in the build also enables its aws_lc_rs backend.
            let signature = (DEFAULT_PROVIDER.signer_factory)(&self.algorithm.jwt(), &self.key)
                .ok()
                .and_then(|signer| signer.try_sign(message.as_bytes()).ok())
                .ok_or_else(|| {
                    RefreshError::Rejected("could not sign the client assertion".into())
                })?;
            let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature);
            Ok(SecretString::from(format!("{message}.{signature}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_basic(value: &http::HeaderValue) -> String {
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_before_base64() {
        let value = basic_header("my app", "s3cr:t+/%é").unwrap();
        assert!(value.is_sensitive());
        assert_eq!(decode_basic(&value), "my+app:s3cr%3At%2B%2F%25%C3%A9");
        // Plain ids and secrets are unchanged by the encoding.
        let plain = basic_header("app", "secret").unwrap();
        assert_eq!(decode_basic(&plain), "app:secret");
    }

    #[test]
    fn the_method_follows_the_credentials_and_the_providers_list() {
        let with_secret = ClientIdentity {
            id: Some("app".into()),
            secret: Some(SecretString::from("s")),
            ..ClientIdentity::default()
        };
        assert_eq!(with_secret.method(), ClientAuth::Post, "no discovery");
        let listed = |methods: &[&str]| ClientIdentity {
            supported: Some(methods.iter().map(|m| m.to_string()).collect()),
            ..with_secret.clone()
        };
        assert_eq!(
            listed(&["client_secret_basic", "client_secret_post"]).method(),
            ClientAuth::Basic
        );
        assert_eq!(listed(&["client_secret_post"]).method(), ClientAuth::Post);
        assert_eq!(listed(&["private_key_jwt"]).method(), ClientAuth::Basic);
        let explicit = ClientIdentity {
            method: Some(ClientAuth::Post),
            ..listed(&["client_secret_basic"])
        };
        assert_eq!(explicit.method(), ClientAuth::Post);
        let public = ClientIdentity {
            id: Some("app".into()),
            supported: Some(vec!["client_secret_basic".into()]),
            ..ClientIdentity::default()
        };
        assert_eq!(public.method(), ClientAuth::Post);
    }

    #[test]
    fn post_puts_the_credentials_in_the_form_and_basic_in_a_header() {
        let url = url::Url::parse("https://id.example.com/token").unwrap();
        let client = reqwest::Client::new();
        let post = ClientIdentity {
            id: Some("app".into()),
            secret: Some(SecretString::from("s")),
            method: Some(ClientAuth::Post),
            ..ClientIdentity::default()
        };
        let mut form = Vec::new();
        let request = post
            .authenticate(&url, client.post(url.clone()), &mut form)
            .unwrap()
            .build()
            .unwrap();
        assert!(request.headers().get("authorization").is_none());
        let names: Vec<_> = form.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["client_id", "client_secret"]);

        let basic = ClientIdentity {
            method: Some(ClientAuth::Basic),
            ..post
        };
        let mut form = Vec::new();
        let request = basic
            .authenticate(&url, client.post(url.clone()), &mut form)
            .unwrap()
            .build()
            .unwrap();
        assert!(form.is_empty());
        assert_eq!(
            decode_basic(request.headers().get("authorization").unwrap()),
            "app:s"
        );
    }

    #[test]
    fn private_key_jwt_without_a_key_is_a_clear_terminal_error() {
        let url = url::Url::parse("https://id.example.com/token").unwrap();
        let client = ClientIdentity {
            id: Some("app".into()),
            method: Some(ClientAuth::PrivateKeyJwt),
            ..ClientIdentity::default()
        };
        let error = client
            .authenticate(
                &url,
                reqwest::Client::new().post(url.clone()),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(error.is_terminal());
        assert!(error.to_string().contains("private_key_jwt"), "{error}");
    }

    #[cfg(feature = "private-key-jwt")]
    mod private_key_jwt {
        use super::super::assertion::{ClientKey, KeyAlgorithm};
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
        use secrecy::ExposeSecret;

        /// The interop suite's client keys (scripts/oidc/keys), test-only.
        fn pem(name: &str) -> Vec<u8> {
            let path = format!(
                "{}/../../scripts/oidc/keys/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read(&path).unwrap()
        }

        fn verify(
            key: &ClientKey,
            pem: &[u8],
            algorithm: Algorithm,
        ) -> (jsonwebtoken::Header, serde_json::Value) {
            let assertion = key.sign("my app", "https://id.example.com/token").unwrap();
            let encoding = match algorithm {
                Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(pem),
                _ => jsonwebtoken::EncodingKey::from_rsa_pem(pem),
            }
            .unwrap();
            let public =
                DecodingKey::from_jwk(&Jwk::from_encoding_key(&encoding, algorithm).unwrap())
                    .unwrap();
            let mut validation = Validation::new(algorithm);
            validation.set_audience(&["https://id.example.com/token"]);
            validation.set_issuer(&["my app"]);
            validation.leeway = 0;
            let data = jsonwebtoken::decode::<serde_json::Value>(
                assertion.expose_secret(),
                &public,
                &validation,
            )
            .unwrap();
            (data.header, data.claims)
        }

        #[test]
        fn assertions_carry_the_rfc_7523_claims_and_verify() {
            for (file, algorithm, jwt) in [
                ("client-es256.pem", KeyAlgorithm::ES256, Algorithm::ES256),
                ("client-rs256.pem", KeyAlgorithm::RS256, Algorithm::RS256),
            ] {
                let pem = pem(file);
                let key = ClientKey::from_pem(&pem, algorithm).unwrap().key_id("k1");
                let (header, claims) = verify(&key, &pem, jwt);
                assert_eq!(header.kid.as_deref(), Some("k1"));
                assert_eq!(header.typ.as_deref(), Some("JWT"));
                assert_eq!(claims["sub"], "my app");
                let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
                assert_eq!(lifetime, 60);
                let (_, again) = verify(&key, &pem, jwt);
                assert_ne!(
                    claims["jti"], again["jti"],
                    "every assertion has its own jti"
                );
            }
        }

        #[test]
        fn a_key_that_does_not_match_the_algorithm_is_refused_at_once() {
            let rsa = pem("client-rs256.pem");
            let ec = pem("client-es256.pem");
            assert!(ClientKey::from_pem(&rsa, KeyAlgorithm::ES256).is_err());
            assert!(ClientKey::from_pem(&ec, KeyAlgorithm::RS256).is_err());
            assert!(ClientKey::from_pem(&ec, KeyAlgorithm::ES384).is_err());
            assert!(ClientKey::from_pem(b"", KeyAlgorithm::EdDSA).is_err());
        }

        #[test]
        fn debug_never_shows_the_key() {
            let pem = pem("client-es256.pem");
            let key = ClientKey::from_pem(&pem, KeyAlgorithm::ES256).unwrap();
            let debug = format!("{key:?}");
            assert!(
                debug.contains("ES256") && !debug.contains("BEGIN"),
                "{debug}"
            );
        }
    }
}
