//! [`TokenSet`]: an access token, an optional refresh token and when the access token expires.

use crate::jwt;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::{Duration, SystemTime};

/// Token responses larger than this are refused rather than parsed.
const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// One access token with its refresh token and expiry, as received from the auth server.
///
/// Both secrets live in [`SecretString`]s: `Debug` prints `[REDACTED]`, and they are zeroed on
/// drop. Expiry is kept on the *local* clock, computed at receipt from the token's lifetime
/// (`expires_in`, or JWT `exp - iat`), so a skewed server clock does not matter.
///
/// ```
/// use std::time::Duration;
/// use tokenkeeper::TokenSet;
///
/// let tokens = TokenSet::new("access-token")
///     .with_refresh_token("refresh-token")
///     .with_expires_in(Duration::from_secs(300));
/// assert!(tokens.expires_at().is_some());
/// assert!(!format!("{tokens:?}").contains("access-token"));
/// ```
#[derive(Clone)]
pub struct TokenSet {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    received_at: SystemTime,
    expires_at: Option<SystemTime>,
    /// `token_type` was `DPoP` (RFC 9449): the access token is only ever sent with a proof.
    dpop_bound: bool,
    /// The login's DPoP key, which travels with the tokens (and into the stores).
    #[cfg(feature = "dpop")]
    dpop_key: Option<crate::dpop::DpopKey>,
}

impl TokenSet {
    /// A token set received now. If the access token is a JWT with `exp` and `iat`, its expiry
    /// is taken from them (measured from now); otherwise the expiry is unknown until
    /// [`with_expires_in`](Self::with_expires_in) says otherwise.
    pub fn new(access_token: impl Into<String>) -> Self {
        let access_token: String = access_token.into();
        let received_at = SystemTime::now();
        let expires_at = jwt::timing_claims(&access_token)
            .and_then(|claims| claims.lifetime())
            .and_then(|lifetime| received_at.checked_add(lifetime));
        Self {
            access_token: SecretString::from(access_token),
            refresh_token: None,
            received_at,
            expires_at,
            dpop_bound: false,
            #[cfg(feature = "dpop")]
            dpop_key: None,
        }
    }

    /// Rebuilds a token set exactly as it was recorded, e.g. by a [`TokenStore`](crate::store::TokenStore).
    pub fn from_parts(
        access_token: SecretString,
        refresh_token: Option<SecretString>,
        received_at: SystemTime,
        expires_at: Option<SystemTime>,
    ) -> Self {
        Self {
            access_token,
            refresh_token,
            received_at,
            expires_at,
            dpop_bound: false,
            #[cfg(feature = "dpop")]
            dpop_key: None,
        }
    }

