//! [`SessionBuilder`]: how a [`Session`] is configured.

use super::{Inner, Limits, Session};
use crate::classify::Classifier;
use crate::error::Error;
use crate::origin::OriginPolicy;
use crate::refresh::Refresher;
use crate::session::schedule::RefreshMode;
use crate::store::{MemoryStore, TokenStore};
use std::sync::Arc;
use std::time::Duration;

/// Configures a [`Session`]. Start with [`Session::builder`].
pub struct SessionBuilder {
    refresher: Option<Arc<dyn Refresher>>,
    store: Arc<dyn TokenStore>,
    origins: OriginPolicy,
    errors: Vec<String>,
    classifier: Classifier,
    mode: RefreshMode,
    limits: Limits,
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
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.limits.refresh_timeout = timeout;
        self
    }

    /// How long one call to the refresh endpoint may take (default 10 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.limits.attempt_timeout = timeout;
        self
    }

    /// Backoff between transient refresh failures: starts at `initial`, doubles, capped at `max`,
    /// with jitter (defaults 200 ms, 5 s). A server's `Retry-After` is honoured.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.limits.backoff_initial = initial;
        self.limits.backoff_max = max;
        self
    }

    /// After this many refreshed tokens in a row were refused on the retry of a request, the
    /// session is treated as invalid and ends (default 3). Each token counts once, however many
    /// concurrent retries carried it; any accepted response starts the count again.
    pub fn max_unauthorized_after_refresh(mut self, count: u32) -> Self {
        self.limits.max_unauthorized_after_refresh = count.max(1);
        self
    }

    /// Builds the session. Fails on a missing refresher, unparsable or insecure origins.
    pub fn build(self) -> Result<Session, Error> {
        if let Some(error) = self.errors.into_iter().next() {
            return Err(Error::Config(error));
        }
        let refresher = self
            .refresher
            .ok_or_else(|| Error::Config("a refresher is required".into()))?;
        if self.origins.is_empty() {
            return Err(Error::Config(
                "no origin to attach the token to: call attach_to([..]) or attach_to_any()".into(),
            ));
        }
        if let Some(origin) = self.origins.insecure_listed() {
            return Err(Error::Config(format!(
                "{origin} is plain http and not loopback; use https or allow_insecure_http()"
            )));
        }
        Ok(Session {
            inner: Arc::new(Inner::new(
                refresher,
                self.store,
                self.origins,
                self.classifier,
                self.mode,
                self.limits,
            )),
        })
    }
}
