//! Reading and verifying one DPoP proof JWT (RFC 9449 §4.2–4.3), everything that needs no
//! server state: shape, `typ`, `alg`, the public `jwk`, the signature, `htm`, `htu`, `iat`
//! and `ath`. Nonce, `jti` replay and the key a token is bound to are checked by the caller.
//!
//! ES256 (ECDSA P-256 with SHA-256, the usual DPoP algorithm) and EdDSA (Ed25519) are
//! accepted, verified by jsonwebtoken's RustCrypto backend (p256, ed25519-dalek), which the
//! server already builds for its own tokens: no crate is added for DPoP.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::htu;

/// The signing algorithms accepted, as advertised in `WWW-Authenticate: DPoP algs="…"`.
pub(crate) const ALGS: &str = "ES256 EdDSA";

/// Longest proof accepted, in bytes: an ES256 proof is about 600.
const MAX_PROOF_BYTES: usize = 4096;
/// Longest `jti` accepted.
const MAX_JTI_CHARS: usize = 256;
/// JWK members that only a private (or symmetric) key has: a proof carrying one leaks the key
/// and is refused (RFC 9449 §4.3 step 7).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Why a proof was refused. Each is a reason counted in
/// [`DpopRejectedCounts`](crate::DpopRejectedCounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No `DPoP` header where one is needed.
    Missing,
    /// More than one `DPoP` header, not a JWT, bad base64 or JSON, a claim missing or of
    /// the wrong type.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    Typ,
    /// `alg` is not an accepted asymmetric algorithm (`none`, `HS256`, ...).
    Alg,
    /// `jwk` missing, not a public key for `alg` (P-256 for ES256, Ed25519 for EdDSA), or
    /// carrying private key material.
    Jwk,
    /// The signature does not verify with `jwk`.
    Signature,
    /// `htm` is not the request's method.
    Htm,
    /// `htu` is not the request's URI.
    Htu,
    /// `iat` outside the accepted window.
    Iat,
    /// `ath` missing or not the hash of the access token (resource requests).
    Ath,
    /// The `jti` was seen before.
    Replay,
    /// The proof's key is not the key the token is bound to.
    WrongKey,
}

impl Rejection {
    /// How many reasons there are (one counter each).
    pub(crate) const COUNT: usize = 12;

    /// Human text for `error_description`. Never quotes what the client sent.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Rejection::Missing => "A DPoP proof is required: send a DPoP header",
            Rejection::Malformed => {
                "The DPoP proof is not a well-formed JWT with the required claims"
            }
            Rejection::Typ => "The DPoP proof's typ must be dpop+jwt",
            Rejection::Alg => "The DPoP proof's alg must be ES256 or EdDSA",
            Rejection::Jwk => {
                "The DPoP proof's jwk must be a public key for its alg, without private parts"
            }
            Rejection::Signature => "The DPoP proof's signature does not verify",
            Rejection::Htm => "The DPoP proof's htm is not this request's method",
            Rejection::Htu => "The DPoP proof's htu is not this request's URI",
            Rejection::Iat => "The DPoP proof's iat is outside the accepted window",
            Rejection::Ath => "The DPoP proof's ath is missing or not the hash of the access token",
            Rejection::Replay => "The DPoP proof's jti was used before",
            Rejection::WrongKey => "The DPoP proof is not signed by the key the token is bound to",
        }
    }
}

/// What the request the proof came with looks like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    /// The request method, e.g. `POST`.
    pub(crate) method: &'a str,
    /// The request URI, absolute (`http://host:port/path`).
    pub(crate) uri: &'a str,
    /// The access token sent with the proof (resource requests), whose hash `ath` must be.
    pub(crate) access_token: Option<&'a str>,
    /// Now, in seconds since the Unix epoch.
    pub(crate) now: f64,
    /// Oldest accepted `iat`, in seconds before `now`.
    pub(crate) max_age: f64,
    /// Newest accepted `iat`, in seconds after `now`.
    pub(crate) future_leeway: f64,
}

/// A proof whose signature and claims checked out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Proof {
    /// RFC 7638 SHA-256 thumbprint of the proof's key, base64url.
    pub(crate) jkt: String,
    pub(crate) jti: String,
    pub(crate) iat: f64,
    pub(crate) nonce: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: f64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

fn json_object(part: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Malformed),
    }
}

