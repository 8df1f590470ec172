//! The session's one hook into the [`metrics`](https://docs.rs/metrics) facade: [`Meter`].
//!
//! The session core calls the meter at the few places where something worth counting happens:
//! a call to the refresher and its outcome, an adoption, a finished flight, a request joining a
//! flight, a stale retry, a logout, a failed store operation, a newly installed credential.
//! None of them is on the per-request path of a valid token (attaching it, or accepting its
//! response): that path records nothing, with or without the feature.
//!
//! Without feature `metrics` the meter is a zero-sized type whose methods are empty and
//! inlined, so the core carries no `cfg` and the calls compile to nothing. With it, each call
//! records through the facade's macros (whichever recorder is installed when it happens, so a
//! recorder installed after the session was built still sees everything). Label values come from
//! closed sets written here: never a key, a token, a URL or a server's text. The one label a user
//! chooses, `session`, is a `&'static str` given in code. The metric names and their meaning are
//! documented once, in [`crate::metrics`].

use super::Credential;
use crate::error::LogoutReason;
use crate::refresh::RefreshError;

/// The outcome of one refresh attempt: a call to the refresher, or an adoption of a pair another
/// process stored (which made the call unnecessary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum AttemptOutcome {
    /// The refresher returned tokens.
    Ok,
    /// A newer pair in a shared store was installed instead of calling the refresher.
    Adopted,
    /// A transient failure (network error, 5xx, 429): tokens kept, retried with backoff.
    Transient,
    /// No answer within the attempt timeout: the refresh may have rotated the token.
    LostAnswer,
    /// The refresh token was rejected (or the answer had no usable tokens): the session ends.
    Terminal,
    /// An answer that was no verdict on the refresh token (3xx, 404, HTML...).
    Inconclusive,
}

impl AttemptOutcome {
    /// The `outcome` label value.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Adopted => "adopted",
            Self::Transient => "transient",
            Self::LostAnswer => "lost_answer",
            Self::Terminal => "terminal",
            Self::Inconclusive => "inconclusive",
        }
    }

    /// The outcome of one call to the refresher, as `call_refresher` sees it: `Err(_)` of the
    /// outer result is the attempt timeout.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn of_call<T, E>(called: &Result<Result<T, RefreshError>, E>) -> Self {
        match called {
            Ok(Ok(_)) => Self::Ok,
            Ok(Err(RefreshError::Inconclusive(_))) => Self::Inconclusive,
            Ok(Err(error)) if error.is_terminal() => Self::Terminal,
            Ok(Err(_)) => Self::Transient,
            Err(_) => Self::LostAnswer,
        }
    }
}

/// How a flight ended, for the refresh-duration histogram's `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum FlightOutcome {
    /// New tokens from the refresher.
    Refreshed,
    /// A pair another process stored.
    Adopted,
    /// No new tokens (transient, terminal, inconclusive, store failure).
    Failed,
    /// A sign-in or sign-out replaced the tokens before the flight could use them.
    Superseded,
}

impl FlightOutcome {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::Refreshed => "refreshed",
            Self::Adopted => "adopted",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
        }
    }
}

/// The `reason` label value of a logout: the variant, never the text it carries (a server's
/// `error_description` may hold anything).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn reason_label(reason: &LogoutReason) -> &'static str {
    match reason {
        LogoutReason::RefreshRejected(_) => "refresh_rejected",
        LogoutReason::InvalidRefreshResponse(_) => "invalid_refresh_response",
        LogoutReason::NoRefreshToken => "no_refresh_token",
        LogoutReason::TokenInvalid => "token_invalid",
        LogoutReason::RepeatedUnauthorized(_) => "repeated_unauthorized",
        LogoutReason::ClearedElsewhere => "cleared_elsewhere",
        LogoutReason::SignedOut => "signed_out",
    }
}

/// The `operation` label value of a store failure: the operation the session called, never the
/// error's text (it may name a path, a Redis URL or a key).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn operation_label(operation: &'static str) -> &'static str {
    match operation {
        "lock" => "lock",
        "load" => "load",
        "save" => "save",
        "clear" => "clear",
        "fence" => "fence",
        "lease_lost" => "lease_lost",
        // Every call site passes one of the above; anything else still stays a closed value.
        _ => "other",
    }
}

#[cfg(feature = "metrics")]
pub(crate) use on::{Meter, MeterConfig};

#[cfg(not(feature = "metrics"))]
pub(crate) use off::{Meter, MeterConfig};

#[cfg(feature = "metrics")]
mod on {
    use super::{AttemptOutcome, Credential, FlightOutcome, LogoutReason};
    use crate::metrics::{
        LOGOUTS, REFRESH_ATTEMPTS, REFRESH_DURATION, STALE_RETRIES, STORE_FAILURES, WAITERS_JOINED,
        expiry,
    };
    use std::time::Instant;

    /// What the builder knows about a session's metrics.
    #[derive(Debug, Clone)]
    pub(crate) struct MeterConfig {
        pub(crate) name: &'static str,
    }

    impl Default for MeterConfig {
        fn default() -> Self {
            Self { name: "default" }
        }
    }

