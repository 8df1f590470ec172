//! Server-provided nonces (RFC 9449 §8, §9): the latest `DPoP-Nonce` per origin, and the two
//! ways a server demands one.

use crate::classify::www_authenticate::challenge_error;
use http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use url::Url;

/// The response header that carries a nonce.
pub(crate) const DPOP_NONCE: &str = "dpop-nonce";

/// Nonces longer than this are ignored: no server needs them, and each is sent in every proof.
const MAX_NONCE_LEN: usize = 512;

/// At most this many origins are remembered; past it the map starts over (a client talks to a
/// handful of origins; a hostile redirect chain must not grow it without bound).
const MAX_ORIGINS: usize = 256;

/// The latest nonce each origin handed out. The lock is never held across an await.
#[derive(Debug, Default)]
pub(crate) struct Nonces {
    by_origin: Mutex<HashMap<String, String>>,
}

impl Nonces {
    /// The nonce `url`'s origin handed out last.
    pub(crate) fn get(&self, url: &Url) -> Option<String> {
        let map = self
            .by_origin
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return None;
        }
        map.get(&url.origin().ascii_serialization()).cloned()
    }

    /// Remembers `nonce` for `url`'s origin; returns whether it was a usable nonce.
    pub(crate) fn remember(&self, url: &Url, nonce: &str) -> bool {
        if !is_nonce(nonce) {
            return false;
        }
        let origin = url.origin().ascii_serialization();
        let mut map = self
            .by_origin
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ORIGINS && !map.contains_key(&origin) {
            map.clear();
        }
        match map.get_mut(&origin) {
            Some(kept) if kept == nonce => {}
            Some(kept) => nonce.clone_into(kept),
            None => {
                map.insert(origin, nonce.to_owned());
            }
        }
        true
    }

    /// Takes the `DPoP-Nonce` of a response from `url`'s origin, if it has one. Returns
    /// whether it had a usable one.
    pub(crate) fn take_from(&self, url: &Url, headers: &HeaderMap) -> bool {
        headers
            .get(DPOP_NONCE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|nonce| self.remember(url, nonce))
    }
}

/// RFC 9449 §8.1: `nonce = 1*NQCHAR` (visible ASCII but `"` and `\`).
fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// A resource server's demand for a nonce (RFC 9449 §9): `401` with
/// `WWW-Authenticate: DPoP error="use_dpop_nonce"`.
pub(crate) fn is_resource_challenge(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        && headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| challenge_error(value, "dpop").as_deref() == Some("use_dpop_nonce"))
}

/// A token endpoint's demand for a nonce (RFC 9449 §8): `400 {"error":"use_dpop_nonce"}`.
/// (The token endpoint strategies need feature `reqwest`.)
#[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
pub(crate) fn is_token_endpoint_challenge(status: StatusCode, body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct ErrorBody<'a> {
        #[serde(borrow)]
        error: Option<std::borrow::Cow<'a, str>>,
    }
    status == StatusCode::BAD_REQUEST
        && serde_json::from_slice::<ErrorBody<'_>>(body)
            .ok()
            .and_then(|body| body.error)
            .is_some_and(|error| error == "use_dpop_nonce")
}

impl super::DpopKey {
    /// Remembers a nonce `url`'s origin handed out (its `DPoP-Nonce` header), for the next
    /// proofs to that origin. The adapters and the token endpoint do this for every response;
    /// this is for requests sent some other way. An unusable value (empty, too long, not
    /// `NQCHAR`s) is ignored and `false` returned.
    ///
    /// ```
    /// let key = tokenkeeper::dpop::DpopKey::generate();
    /// let url = "https://api.example.com/items".parse()?;
    /// assert!(key.remember_nonce(&url, "eyJ7S_zG.eyJH0-Z.HX4w-7v"));
    /// assert!(!key.remember_nonce(&url, "no spaces"));
    /// # Ok::<(), url::ParseError>(())
    /// ```
    pub fn remember_nonce(&self, url: &Url, nonce: &str) -> bool {
        self.nonces().remember(url, nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn nonces_are_per_origin_and_the_latest_wins() {
        let nonces = Nonces::default();
        let a = Url::parse("https://a.example.com/token").unwrap();
        let a_api = Url::parse("https://a.example.com/api/x?y").unwrap();
        let b = Url::parse("https://b.example.com/").unwrap();
        assert!(nonces.remember(&a, "n1"));
        assert!(nonces.remember(&a, "n2"));
        assert_eq!(nonces.get(&a_api).as_deref(), Some("n2"));
        assert_eq!(nonces.get(&b), None);
        for bad in ["", "has space", "quote\"", "back\\slash", &"x".repeat(513)] {
            assert!(!nonces.remember(&b, bad), "{bad}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n3"));
        assert!(nonces.take_from(&b, &headers));
        assert_eq!(nonces.get(&b).as_deref(), Some("n3"));
    }

    #[test]
    fn the_map_stays_bounded() {
        let nonces = Nonces::default();
        for i in 0..(MAX_ORIGINS * 3) {
            let url = Url::parse(&format!("https://h{i}.example.com/")).unwrap();
            nonces.remember(&url, "n");
        }
        let len = nonces.by_origin.lock().unwrap().len();
        assert!(len <= MAX_ORIGINS, "{len}");
    }

    #[test]
    fn challenges_are_recognised_and_nothing_else() {
        let challenge = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(value),
            );
            headers
        };
        let yes = challenge(
            r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
        );
        assert!(is_resource_challenge(StatusCode::UNAUTHORIZED, &yes));
        assert!(!is_resource_challenge(StatusCode::BAD_REQUEST, &yes));
        let both = challenge(r#"Bearer realm="x", DPoP algs="ES256", error="use_dpop_nonce""#);
        assert!(is_resource_challenge(StatusCode::UNAUTHORIZED, &both));
        for no in [
            r#"DPoP error="invalid_token""#,
            r#"Bearer error="use_dpop_nonce""#,
            "DPoP",
        ] {
            assert!(
                !is_resource_challenge(StatusCode::UNAUTHORIZED, &challenge(no)),
                "{no}"
            );
        }
        assert!(is_token_endpoint_challenge(
            StatusCode::BAD_REQUEST,
            br#"{"error":"use_dpop_nonce","error_description":"x"}"#
        ));
        assert!(!is_token_endpoint_challenge(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant"}"#
        ));
        assert!(!is_token_endpoint_challenge(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"use_dpop_nonce"}"#
        ));
        assert!(!is_token_endpoint_challenge(
            StatusCode::BAD_REQUEST,
            b"<html>"
        ));
    }
}
