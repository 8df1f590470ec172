//! Reads the lifetime out of a JWT access token without verifying it.
//!
//! A client cannot verify the signature (it does not hold the key) and does not need to: the
//! claims are only used to schedule refreshes. A wrong or missing claim only makes the session
//! fall back to reacting to 401s, it never grants anything.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::time::Duration;

/// Tokens longer than this are not decoded: a hostile token must not cost unbounded memory.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The timing claims of a JWT payload. NumericDates may be fractional (RFC 7519 §2).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub(crate) struct TimingClaims {
    pub(crate) exp: Option<f64>,
    pub(crate) iat: Option<f64>,
}

impl TimingClaims {
    /// The lifetime the issuer gave the token (`exp - iat`), independent of either clock.
    pub(crate) fn lifetime(&self) -> Option<Duration> {
        let (exp, iat) = (self.exp?, self.iat?);
        let secs = exp - iat;
        (secs.is_finite() && secs > 0.0 && secs < MAX_LIFETIME_SECS)
            .then(|| Duration::from_secs_f64(secs))
    }
}

/// Ten years: anything longer is treated as "no usable expiry".
const MAX_LIFETIME_SECS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

/// Decodes the payload of a compact JWS without checking its signature.
/// Returns `None` for anything that is not a JWT with a JSON object payload.
pub(crate) fn timing_claims(token: &str) -> Option<TimingClaims> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // Some issuers pad their base64url; RFC 7515 says they should not, so tolerate both.
    let payload = payload.trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let object = value.as_object()?;
    let number = |name: &str| object.get(name).and_then(serde_json::Value::as_f64);
    Some(TimingClaims {
        exp: number("exp"),
        iat: number("iat"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn lifetime_is_exp_minus_iat() {
        let claims = timing_claims(&jwt(r#"{"exp":1000.5,"iat":998}"#)).unwrap();
        assert_eq!(claims.lifetime(), Some(Duration::from_millis(2500)));
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for token in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "e30.@@@.x",
            &jwt("[1,2]"),
            &jwt("nul"),
        ] {
            assert_eq!(timing_claims(token), None, "{token}");
        }
    }

    #[test]
    fn negative_or_absurd_lifetimes_are_ignored() {
        for payload in [
            r#"{"exp":1,"iat":2}"#,
            r#"{"exp":1e300,"iat":0}"#,
            r#"{"exp":"x","iat":0}"#,
        ] {
            let lifetime = timing_claims(&jwt(payload)).and_then(|c| c.lifetime());
            assert_eq!(lifetime, None, "{payload}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(token in ".{0,300}") {
            let _ = timing_claims(&token).and_then(|c| c.lifetime());
        }

        #[test]
        fn decoding_any_payload_never_panics(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let token = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(&payload));
            let _ = timing_claims(&token).and_then(|c| c.lifetime());
        }

        #[test]
        fn lifetimes_round_trip(iat in 0u32..2_000_000_000, lifetime_ms in 1u32..100_000_000) {
            let exp = f64::from(iat) + f64::from(lifetime_ms) / 1000.0;
            let token = jwt(&format!(r#"{{"iat":{iat},"exp":{exp}}}"#));
            let lifetime = timing_claims(&token).and_then(|c| c.lifetime()).unwrap();
            proptest::prop_assert!((lifetime.as_secs_f64() - f64::from(lifetime_ms) / 1000.0).abs() < 1e-3);
        }
    }
}
