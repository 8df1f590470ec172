//! Metrics (feature `metrics`) against the reference server over real HTTP on 127.0.0.1,
//! recorded by `metrics-util`'s debugging recorder.
//!
//! Each test installs its own recorder as the thread's default and runs on a current-thread
//! runtime, so everything it records (the flights run on the same thread) lands in its recorder
//! and nothing from the tests running beside it. On one thread, a burst's requests all reach
//! the session before the refresh they start gets to run, so "N − 1 joined" is exact.
//!
//! Every test ends with the label check: every metric is one of the documented names, every
//! label key and value is from the documented closed sets, and no name or value contains a
//! token, key or URL the test handled.

use crate::common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokenkeeper::metrics::{
    LOGOUTS, REFRESH_ATTEMPTS, REFRESH_DURATION, SOONEST_HARD_EXPIRY,
    SOONEST_HARD_EXPIRY_TIMESTAMP, STALE_RETRIES, STORE_FAILURES, WAITERS_JOINED,
};
use tokenkeeper::store::{FileStore, MemoryStore, StoreError, StoreLock, StoredTokens, TokenStore};
use tokenkeeper::{Error, RefreshMode, Session, TokenSet, refresh};

type Labels = Vec<(String, String)>;

/// Everything a debugging recorder saw, accumulated across snapshots (a snapshot resets the
/// recorder's counters, so each one is a delta).
struct Recorded {
    /// The guard that makes the recorder this thread's default, when [`Recorded::install`]
    /// installed it.
    _local: Option<metrics::LocalRecorderGuard<'static>>,
    snapshotter: Snapshotter,
    counters: HashMap<(String, Labels), u64>,
    gauges: HashMap<(String, Labels), f64>,
    histograms: HashMap<(String, Labels), Vec<f64>>,
}

impl Recorded {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            _local: None,
            snapshotter: recorder.snapshotter(),
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    /// A fresh recorder, made this thread's default until the result is dropped. The recorder
    /// is leaked (a few bytes a test): the guard borrows it for as long as it is installed.
    fn install() -> Self {
        let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
        Self {
            _local: Some(metrics::set_default_local_recorder(recorder)),
            ..Self::new(recorder)
        }
    }

