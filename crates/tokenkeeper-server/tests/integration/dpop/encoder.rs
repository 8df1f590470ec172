//! An independent DPoP proof encoder for the tests: RustCrypto p256 signs, serde_json writes
//! the JWT, and jsonwebtoken's JWK code computes the thumbprint. It shares no code with the
//! server's verifier, and it can also build every kind of bad proof.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rand::RngCore as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// A client's P-256 key.
pub struct Key {
    signing: SigningKey,
    /// The private scalar, base64url (only to build proofs that leak it).
    d: String,
    x: String,
    y: String,
}

impl Key {
    pub fn random() -> Key {
        loop {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            // Zero or above the group order: vanishingly rare, draw again.
            let Ok(signing) = SigningKey::from_slice(&bytes) else {
                continue;
            };
            let point = signing.verifying_key().to_encoded_point(false);
            return Key {
                d: URL_SAFE_NO_PAD.encode(bytes),
                x: URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                y: URL_SAFE_NO_PAD.encode(point.y().unwrap()),
                signing,
            };
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y})
    }

    /// The JWK with the private key in it (never to be sent).
    pub fn private_jwk(&self) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y, "d": self.d})
    }

    /// RFC 7638 thumbprint, computed by jsonwebtoken.
    pub fn jkt(&self) -> String {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(self.jwk()).unwrap();
        jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap()
    }

    /// A valid proof for `htm` `htu`, now, random `jti`.
    pub fn proof(&self, htm: &str, htu: &str) -> String {
        Proof::new(htm, htu).sign(self)
    }
}

/// Now, in whole seconds since the Unix epoch (as most clients send `iat`).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A random `jti`.
pub fn jti() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `ath` for an access token.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// How a proof is signed.
#[derive(Clone, Copy, Debug)]
pub enum Signing {
    /// ES256 with the key (the only valid way).
    Es256,
    /// ES256, but by another key than the one in `jwk`.
    OtherKey,
    /// `alg: none`, empty signature.
    None,
    /// HS256 with a shared secret.
    Hs256,
}

/// A proof under construction: header and claims as JSON, freely editable.
#[derive(Clone, Debug)]
pub struct Proof {
    pub header: Value,
    pub claims: Value,
    pub signing: Signing,
}

impl Proof {
    pub fn new(htm: &str, htu: &str) -> Proof {
        Proof {
            header: json!({"typ": "dpop+jwt", "alg": "ES256"}),
            claims: json!({"jti": jti(), "htm": htm, "htu": htu, "iat": now()}),
            signing: Signing::Es256,
        }
    }

    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Proof {
        self.claims[name] = value.into();
        self
    }

    pub fn without_claim(mut self, name: &str) -> Proof {
        self.claims.as_object_mut().unwrap().remove(name);
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Proof {
        self.header[name] = value.into();
        self
    }

    pub fn signing(mut self, signing: Signing) -> Proof {
        self.signing = signing;
        self
    }

    /// With `ath` for `access_token`.
    pub fn for_token(self, access_token: &str) -> Proof {
        self.claim("ath", ath(access_token))
    }

    /// Signs; the header gets the key's public JWK unless one was set.
    pub fn sign(mut self, key: &Key) -> String {
        if self.header.get("jwk").is_none() {
            self.header["jwk"] = key.jwk();
        }
        if let Signing::None = self.signing {
            self.header["alg"] = json!("none");
        }
        if let Signing::Hs256 = self.signing {
            self.header["alg"] = json!("HS256");
        }
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
        let input = format!("{}.{}", encode(&self.header), encode(&self.claims));
        let signature = match self.signing {
            Signing::Es256 => es256(&key.signing, &input),
            Signing::OtherKey => es256(&Key::random().signing, &input),
            Signing::None => String::new(),
            Signing::Hs256 => {
                let mut mac =
                    <Hmac<Sha256> as hmac::Mac>::new_from_slice(b"shared secret").unwrap();
                mac.update(input.as_bytes());
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            }
        };
        format!("{input}.{signature}")
    }
}

fn es256(key: &SigningKey, input: &str) -> String {
    let signature: Signature = key.sign(input.as_bytes());
    URL_SAFE_NO_PAD.encode(signature.to_bytes())
}