    /// Sets the refresh token.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<String>) -> Self {
        self.refresh_token = Some(SecretString::from(refresh_token.into()));
        self
    }

    /// Sets the refresh token, or removes it with `None`.
    pub fn with_refresh_secret(mut self, refresh_token: Option<SecretString>) -> Self {
        self.refresh_token = refresh_token;
        self
    }

    /// Sets the lifetime of the access token, counted from when this set was received.
    pub fn with_expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_at = self.received_at.checked_add(lifetime);
        self
    }

    /// Marks the access token as DPoP-bound (`token_type: DPoP`, RFC 9449) or not. A bound token
    /// is only ever sent as `Authorization: DPoP …` with a proof signed by the set's
    /// [`dpop_key`](Self::dpop_key); a bound set without a key is refused, never sent as a
    /// bearer token. [`from_response`](Self::from_response) sets it from `token_type`.
    pub fn with_dpop_bound(mut self, bound: bool) -> Self {
        self.dpop_bound = bound;
        self
    }

    /// Whether the access token is DPoP-bound (see [`with_dpop_bound`](Self::with_dpop_bound)).
    pub fn is_dpop_bound(&self) -> bool {
        self.dpop_bound
    }

    /// Attaches the login's DPoP key: proofs for this set's requests and refreshes are signed
    /// with it, and stores save it with the pair.
    ///
    /// ```
    /// use tokenkeeper::{dpop::DpopKey, TokenSet};
    ///
    /// let key = DpopKey::generate();
    /// let tokens = TokenSet::from_response(br#"{"access_token":"a","token_type":"DPoP"}"#)?
    ///     .with_dpop_key(key.clone());
    /// assert!(tokens.is_dpop_bound());
    /// assert_eq!(tokens.dpop_key().map(DpopKey::thumbprint), Some(key.thumbprint()));
    /// # Ok::<(), tokenkeeper::TokenError>(())
    /// ```
    #[cfg(feature = "dpop")]
    pub fn with_dpop_key(mut self, key: crate::dpop::DpopKey) -> Self {
        self.dpop_key = Some(key);
        self
    }

    /// The login's DPoP key, if it has one.
    #[cfg(feature = "dpop")]
    pub fn dpop_key(&self) -> Option<&crate::dpop::DpopKey> {
        self.dpop_key.as_ref()
    }

    /// Parses a login or refresh response body.
    ///
    /// Accepts the OAuth 2.0 names (`access_token`, `refresh_token`, `expires_in`) and the
    /// camelCase ones (`accessToken`, `refreshToken`, `expiresIn`); `expires_in` may be a number
    /// or a numeric string. Without it, the JWT claims are used. A `token_type` of `DPoP` marks
    /// the access token DPoP-bound ([`is_dpop_bound`](Self::is_dpop_bound)).
    ///
    /// ```
    /// let tokens = tokenkeeper::TokenSet::from_response(
    ///     br#"{"access_token":"a","token_type":"Bearer","expires_in":3600,"refresh_token":"r"}"#,
    /// )?;
    /// assert!(tokens.refresh_token().is_some());
    /// # Ok::<(), tokenkeeper::TokenError>(())
    /// ```
    pub fn from_response(body: &[u8]) -> Result<Self, TokenError> {
        if body.len() > MAX_RESPONSE_LEN {
            return Err(TokenError::TooLarge { len: body.len() });
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| TokenError::NotJson)?;
        Self::from_json(&value)
    }

    /// Like [`from_response`](Self::from_response), for an already parsed JSON value.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, TokenError> {
        let object = value.as_object().ok_or(TokenError::NotAnObject)?;
        let field = |snake: &str, camel: &str| object.get(snake).or_else(|| object.get(camel));
        let access = match field("access_token", "accessToken") {
            Some(serde_json::Value::String(s)) if is_plausible_token(s) => s.clone(),
            Some(_) => return Err(TokenError::InvalidField("access_token")),
            None => return Err(TokenError::MissingAccessToken),
        };
        let mut tokens = Self::new(access);
        if let Some(serde_json::Value::String(kind)) = field("token_type", "tokenType") {
            tokens.dpop_bound = kind.eq_ignore_ascii_case("dpop");
        }
        match field("refresh_token", "refreshToken") {
            Some(serde_json::Value::String(s)) if is_plausible_token(s) => {
                tokens = tokens.with_refresh_token(s.clone());
            }
            None | Some(serde_json::Value::Null) => {}
            Some(_) => return Err(TokenError::InvalidField("refresh_token")),
        }
        match field("expires_in", "expiresIn").map(parse_lifetime) {
            None | Some(Lifetime::Absent) => {}
            Some(Lifetime::Seconds(lifetime)) => tokens = tokens.with_expires_in(lifetime),
            // Every strategy parses through here, so all of them ignore a bad value alike: the
            // JWT claims (or 401s) decide instead. Never a reason to refuse fresh tokens.
            Some(Lifetime::Unusable) => {
                tracing::warn!(
                    "ignoring an unusable `expires_in` (negative, absurd or not a number)"
                );
            }
        }
        Ok(tokens)
    }

    /// The access token. Call [`ExposeSecret::expose_secret`] only where it is sent.
    pub fn access_token(&self) -> &SecretString {
        &self.access_token
    }

    /// The refresh token, if the server issued one (the cookie contract keeps it in a cookie jar).
    pub fn refresh_token(&self) -> Option<&SecretString> {
        self.refresh_token.as_ref()
    }

    /// When this set was received, on the local clock.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// When the access token expires, on the local clock, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The lifetime the issuer gave the access token, if known.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at?.duration_since(self.received_at).ok()
    }

    /// Counts the lifetime from `sent_at`, the moment the request that obtained this set left,
    /// when that is earlier than when its answer was read. The server issued the token no
    /// earlier than it received the request, so the expiry is then never later than the
    /// server's, however long the answer took to reach us and be read (on a saturated machine,
    /// long enough to outlast the safety margin before expiry).
    pub(crate) fn counted_from(mut self, sent_at: SystemTime) -> Self {
        if let Ok(late) = self.received_at.duration_since(sent_at) {
            self.received_at = sent_at;
            self.expires_at = self.expires_at.and_then(|at| at.checked_sub(late));
        }
        self
    }

    /// Whether both tokens are the same secrets as `other`'s (constant-time comparison is not
    /// needed: both sides are ours).
    pub(crate) fn same_secrets(&self, other: &TokenSet) -> bool {
        self.access_token.expose_secret() == other.access_token.expose_secret()
            && self.refresh_token.as_ref().map(ExposeSecret::expose_secret)
                == other
                    .refresh_token
                    .as_ref()
                    .map(ExposeSecret::expose_secret)
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("TokenSet");
        debug
            .field("access_token", &"[REDACTED]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("received_at", &self.received_at)
            .field("expires_at", &self.expires_at)
            .field("dpop_bound", &self.dpop_bound);
        // The key's `Debug` shows its thumbprint only.
        #[cfg(feature = "dpop")]
        debug.field("dpop_key", &self.dpop_key);
        debug.finish()
    }
}

