//! DPoP proofs (RFC 9449 §4): a JWT signed with the login's key, one per request.

use super::{DpopError, DpopKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::HeaderValue;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};
use url::{Position, Url};

/// The claims of one proof.
#[derive(serde::Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// `ath` (RFC 9449 §4.2): base64url(SHA-256(the access token's ASCII)).
pub(crate) fn access_token_hash(access_token: &SecretString) -> String {
    B64.encode(Sha256::digest(access_token.expose_secret().as_bytes()))
}

/// `htu` (RFC 9449 §4.2): the target URI without query, fragment and user information. The
/// `url` crate has already normalised it (RFC 3986 §6.2.2-6.2.3): lowercase scheme and host, no
/// default port, dot segments resolved, an empty path as `/`.
pub(crate) fn htu(url: &Url) -> String {
    let mut htu = String::with_capacity(url.as_str().len());
    htu.push_str(url.scheme());
    htu.push_str("://");
    htu.push_str(&url[Position::BeforeHost..Position::AfterPath]);
    htu
}

/// A fresh `jti`: 128 random bits from a CSPRNG. Two proofs share one with probability about
/// n²/2¹²⁹ for n proofs: never, in practice.
fn jti() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs a proof for `htm` `htu`, with `ath` on resource requests and the nonce the origin of
/// `htu` last handed out, if any.
pub(crate) fn sign(
    key: &DpopKey,
    htm: &str,
    url: &Url,
    ath: Option<&str>,
) -> Result<HeaderValue, DpopError> {
    let htu = htu(url);
    let nonce = key.nonces().get(url);
    let jti = jti();
    let claims = Claims {
        jti: &jti,
        htm,
        htu: &htu,
        iat: now_secs(),
        ath,
        nonce: nonce.as_deref(),
    };
    let claims = serde_json::to_vec(&claims).map_err(|_| DpopError::Proof)?;
    let header = key.header_b64();
    let mut jws = String::with_capacity(header.len() + claims.len() * 4 / 3 + 90);
    jws.push_str(header);
    jws.push('.');
    B64.encode_string(&claims, &mut jws);
    let signature = key.sign(jws.as_bytes());
    jws.push('.');
    B64.encode_string(signature, &mut jws);
    let mut value = HeaderValue::try_from(jws).map_err(|_| DpopError::Proof)?;
    // A proof is bound to one request, but it is still a credential until it expires.
    value.set_sensitive(true);
    Ok(value)
}

/// A proof for a token request (`POST`, no `ath`). A failure to encode one is no verdict on
/// the refresh token: transient.
#[cfg(feature = "reqwest")]
pub(crate) fn token_endpoint(
    key: &DpopKey,
    url: &Url,
) -> Result<HeaderValue, crate::refresh::RefreshError> {
    sign(key, "POST", url, None).map_err(|e| crate::refresh::RefreshError::transient(e.to_string()))
}

