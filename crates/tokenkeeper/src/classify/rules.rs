//! Built-in [`Rule`]s for the conventions APIs use.

use super::www_authenticate;
use super::{ResponseView, Rule, Verdict};
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

const GRPC_STATUS: http::header::HeaderName = http::header::HeaderName::from_static("grpc-status");
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::classify::rules::grpc_unauthenticated;
    use crate::classify::{Classifier, ResponseView, Verdict};
    use http::{HeaderMap, HeaderValue, StatusCode};

    const GRPC_STATUS: &str = "grpc-status";

    fn verdict(classifier: &Classifier, status: u16, grpc_status: Option<&'static str>) -> Verdict {
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