    /// Takes a snapshot and adds it to what was seen. The recorder resets a gauge to 0 when it
    /// snapshots it, so a gauge untouched since the last snapshot reads 0: such readings are
    /// skipped (tokenkeeper's gauges are times, never exactly 0).
    fn take(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let id = (
                key.name().to_string(),
                key.labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect::<Labels>(),
            );
            match value {
                DebugValue::Counter(n) => *self.counters.entry(id).or_default() += n,
                DebugValue::Gauge(v) if v.into_inner() == 0.0 => {}
                DebugValue::Gauge(v) => {
                    self.gauges.insert(id, v.into_inner());
                }
                DebugValue::Histogram(values) => self
                    .histograms
                    .entry(id)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.into_inner())),
            }
        }
    }

    fn id(name: &str, labels: &[(&str, &str)]) -> (String, Labels) {
        (
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.take();
        self.counters
            .get(&Self::id(name, labels))
            .copied()
            .unwrap_or(0)
    }

    /// Refresh attempts of `session` by outcome, the zeros left out.
    fn attempts(&mut self, session: &str) -> HashMap<String, u64> {
        self.take();
        self.counters
            .iter()
            .filter(|((name, labels), n)| {
                name == REFRESH_ATTEMPTS
                    && labels[0] == ("session".into(), session.into())
                    && **n > 0
            })
            .map(|((_, labels), n)| (labels[1].1.clone(), *n))
            .collect()
    }

    fn gauge(&mut self, name: &str, session: &str) -> Option<f64> {
        self.take();
        self.gauges
            .get(&Self::id(name, &[("session", session)]))
            .copied()
    }

    /// The refresh durations of `session`'s flights that ended with `outcome`.
    fn durations(&mut self, session: &str, outcome: &str) -> Vec<f64> {
        self.histogram(
            REFRESH_DURATION,
            &[("session", session), ("outcome", outcome)],
        )
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.take();
        self.histograms
            .get(&Self::id(name, labels))
            .cloned()
            .unwrap_or_default()
    }

    /// Every metric and label seen is documented and from a closed set, the `session` label is
    /// one of this file's names, and nothing contains any of `secrets`.
    ///
    /// Any of the file's names, not only the test's own: `update_gauges` sets the gauges of every
    /// live name, and the tests beside this one have theirs live. So do the other modules of this
    /// binary running meanwhile (e.g. `keyed`'s collections), whose sessions keep the builder's
    /// name `default`.
    fn assert_labels_closed(&mut self, secrets: &[String]) {
        self.take();
        let ids = self
            .counters
            .keys()
            .chain(self.gauges.keys())
            .chain(self.histograms.keys());
        let mut seen = 0;
        for (name, labels) in ids {
            seen += 1;
            assert!(NAMES.contains(&name.as_str()), "undocumented metric {name}");
            for (key, value) in labels {
                match key.as_str() {
                    "session" => assert!(SESSIONS.contains(&value.as_str()), "{name}: {value}"),
                    "outcome" => assert!(OUTCOMES.contains(&value.as_str()), "{name}: {value}"),
                    "reason" => assert!(REASONS.contains(&value.as_str()), "{name}: {value}"),
                    "operation" => {
                        assert!(OPERATIONS.contains(&value.as_str()), "{name}: {value}")
                    }
                    other => panic!("{name}: undocumented label {other}={value}"),
                }
                for secret in secrets.iter().filter(|s| s.len() >= 4) {
                    assert!(!value.contains(secret.as_str()), "{name}: {key} leaks");
                    assert!(!name.contains(secret.as_str()), "{name} leaks");
                }
            }
        }
        assert!(seen > 0, "the check saw no metric at all");
    }
}

/// This file's session names, and `default`: the other modules of this test binary build
/// sessions without a name, and `update_gauges` sets the gauge of every live name.
const SESSIONS: [&str; 12] = [
    "default",
    "burst-at-expiry",
    "per-request",
    "transient-and-lost",
    "terminal",
    "logout-reasons",
    "shared-file",
    "stale-retry",
    "failing-store",
    "soonest",
    "soonest-other",
    "property",
];

const NAMES: [&str; 8] = [
    REFRESH_ATTEMPTS,
    REFRESH_DURATION,
    WAITERS_JOINED,
    STALE_RETRIES,
    LOGOUTS,
    STORE_FAILURES,
    SOONEST_HARD_EXPIRY,
    SOONEST_HARD_EXPIRY_TIMESTAMP,
];
const OUTCOMES: [&str; 9] = [
    "ok",
    "adopted",
    "transient",
    "lost_answer",
    "terminal",
    "inconclusive",
    "refreshed",
    "failed",
    "superseded",
];
const REASONS: [&str; 7] = [
    "refresh_rejected",
    "invalid_refresh_response",
    "no_refresh_token",
    "token_invalid",
    "repeated_unauthorized",
    "cleared_elsewhere",
    "signed_out",
];
const OPERATIONS: [&str; 7] = [
    "lock",
    "load",
    "save",
    "clear",
    "fence",
    "lease_lost",
    "other",
];

