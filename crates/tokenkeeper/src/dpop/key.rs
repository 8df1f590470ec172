//! [`DpopKey`]: the login's proof-of-possession key (ES256, P-256).

use super::DpopError;
use super::nonce::Nonces;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rand::RngCore as _;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::sync::Arc;

/// A DPoP key: the private key every proof of one login is signed with (ES256: ECDSA on P-256
/// with SHA-256), with its public JWK and RFC 7638 thumbprint.
///
/// The key belongs to the login: give it to the grant that starts the login
/// ([`refresh::OAuth2::dpop`](crate::refresh::OAuth2::dpop)); the tokens that come back carry it
/// ([`TokenSet::dpop_key`](crate::TokenSet::dpop_key)), the stores save it beside the pair, and
/// another process that adopts the pair signs with the same key.
///
/// The private key never appears in `Debug`, logs or errors, and is zeroed when the last clone
/// is dropped. Clones share the key and the nonces servers handed out for it.
///
/// ```
/// use tokenkeeper::dpop::DpopKey;
///
/// let key = DpopKey::generate();
/// assert_eq!(key.thumbprint().len(), 43); // base64url of a SHA-256
/// assert!(!format!("{key:?}").contains("\"d\""));
/// let again = DpopKey::from_jwk(key.to_jwk().expose_secret())?;
/// assert_eq!(again.thumbprint(), key.thumbprint());
/// # use tokenkeeper::secrecy::ExposeSecret;
/// # Ok::<(), tokenkeeper::dpop::DpopError>(())
/// ```
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    /// `ecdsa::SigningKey` zeroes its scalar on drop.
    signing: SigningKey,
    /// `{"crv":"P-256","kty":"EC","x":…,"y":…}`: the RFC 7638 member order, which is also a
    /// valid public JWK.
    public_jwk: String,
    thumbprint: String,
    /// The proofs' JOSE header, base64url-encoded once: it never changes for a key.
    header_b64: String,
    pub(super) nonces: Nonces,
}

impl DpopKey {
    /// A new random key, from the operating system's randomness (through `rand`'s thread-local
    /// generator, seeded from it).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut *bytes);
            // Fails only for zero or a value at or above the group order: about 2^-32.
            if let Ok(signing) = SigningKey::from_slice(&*bytes) {
                return Self::from_signing_key(signing);
            }
        }
    }

    /// Imports a private key from a JWK (`{"kty":"EC","crv":"P-256","x":…,"y":…,"d":…}`). `x`
    /// and `y`, when present, must match `d`.
    pub fn from_jwk(jwk: &str) -> Result<Self, DpopError> {
        #[derive(serde::Deserialize)]
        struct Jwk {
            kty: String,
            crv: String,
            x: Option<String>,
            y: Option<String>,
            d: Option<SecretString>,
        }
        let jwk: Jwk =
            serde_json::from_str(jwk).map_err(|_| DpopError::Key("the JWK is not valid JSON"))?;
        if jwk.kty != "EC" || jwk.crv != "P-256" {
            return Err(DpopError::Key("only EC P-256 keys (ES256) are supported"));
        }
        let d = jwk
            .d
            .ok_or(DpopError::Key("the JWK has no private part (`d`)"))?;
        Self::from_private_part(&d, jwk.x.as_deref(), jwk.y.as_deref())
    }

    /// The key of the base64url private scalar `d`; `x` and `y`, when given, must be its public
    /// point's coordinates.
    fn from_private_part(
        d: &SecretString,
        x: Option<&str>,
        y: Option<&str>,
    ) -> Result<Self, DpopError> {
        let d = Zeroizing::new(
            B64.decode(d.expose_secret())
                .map_err(|_| DpopError::Key("`d` is not base64url"))?,
        );
        let signing = SigningKey::from_slice(&d)
            .map_err(|_| DpopError::Key("`d` is not a P-256 private key"))?;
        let key = Self::from_signing_key(signing);
        let (kx, ky) = key.coordinates();
        if x.is_some_and(|given| given != kx) || y.is_some_and(|given| given != ky) {
            return Err(DpopError::Key("`x`/`y` do not belong to `d`"));
        }
        Ok(key)
    }

    /// The private key as a JWK (with `d`), for keeping it elsewhere. A secret.
    pub fn to_jwk(&self) -> SecretString {
        let d = Zeroizing::new(B64.encode(self.inner.signing.to_bytes()));
        let (x, y) = self.coordinates();
        SecretString::from(format!(
            r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}","d":"{}"}}"#,
            d.as_str()
        ))
    }

    /// Imports a PKCS#8 private key (DER).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, DpopError> {
        SigningKey::from_pkcs8_der(der)
            .map(Self::from_signing_key)
            .map_err(|_| DpopError::Key("not a PKCS#8 P-256 private key"))
    }

    /// Imports a PKCS#8 private key (PEM, `-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, DpopError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self::from_signing_key)
            .map_err(|_| DpopError::Key("not a PKCS#8 P-256 private key"))
    }

    /// The private key as PKCS#8 DER, in a buffer zeroed on drop.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, DpopError> {
        let document = self
            .inner
            .signing
            .to_pkcs8_der()
            .map_err(|_| DpopError::Key("could not encode the key as PKCS#8"))?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// The public key as a JWK (`{"crv":"P-256","kty":"EC","x":…,"y":…}`), as proofs carry it.
    pub fn public_jwk(&self) -> &str {
        &self.inner.public_jwk
    }

    /// The RFC 7638 JWK SHA-256 thumbprint, base64url: what a server binds tokens to
    /// (`cnf.jkt`) and what `dpop_jkt` carries in an authorization request.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// Whether both are the same key.
    pub fn same_key(&self, other: &DpopKey) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.public_jwk == other.inner.public_jwk
    }

    /// The private JWK's members for the stores' document: `x`, `y` and the secret `d`.
    pub(crate) fn stored_parts(&self) -> (String, String, Zeroizing<String>) {
        let (x, y) = self.coordinates();
        let d = Zeroizing::new(B64.encode(self.inner.signing.to_bytes()));
        (x, y, d)
    }

    /// The key back from the stores' document (`x`/`y` checked against `d`).
    pub(crate) fn from_stored_parts(x: &str, y: &str, d: &SecretString) -> Result<Self, DpopError> {
        Self::from_private_part(d, Some(x), Some(y))
    }

    pub(super) fn header_b64(&self) -> &str {
        &self.inner.header_b64
    }

    pub(crate) fn nonces(&self) -> &Nonces {
        &self.inner.nonces
    }

    /// An ES256 JWS signature (`r || s`, 64 bytes) over `signing_input`.
    pub(super) fn sign(&self, signing_input: &[u8]) -> [u8; 64] {
        let signature: Signature = self.inner.signing.sign(signing_input);
        signature.to_bytes().into()
    }

    fn coordinates(&self) -> (String, String) {
        let point = self.inner.signing.verifying_key().to_encoded_point(false);
        let encode = |c: Option<&p256::FieldBytes>| c.map_or_else(String::new, |c| B64.encode(c));
        (encode(point.x()), encode(point.y()))
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let point = signing.verifying_key().to_encoded_point(false);
        let encode = |c: Option<&p256::FieldBytes>| c.map_or_else(String::new, |c| B64.encode(c));
        let (x, y) = (encode(point.x()), encode(point.y()));
        let thumbprint = thumbprint(&[("crv", "P-256"), ("kty", "EC"), ("x", &x), ("y", &y)]);
        let public_jwk = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{public_jwk}}}"#);
        Self {
            inner: Arc::new(Inner {
                signing,
                header_b64: B64.encode(header),
                public_jwk,
                thumbprint,
                nonces: Nonces::default(),
            }),
        }
    }
}

