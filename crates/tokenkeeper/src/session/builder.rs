//! [`SessionBuilder`]: how a [`Session`] is configured.

use super::landing::Landing;
use super::meter::MeterConfig;
use super::{EventSink, Inner, Limits, Session};
use crate::classify::Classifier;
use crate::config_error::ConfigError;
use crate::error::Error;
use crate::origin::OriginPolicy;
use crate::refresh::Refresher;
use crate::session::schedule::{Proactive, RefreshMode};
use crate::store::{MemoryStore, TokenStore};
use std::sync::Arc;
use std::time::Duration;

/// What an "invalid token" verdict (the seeds' `InvalidToken`, not merely expired) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InvalidTokenPolicy {
    /// One refresh decides (the default): if the refresh token is rejected the session ends
    /// once; if the route still refuses the fresh token while other routes accept it, that is
    /// the route's answer and goes to the caller. A revoked access token with a good refresh
    /// token costs one refresh, not every request in flight.
    #[default]
    RefreshFirst,
    /// End the session on the first invalid answer for the current token, without refreshing
    /// (as the header-contract article does).
    EndSession,
}

/// Configures a [`Session`]. Start with [`Session::builder`].
pub struct SessionBuilder {
    refresher: Option<Arc<dyn Refresher>>,
    store: Arc<dyn TokenStore>,
    origins: OriginPolicy,
    errors: Vec<String>,
    classifier: Classifier,
    mode: RefreshMode,
    limits: Limits,
    refresh_timeout_set: bool,
    meter: MeterConfig,
}