impl DpopKey {
    /// A proof (the `DPoP` header's value) for one request, for code that sends requests
    /// without the session's adapters. `access_token` gives the `ath` claim (resource
    /// requests); the nonce is the one `url`'s origin handed out last
    /// ([`remember_nonce`](Self::remember_nonce)).
    ///
    /// ```
    /// use tokenkeeper::dpop::DpopKey;
    ///
    /// let key = DpopKey::generate();
    /// let url = "https://api.example.com/items?page=2".parse()?;
    /// let proof = key.proof("GET", &url, None)?;
    /// assert_eq!(proof.to_str()?.split('.').count(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn proof(
        &self,
        method: &str,
        url: &Url,
        access_token: Option<&SecretString>,
    ) -> Result<HeaderValue, DpopError> {
        let ath = access_token.map(access_token_hash);
        sign(self, method, url, ath.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;
    use proptest::prelude::*;

    /// An independent check of a proof: the JWS verified by jsonwebtoken with the key from the
    /// proof's own `jwk`, and the signature once more by p256 directly.
    fn verify(proof: &str, key: &DpopKey) -> (serde_json::Value, serde_json::Value) {
        let header = jsonwebtoken::decode_header(proof).unwrap();
        assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        let jwk = serde_json::to_value(header.jwk.clone().unwrap()).unwrap();
        assert!(jwk.get("d").is_none(), "the proof carries a private key");
        let (x, y) = (jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap());
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(x, y).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(proof, &decoding, &validation)
            .unwrap()
            .claims;
        // The jwk is the key's, and the thumbprint of the jwk is the key's thumbprint.
        let public: serde_json::Value = serde_json::from_str(key.public_jwk()).unwrap();
        assert_eq!(jwk["x"], public["x"]);
        assert_eq!(
            super::super::key::thumbprint(&[("crv", "P-256"), ("kty", "EC"), ("x", x), ("y", y)]),
            key.thumbprint()
        );
        let (signing_input, signature) = proof.rsplit_once('.').unwrap();
        let signature =
            p256::ecdsa::Signature::from_slice(&B64.decode(signature).unwrap()).unwrap();
        let point = p256::EncodedPoint::from_affine_coordinates(
            B64.decode(x).unwrap().as_slice().into(),
            B64.decode(y).unwrap().as_slice().into(),
            false,
        );
        let verifying = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
        verifying
            .verify(signing_input.as_bytes(), &signature)
            .unwrap();
        (serde_json::to_value(&header).unwrap(), claims)
    }

    #[test]
    fn a_proof_has_the_rfc_claims() {
        let key = DpopKey::generate();
        let url =
            Url::parse("https://User:pw@API.Example.COM:443/a/./b/../items?q=1#frag").unwrap();
        let token = SecretString::from("access-token");
        let proof = key.proof("POST", &url, Some(&token)).unwrap();
        assert!(proof.is_sensitive());
        let (_, claims) = verify(proof.to_str().unwrap(), &key);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://api.example.com/a/items");
        assert_eq!(
            claims["ath"],
            B64.encode(Sha256::digest(b"access-token")).as_str()
        );
        assert!(claims.get("nonce").is_none());
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat.abs_diff(now_secs()) <= 5);
    }

    /// RFC 9449 §4.2's example of `ath`: the access token `Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU`.
    #[test]
    fn ath_matches_the_rfc_example() {
        let token = SecretString::from("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
        assert_eq!(
            access_token_hash(&token),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_proof_verifies_and_strips_query_and_fragment(
            method in "(GET|POST|PUT|DELETE|PATCH|[A-Z]{1,10})",
            host in "[a-z]{1,12}(\\.[a-z]{1,8}){0,2}",
            port in proptest::option::of(1u16..65535),
            path in "(/[a-zA-Z0-9._~%-]{0,12}){0,4}",
            query in proptest::option::of("[a-zA-Z0-9=&%]{0,20}"),
            fragment in proptest::option::of("[a-zA-Z0-9]{0,10}"),
            token in proptest::option::of("[!-~]{1,60}"),
            nonce in proptest::option::of("[A-Za-z0-9_-]{1,40}"),
        ) {
            let key = DpopKey::generate();
            let mut text = format!("https://{host}");
            if let Some(port) = port { text.push_str(&format!(":{port}")); }
            text.push_str(&path);
            if let Some(query) = &query { text.push('?'); text.push_str(query); }
            if let Some(fragment) = &fragment { text.push('#'); text.push_str(fragment); }
            let url = Url::parse(&text).unwrap();
            if let Some(nonce) = &nonce {
                key.remember_nonce(&url, nonce);
            }
            let token = token.map(SecretString::from);
            let proof = key.proof(&method, &url, token.as_ref()).unwrap();
            let (_, claims) = verify(proof.to_str().unwrap(), &key);
            let htu = claims["htu"].as_str().unwrap();
            prop_assert!(!htu.contains('?') && !htu.contains('#'), "{htu}");
            let mut expected = url.clone();
            expected.set_query(None);
            expected.set_fragment(None);
            prop_assert_eq!(htu, expected.as_str());
            prop_assert_eq!(claims["htm"].as_str().unwrap(), method.as_str());
            let ath = token.as_ref().map(access_token_hash);
            prop_assert_eq!(claims["ath"].as_str(), ath.as_deref());
            prop_assert_eq!(claims["nonce"].as_str(), nonce.as_deref());
        }
    }

    #[test]
    fn no_jti_repeats() {
        let key = DpopKey::generate();
        let url = Url::parse("https://api.example.com/items").unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let proof = key.proof("GET", &url, None).unwrap();
            let payload = proof
                .to_str()
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap()
                .to_owned();
            let claims: serde_json::Value =
                serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
            assert!(seen.insert(claims["jti"].as_str().unwrap().to_owned()));
        }
    }
}
