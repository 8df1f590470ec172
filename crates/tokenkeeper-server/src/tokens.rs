//! Minting and checking access tokens: HS256 JWTs with fractional NumericDates. Refresh
//! tokens are made by [`crate::refresh_tokens`].

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

/// The refresh contract a token was issued under (JWT claim `sty`). It decides
/// how the protected API words its 401s for that token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Contract {
    /// RFC 6749 / RFC 6750: `POST /oauth2/token`, `WWW-Authenticate` errors.
    #[default]
    #[serde(rename = "oauth2")]
    OAuth2,
    /// `POST /refresh/token` with a JSON body; `{"message": ...}` errors.
    #[serde(rename = "json")]
    Json,
    /// `POST /api/refresh-token` with tokens in headers; plain-text errors.
    #[serde(rename = "header")]
    Header,
    /// `POST /v3/jwt/reissue` with the refresh token in a cookie;
    /// `{"result":{"errorCode": ...}}` errors.
    #[serde(rename = "cookie")]
    Cookie,
}

impl Contract {
    /// Every style, in a stable order.
    pub const ALL: [Contract; 4] = [
        Contract::OAuth2,
        Contract::Json,
        Contract::Header,
        Contract::Cookie,
    ];

    /// The wire name: `oauth2`, `json`, `header` or `cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::OAuth2 => "oauth2",
            Contract::Json => "json",
            Contract::Header => "header",
            Contract::Cookie => "cookie",
        }
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a style name that is none of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown style {0:?}: expected oauth2, json, header or cookie")]
pub struct UnknownContract(pub String);

impl FromStr for Contract {
    type Err = UnknownContract;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Contract::ALL
            .into_iter()
            .find(|style| style.as_str() == s)
            .ok_or_else(|| UnknownContract(s.to_owned()))
    }
}

/// The claims of an access token.
///
/// `iat` and `exp` are NumericDates with a fractional part (RFC 7519 allows
/// non-integer values), so sub-second TTLs are exact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The username.
    pub sub: String,
    /// Issued at, seconds since the Unix epoch (fractional).
    pub iat: f64,
    /// Expires at, seconds since the Unix epoch (fractional).
    pub exp: f64,
    /// Random token id.
    pub jti: String,
    /// Id of the refresh-token family (session) the token belongs to.
    pub fam: String,
    /// The contract the token was issued under.
    pub sty: Contract,
    /// The key the token is bound to (DPoP, RFC 9449 §6.1); absent for bearer tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` (confirmation) claim of a DPoP-bound access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 SHA-256 thumbprint of the client's public key, base64url.
    pub jkt: String,
}

/// An access token and the refresh token issued with it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct IssuedPair {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    /// The access token is DPoP-bound (`token_type: DPoP`).
    pub(crate) dpop_bound: bool,
}

impl fmt::Debug for IssuedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuedPair(<redacted>)")
    }
}

/// What the protected API learns from an access token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AccessCheck {
    /// Good signature, not expired (revocation is checked by the caller).
    Valid(AccessClaims),
    /// Good signature, past `exp`.
    Expired(AccessClaims),
    /// Not a token we signed. Carries the style read (unverified) from the
    /// payload, only to word the 401; OAuth2 when unreadable.
    Invalid(Contract),
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Signs and verifies access tokens.
pub(crate) struct TokenMinter {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    header: Header,
    /// Nanoseconds; live, so an operator (or a test) can change the lifetime of tokens issued
    /// from now on without restarting the server.
    access_ttl_nanos: AtomicU64,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("access_ttl", &self.access_ttl())
            .finish_non_exhaustive()
    }
}