/// A proof's public key, its coordinates base64url (checked to be 32 bytes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublicKey<'a> {
    /// ES256: a P-256 point.
    P256 { x: &'a str, y: &'a str },
    /// EdDSA: an Ed25519 key.
    Ed25519 { x: &'a str },
}

impl PublicKey<'_> {
    /// 64 bytes for both: ES256 is r || s, Ed25519 is R || S.
    const SIGNATURE_BYTES: usize = 64;

    fn algorithm(self) -> Algorithm {
        match self {
            PublicKey::P256 { .. } => Algorithm::ES256,
            PublicKey::Ed25519 { .. } => Algorithm::EdDSA,
        }
    }

    fn decoding_key(self) -> Option<DecodingKey> {
        match self {
            PublicKey::P256 { x, y } => DecodingKey::from_ec_components(x, y).ok(),
            PublicKey::Ed25519 { x } => DecodingKey::from_ed_components(x).ok(),
        }
    }

    /// RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order, no
    /// whitespace, base64url. The coordinates are base64url already (nothing to escape).
    fn thumbprint(self) -> String {
        let canonical = match self {
            PublicKey::P256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicKey::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// The public key of `jwk` for `alg`, after refusing anything else.
fn public_key<'a>(alg: &str, jwk: &'a Map<String, Value>) -> Result<PublicKey<'a>, Rejection> {
    if PRIVATE_MEMBERS
        .iter()
        .any(|member| jwk.contains_key(*member))
    {
        return Err(Rejection::Jwk);
    }
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let coordinate = |name: &str| {
        text(name)
            .filter(|value| {
                URL_SAFE_NO_PAD
                    .decode(value)
                    .is_ok_and(|bytes| bytes.len() == 32)
            })
            .ok_or(Rejection::Jwk)
    };
    match (alg, text("kty"), text("crv")) {
        ("ES256", Some("EC"), Some("P-256")) => Ok(PublicKey::P256 {
            x: coordinate("x")?,
            y: coordinate("y")?,
        }),
        ("EdDSA", Some("OKP"), Some("Ed25519")) => Ok(PublicKey::Ed25519 {
            x: coordinate("x")?,
        }),
        _ => Err(Rejection::Jwk),
    }
}

/// RFC 7638 thumbprint of a P-256 key given as base64url `x` and `y`.
#[cfg(test)]
fn thumbprint(x: &str, y: &str) -> String {
    PublicKey::P256 { x, y }.thumbprint()
}