impl std::fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("origins", &self.origins)
            .field("mode", &self.mode)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SessionBuilder {
    pub(super) fn new() -> Self {
        Self {
            refresher: None,
            store: Arc::new(MemoryStore::new()),
            origins: OriginPolicy::default(),
            errors: Vec::new(),
            classifier: Classifier::default(),
            mode: RefreshMode::default(),
            limits: Limits::default(),
            refresh_timeout_set: false,
            meter: MeterConfig::default(),
        }
    }

    /// How new tokens are obtained (required). See [`refresh`](crate::refresh).
    pub fn refresher(mut self, refresher: impl Refresher) -> Self {
        self.refresher = Some(Arc::new(refresher));
        self
    }

    /// Like [`refresher`](Self::refresher), for a refresher that is already shared.
    pub fn refresher_arc(mut self, refresher: Arc<dyn Refresher>) -> Self {
        self.refresher = Some(refresher);
        self
    }

    /// Where tokens are kept (default: [`MemoryStore`]). A shared store's lock coordinates
    /// refreshes across processes.
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Like [`store`](Self::store), for a store that is already shared.
    pub fn store_arc(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = store;
        self
    }

    /// The origins (`scheme://host[:port]`) that receive the access token. Requests to any other
    /// origin are sent untouched. At least one origin (or [`attach_to_any`](Self::attach_to_any))
    /// is required.
    pub fn attach_to<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for origin in origins {
            if let Err(error) = self.origins.allow(origin.as_ref()) {
                self.errors.push(error);
            }
        }
        self
    }

    /// Attach the token to requests for any origin. Only for clients that talk to nothing else.
    pub fn attach_to_any(mut self) -> Self {
        self.origins.allow_any();
        self
    }

    /// Allow sending the token over plain http to hosts that are not loopback (never needed in
    /// production; loopback is always allowed).
    pub fn allow_insecure_http(mut self) -> Self {
        self.origins.allow_insecure_http();
        self
    }

    /// How responses are read (default: RFC 6750; see [`classify`](crate::classify)).
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Reactive (401s only) or proactive (ahead of expiry, the default).
    pub fn mode(mut self, mode: RefreshMode) -> Self {
        self.mode = mode;
        self
    }

    /// How long one refresh may take in all, transient retries included, before waiting
    /// requests get [`Error::RefreshUnavailable`] (default 30 s).
    ///
    /// With a store whose lock is a lease ([`TokenStore::lock_lease`]), the default is at most
    /// three quarters of the lease, and [`build`](Self::build) refuses a longer one: a holder
    /// must never still be refreshing when its lease may have passed to someone else.
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.limits.refresh_timeout = timeout;
        self.refresh_timeout_set = true;
        self
    }

    /// How long one call to the refresh endpoint may take (default 10 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.limits.attempt_timeout = timeout;
        self
    }

    /// How long one store operation (load, save, clear, taking the lock) may take before it
    /// fails with [`StoreError::Timeout`](crate::store::StoreError::Timeout) (default 10 s): a
    /// hung disk, a FIFO at the store path or an unresponsive Redis never hangs a request.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.limits.store_timeout = timeout;
        self
    }

    /// What an "invalid token" verdict does (default [`InvalidTokenPolicy::RefreshFirst`]).
    pub fn invalid_token_policy(mut self, policy: InvalidTokenPolicy) -> Self {
        self.limits.invalid_token = policy;
        self
    }

    /// Backoff between transient refresh failures: starts at `initial`, doubles, capped at `max`,
    /// with jitter (defaults 200 ms, 5 s). A server's `Retry-After` is honoured.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.limits.backoff_initial = initial;
        self.limits.backoff_max = max;
        self
    }

    /// After this many refreshed tokens in a row were refused on the retry of a request (with no
    /// accepted response in between), the token is refused everywhere and the session ends
    /// (default 3). Each refreshed token counts once however many requests carried it, and a
    /// route that already refused a fresh token is not asked again, so refusals from one route
    /// never end the session on their own.
    pub fn max_unauthorized_after_refresh(mut self, count: u32) -> Self {
        self.limits.max_unauthorized_after_refresh = count.max(1);
        self
    }

    /// The `session` label of this session's metrics (feature `metrics`; default `"default"`).
    ///
    /// A name for what the session logs in to ("partner-api", "billing-m2m"), written in code:
    /// it is a `&'static str` so that no key, user id or token can end up in a label. Sessions
    /// sharing a name add up, and the expiry gauge shows the soonest deadline among them; see
    /// [`metrics`](crate::metrics).
    ///
    /// ```
    /// # fn example() -> Result<(), tokenkeeper::Error> {
    /// use tokenkeeper::{refresh, Session};
    ///
    /// let session = Session::builder()
    ///     .refresher(refresh::from_fn(|_| async { Err(refresh::RefreshError::NoRefreshToken) }))
    ///     .attach_to(["https://api.example.com"])
    ///     .metrics_name("partner-api")
    ///     .build()?;
    /// # let _ = session; Ok(()) }
    /// # example().unwrap();
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics_name(mut self, name: &'static str) -> Self {
        self.meter.name = name;
        self
    }

    /// Builds the session. Fails on a missing refresher, unparsable or insecure origins, and
    /// settings out of range (a NaN fraction, a zero timeout, a refresh timeout not clearly
    /// below the store's lock lease).
    pub fn build(self) -> Result<Session, Error> {
        let store = Arc::clone(&self.store);
        let lease = store.lock_lease();
        Ok(self.template(lease)?.session(store, None))
    }

    /// Checks the settings (as [`build`](Self::build) does, with `lease` as the stores' lock
    /// lease) and keeps them for making any number of sessions that differ only in their store.
    pub(crate) fn template(mut self, lease: Option<Duration>) -> Result<Template, Error> {
        self.check_limits(lease)?;
        if let Some(error) = self.errors.into_iter().next() {
            return Err(ConfigError::new(error).into());
        }
        let refresher = self
            .refresher
            .ok_or_else(|| ConfigError::new("a refresher is required"))?;
        if self.origins.is_empty() {
            return Err(ConfigError::new(
                "no origin to attach the token to: call attach_to([..]) or attach_to_any()",
            )
            .into());
        }
        if let Some(origin) = self.origins.insecure_listed() {
            return Err(ConfigError::new(format!(
                "{origin} is plain http and not loopback; use https or allow_insecure_http()"
            ))
            .into());
        }
        Ok(Template {
            refresher,
            origins: Arc::new(self.origins),
            classifier: Arc::new(self.classifier),
            mode: Arc::new(self.mode),
            limits: Arc::new(self.limits),
            meter: self.meter,
            landing: Arc::default(),
        })
    }
}