/// What no metric may contain: the secrets of `tokens`, and `texts` (URLs, paths, a server's
/// words).
fn leak_check<const N: usize>(tokens: &[&TokenSet], texts: [String; N]) -> Vec<String> {
    let mut secrets = Vec::from(texts);
    for tokens in tokens {
        secrets.push(tokens.access_token().expose_secret().to_string());
        secrets.extend(
            tokens
                .refresh_token()
                .map(|r| r.expose_secret().to_string()),
        );
    }
    secrets
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A burst of 100 requests meets an expired token: one `ok` attempt, 99 waiters joined, one
/// refreshed flight, and the expiry gauge moves to the new token's hard deadline.
#[tokio::test]
async fn a_burst_at_expiry_is_one_ok_attempt_and_the_rest_join() {
    let mut recorded = Recorded::install();
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let (session, client) = session(&server, Contract::OAuth2, |b| {
        b.metrics_name("burst-at-expiry")
    })
    .await;
    let first = session.credential().await.unwrap();
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;

    let outcomes = burst(&client, &server, 100).await;
    assert!(outcomes.iter().all(|o| *o == Ok(200)), "{outcomes:?}");
    assert_eq!(server.stats().refresh_calls, 1);

    let attempts = recorded.attempts("burst-at-expiry");
    assert_eq!(attempts, HashMap::from([("ok".to_string(), 1)]));
    assert_eq!(
        recorded.counter(WAITERS_JOINED, &[("session", "burst-at-expiry")]),
        99
    );
    assert_eq!(session.stats().waiters_joined, 99);
    let durations = recorded.durations("burst-at-expiry", "refreshed");
    assert_eq!(durations.len(), 1, "{durations:?}");
    assert!(durations[0] > 0.0 && durations[0] < 30.0, "{durations:?}");

    // The new token lives LONG_TTL; its hard deadline is at most a second before its expiry.
    tokenkeeper::metrics::update_gauges();
    let until = recorded
        .gauge(SOONEST_HARD_EXPIRY, "burst-at-expiry")
        .unwrap();
    let long = LONG_TTL.as_secs_f64();
    assert!(until > long - 30.0 && until <= long, "{until}");
    let at = recorded
        .gauge(SOONEST_HARD_EXPIRY_TIMESTAMP, "burst-at-expiry")
        .unwrap();
    assert!((at - unix_now() - until).abs() < 5.0, "{at} vs {until}");

    let second = session.credential().await.unwrap();
    recorded.assert_labels_closed(&leak_check(
        &[first.tokens(), second.tokens()],
        [server.base_url()],
    ));
}

/// Nothing is recorded per request: requests with a valid token (attached, accepted) leave
/// every counter, gauge and histogram untouched. This is the hot path; metrics live on the
/// refresh, retry and logout paths only.
#[tokio::test]
async fn nothing_is_recorded_per_request() {
    let recorded = Recorded::install();
    let snapshotter = &recorded.snapshotter;
    let server = start(ServerConfig::default()).await;
    let (session, client) =
        session(&server, Contract::OAuth2, |b| b.metrics_name("per-request")).await;
    // Sign-in set the gauges; this snapshot resets the recorder's values to zero.
    let before = snapshotter.snapshot().into_vec();
    assert!(!before.is_empty(), "the sign-in set the expiry gauges");

    let outcomes = burst(&client, &server, 200).await;
    assert!(outcomes.iter().all(|o| *o == Ok(200)), "{outcomes:?}");
    for id in 0..50 {
        let response = client
            .get(server.url(&format!("/api/items/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(session.stats().flights, 0, "no refresh happened");

    let after = snapshotter.snapshot().into_vec();
    assert_eq!(
        after.len(),
        before.len(),
        "no metric was registered: {after:?}"
    );
    for (key, _, _, value) in after {
        let untouched = match &value {
            DebugValue::Counter(n) => *n == 0,
            DebugValue::Gauge(v) => v.into_inner() == 0.0,
            DebugValue::Histogram(values) => values.is_empty(),
        };
        assert!(untouched, "{key:?} was recorded per request: {value:?}");
    }
}

/// The refresh endpoint answers 503, then not at all, then again: `transient` and
/// `lost_answer` attempts, two failed flights, then one `ok`; no logout. The expiry gauge goes
/// negative while the token is past its deadline.
#[tokio::test]
async fn transient_failures_and_lost_answers_keep_the_tokens() {
    let mut recorded = Recorded::install();
    let name = "transient-and-lost";
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let (session, _client) = session(&server, Contract::Json, |b| {
        b.metrics_name(name)
            .backoff(ms(20), ms(50))
            .attempt_timeout(ms(150))
            .refresh_timeout(ms(600))
    })
    .await;
    let first = session.credential().await.unwrap();
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;

    server.set_refresh_failure_rate(1.0);
    let outage = session.credential().await;
    assert!(
        matches!(outage, Err(Error::RefreshUnavailable(_))),
        "{outage:?}"
    );
    let during_outage = recorded.attempts(name);
    assert!(
        during_outage.get("transient").copied().unwrap_or(0) >= 1,
        "{during_outage:?}"
    );
    // Nothing but transient attempts, and lost answers: a 503 that reaches a saturated client
    // after its 150 ms attempt timeout is a lost answer by design (the client cannot know what
    // the server did), which CI's busy machines produce.
    assert!(
        during_outage
            .keys()
            .all(|kind| *kind == "transient" || *kind == "lost_answer"),
        "only transient attempts and lost answers: {during_outage:?}"
    );
    tokenkeeper::metrics::update_gauges();
    let until = recorded.gauge(SOONEST_HARD_EXPIRY, name).unwrap();
    assert!(until < 0.0, "the token is past its deadline: {until}");

    server.set_refresh_failure_rate(0.0);
    server.set_refresh_hang(true);
    let hung = session.credential().await;
    assert!(
        matches!(hung, Err(Error::RefreshUnavailable(_))),
        "{hung:?}"
    );
    let attempts = recorded.attempts(name);
    let lost = |attempts: &HashMap<String, u64>| attempts.get("lost_answer").copied().unwrap_or(0);
    assert!(
        lost(&attempts) > lost(&during_outage),
        "the hang's attempts are lost answers: {during_outage:?}, then {attempts:?}"
    );

    server.set_refresh_hang(false);
    let fresh = session.credential().await.unwrap();
    let attempts = recorded.attempts(name);
    assert_eq!(attempts.get("ok"), Some(&1), "{attempts:?}");
    assert_eq!(
        attempts.values().sum::<u64>(),
        session.stats().refresh_attempts,
        "every call to the refresher counted once: {attempts:?}"
    );
    assert_eq!(
        attempts["transient"] + attempts["lost_answer"],
        session.stats().transient_failures
    );
    let failed = recorded.durations(name, "failed");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().all(|d| *d < 5.0),
        "bounded by the refresh timeout: {failed:?}"
    );
    assert_eq!(recorded.durations(name, "refreshed").len(), 1);
    assert_eq!(session.stats().logouts, 0);

    recorded.assert_labels_closed(&leak_check(
        &[first.tokens(), fresh.tokens()],
        [server.base_url()],
    ));
}

/// A rejected refresh token: one `terminal` attempt, one logout with reason
/// `refresh_rejected` (never the server's text), and the expiry gauge of the name goes to
/// `+Inf` (nobody of that name holds a token any more).
#[tokio::test]
async fn a_rejected_refresh_token_is_one_terminal_attempt_and_one_logout() {
    let mut recorded = Recorded::install();
    let name = "terminal";
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let (tokens, refresher) = login(&server, Contract::OAuth2).await;
    let bogus = "bogus-refresh-token-0123456789";
    let tokens = tokens.with_refresh_secret(Some(SecretString::from(bogus)));
    let session = Session::builder()
        .refresher_arc(refresher)
        .attach_to([server.base_url()])
        .metrics_name(name)
        .build()
        .unwrap();
    session.sign_in(tokens.clone()).await.unwrap();
    assert!(recorded.gauge(SOONEST_HARD_EXPIRY, name).unwrap() > 0.0);
    tokio::time::sleep(ms(400)).await;

    let ended = session.credential().await;
    assert!(matches!(ended, Err(Error::SessionExpired(_))), "{ended:?}");
    assert_eq!(
        recorded.attempts(name),
        HashMap::from([("terminal".to_string(), 1)])
    );
    assert_eq!(
        recorded.counter(
            LOGOUTS,
            &[("session", name), ("reason", "refresh_rejected")]
        ),
        1
    );
    assert_eq!(
        recorded.gauge(SOONEST_HARD_EXPIRY, name),
        Some(f64::INFINITY)
    );
    assert_eq!(
        recorded.gauge(SOONEST_HARD_EXPIRY_TIMESTAMP, name),
        Some(f64::INFINITY)
    );

    // With the server's refusal text, which the logout reason carries but the label must not.
    let refusal = "invalid_grant".to_owned();
    recorded.assert_labels_closed(&leak_check(&[&tokens], [server.base_url(), refusal]));
}

/// Logouts by reason: a sign-out, and an API that says the token is invalid.
#[tokio::test]
async fn logouts_are_counted_by_reason() {
    let mut recorded = Recorded::install();
    let name = "logout-reasons";
    let server = start(ServerConfig::default()).await;
    let (session, _client) = session(&server, Contract::Header, |b| b.metrics_name(name)).await;
    let first = session.credential().await.unwrap();
    assert!(session.invalidate(first.generation()).await);

    let (tokens, _) = login(&server, Contract::Header).await;
    session.sign_in(tokens.clone()).await.unwrap();
    session.sign_out().await.unwrap();

    for (reason, count) in [
        ("token_invalid", 1),
        ("signed_out", 1),
        ("refresh_rejected", 0),
    ] {
        assert_eq!(
            recorded.counter(LOGOUTS, &[("session", name), ("reason", reason)]),
            count,
            "{reason}"
        );
    }
    assert!(recorded.attempts(name).is_empty(), "nothing was refreshed");
    recorded.assert_labels_closed(&leak_check(&[first.tokens(), &tokens], []));
}

/// Two sessions share one FileStore (as two processes would): the first to need a refresh
/// calls the server (`ok`), the other adopts the stored pair (`adopted`), one refresh in all.
/// The expiry gauge of their shared name follows the sooner of the two.
#[tokio::test]
async fn a_pair_another_session_stored_is_adopted() {
    let mut recorded = Recorded::install();
    let name = "shared-file";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let server = start(ServerConfig::default().with_access_ttl(ms(300))).await;
    let (tokens, refresher) = login(&server, Contract::OAuth2).await;
    let build = |refresher: Arc<dyn refresh::Refresher>| {
        Session::builder()
            .refresher_arc(refresher)
            .store(FileStore::open(&path).unwrap())
            .attach_to([server.base_url()])
            .metrics_name(name)
            .build()
            .unwrap()
    };
    let a = build(Arc::clone(&refresher));
    let b = build(refresher);
    a.sign_in(tokens.clone()).await.unwrap();
    assert!(b.restore().await.unwrap());
    server.set_access_ttl(LONG_TTL);
    tokio::time::sleep(ms(400)).await;

    // `b` still holds the expired token: the gauge shows its (passed) deadline, not `a`'s.
    let refreshed = a.credential().await.unwrap();
    assert!(recorded.gauge(SOONEST_HARD_EXPIRY, name).unwrap() < 0.0);
    let adopted = b.credential().await.unwrap();
    assert!(recorded.gauge(SOONEST_HARD_EXPIRY, name).unwrap() > 60.0);

    assert_eq!(server.stats().refresh_calls, 1);
    assert_eq!(
        recorded.attempts(name),
        HashMap::from([("ok".to_string(), 1), ("adopted".to_string(), 1)])
    );
    assert_eq!(recorded.durations(name, "adopted").len(), 1);
    assert_eq!(b.stats().adopted, 1);

    recorded.assert_labels_closed(&leak_check(
        &[&tokens, refreshed.tokens(), adopted.tokens()],
        [path.display().to_string()],
    ));
}

/// A late refusal of an older generation is retried with the current token: one stale retry,
/// no refresh.
#[tokio::test]
async fn a_late_refusal_is_a_stale_retry() {
    let mut recorded = Recorded::install();
    let name = "stale-retry";
    let server = start(ServerConfig::default()).await;
    let (session, _client) = session(&server, Contract::OAuth2, |b| b.metrics_name(name)).await;
    let old = session.credential().await.unwrap();
    // Refresh once (the API refused `old`), then `old` comes back refused late.
    let current = session.token_rejected(&old).await.unwrap();
    let retried = session.token_rejected(&old).await.unwrap();
    assert_eq!(retried.generation(), current.generation());
    assert_eq!(recorded.counter(STALE_RETRIES, &[("session", name)]), 1);
    assert_eq!(
        recorded.attempts(name),
        HashMap::from([("ok".to_string(), 1)])
    );

    recorded.assert_labels_closed(&leak_check(&[old.tokens(), current.tokens()], []));
}

/// A store that fails `save` while `failing` is set (a full disk, a read-only mount).
struct FailingSaves {
    inner: MemoryStore,
    failing: Arc<AtomicBool>,
}

#[tokenkeeper::async_trait]
impl TokenStore for FailingSaves {
    async fn load(&self) -> Result<Option<StoredTokens>, StoreError> {
        self.inner.load().await
    }
    async fn save(&self, tokens: &StoredTokens) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Io(std::io::Error::other(
                "/var/lib/secret-path/tokens.json: no space left",
            )));
        }
        self.inner.save(tokens).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear().await
    }
    async fn lock(&self) -> Result<StoreLock, StoreError> {
        self.inner.lock().await
    }
}

/// Failed store operations are counted by operation, never by the error's text.
#[tokio::test]
async fn store_failures_are_counted_by_operation() {
    let mut recorded = Recorded::install();
    let name = "failing-store";
    let server = start(ServerConfig::default()).await;
    let (tokens, refresher) = login(&server, Contract::OAuth2).await;
    let failing = Arc::new(AtomicBool::new(true));
    let session = Session::builder()
        .refresher_arc(refresher)
        .store(FailingSaves {
            inner: MemoryStore::new(),
            failing: Arc::clone(&failing),
        })
        .attach_to([server.base_url()])
        .metrics_name(name)
        .build()
        .unwrap();
    let signed_in = session.sign_in(tokens.clone()).await;
    assert!(matches!(signed_in, Err(Error::Store(_))), "{signed_in:?}");
    assert_eq!(
        recorded.counter(STORE_FAILURES, &[("session", name), ("operation", "save")]),
        1
    );
    assert_eq!(
        recorded.counter(STORE_FAILURES, &[("session", name), ("operation", "load")]),
        0
    );
    recorded.assert_labels_closed(&leak_check(&[&tokens], ["secret-path".into()]));
}

fn in_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The expiry gauge of a name is the soonest hard deadline among its live sessions: it follows
/// sign-ins, sign-outs and drops, ignores other names, and is `+Inf` when none is left.
#[tokio::test]
async fn the_expiry_gauge_is_the_soonest_among_sessions_of_a_name() {
    let mut recorded = Recorded::install();
    let build = |name: &'static str, mode: RefreshMode| {
        Session::builder()
            .refresher(refresh::from_fn(|_| async {
                Err(refresh::RefreshError::transient("not in this test"))
            }))
            .attach_to(["https://api.example.com"])
            .mode(mode)
            .metrics_name(name)
            .build()
            .unwrap()
    };
    let long = build("soonest", RefreshMode::default());
    let short = build("soonest", RefreshMode::default());
    let reactive = build("soonest", RefreshMode::Reactive);
    let other = build("soonest-other", RefreshMode::default());
    let hour =
        TokenSet::new("a-long-lived-access-token").with_expires_in(Duration::from_secs(3600));
    let minute =
        TokenSet::new("a-short-lived-access-token").with_expires_in(Duration::from_secs(60));
    let half = TokenSet::new("a-reactive-access-token").with_expires_in(Duration::from_secs(1800));
    let second =
        TokenSet::new("another-names-access-token").with_expires_in(Duration::from_secs(1));

    long.sign_in(hour.clone()).await.unwrap();
    // A proactive session's hard deadline is at most a second before the expiry.
    let expected = in_seconds(hour.expires_at().unwrap());
    let at = recorded
        .gauge(SOONEST_HARD_EXPIRY_TIMESTAMP, "soonest")
        .unwrap();
    assert!(
        (expected - 1.5..=expected).contains(&at),
        "{at} vs {expected}"
    );

    short.sign_in(minute.clone()).await.unwrap();
    other.sign_in(second.clone()).await.unwrap();
    let expected = in_seconds(minute.expires_at().unwrap());
    let at = recorded
        .gauge(SOONEST_HARD_EXPIRY_TIMESTAMP, "soonest")
        .unwrap();
    assert!(
        (expected - 1.5..=expected).contains(&at),
        "{at} vs {expected}"
    );
    let until = recorded.gauge(SOONEST_HARD_EXPIRY, "soonest").unwrap();
    assert!((55.0..=60.0).contains(&until), "{until}");

    short.sign_out().await.unwrap();
    reactive.sign_in(half.clone()).await.unwrap();
    // A reactive session's deadline is the expiry itself.
    let expected = in_seconds(half.expires_at().unwrap());
    let at = recorded
        .gauge(SOONEST_HARD_EXPIRY_TIMESTAMP, "soonest")
        .unwrap();
    assert!((at - expected).abs() < 0.01, "{at} vs {expected}");

    drop(reactive);
    let expected = in_seconds(hour.expires_at().unwrap());
    let at = recorded
        .gauge(SOONEST_HARD_EXPIRY_TIMESTAMP, "soonest")
        .unwrap();
    assert!(
        (expected - 1.5..=expected).contains(&at),
        "{at} vs {expected}"
    );
    drop(long);
    drop(short);
    assert_eq!(
        recorded.gauge(SOONEST_HARD_EXPIRY_TIMESTAMP, "soonest"),
        Some(f64::INFINITY)
    );
    assert_eq!(
        recorded.gauge(SOONEST_HARD_EXPIRY, "soonest"),
        Some(f64::INFINITY)
    );

    // The other name kept its own, all along.
    tokenkeeper::metrics::update_gauges();
    let until = recorded
        .gauge(SOONEST_HARD_EXPIRY, "soonest-other")
        .unwrap();
    assert!(until < 1.0, "{until}");
    recorded.assert_labels_closed(&leak_check(&[&hour, &minute, &half, &second], []));
    drop(other);
}

