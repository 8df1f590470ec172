//! Reads a response to a token-bearing request: was the token refused, and why.
//!
//! The default ([`Classifier::default`]) follows RFC 6750: a 401 on a request that carried our
//! token means "refresh and retry" (`error="invalid_token"` covers both expired and revoked
//! tokens; one refresh tells them apart), and `insufficient_scope` never triggers a refresh.
//! It never reads a body.
//!
//! [`rules`] adds the conventions APIs use in their bodies; rules are tried in order and the
//! first that recognises the response decides. Which set matches which server:
//!
//! | rule set | recognises in a 401 | verdicts | servers that speak it |
//! |---|---|---|---|
//! | [`rules::rfc6750_challenge`] | `WWW-Authenticate: Bearer error="invalid_token"` / `"insufficient_scope"` | refresh / accept | OAuth 2.0 resource servers; the reference server's oauth2 contract |
//! | [`rules::plain_text_errors`] | a body that is one word: `ExpiredToken`, `InvalidToken` (and `TokenExpired`, `InvalidTokenError`, …) | refresh / invalid | the header-contract article's server (`data === "ExpiredToken"`); the reference server's header contract |
//! | [`rules::jsonwebtoken_errors`] | `{"message":"TokenExpiredError"}`, `{"name":"JsonWebTokenError",…}`, `jwt expired` | refresh / invalid | Express + `jsonwebtoken` servers, the json-contract article's server; the reference server's json contract |
//! | [`rules::result_error_code`] | `{"result":{"errorCode":"INVALID_TOKEN"}}` / `EXPIRED_TOKEN` | refresh (both) | the react-query article's server (`INVALID_TOKEN` for an expired token, a per-URL counter); the reference server's cookie contract |
//! | [`rules::well_known`] = [`Classifier::well_known`] | all of the above, RFC 6750 first | | an API whose wording you do not know |
//! | none ([`Classifier::default`]) | any 401 | refresh | the cookie-reissue and shared-promise articles' servers (every 401 refreshes) |
//!
//! "Invalid" ends the session at once, without a refresh call; use it only for APIs that say so
//! deliberately (the header-contract article's client logs out on `InvalidToken`).
//! [`rules::status`], [`rules::json_field`], [`rules::body_text`] and [`rules::from_fn`] cover
//! other wordings; [`rules::grpc_unauthenticated`] covers gRPC.
//!
//! ```
//! use tokenkeeper::classify::{rules, Classifier, Verdict};
//!
//! // An API that words its 401s the way the reference server's header contract does, plus a
//! // custom code of its own.
//! let classifier = Classifier::default()
//!     .rule(rules::rfc6750_challenge())
//!     .rule(rules::plain_text_errors())
//!     .rule(rules::json_field("/code", "SESSION_REVOKED", Verdict::Invalid));
//! # let _ = classifier;
//! ```

pub mod rules;
mod www_authenticate;

use http::{HeaderMap, StatusCode};
use std::fmt;
use std::sync::Arc;

/// Bodies are read for classification only up to this size; the rest is handed back unread.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024;

/// What a response says about the token it was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Not an authentication failure: hand the response to the caller.
    Accept,
    /// The token was refused in a way a refresh can fix: refresh, then retry once.
    Refresh,
    /// The token is invalid (not merely expired): end the session without refreshing.
    Invalid,
}

/// What a [`Rule`] sees of a response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The first bytes of the body (up to the classifier's limit), when a rule asked for it.
    pub body: &'a [u8],
}

/// One way of recognising an authentication failure.
pub trait Rule: Send + Sync + 'static {
    /// `Some(verdict)` when this rule recognises the response, `None` to let the next rule decide.
    fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict>;

    /// Whether this rule can say anything about a response with this status.
    /// Responses no rule applies to are accepted without reading their body.
    ///
    /// Asked for every status code once, when the rule is added to a [`Classifier`] (which
    /// keeps the answers, so the per-response check is a bit test): the answer must depend on
    /// the status only.
    fn applies_to(&self, status: StatusCode) -> bool {
        status == StatusCode::UNAUTHORIZED
    }

    /// Whether [`classify`](Self::classify) looks at the body. Asked once, like
    /// [`applies_to`](Self::applies_to).
    fn needs_body(&self) -> bool {
        false
    }
}