/// RFC 7638: SHA-256 over the required members, lexicographically ordered, no whitespace,
/// base64url without padding. Values are JSON-escaped (base64url values need none).
pub(crate) fn thumbprint(members: &[(&str, &str)]) -> String {
    let mut sorted = members.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut json = String::from("{");
    for (i, (name, value)) in sorted.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&serde_json::Value::from(*name).to_string());
        json.push(':');
        json.push_str(&serde_json::Value::from(*value).to_string());
    }
    json.push('}');
    B64.encode(Sha256::digest(json.as_bytes()))
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &"ES256")
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1: the thumbprint of the RSA key in its example.
    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(&[("kty", "RSA"), ("n", n), ("e", "AQAB")]),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// RFC 9449 §6.1 binds tokens to the thumbprint of the key in its proof examples (§4.1).
    #[test]
    fn thumbprint_matches_rfc_9449_example() {
        let x = "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs";
        let y = "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA";
        assert_eq!(
            thumbprint(&[("kty", "EC"), ("x", x), ("y", y), ("crv", "P-256")]),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn jwk_and_pkcs8_round_trip_to_the_same_key() {
        let key = DpopKey::generate();
        let from_jwk = DpopKey::from_jwk(key.to_jwk().expose_secret()).unwrap();
        let from_der = DpopKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
        assert!(from_jwk.same_key(&key) && from_der.same_key(&key));
        assert_eq!(from_der.thumbprint(), key.thumbprint());
        assert!(!DpopKey::generate().same_key(&key));
    }

    #[test]
    fn bad_keys_are_typed_errors_that_quote_nothing() {
        let other = DpopKey::generate();
        let jwk: serde_json::Value = serde_json::from_str(other.to_jwk().expose_secret()).unwrap();
        let d = jwk["d"].as_str().unwrap().to_owned();
        let mismatched = DpopKey::generate();
        let mut forged: serde_json::Value =
            serde_json::from_str(mismatched.to_jwk().expose_secret()).unwrap();
        forged["d"] = serde_json::Value::from(d.clone());
        for bad in [
            "nope".to_owned(),
            r#"{"kty":"RSA","crv":"P-256","d":"AA"}"#.to_owned(),
            r#"{"kty":"EC","crv":"P-256"}"#.to_owned(),
            r#"{"kty":"EC","crv":"P-256","d":"!!"}"#.to_owned(),
            r#"{"kty":"EC","crv":"P-256","d":"AAAA"}"#.to_owned(),
            forged.to_string(),
        ] {
            let error = DpopKey::from_jwk(&bad).unwrap_err().to_string();
            assert!(!error.contains(&d), "{error}");
        }
        assert!(DpopKey::from_pkcs8_der(b"garbage").is_err());
    }

    #[test]
    fn debug_shows_no_private_key() {
        let key = DpopKey::generate();
        let jwk: serde_json::Value = serde_json::from_str(key.to_jwk().expose_secret()).unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains(jwk["d"].as_str().unwrap()), "{debug}");
        assert!(debug.contains(key.thumbprint()));
    }
}
