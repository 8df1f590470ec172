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

/// Built-in [`Rule`]s for the conventions APIs use.
pub mod rules {
    use super::{ResponseView, Rule, Verdict};
    use crate::www_authenticate;
    use http::StatusCode;
    use std::sync::Arc;

    /// RFC 6750 §3.1 on `WWW-Authenticate: Bearer error=…`: `insufficient_scope` → accept (a
    /// refresh would not help), `invalid_token` → refresh. `None` when there is no Bearer error.
    pub fn rfc6750(response: &ResponseView<'_>) -> Option<Verdict> {
        let error = response
            .headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(www_authenticate::bearer_error)?;
        match error.as_str() {
            "insufficient_scope" => Some(Verdict::Accept),
            "invalid_token" => Some(Verdict::Refresh),
            _ => None,
        }
    }

    /// The body, trimmed, equals `text` (e.g. `ExpiredToken`, `InvalidToken`).
    pub fn body_text(text: &'static str, verdict: Verdict) -> BodyText {
        BodyText { text, verdict }
    }

    /// See [`body_text`].
    #[derive(Debug, Clone)]
    pub struct BodyText {
        text: &'static str,
        verdict: Verdict,
    }

    impl Rule for BodyText {
        fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict> {
            (response.body.trim_ascii() == self.text.as_bytes()).then_some(self.verdict)
        }
        fn needs_body(&self) -> bool {
            true
        }
    }

    /// The JSON body has the string `value` at the JSON pointer `pointer` (RFC 6901), e.g.
    /// `json_field("/message", "TokenExpiredError", Verdict::Refresh)`.
    pub fn json_field(pointer: &'static str, value: &'static str, verdict: Verdict) -> JsonField {
        JsonField {
            pointer,
            value,
            verdict,
        }
    }

    /// See [`json_field`].
    #[derive(Debug, Clone)]
    pub struct JsonField {
        pointer: &'static str,
        value: &'static str,
        verdict: Verdict,
    }

    impl Rule for JsonField {
        fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict> {
            let json: serde_json::Value = serde_json::from_slice(response.body).ok()?;
            let found = json.pointer(self.pointer)?.as_str()?;
            (found == self.value).then_some(self.verdict)
        }
        fn needs_body(&self) -> bool {
            true
        }
    }

    /// A status code that means `verdict` whatever the body says (e.g. 419 or 498 for expired
    /// tokens on APIs that use custom codes).
    pub fn status(status: StatusCode, verdict: Verdict) -> Status {
        Status { status, verdict }
    }

    /// See [`status`].
    #[derive(Debug, Clone)]
    pub struct Status {
        status: StatusCode,
        verdict: Verdict,
    }

    impl Rule for Status {
        fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict> {
            (response.status == self.status).then_some(self.verdict)
        }
        fn applies_to(&self, status: StatusCode) -> bool {
            status == self.status
        }
    }