impl TokenMinter {
    /// A minter signing with `secret`.
    pub(crate) fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` is fractional and checked by us with sub-second precision.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            header: Header::new(Algorithm::HS256),
            access_ttl_nanos: AtomicU64::new(nanos(access_ttl)),
        }
    }

    /// The lifetime of access tokens issued now.
    pub(crate) fn access_ttl(&self) -> Duration {
        Duration::from_nanos(self.access_ttl_nanos.load(Ordering::Relaxed))
    }

    /// Changes the lifetime of access tokens issued from now on.
    pub(crate) fn set_access_ttl(&self, ttl: Duration) {
        self.access_ttl_nanos.store(nanos(ttl), Ordering::Relaxed);
    }

    /// Signs a new access token for `sub` in family `fam`, bound to the key with thumbprint
    /// `jkt` when there is one.
    pub(crate) fn mint_access(
        &self,
        sub: &str,
        fam: &str,
        sty: Contract,
        jkt: Option<&str>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = unix_now();
        let claims = AccessClaims {
            sub: sub.to_owned(),
            iat,
            exp: iat + self.access_ttl().as_secs_f64(),
            jti: random_token(16),
            fam: fam.to_owned(),
            sty,
            cnf: jkt.map(|jkt| Confirmation {
                jkt: jkt.to_owned(),
            }),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.encoding)
    }

    /// Verifies `token`'s signature and checks its expiry against `now`
    /// (seconds since the Unix epoch).
    pub(crate) fn check(&self, token: &str, now: f64) -> AccessCheck {
        match jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation) {
            Ok(data) if data.claims.exp.is_finite() && now < data.claims.exp => {
                AccessCheck::Valid(data.claims)
            }
            Ok(data) => AccessCheck::Expired(data.claims),
            Err(_) => AccessCheck::Invalid(unverified_style(token)),
        }
    }
}

/// Reads the `sty` claim without verifying anything, for wording a 401.
fn unverified_style(token: &str) -> Contract {
    #[derive(Deserialize)]
    struct StyleOnly {
        sty: Contract,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<StyleOnly>(token)
        .map(|claims| claims.sty)
        .unwrap_or_default()
}

/// Now, as fractional seconds since the Unix epoch.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `bytes` random bytes, base64url without padding.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A JSON number of seconds: an integer when whole, fractional otherwise.
pub(crate) fn seconds_json(duration: Duration) -> serde_json::Value {
    if duration.subsec_nanos() == 0 {
        serde_json::Value::from(duration.as_secs())
    } else {
        serde_json::Value::from(duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minter() -> TokenMinter {
        TokenMinter::new(b"test-secret", Duration::from_millis(1500))
    }

    #[test]
    fn mints_fractional_exp_and_checks_it() {
        let m = minter();
        let token = m.mint_access("demo", "fam1", Contract::Json, None).unwrap();
        let now = unix_now();
        let AccessCheck::Valid(claims) = m.check(&token, now) else {
            panic!("fresh token must be valid");
        };
        assert_eq!(claims.sub, "demo");
        assert_eq!(claims.fam, "fam1");
        assert_eq!(claims.sty, Contract::Json);
        assert!((claims.exp - claims.iat - 1.5).abs() < 1e-6);
        assert!(matches!(
            m.check(&token, claims.exp + 0.001),
            AccessCheck::Expired(_)
        ));
        assert!(matches!(
            m.check(&token, claims.exp - 0.001),
            AccessCheck::Valid(_)
        ));
    }

    #[test]
    fn forged_token_is_invalid_but_keeps_its_style_for_wording() {
        let other = TokenMinter::new(b"other-secret", Duration::from_secs(5));
        let token = other
            .mint_access("demo", "f", Contract::Cookie, None)
            .unwrap();
        assert_eq!(
            minter().check(&token, unix_now()),
            AccessCheck::Invalid(Contract::Cookie)
        );
        assert_eq!(
            minter().check("garbage", unix_now()),
            AccessCheck::Invalid(Contract::OAuth2)
        );
    }

    #[test]
    fn style_round_trips() {
        for style in Contract::ALL {
            assert_eq!(style.as_str().parse::<Contract>(), Ok(style));
        }
        assert!("OAuth2".parse::<Contract>().is_err());
    }

    #[test]
    fn seconds_are_integers_when_whole() {
        assert_eq!(seconds_json(Duration::from_secs(2)).to_string(), "2");
        assert_eq!(seconds_json(Duration::from_millis(1500)).to_string(), "1.5");
    }
}