/// A set of status codes (100–999), one bit each.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct StatusSet([u64; 15]);

impl StatusSet {
    fn slot(status: StatusCode) -> Option<(usize, u64)> {
        // `StatusCode` holds 100..=999, so the index is below 900 < 15 × 64.
        let index = usize::from(status.as_u16()).checked_sub(100)?;
        Some((index / 64, 1 << (index % 64)))
    }

    fn insert(&mut self, status: StatusCode) {
        if let Some((word, bit)) = Self::slot(status)
            && let Some(word) = self.0.get_mut(word)
        {
            *word |= bit;
        }
    }

    fn contains(&self, status: StatusCode) -> bool {
        Self::slot(status)
            .and_then(|(word, bit)| Some(self.0.get(word)? & bit != 0))
            .unwrap_or(false)
    }

    /// Every status code for which `applies` holds.
    fn of(applies: impl Fn(StatusCode) -> bool) -> Self {
        let mut set = Self::default();
        for status in (100..1000).filter_map(|code| StatusCode::from_u16(code).ok()) {
            if applies(status) {
                set.insert(status);
            }
        }
        set
    }

    fn union(mut self, other: Self) -> Self {
        for (word, other) in self.0.iter_mut().zip(other.0) {
            *word |= other;
        }
        self
    }
}

/// An ordered list of [`Rule`]s, then the RFC 6750 default.
#[derive(Clone)]
pub struct Classifier {
    rules: Vec<Arc<dyn Rule>>,
    body_limit: usize,
    /// The statuses some rule (or the RFC 6750 default, for 401) applies to: every other
    /// response is accepted at once. Kept up to date by [`Classifier::rule`].
    candidates: StatusSet,
    /// The statuses some rule that reads the body applies to.
    needs_body: StatusSet,
}