/// Whether [`Recorded::assert_labels_closed`] passes (it panics when it does not).
fn label_check_passes(recorded: &mut Recorded, secrets: &[String]) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        recorded.assert_labels_closed(secrets)
    }))
    .is_ok()
}

/// The label check is not vacuous: a label value outside the closed sets, or one holding a
/// secret, fails it.
#[test]
fn the_label_check_catches_a_leak() {
    let recorder = DebuggingRecorder::new();
    let mut recorded = Recorded::new(&recorder);
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(LOGOUTS, "session" => "terminal", "reason" => "refresh_rejected")
            .increment(1);
    });
    recorded.assert_labels_closed(&["tok3n-XYZ".into()]);
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(LOGOUTS, "session" => "terminal", "reason" => "invalid_grant: tok3n-XYZ")
            .increment(1);
    });
    assert!(
        !label_check_passes(&mut recorded, &[]),
        "a free-text label value passed the check"
    );

    let recorder = DebuggingRecorder::new();
    let mut recorded = Recorded::new(&recorder);
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(STALE_RETRIES, "session" => "user-4711").increment(1);
    });
    assert!(
        !label_check_passes(&mut recorded, &[]),
        "an unknown session name passed the check"
    );

    let recorder = DebuggingRecorder::new();
    let mut recorded = Recorded::new(&recorder);
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(STALE_RETRIES, "session" => "terminal").increment(1);
    });
    assert!(
        !label_check_passes(&mut recorded, &["inal".into()]),
        "a secret inside a label value passed the check"
    );
}

