//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! Install any `metrics` recorder (Prometheus, StatsD, OpenTelemetry...) and every session
//! records into it; nothing else to wire. The crate's `prometheus` example renders them in
//! Prometheus text format.
//!
//! | name | kind | labels | what it counts |
//! |---|---|---|---|
//! | `tokenkeeper_refresh_attempts_total` | counter | `session`, `outcome` | calls to the refresher by outcome: `ok`, `transient` (network error, 5xx, 429), `lost_answer` (no answer within the attempt timeout), `terminal` (refresh token rejected, or no usable tokens), `inconclusive` (an answer that is no verdict: 3xx, 404, HTML); and `adopted`: a pair another process stored was installed instead of calling |
//! | `tokenkeeper_refresh_duration_seconds` | histogram | `session`, `outcome` | one refresh flight from start to outcome, as its waiters waited for it (store lock, re-read, retries, save): `refreshed`, `adopted`, `failed`, `superseded` (a sign-in or sign-out overtook it) |
//! | `tokenkeeper_refresh_waiters_joined_total` | counter | `session` | requests that joined a refresh another request had started (a burst of N at expiry: N − 1) |
//! | `tokenkeeper_stale_retries_total` | counter | `session` | refusals of an older generation, retried with the current token without a refresh |
//! | `tokenkeeper_logouts_total` | counter | `session`, `reason` | logins that ended: `refresh_rejected`, `invalid_refresh_response`, `no_refresh_token`, `token_invalid`, `repeated_unauthorized`, `cleared_elsewhere`, `signed_out` |
//! | `tokenkeeper_store_failures_total` | counter | `session`, `operation` | store operations that failed or timed out: `lock`, `load`, `save`, `clear`, `fence` (asking a lease whether it is still held), `lease_lost` (it was not, right before a refresh) |
//! | `tokenkeeper_soonest_hard_expiry_seconds` | gauge | `session` | seconds until the soonest hard deadline among the live sessions of that name (negative once passed; `+Inf` when none holds an expiring token) |
//! | `tokenkeeper_soonest_hard_expiry_timestamp_seconds` | gauge | `session` | the same deadline as a Unix time, for `… - time()` in PromQL |
//!
//! The hard deadline is where requests stop sending the token and wait for a refresh: a little
//! before the expiry (see [`Proactive`](crate::Proactive)); for a [reactive](crate::RefreshMode::Reactive)
//! session, the expiry itself.
//!
//! ## Labels
//! Label values come from the closed sets above; `session` is the name given to
//! [`SessionBuilder::metrics_name`](crate::SessionBuilder::metrics_name) (a `&'static str`, default
//! `"default"`). No label ever holds a key, a token, a URL, a path or a server's text: a logout's
//! reason is its kind, never the server's `error_description`; a store failure is the operation,
//! never the error message.
//!
//! ## Many sessions in one process
//! Counters and the histogram add up across sessions of the same name. The expiry gauges are
//! the *minimum* over the live sessions of a name: a process holding many logins (one per user,
//! one per tenant) has one series per name, whatever the number of logins, and the series
//! answers the operator's question, "how soon does some login stop working if refreshing
//! fails?". Per-session series would be one per login, which no metrics backend should hold,
//! and labelling them by key would leak it. Sessions for unrelated APIs take different names to
//! be told apart. The minimum is kept in an ordered set per name, updated when a session installs
//! tokens, signs out or is dropped: O(log n) on the refresh path, nothing per request.
//!
//! A live session left idle past its deadline counts too: nobody asked for its token, so nothing
//! renewed it (it renews on next use). Alert on the gauge where sessions are in steady use; the
//! `terminal`, `transient` and `lost_answer` attempts say whether refreshing itself is failing.
//!
//! ## Gauges that count down
//! A `metrics` gauge holds the last value set; the facade has no callback at scrape time. The
//! timestamp gauge is therefore exact at any moment (Prometheus' own advice is to export when
//! something happens, not how long until). The seconds gauge is set whenever the deadline
//! changes and whenever [`update_gauges`] is called: call it right before rendering a scrape, as
//! the `prometheus` example does, and it is exact too.
//!
//! ## Cost
//! Nothing is recorded on the per-request path of a valid token (attaching it, accepting its
//! response): with the feature on, that path runs the same instructions as without. Metrics are
//! recorded only when something happens to the session: a refresh, a request joining one, a
//! stale or refused token, a logout, a store failure. Without the feature, the session's hook is
//! a zero-sized type whose calls compile to nothing.
//!
//! ```
//! // Descriptions and units for whichever recorder is installed; then, at each scrape:
//! tokenkeeper::metrics::describe();
//! tokenkeeper::metrics::update_gauges();
//! assert!(tokenkeeper::metrics::REFRESH_DURATION.ends_with("_seconds"));
//! ```

/// Counter: calls to the refresher (and adoptions), by `outcome`.
pub const REFRESH_ATTEMPTS: &str = "tokenkeeper_refresh_attempts_total";
/// Histogram: one refresh flight's duration in seconds, by `outcome`.
pub const REFRESH_DURATION: &str = "tokenkeeper_refresh_duration_seconds";
/// Counter: requests that joined a refresh in flight.
pub const WAITERS_JOINED: &str = "tokenkeeper_refresh_waiters_joined_total";
/// Counter: refusals of an older generation, retried without a refresh.
pub const STALE_RETRIES: &str = "tokenkeeper_stale_retries_total";
/// Counter: logins that ended, by `reason`.
pub const LOGOUTS: &str = "tokenkeeper_logouts_total";
/// Counter: failed store operations, by `operation`.
pub const STORE_FAILURES: &str = "tokenkeeper_store_failures_total";
/// Gauge: seconds until the soonest hard deadline among the live sessions of a name.
pub const SOONEST_HARD_EXPIRY: &str = "tokenkeeper_soonest_hard_expiry_seconds";
/// Gauge: the soonest hard deadline among the live sessions of a name, as a Unix time.
pub const SOONEST_HARD_EXPIRY_TIMESTAMP: &str = "tokenkeeper_soonest_hard_expiry_timestamp_seconds";