    /// A closure as a rule. `statuses` lists the codes it looks at; `needs_body` whether it reads
    /// the body.
    pub fn from_fn<F>(statuses: &[StatusCode], needs_body: bool, f: F) -> FromFn<F>
    where
        F: Fn(&ResponseView<'_>) -> Option<Verdict> + Send + Sync + 'static,
    {
        FromFn {
            statuses: statuses.to_vec(),
            needs_body,
            f,
        }
    }

    /// See [`from_fn`](fn@from_fn).
    pub struct FromFn<F> {
        statuses: Vec<StatusCode>,
        needs_body: bool,
        f: F,
    }

    impl<F> std::fmt::Debug for FromFn<F> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FromFn")
                .field("statuses", &self.statuses)
                .finish()
        }
    }

    impl<F> Rule for FromFn<F>
    where
        F: Fn(&ResponseView<'_>) -> Option<Verdict> + Send + Sync + 'static,
    {
        fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict> {
            (self.f)(response)
        }
        fn applies_to(&self, status: StatusCode) -> bool {
            self.statuses.contains(&status)
        }
        fn needs_body(&self) -> bool {
            self.needs_body
        }
    }

    const GRPC_STATUS: http::header::HeaderName =
        http::header::HeaderName::from_static("grpc-status");
    /// `UNAUTHENTICATED` (gRPC status code 16).
    const UNAUTHENTICATED: &[u8] = b"16";

    /// A rule for gRPC: a trailers-only response with `grpc-status: 16` (`UNAUTHENTICATED`) means
    /// "refresh and retry".
    ///
    /// gRPC errors travel in HTTP 200 responses; when a call fails before any message (as a unary
    /// call refused for its token does), the status is in the response *headers*. This rule looks
    /// only at that header, so 200 responses stay cheap: one header lookup, the body is never read.
    /// A status that arrives in the trailers after streamed messages is not seen (those messages
    /// were already delivered; the call cannot be replayed).
    ///
    /// ```
    /// use tokenkeeper::classify::Classifier;
    /// use tokenkeeper::classify::rules::grpc_unauthenticated;
    ///
    /// let classifier = Classifier::default().rule(grpc_unauthenticated());
    /// # let _ = classifier;
    /// ```
    pub fn grpc_unauthenticated() -> GrpcUnauthenticated {
        GrpcUnauthenticated
    }

    /// See [`grpc_unauthenticated`].
    #[derive(Debug, Clone, Copy, Default)]
    pub struct GrpcUnauthenticated;

    impl Rule for GrpcUnauthenticated {
        fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict> {
            let status = response.headers.get(&GRPC_STATUS)?;
            (status.as_bytes() == UNAUTHENTICATED).then_some(Verdict::Refresh)
        }

        fn applies_to(&self, status: StatusCode) -> bool {
            status == StatusCode::OK
        }
    }

    /// RFC 6750 §3.1 as a [`Rule`]: what [`rfc6750`] says about a 401's
    /// `WWW-Authenticate: Bearer error=…` challenge. Put it first so a standard challenge
    /// outranks any body convention: `insufficient_scope` then never ends or refreshes a
    /// session, whatever the body says.
    pub fn rfc6750_challenge() -> Rfc6750Challenge {
        Rfc6750Challenge
    }

    /// See [`rfc6750_challenge`].
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Rfc6750Challenge;

    impl Rule for Rfc6750Challenge {
        fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict> {
            rfc6750(response)
        }
    }

    /// Several rules as one, tried in order; the first that recognises a response decides.
    /// The built-in sets ([`well_known`], [`plain_text_errors`], [`jsonwebtoken_errors`],
    /// [`result_error_code`]) are `RuleSet`s; build your own with [`RuleSet::new`].
    ///
    /// ```
    /// use tokenkeeper::classify::{rules, Classifier, Verdict};
    ///
    /// let mine = rules::RuleSet::new("my API")
    ///     .rule(rules::json_field("/code", "TOKEN_EXPIRED", Verdict::Refresh))
    ///     .rule(rules::json_field("/code", "TOKEN_REVOKED", Verdict::Invalid));
    /// let classifier = Classifier::default().rule(rules::rfc6750_challenge()).rule(mine);
    /// # let _ = classifier;
    /// ```
    #[derive(Clone)]
    pub struct RuleSet {
        name: &'static str,
        rules: Vec<Arc<dyn Rule>>,
    }

    impl RuleSet {
        /// An empty set; `name` shows in `Debug` output.
        pub fn new(name: &'static str) -> Self {
            Self {
                name,
                rules: Vec::new(),
            }
        }

        /// Adds a rule, tried after the ones added before it.
        pub fn rule(mut self, rule: impl Rule) -> Self {
            self.rules.push(Arc::new(rule));
            self
        }

        /// The name given to [`RuleSet::new`].
        pub fn name(&self) -> &'static str {
            self.name
        }
    }

    impl std::fmt::Debug for RuleSet {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RuleSet")
                .field("name", &self.name)
                .field("rules", &self.rules.len())
                .finish()
        }
    }

    impl Rule for RuleSet {
        fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict> {
            self.rules
                .iter()
                .filter(|rule| rule.applies_to(response.status))
                .find_map(|rule| rule.classify(response))
        }

        fn applies_to(&self, status: StatusCode) -> bool {
            self.rules.iter().any(|rule| rule.applies_to(status))
        }

        fn needs_body(&self) -> bool {
            self.rules.iter().any(|rule| rule.needs_body())
        }
    }

    /// Words a plain-text 401 body consists of, and what each means.
    const PLAIN_TEXT_WORDS: [(&str, Verdict); 6] = [
        ("ExpiredToken", Verdict::Refresh),
        ("TokenExpired", Verdict::Refresh),
        ("TokenExpiredError", Verdict::Refresh),
        ("InvalidToken", Verdict::Invalid),
        ("InvalidTokenError", Verdict::Invalid),
        ("JsonWebTokenError", Verdict::Invalid),
    ];

    /// A 401 whose whole body (trimmed, also as a JSON string `"…"`) is one word:
    /// `ExpiredToken`, `TokenExpired` or `TokenExpiredError` → refresh; `InvalidToken`,
    /// `InvalidTokenError` or `JsonWebTokenError` → the token is invalid, end the session.
    ///
    /// This is the header-contract article's server (`data === "ExpiredToken"` /
    /// `data === "InvalidToken"`, and its client logs out on `InvalidToken`), and the reference
    /// server's header contract.
    ///
    /// ```
    /// use tokenkeeper::classify::{rules, Classifier};
    ///
    /// let classifier = Classifier::default().rule(rules::plain_text_errors());
    /// # let _ = classifier;
    /// ```
    pub fn plain_text_errors() -> RuleSet {
        PLAIN_TEXT_WORDS.iter().fold(
            RuleSet::new("plain_text_errors"),
            |set, &(word, verdict)| set.rule(PlainWord { word, verdict }),
        )
    }

    /// One word as the whole body, bare or as a JSON string.
    #[derive(Debug, Clone)]
    struct PlainWord {
        word: &'static str,
        verdict: Verdict,
    }

    impl Rule for PlainWord {
        fn classify(&self, response: &ResponseView<'_>) -> Option<Verdict> {
            let body = response.body.trim_ascii();
            // A server that answers with a JSON string (`"ExpiredToken"`) means the same word;
            // the articles' axios clients compare the parsed value.
            let body = body
                .strip_prefix(b"\"")
                .and_then(|rest| rest.strip_suffix(b"\""))
                .unwrap_or(body);
            (body == self.word.as_bytes()).then_some(self.verdict)
        }
        fn needs_body(&self) -> bool {
            true
        }
    }

    /// Where Node servers put a `jsonwebtoken` error's name or message in a JSON body.
    const JWT_ERROR_FIELDS: [&str; 3] = ["/message", "/name", "/error"];

    /// The error names (and the expiry message) of Node's `jsonwebtoken` library, in a JSON
    /// 401 body's `message`, `name` or `error` field: `TokenExpiredError` or `jwt expired` →
    /// refresh; `JsonWebTokenError` or `InvalidTokenError` → the token is invalid, end the
    /// session.
    ///
    /// This is the json-contract article's Express server (`{"message":"TokenExpiredError"}`),
    /// servers that send the library's error object as it is
    /// (`{"name":"TokenExpiredError","message":"jwt expired",…}`), and the reference server's
    /// json contract.
    ///
    /// ```
    /// use tokenkeeper::classify::{rules, Classifier};
    ///
    /// let classifier = Classifier::default().rule(rules::jsonwebtoken_errors());
    /// # let _ = classifier;
    /// ```
    pub fn jsonwebtoken_errors() -> RuleSet {
        let meanings = [
            ("TokenExpiredError", Verdict::Refresh),
            ("jwt expired", Verdict::Refresh),
            ("JsonWebTokenError", Verdict::Invalid),
            ("InvalidTokenError", Verdict::Invalid),
        ];
        let mut set = RuleSet::new("jsonwebtoken_errors");
        for field in JWT_ERROR_FIELDS {
            for (value, verdict) in meanings {
                set = set.rule(json_field(field, value, verdict));
            }
        }
        set
    }

    /// `{"result":{"errorCode":"INVALID_TOKEN"}}` or `EXPIRED_TOKEN` in a 401 body → refresh.
    ///
    /// This is the react-query article's server, which answers `INVALID_TOKEN` when the access
    /// token has merely *expired*: its client keeps going (the next try succeeds once the token
    /// is refreshed) and sends the user to login only after more than two such answers on one
    /// URL. So `INVALID_TOKEN` means "refresh and retry" here, and the session's own rule does
    /// the counting: a refusal that a refresh did not fix is that route's answer, and the
    /// session ends when the refresh token is rejected. The reference server's cookie contract
    /// speaks the same codes. For an API whose `INVALID_TOKEN` really means "log out now", add
    /// `json_field("/result/errorCode", "INVALID_TOKEN", Verdict::Invalid)` before this set.
    ///
    /// ```
    /// use tokenkeeper::classify::{rules, Classifier};
    ///
    /// let classifier = Classifier::default().rule(rules::result_error_code());
    /// # let _ = classifier;
    /// ```
    pub fn result_error_code() -> RuleSet {
        RuleSet::new("result_error_code")
            .rule(json_field(
                "/result/errorCode",
                "EXPIRED_TOKEN",
                Verdict::Refresh,
            ))
            .rule(json_field(
                "/result/errorCode",
                "INVALID_TOKEN",
                Verdict::Refresh,
            ))
    }

    /// Every built-in convention, RFC 6750 first: [`rfc6750_challenge`], then
    /// [`plain_text_errors`], [`jsonwebtoken_errors`] and [`result_error_code`]. A 401 none of
    /// them recognises still means "refresh" (the [`Classifier`](super::Classifier) default).
    ///
    /// The sets look at different bodies (a bare word, a `message`/`name`/`error` field, a
    /// `result.errorCode` field), so combining them never changes what one of them decides.
    /// Use it when you do not know the API's wording, or with
    /// [`Classifier::well_known`](super::Classifier::well_known).
    pub fn well_known() -> RuleSet {
        RuleSet::new("well_known")
            .rule(rfc6750_challenge())
            .rule(plain_text_errors())
            .rule(jsonwebtoken_errors())
            .rule(result_error_code())
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

    /// The gRPC rule.
    mod grpc_rule {
        #![allow(clippy::unwrap_used)]

        use crate::classify::rules::grpc_unauthenticated;
        use crate::classify::{Classifier, ResponseView, Verdict};
        use http::{HeaderMap, HeaderValue, StatusCode};

        const GRPC_STATUS: &str = "grpc-status";

        fn verdict(
            classifier: &Classifier,
            status: u16,
            grpc_status: Option<&'static str>,
        ) -> Verdict {
            let mut headers = HeaderMap::new();
            if let Some(code) = grpc_status {
                headers.insert(GRPC_STATUS, HeaderValue::from_static(code));
            }
            let status = StatusCode::from_u16(status).unwrap();
            classifier.classify(&ResponseView {
                status,
                headers: &headers,
                body: &[],
            })
        }

        #[test]
        fn trailers_only_unauthenticated_refreshes_without_reading_the_body() {
            let classifier = Classifier::well_known().rule(grpc_unauthenticated());
            assert!(classifier.is_candidate(StatusCode::OK));
            assert!(!classifier.needs_body(StatusCode::OK));
            assert_eq!(verdict(&classifier, 200, Some("16")), Verdict::Refresh);
            assert_eq!(verdict(&classifier, 200, Some("0")), Verdict::Accept);
            assert_eq!(verdict(&classifier, 200, Some("7")), Verdict::Accept);
            assert_eq!(verdict(&classifier, 200, Some("160")), Verdict::Accept);
            assert_eq!(verdict(&classifier, 200, None), Verdict::Accept);
            // Plain HTTP refusals keep their meaning.
            assert_eq!(verdict(&classifier, 401, None), Verdict::Refresh);
            assert_eq!(verdict(&classifier, 500, Some("16")), Verdict::Accept);
        }

        #[test]
        fn without_the_rule_200_stays_off_the_classifier() {
            assert!(!Classifier::default().is_candidate(StatusCode::OK));
        }
    }
}