/// How one call to the property test's refresher ends.
#[derive(Debug, Clone)]
enum Answer {
    /// New tokens, with these secrets.
    Tokens(String, String),
    Transient(String),
    Rejected(String),
    Inconclusive(String),
    InvalidResponse(String),
}

fn answer() -> impl proptest::strategy::Strategy<Value = Answer> {
    use proptest::prelude::*;
    // Secrets and server texts that look like label values, URLs and keys, each with a capital
    // letter (no label value has one) so that a match can only be a leak, never a coincidence.
    let text = "[A-Z][a-z_:/.=\"{}-]{3,23}";
    prop_oneof![
        (text, text).prop_map(|(a, r)| Answer::Tokens(a, r)),
        text.prop_map(Answer::Transient),
        text.prop_map(Answer::Rejected),
        text.prop_map(Answer::Inconclusive),
        text.prop_map(Answer::InvalidResponse),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever the refresher answers (tokens and error texts made of label-like text) and
    /// whatever the caller does next, every metric recorded is documented, every label value is
    /// from a closed set, and no secret or server text appears in any of them.
    #[test]
    fn no_label_ever_holds_a_token_or_a_servers_text(
        answers in proptest::collection::vec(answer(), 1..8),
        signed_in_with in "[A-Z][a-z0-9._-]{7,23}",
    ) {
        let mut recorded = Recorded::install();
        let mut secrets = vec![signed_in_with.clone(), format!("r-{signed_in_with}")];
        for answer in &answers {
            match answer {
                Answer::Tokens(a, r) => secrets.extend([a.clone(), r.clone()]),
                Answer::Transient(t) | Answer::Rejected(t) | Answer::Inconclusive(t)
                | Answer::InvalidResponse(t) => secrets.push(t.clone()),
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let script = Arc::new(std::sync::Mutex::new(answers.clone().into_iter()));
            let session = Session::builder()
                .refresher(refresh::from_fn(move |_| {
                    let next = script.lock().unwrap().next();
                    async move {
                        match next {
                            Some(Answer::Tokens(a, r)) => Ok(TokenSet::new(a).with_refresh_token(r)),
                            Some(Answer::Transient(t)) => Err(refresh::RefreshError::transient(t)),
                            None => Err(refresh::RefreshError::transient("no more answers")),
                            Some(Answer::Rejected(t)) => Err(refresh::RefreshError::Rejected(t)),
                            Some(Answer::Inconclusive(t)) => {
                                Err(refresh::RefreshError::Inconclusive(t))
                            }
                            Some(Answer::InvalidResponse(t)) => {
                                Err(refresh::RefreshError::InvalidResponse(t))
                            }
                        }
                    }
                }))
                .attach_to(["https://api.example.com"])
                .backoff(Duration::from_millis(1), Duration::from_millis(2))
                .refresh_timeout(Duration::from_millis(20))
                .metrics_name("property")
                .build()
                .unwrap();
            let tokens = TokenSet::new(signed_in_with.clone())
                .with_refresh_token(format!("r-{signed_in_with}"));
            session.sign_in(tokens).await.unwrap();
            for _ in 0..answers.len() {
                match session.credential().await {
                    Ok(credential) => {
                        // The API refused it: refresh (once), then a late refusal of the old one.
                        let _ = session.token_rejected(&credential).await;
                        let _ = session.token_rejected(&credential).await;
                    }
                    Err(Error::SessionExpired(_)) | Err(Error::LoginRequired) => {
                        let tokens = TokenSet::new(signed_in_with.clone())
                            .with_refresh_token(format!("r-{signed_in_with}"));
                        session.sign_in(tokens).await.unwrap();
                    }
                    Err(_) => {}
                }
            }
            session.sign_out().await.unwrap();
        });
        recorded.assert_labels_closed(&secrets);
    }
}