/// Registers a description and unit for every metric with the installed recorder. Optional:
/// recorders that render descriptions (Prometheus' `# HELP`) show them.
///
/// ```
/// tokenkeeper::metrics::describe();
/// ```
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REFRESH_ATTEMPTS,
        Unit::Count,
        "Calls to the refresher by outcome (ok, transient, lost_answer, terminal, inconclusive), and adoptions of a pair another process stored (adopted)."
    );
    describe_histogram!(
        REFRESH_DURATION,
        Unit::Seconds,
        "One refresh flight from start to outcome, as its waiters waited for it."
    );
    describe_counter!(
        WAITERS_JOINED,
        Unit::Count,
        "Requests that joined a refresh another request had started."
    );
    describe_counter!(
        STALE_RETRIES,
        Unit::Count,
        "Refusals of an older token generation, retried with the current token without a refresh."
    );
    describe_counter!(LOGOUTS, Unit::Count, "Logins that ended, by reason.");
    describe_counter!(
        STORE_FAILURES,
        Unit::Count,
        "Token store operations that failed or timed out, by operation."
    );
    describe_gauge!(
        SOONEST_HARD_EXPIRY,
        Unit::Seconds,
        "Seconds until the soonest hard token deadline among the live sessions of this name (+Inf: none)."
    );
    describe_gauge!(
        SOONEST_HARD_EXPIRY_TIMESTAMP,
        Unit::Seconds,
        "The soonest hard token deadline among the live sessions of this name, as a Unix time (+Inf: none)."
    );
}

/// Sets the seconds-until-expiry gauge of every session name to its value now. Call it right
/// before a scrape is rendered; between calls the gauge holds the value of the last change.
///
/// ```
/// tokenkeeper::metrics::update_gauges();
/// ```
pub fn update_gauges() {
    expiry::update_all();
}

/// The soonest hard deadline per session name, maintained as sessions install tokens, sign out
/// and are dropped.
pub(crate) mod expiry {
    use super::{SOONEST_HARD_EXPIRY, SOONEST_HARD_EXPIRY_TIMESTAMP};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::{Mutex, MutexGuard, PoisonError};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Deadlines (since the Unix epoch) of the live sessions with a deadline, per name, each
    /// paired with its entry's id so equal deadlines stay distinct.
    type Deadlines = BTreeMap<&'static str, BTreeSet<(Duration, u64)>>;

    static DEADLINES: Mutex<Deadlines> = Mutex::new(BTreeMap::new());
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);

    fn deadlines() -> MutexGuard<'static, Deadlines> {
        // The map is consistent between statements; a panic elsewhere cannot break it.
        DEADLINES.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One session's place among its name's deadlines; removed when dropped.
    #[derive(Debug)]
    pub(crate) struct Entry {
        name: &'static str,
        id: u64,
        /// The deadline this entry holds in the map, if any. Read and written under the map's
        /// lock only.
        current: Mutex<Option<Duration>>,
    }

    impl Entry {
        pub(crate) fn new(name: &'static str) -> Self {
            Self {
                name,
                id: NEXT_ID.fetch_add(1, Relaxed),
                current: Mutex::new(None),
            }
        }

        /// This session's hard deadline is now `deadline` (`None`: it has none).
        pub(crate) fn set(&self, deadline: Option<SystemTime>) {
            let deadline = deadline.map(since_epoch);
            let mut all = deadlines();
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if *current == deadline {
                return;
            }
            let set = all.entry(self.name).or_default();
            if let Some(old) = current.take() {
                set.remove(&(old, self.id));
            }
            if let Some(new) = deadline {
                set.insert((new, self.id));
            }
            *current = deadline;
            let soonest = set.first().map(|(deadline, _)| *deadline);
            if set.is_empty() {
                all.remove(self.name);
            }
            record(self.name, soonest);
        }
    }

    impl Drop for Entry {
        fn drop(&mut self) {
            self.set(None);
        }
    }

    pub(super) fn update_all() {
        let all = deadlines();
        for (name, set) in all.iter() {
            record(name, set.first().map(|(deadline, _)| *deadline));
        }
    }

    fn since_epoch(at: SystemTime) -> Duration {
        // A deadline before 1970 is a clock gone wrong; it counts as long passed.
        at.duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    /// Sets both gauges of `name` to `soonest` (`None`: `+Inf`, nothing expires).
    fn record(name: &'static str, soonest: Option<Duration>) {
        let (at, until) = match soonest {
            Some(at) => {
                let now = since_epoch(SystemTime::now()).as_secs_f64();
                (at.as_secs_f64(), at.as_secs_f64() - now)
            }
            None => (f64::INFINITY, f64::INFINITY),
        };
        metrics::gauge!(SOONEST_HARD_EXPIRY_TIMESTAMP, "session" => name).set(at);
        metrics::gauge!(SOONEST_HARD_EXPIRY, "session" => name).set(until);
    }
}