impl Default for Classifier {
    fn default() -> Self {
        let mut candidates = StatusSet::default();
        candidates.insert(StatusCode::UNAUTHORIZED);
        Self {
            rules: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            candidates,
            needs_body: StatusSet::default(),
        }
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("rules", &self.rules.len())
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl Classifier {
    /// RFC 6750 plus every built-in body convention: `Classifier::default().rule(rules::well_known())`.
    /// See the [module docs](self) for what it recognises.
    ///
    /// ```
    /// use tokenkeeper::classify::{Classifier, ResponseView, Verdict};
    /// use http::{HeaderMap, StatusCode};
    ///
    /// let classifier = Classifier::well_known();
    /// let headers = HeaderMap::new();
    /// let view = |body: &'static [u8]| ResponseView { status: StatusCode::UNAUTHORIZED, headers: &headers, body };
    /// assert_eq!(classifier.classify(&view(b"ExpiredToken")), Verdict::Refresh);
    /// assert_eq!(classifier.classify(&view(b"InvalidToken")), Verdict::Invalid);
    /// assert_eq!(classifier.classify(&view(br#"{"message":"TokenExpiredError"}"#)), Verdict::Refresh);
    /// assert_eq!(classifier.classify(&view(br#"{"result":{"errorCode":"INVALID_TOKEN"}}"#)), Verdict::Refresh);
    /// ```
    pub fn well_known() -> Self {
        Self::default().rule(rules::well_known())
    }

    /// Adds a rule, tried after the ones added before it and before the RFC 6750 default.
    pub fn rule(mut self, rule: impl Rule) -> Self {
        let statuses = StatusSet::of(|status| rule.applies_to(status));
        self.candidates = self.candidates.union(statuses);
        if rule.needs_body() {
            self.needs_body = self.needs_body.union(statuses);
        }
        self.rules.push(Arc::new(rule));
        self
    }

    /// How much of a body rules may read (default [`DEFAULT_BODY_LIMIT`]).
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The body read limit.
    pub fn max_body(&self) -> usize {
        self.body_limit
    }

    /// Whether a response with this status needs classifying at all. `false` is the fast path:
    /// the response goes straight back to the caller.
    pub fn is_candidate(&self, status: StatusCode) -> bool {
        self.candidates.contains(status)
    }

    /// Whether classifying a response with this status needs its body.
    pub fn needs_body(&self, status: StatusCode) -> bool {
        self.needs_body.contains(status)
    }

    /// Decides. Rules first, in order; then RFC 6750: `insufficient_scope` is accepted, any
    /// other 401 means refresh.
    pub fn classify(&self, response: &ResponseView<'_>) -> Verdict {
        let decided = self
            .rules
            .iter()
            .filter(|rule| rule.applies_to(response.status))
            .find_map(|rule| rule.classify(response));
        if let Some(verdict) = decided {
            return verdict;
        }
        if response.status != StatusCode::UNAUTHORIZED {
            // Another status became a candidate through some rule, and no rule recognised it.
            return Verdict::Accept;
        }
        rules::rfc6750(response).unwrap_or(Verdict::Refresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn view<'a>(status: u16, headers: &'a HeaderMap, body: &'a [u8]) -> ResponseView<'a> {
        ResponseView {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body,
        }
    }

    #[test]
    fn default_refreshes_any_401_and_accepts_the_rest() {
        let headers = HeaderMap::new();
        let classifier = Classifier::default();
        assert_eq!(
            classifier.classify(&view(401, &headers, b"")),
            Verdict::Refresh
        );
        assert_eq!(
            classifier.classify(&view(403, &headers, b"")),
            Verdict::Accept
        );
        assert_eq!(
            classifier.classify(&view(200, &headers, b"")),
            Verdict::Accept
        );
        assert!(!classifier.is_candidate(StatusCode::OK));
        assert!(!classifier.needs_body(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn insufficient_scope_never_refreshes() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="x", error="insufficient_scope""#),
        );
        assert_eq!(
            Classifier::default().classify(&view(401, &headers, b"")),
            Verdict::Accept
        );
    }

    /// Classifies each body as a 401 without headers and checks the verdict.
    fn check(classifier: &Classifier, cases: &[(&[u8], Verdict)]) {
        let headers = HeaderMap::new();
        for (body, verdict) in cases {
            assert_eq!(
                classifier.classify(&view(401, &headers, body)),
                *verdict,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn plain_text_errors_read_one_word_bodies() {
        let classifier = Classifier::default().rule(rules::plain_text_errors());
        check(
            &classifier,
            &[
                (b"ExpiredToken", Verdict::Refresh),
                (b" TokenExpired\r\n", Verdict::Refresh),
                (b"TokenExpiredError", Verdict::Refresh),
                (b"\"ExpiredToken\"", Verdict::Refresh),
                (b"InvalidToken\n", Verdict::Invalid),
                (b"\"InvalidToken\"", Verdict::Invalid),
                (b"InvalidTokenError", Verdict::Invalid),
                (b"JsonWebTokenError", Verdict::Invalid),
                // Not the whole body, another case, or unrelated: the RFC 6750 default.
                (b"InvalidToken: signature", Verdict::Refresh),
                (b"invalidtoken", Verdict::Refresh),
                (b"\"InvalidToken", Verdict::Refresh),
                (br#"{"message":"InvalidToken"}"#, Verdict::Refresh),
            ],
        );
        assert!(classifier.needs_body(StatusCode::UNAUTHORIZED));
        assert!(!classifier.needs_body(StatusCode::FORBIDDEN));
    }

    #[test]
    fn jsonwebtoken_errors_read_message_name_and_error() {
        let classifier = Classifier::default().rule(rules::jsonwebtoken_errors());
        check(
            &classifier,
            &[
                (br#"{"message":"TokenExpiredError"}"#, Verdict::Refresh),
                (
                    br#"{"name":"TokenExpiredError","message":"jwt expired","expiredAt":"2024-01-01T00:00:00.000Z"}"#,
                    Verdict::Refresh,
                ),
                (br#"{"error":"TokenExpiredError"}"#, Verdict::Refresh),
                (br#"{"message":"jwt expired"}"#, Verdict::Refresh),
                (br#"{"message":"JsonWebTokenError"}"#, Verdict::Invalid),
                (
                    br#"{"name":"JsonWebTokenError","message":"invalid signature"}"#,
                    Verdict::Invalid,
                ),
                (br#"{"message":"InvalidTokenError"}"#, Verdict::Invalid),
                (br#"{"error":"InvalidTokenError"}"#, Verdict::Invalid),
                // Other fields, other values, other shapes: the RFC 6750 default.
                (br#"{"detail":"JsonWebTokenError"}"#, Verdict::Refresh),
                (br#"{"message":"jwt malformed"}"#, Verdict::Refresh),
                (br#"{"message":["JsonWebTokenError"]}"#, Verdict::Refresh),
                (b"JsonWebTokenError is not JSON", Verdict::Refresh),
            ],
        );
        assert!(classifier.needs_body(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn result_error_code_refreshes_on_invalid_and_expired_token() {
        let classifier = Classifier::default().rule(rules::result_error_code());
        check(
            &classifier,
            &[
                (
                    br#"{"result":{"errorCode":"INVALID_TOKEN"}}"#,
                    Verdict::Refresh,
                ),
                (
                    br#"{"result":{"errorCode":"EXPIRED_TOKEN","message":"x"}}"#,
                    Verdict::Refresh,
                ),
                (
                    br#"{"result":{"errorCode":"INVALID_REFRESH_TOKEN"}}"#,
                    Verdict::Refresh,
                ),
                (br#"{"errorCode":"INVALID_TOKEN"}"#, Verdict::Refresh),
            ],
        );
        // It refreshes, so it can be told apart from the default only by what it lets an
        // earlier rule decide: an override placed before it wins.
        let strict = Classifier::default()
            .rule(rules::json_field(
                "/result/errorCode",
                "INVALID_TOKEN",
                Verdict::Invalid,
            ))
            .rule(rules::result_error_code());
        check(
            &strict,
            &[
                (
                    br#"{"result":{"errorCode":"INVALID_TOKEN"}}"#,
                    Verdict::Invalid,
                ),
                (
                    br#"{"result":{"errorCode":"EXPIRED_TOKEN"}}"#,
                    Verdict::Refresh,
                ),
            ],
        );
    }

    #[test]
    fn the_rfc6750_challenge_rule_accepts_insufficient_scope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="insufficient_scope""#),
        );
        let rule = rules::rfc6750_challenge();
        assert_eq!(
            rule.classify(&view(401, &headers, b"")),
            Some(Verdict::Accept)
        );
        assert_eq!(rule.classify(&view(401, &HeaderMap::new(), b"")), None);
        assert!(!rule.needs_body());
    }

    #[test]
    fn well_known_puts_rfc6750_first() {
        let classifier = Classifier::well_known();
        check(
            &classifier,
            &[
                (b"ExpiredToken", Verdict::Refresh),
                (b"InvalidToken\n", Verdict::Invalid),
                (br#"{"message":"TokenExpiredError"}"#, Verdict::Refresh),
                (br#"{"message":"JsonWebTokenError"}"#, Verdict::Invalid),
                (
                    br#"{"result":{"errorCode":"EXPIRED_TOKEN"}}"#,
                    Verdict::Refresh,
                ),
                (
                    br#"{"result":{"errorCode":"INVALID_TOKEN"}}"#,
                    Verdict::Refresh,
                ),
                (b"\xff\xfe garbage", Verdict::Refresh),
            ],
        );
        // A standard challenge outranks the body: `insufficient_scope` with a body that
        // would end the session is accepted, `invalid_token` with one is refreshed.
        for (challenge, verdict) in [
            (r#"Bearer error="insufficient_scope""#, Verdict::Accept),
            (r#"Bearer error="invalid_token""#, Verdict::Refresh),
            (r#"Bearer realm="api""#, Verdict::Invalid),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
            assert_eq!(
                classifier.classify(&view(401, &headers, b"InvalidToken")),
                verdict,
                "{challenge}"
            );
        }
        assert!(classifier.needs_body(StatusCode::UNAUTHORIZED));
        assert!(!classifier.is_candidate(StatusCode::FORBIDDEN));
        assert_eq!(
            format!("{:?}", rules::well_known()),
            "RuleSet { name: \"well_known\", rules: 4 }"
        );
    }

    #[test]
    fn the_rfc6750_fallback_only_reads_401s() {
        // The gRPC rule makes 200 a candidate; a stray Bearer error on a 200 must not refresh.
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        let classifier = Classifier::default().rule(rules::grpc_unauthenticated());
        assert_eq!(
            classifier.classify(&view(200, &headers, b"")),
            Verdict::Accept
        );
        headers.insert("grpc-status", HeaderValue::from_static("16"));
        assert_eq!(
            classifier.classify(&view(200, &headers, b"")),
            Verdict::Refresh
        );
    }

    #[test]
    fn the_status_sets_agree_with_the_rules_for_every_code() {
        let classifier = Classifier::well_known()
            .rule(rules::grpc_unauthenticated())
            .rule(rules::status(
                StatusCode::from_u16(999).unwrap(),
                Verdict::Refresh,
            ))
            .rule(rules::from_fn(
                &[StatusCode::from_u16(100).unwrap(), StatusCode::FORBIDDEN],
                true,
                |_| None,
            ));
        for code in 100..1000 {
            let status = StatusCode::from_u16(code).unwrap();
            let applies = |rule: &Arc<dyn Rule>| rule.applies_to(status);
            assert_eq!(
                classifier.is_candidate(status),
                code == 401 || classifier.rules.iter().any(applies),
                "{code}"
            );
            assert_eq!(
                classifier.needs_body(status),
                classifier
                    .rules
                    .iter()
                    .any(|rule| applies(rule) && rule.needs_body()),
                "{code}"
            );
        }
        assert!(classifier.is_candidate(StatusCode::OK));
        assert!(classifier.needs_body(StatusCode::FORBIDDEN));
        assert!(!classifier.needs_body(StatusCode::OK));
        assert!(!classifier.is_candidate(StatusCode::NOT_FOUND));
    }

    #[test]
    fn status_rules_make_other_codes_candidates() {
        let classifier = Classifier::default().rule(rules::status(
            StatusCode::from_u16(419).unwrap(),
            Verdict::Refresh,
        ));
        let headers = HeaderMap::new();
        assert!(classifier.is_candidate(StatusCode::from_u16(419).unwrap()));
        assert_eq!(
            classifier.classify(&view(419, &headers, b"")),
            Verdict::Refresh
        );
    }

    proptest::proptest! {
        #[test]
        fn classifying_arbitrary_responses_never_panics(
            status in 100u16..600,
            www_authenticate in ".{0,120}",
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&www_authenticate) {
                headers.insert(http::header::WWW_AUTHENTICATE, value);
            }
            let classifier = Classifier::well_known();
            let verdict = classifier.classify(&view(status, &headers, &body));
            // Only a 401 can ask for a refresh under the built-in rules.
            proptest::prop_assert!(verdict != Verdict::Refresh || status == 401);
        }
    }
}
