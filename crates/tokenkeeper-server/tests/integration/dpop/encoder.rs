//! An independent DPoP proof encoder for the tests: RustCrypto p256 and ed25519-dalek sign,
//! serde_json writes the JWT, and jsonwebtoken's JWK code computes the thumbprint. It shares no code with the
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

/// A client's key: P-256 (ES256) or Ed25519 (EdDSA).
pub struct Key {
    signing: Signer,
    /// The private key, base64url (only to build proofs that leak it).
    d: String,
    x: String,
    /// P-256 only.
    y: Option<String>,
}

enum Signer {
    P256(SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl Key {
    /// An Ed25519 key.
    pub fn ed25519() -> Key {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        Key {
            d: URL_SAFE_NO_PAD.encode(seed),
            x: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
            y: None,
            signing: Signer::Ed25519(signing),
        }
    }

    /// A P-256 key.
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
                y: Some(URL_SAFE_NO_PAD.encode(point.y().unwrap())),
                signing: Signer::P256(signing),
            };
        }
    }

    /// The JWS algorithm of the key.
    pub fn alg(&self) -> &'static str {
        match self.signing {
            Signer::P256(_) => "ES256",
            Signer::Ed25519(_) => "EdDSA",
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        match &self.y {
            Some(y) => json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": y}),
            None => json!({"kty": "OKP", "crv": "Ed25519", "x": self.x}),
        }
    }

    /// The JWK with the private key in it (never to be sent).
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.jwk();
        jwk["d"] = json!(self.d);
        jwk
    }

    /// The signature of `input`, base64url.
    fn sign(&self, input: &str) -> String {
        let bytes = match &self.signing {
            Signer::P256(key) => {
                let signature: Signature = key.sign(input.as_bytes());
                signature.to_bytes().to_vec()
            }
            Signer::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                key.sign(input.as_bytes()).to_bytes().to_vec()
            }
        };
        URL_SAFE_NO_PAD.encode(bytes)
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
    /// With the key, in its algorithm (the only valid way).
    Key,
    /// By another key of the same kind than the one in `jwk`.
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
            header: json!({"typ": "dpop+jwt"}),
            claims: json!({"jti": jti(), "htm": htm, "htu": htu, "iat": now()}),
            signing: Signing::Key,
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

    /// Signs; the header gets the key's algorithm and public JWK unless they were set.
    pub fn sign(mut self, key: &Key) -> String {
        if self.header.get("jwk").is_none() {
            self.header["jwk"] = key.jwk();
        }
        if self.header.get("alg").is_none() {
            self.header["alg"] = json!(key.alg());
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
            Signing::Key => key.sign(&input),
            Signing::OtherKey => match key.signing {
                Signer::P256(_) => Key::random().sign(&input),
                Signer::Ed25519(_) => Key::ed25519().sign(&input),
            },
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