/// `ath` for `access_token`: base64url of its SHA-256 (RFC 9449 §4.2).
pub(crate) fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Verifies `jwt` against `expected`.
pub(crate) fn verify(jwt: &str, expected: &Expected<'_>) -> Result<Proof, Rejection> {
    if jwt.len() > MAX_PROOF_BYTES {
        return Err(Rejection::Malformed);
    }
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let header_json = json_object(header)?;
    if header_json.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(Rejection::Typ);
    }
    let alg = match header_json.get("alg").and_then(Value::as_str) {
        Some(alg @ ("ES256" | "EdDSA")) => alg,
        _ => return Err(Rejection::Alg),
    };
    let Some(Value::Object(jwk)) = header_json.get("jwk") else {
        return Err(Rejection::Jwk);
    };
    let public = public_key(alg, jwk)?;
    if URL_SAFE_NO_PAD
        .decode(signature)
        .map_or(true, |bytes| bytes.len() != PublicKey::SIGNATURE_BYTES)
    {
        return Err(Rejection::Signature);
    }
    let key = public.decoding_key().ok_or(Rejection::Jwk)?;
    let message = &jwt[..header.len() + 1 + payload.len()];
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, public.algorithm()) {
        Ok(true) => {}
        Ok(false) => return Err(Rejection::Signature),
        // The signature decoded, so the key is what the backend refused (not on the curve).
        Err(_) => return Err(Rejection::Jwk),
    }
    let claims: Claims = serde_json::from_value(Value::Object(json_object(payload)?))
        .map_err(|_| Rejection::Malformed)?;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_CHARS || !claims.iat.is_finite() {
        return Err(Rejection::Malformed);
    }
    if claims.htm != expected.method {
        return Err(Rejection::Htm);
    }
    match (htu::normalize(&claims.htu), htu::normalize(expected.uri)) {
        (Some(sent), Some(wanted)) if sent == wanted => {}
        _ => return Err(Rejection::Htu),
    }
    if claims.iat < expected.now - expected.max_age
        || claims.iat > expected.now + expected.future_leeway
    {
        return Err(Rejection::Iat);
    }
    if let Some(token) = expected.access_token
        && claims.ath.as_deref() != Some(ath(token).as_str())
    {
        return Err(Rejection::Ath);
    }
    Ok(Proof {
        jkt: public.thumbprint(),
        jti: claims.jti,
        iat: claims.iat,
        nonce: claims.nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_the_rfc_9449_example() {
        // RFC 9449 §6.1: the example proof key has jkt
        // "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".
        assert_eq!(
            thumbprint(
                "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"
            ),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn ath_is_the_rfc_9449_example() {
        // RFC 9449 §7.1: the access token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU" has
        // ath "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo".
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let expected = Expected {
            method: "GET",
            uri: "http://h/x",
            access_token: None,
            now: 0.0,
            max_age: 60.0,
            future_leeway: 5.0,
        };
        for jwt in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "eyJ9.e30.",
            &"a".repeat(5000),
        ] {
            assert!(verify(jwt, &expected).is_err(), "{jwt}");
        }
    }

    mod properties {
        use p256::ecdsa::signature::Signer as _;
        use p256::ecdsa::{Signature, SigningKey};
        use proptest::prelude::*;
        use serde_json::json;

        use super::super::*;

        const NOW: f64 = 1_700_000_000.0;
        const BASE64URL: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

        fn expected(uri: &str) -> Expected<'_> {
            Expected {
                method: "POST",
                uri,
                access_token: None,
                now: NOW,
                max_age: 60.0,
                future_leeway: 5.0,
            }
        }

        /// A proof signed with p256 directly (not through the code under test).
        fn sign(key: &SigningKey, claims: &serde_json::Value) -> (String, String, String) {
            let point = key.verifying_key().to_encoded_point(false);
            let x = URL_SAFE_NO_PAD.encode(point.x().unwrap());
            let y = URL_SAFE_NO_PAD.encode(point.y().unwrap());
            let header = json!({"typ": "dpop+jwt", "alg": "ES256",
                "jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": y}});
            let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
            let input = format!("{}.{}", encode(&header), encode(claims));
            let signature: Signature = key.sign(input.as_bytes());
            let jwt = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
            (jwt, x, y)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn a_signed_proof_verifies_and_no_one_character_change_does(
                seed in any::<[u8; 32]>().prop_filter("a valid scalar", |s| SigningKey::from_slice(s).is_ok()),
                jti in "[A-Za-z0-9_.~-]{1,64}",
                path in "(/[a-z0-9]{0,8}){1,3}",
                age in 0.0f64..59.0,
                at in any::<prop::sample::Index>(),
                with in 0..BASE64URL.len(),
            ) {
                let key = SigningKey::from_slice(&seed).unwrap();
                let uri = format!("http://127.0.0.1:8080{path}");
                let claims = json!({"jti": jti, "htm": "POST", "htu": uri, "iat": NOW - age});
                let (jwt, x, y) = sign(&key, &claims);
                let proof = verify(&jwt, &expected(&uri)).unwrap();
                prop_assert_eq!(&proof.jti, &jti);
                // The thumbprint as jsonwebtoken's JWK code computes it.
                let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})).unwrap();
                prop_assert_eq!(
                    proof.jkt,
                    jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).unwrap()
                );

                // Change one base64url character anywhere (the dots stay): always refused.
                let mut bytes = jwt.into_bytes();
                let at = at.index(bytes.len());
                prop_assume!(bytes[at] != b'.' && bytes[at] != BASE64URL[with]);
                bytes[at] = BASE64URL[with];
                let changed = String::from_utf8(bytes).unwrap();
                prop_assert!(verify(&changed, &expected(&uri)).is_err());
            }

            #[test]
            fn any_text_is_refused_without_a_panic(text in ".{0,300}") {
                prop_assert!(verify(&text, &expected("http://h/x")).is_err());
            }

            #[test]
            fn any_three_base64_parts_are_refused_without_a_panic(
                a in "[A-Za-z0-9_-]{0,80}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,90}",
            ) {
                let jwt = [a, b, c].join(".");
                prop_assert!(verify(&jwt, &expected("http://h/x")).is_err());
            }
        }
    }
}