/// A checked configuration that makes sessions: the one behind [`SessionBuilder::build`] and
/// the one every session of a [`Sessions`](crate::Sessions) collection is made from. The
/// refresher, origins and classifier are shared by all of them.
#[derive(Clone)]
pub(crate) struct Template {
    pub(crate) refresher: Arc<dyn Refresher>,
    pub(super) origins: Arc<OriginPolicy>,
    pub(super) classifier: Arc<Classifier>,
    pub(super) mode: Arc<RefreshMode>,
    pub(super) limits: Arc<Limits>,
    /// The metrics name, so every session of a keyed collection reports under the one name.
    pub(super) meter: MeterConfig,
    /// The refresh tasks of every session made from this template.
    pub(super) landing: Arc<Landing>,
}

impl Template {
    /// Returns once no refresh of any session made from this template is running.
    pub(crate) async fn refreshes_landed(&self) {
        self.landing.all_landed().await;
    }

    /// A new session over `store`, signed out; `forward` hears its events.
    pub(crate) fn session(
        &self,
        store: Arc<dyn TokenStore>,
        forward: Option<EventSink>,
    ) -> Session {
        self.session_with(Arc::clone(&self.refresher), store, forward)
    }

    /// [`session`](Self::session) with another refresher (one chosen for a key).
    pub(crate) fn session_with(
        &self,
        refresher: Arc<dyn Refresher>,
        store: Arc<dyn TokenStore>,
        forward: Option<EventSink>,
    ) -> Session {
        Session {
            inner: Arc::new(Inner::new(refresher, store, self, forward)),
        }
    }
}

impl SessionBuilder {
    fn check_limits(&mut self, lease: Option<Duration>) -> Result<(), Error> {
        let invalid = |what: String| Err(ConfigError::new(what).into());
        if let RefreshMode::Proactive(Proactive {
            refresh_at, jitter, ..
        }) = &self.mode
        {
            if !(refresh_at.is_finite() && *refresh_at > 0.0 && *refresh_at <= 1.0) {
                return invalid(format!(
                    "Proactive::refresh_at must be in (0, 1], not {refresh_at}"
                ));
            }
            if !(jitter.is_finite() && (0.0..=0.5).contains(jitter)) {
                return invalid(format!(
                    "Proactive::jitter must be in [0, 0.5], not {jitter}"
                ));
            }
        }
        let limits = &mut self.limits;
        for (name, value) in [
            ("refresh_timeout", limits.refresh_timeout),
            ("attempt_timeout", limits.attempt_timeout),
            ("store_timeout", limits.store_timeout),
        ] {
            if value.is_zero() {
                return invalid(format!("{name} must be above zero"));
            }
        }
        if limits.backoff_initial > limits.backoff_max {
            return invalid(format!(
                "backoff: initial {:?} is above max {:?}",
                limits.backoff_initial, limits.backoff_max
            ));
        }
        if let Some(lease) = lease {
            // "Clearly below": a quarter of the lease is left for the save and the release.
            let ceiling = lease.mul_f64(0.75);
            if !self.refresh_timeout_set {
                limits.refresh_timeout = limits.refresh_timeout.min(ceiling);
                limits.attempt_timeout = limits.attempt_timeout.min(limits.refresh_timeout);
            } else if limits.refresh_timeout > ceiling {
                return invalid(format!(
                    "refresh_timeout {:?} is not clearly below the store's lock lease {lease:?} \
                     (at most {ceiling:?}): a paused holder could still be refreshing when its \
                     lease passes to another process",
                    limits.refresh_timeout
                ));
            }
        }
        Ok(())
    }
}