    /// Records a session's metrics, labelled with its name.
    #[derive(Debug)]
    pub(crate) struct Meter {
        name: &'static str,
        /// This session's entry among the hard deadlines of sessions with the same name.
        expiry: expiry::Entry,
    }

    /// When a flight started.
    #[derive(Debug)]
    pub(crate) struct FlightTimer(Instant);

    impl Meter {
        pub(crate) fn new(config: MeterConfig) -> Self {
            Self {
                name: config.name,
                expiry: expiry::Entry::new(config.name),
            }
        }

        pub(crate) fn refresh_attempt(&self, outcome: AttemptOutcome) {
            metrics::counter!(REFRESH_ATTEMPTS, "session" => self.name, "outcome" => outcome.label())
                .increment(1);
        }

        pub(crate) fn flight_started(&self) -> FlightTimer {
            FlightTimer(Instant::now())
        }

        pub(crate) fn flight_finished(&self, timer: FlightTimer, outcome: FlightOutcome) {
            metrics::histogram!(REFRESH_DURATION, "session" => self.name, "outcome" => outcome.label())
                .record(timer.0.elapsed().as_secs_f64());
        }

        pub(crate) fn waiter_joined(&self) {
            metrics::counter!(WAITERS_JOINED, "session" => self.name).increment(1);
        }

        pub(crate) fn stale_retry(&self) {
            metrics::counter!(STALE_RETRIES, "session" => self.name).increment(1);
        }

        pub(crate) fn logout(&self, reason: &LogoutReason) {
            let reason = super::reason_label(reason);
            metrics::counter!(LOGOUTS, "session" => self.name, "reason" => reason).increment(1);
        }

        pub(crate) fn store_failure(&self, operation: &'static str) {
            let operation = super::operation_label(operation);
            metrics::counter!(STORE_FAILURES, "session" => self.name, "operation" => operation)
                .increment(1);
        }

        /// The session now holds `credential` (`None`: signed out).
        pub(crate) fn installed(&self, credential: Option<&Credential>) {
            let deadline = credential.and_then(|c| {
                // Proactive sessions wait for a refresh at the hard deadline; reactive ones (no
                // schedule) find out at the expiry itself.
                c.schedule.hard_deadline_wall().or(c.tokens().expires_at())
            });
            self.expiry.set(deadline);
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    use super::{AttemptOutcome, Credential, FlightOutcome, LogoutReason};

    /// Nothing to configure without feature `metrics`. (Not a unit struct, so the builder
    /// writes `MeterConfig::default()` either way.)
    #[derive(Debug, Clone, Default)]
    pub(crate) struct MeterConfig {
        _nothing: (),
    }

    /// Records nothing: every method is empty and inlined away.
    #[derive(Debug)]
    pub(crate) struct Meter;

    /// Keeps no time.
    #[derive(Debug)]
    pub(crate) struct FlightTimer;

    impl Meter {
        #[inline(always)]
        pub(crate) fn new(_: MeterConfig) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn refresh_attempt(&self, _: AttemptOutcome) {}
        #[inline(always)]
        pub(crate) fn flight_started(&self) -> FlightTimer {
            FlightTimer
        }
        #[inline(always)]
        pub(crate) fn flight_finished(&self, _: FlightTimer, _: FlightOutcome) {}
        #[inline(always)]
        pub(crate) fn waiter_joined(&self) {}
        #[inline(always)]
        pub(crate) fn stale_retry(&self) {}
        #[inline(always)]
        pub(crate) fn logout(&self, _: &LogoutReason) {}
        #[inline(always)]
        pub(crate) fn store_failure(&self, _: &'static str) {}
        #[inline(always)]
        pub(crate) fn installed(&self, _: Option<&Credential>) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_reasons_label_by_variant_never_by_text() {
        let secret = "eyJhbGciOi.secret.token";
        for reason in [
            LogoutReason::RefreshRejected(secret.into()),
            LogoutReason::InvalidRefreshResponse(secret.into()),
        ] {
            assert!(!reason_label(&reason).contains("secret"));
        }
        assert_eq!(
            reason_label(&LogoutReason::RepeatedUnauthorized(3)),
            "repeated_unauthorized"
        );
    }

    #[test]
    fn unknown_store_operations_stay_closed() {
        assert_eq!(operation_label("save"), "save");
        assert_eq!(operation_label("something new"), "other");
    }

    #[test]
    fn call_outcomes() {
        type Called = Result<Result<(), RefreshError>, ()>;
        let cases: [(Called, AttemptOutcome); 5] = [
            (Ok(Ok(())), AttemptOutcome::Ok),
            (Err(()), AttemptOutcome::LostAnswer),
            (
                Ok(Err(RefreshError::transient("503"))),
                AttemptOutcome::Transient,
            ),
            (
                Ok(Err(RefreshError::Rejected("invalid_grant".into()))),
                AttemptOutcome::Terminal,
            ),
            (
                Ok(Err(RefreshError::Inconclusive("404".into()))),
                AttemptOutcome::Inconclusive,
            ),
        ];
        for (called, expected) in cases {
            assert_eq!(AttemptOutcome::of_call(&called), expected);
        }
    }
}