/// A token must fit in an HTTP header: non-empty, visible ASCII, bounded.
fn is_plausible_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 16 * 1024
        && token.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// Lifetimes beyond this are absurd for an access token and ignored.
const MAX_LIFETIME_SECS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

enum Lifetime {
    Absent,
    Seconds(Duration),
    Unusable,
}

fn parse_lifetime(value: &serde_json::Value) -> Lifetime {
    let secs = match value {
        serde_json::Value::Null => return Lifetime::Absent,
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(secs) if secs.is_finite() && (0.0..=MAX_LIFETIME_SECS).contains(&secs) => {
            Lifetime::Seconds(Duration::from_secs_f64(secs))
        }
        _ => Lifetime::Unusable,
    }
}

/// Why a login or refresh response could not be turned into a [`TokenSet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The body is not JSON.
    #[error("token response is not JSON")]
    NotJson,
    /// The body is JSON but not an object.
    #[error("token response is not a JSON object")]
    NotAnObject,
    /// No `access_token` / `accessToken` field.
    #[error("token response has no access token")]
    MissingAccessToken,
    /// A field has the wrong type or an unusable value.
    #[error("token response field `{0}` is malformed")]
    InvalidField(&'static str),
    /// The body is larger than any token response should be.
    #[error("token response is too large ({len} bytes)")]
    TooLarge {
        /// Size of the refused body.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn camel_and_snake_case_are_both_read() {
        let snake = TokenSet::from_response(br#"{"access_token":"a","expires_in":"60"}"#).unwrap();
        let camel =
            TokenSet::from_response(br#"{"accessToken":"a","refreshToken":"r","expiresIn":1.5}"#)
                .unwrap();
        assert_eq!(snake.lifetime(), Some(Duration::from_secs(60)));
        assert_eq!(camel.lifetime(), Some(Duration::from_millis(1500)));
        assert!(camel.refresh_token().is_some());
    }

    #[test]
    fn jwt_claims_give_the_lifetime_when_expires_in_is_absent() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"iat":10,"exp":13}"#);
        let tokens = TokenSet::new(format!("e30.{payload}.sig"));
        assert_eq!(tokens.lifetime(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn malformed_responses_are_typed_errors() {
        let cases: [(&[u8], TokenError); 5] = [
            (b"<html>", TokenError::NotJson),
            (b"[]", TokenError::NotAnObject),
            (b"{}", TokenError::MissingAccessToken),
            (
                br#"{"access_token":5}"#,
                TokenError::InvalidField("access_token"),
            ),
            (
                br#"{"access_token":"has space"}"#,
                TokenError::InvalidField("access_token"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(TokenSet::from_response(body).unwrap_err(), expected);
        }
        let huge = vec![b' '; MAX_RESPONSE_LEN + 1];
        assert!(matches!(
            TokenSet::from_response(&huge),
            Err(TokenError::TooLarge { .. })
        ));
    }

    #[test]
    fn unusable_expires_in_is_ignored_not_fatal() {
        for body in [
            &br#"{"access_token":"a","expires_in":-1}"#[..],
            br#"{"access_token":"a","expires_in":1e300}"#,
            br#"{"access_token":"a","expires_in":"soon"}"#,
            br#"{"access_token":"a","expires_in":true}"#,
            br#"{"access_token":"a","expires_in":{"s":1}}"#,
            br#"{"accessToken":"a","expiresIn":-5}"#,
        ] {
            let tokens = TokenSet::from_response(body).unwrap();
            assert_eq!(tokens.lifetime(), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn debug_redacts_both_secrets() {
        let tokens = TokenSet::new("sekrit-access").with_refresh_token("sekrit-refresh");
        let debug = format!("{tokens:?}");
        assert!(!debug.contains("sekrit"), "{debug}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = TokenSet::from_response(&body);
        }

        #[test]
        fn parsing_arbitrary_json_never_panics_and_redacts(
            access in "tk_[A-Za-z0-9]{8,40}",
            refresh in proptest::option::of("tk_[A-Za-z0-9]{8,40}"),
            expires in proptest::option::of(proptest::num::f64::ANY),
        ) {
            let body = serde_json::json!({"access_token": access, "refresh_token": refresh, "expires_in": expires});
            if let Ok(tokens) = TokenSet::from_json(&body) {
                let debug = format!("{tokens:?}");
                proptest::prop_assert!(!debug.contains(&access));
                proptest::prop_assert!(refresh.as_ref().is_none_or(|r| !debug.contains(r.as_str())));
            }
        }
    }
}
