//! [`Credential`]: the token a request carries, stamped with its generation.

use super::Session;
use super::schedule::Schedule;
use crate::error::Error;
use crate::token::TokenSet;
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// The current access token, ready to attach, with the generation it belongs to.
///
/// Adapters record the generation a request carried; when that request is refused they hand it
/// back to [`Session::token_rejected`](crate::Session::token_rejected), which refreshes only if
/// that generation is still current (and never for a credential of another login).
#[derive(Clone)]
pub struct Credential {
    generation: u64,
    /// The generation as the store knows it. Equal to `generation` unless this session's own
    /// generations ran ahead of the store's (earlier logins): store comparisons use this one.
    pub(crate) store_generation: u64,
    login: u64,
    /// The login's tag as the store knows it ([`StoredTokens::login`]): what tells another
    /// process's sign-in from a refresh of this login when a stored pair is adopted.
    ///
    /// [`StoredTokens::login`]: crate::store::StoredTokens::login
    pub(crate) store_login: Option<u64>,
    tokens: TokenSet,
    header: HeaderValue,
    pub(crate) schedule: Schedule,
    /// For a DPoP-bound token: the key and `ath` every request's proof needs.
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::Binding>,
}

/// Why tokens cannot be made into a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// The access token is not a valid header value.
    NotAHeaderValue,
    /// The access token is DPoP-bound but the set carries no DPoP key (or this build has no
    /// DPoP support): it must never be sent as a bearer token.
    DpopWithoutKey,
}

impl Unusable {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Unusable::NotAHeaderValue => "the access token is not a valid header value",
            #[cfg(feature = "dpop")]
            Unusable::DpopWithoutKey => "the access token is DPoP-bound but has no DPoP key",
            #[cfg(not(feature = "dpop"))]
            Unusable::DpopWithoutKey => {
                "the access token is DPoP-bound and this build lacks feature `dpop`"
            }
        }
    }
}

impl Credential {
    pub(crate) fn new(
        tokens: TokenSet,
        generation: u64,
        store_generation: u64,
        login: u64,
        store_login: Option<u64>,
        schedule: Schedule,
    ) -> Result<Self, Unusable> {
        #[cfg(feature = "dpop")]
        let dpop = match (tokens.is_dpop_bound(), tokens.dpop_key()) {
            (false, _) => None,
            (true, None) => return Err(Unusable::DpopWithoutKey),
            (true, Some(key)) => Some(crate::dpop::Binding::new(
                key.clone(),
                tokens.access_token(),
            )),
        };
        #[cfg(not(feature = "dpop"))]
        if tokens.is_dpop_bound() {
            return Err(Unusable::DpopWithoutKey);
        }
        let scheme = if tokens.is_dpop_bound() {
            "DPoP"
        } else {
            "Bearer"
        };
        let mut header = HeaderValue::try_from(format!(
            "{scheme} {}",
            tokens.access_token().expose_secret()
        ))
        .map_err(|_| Unusable::NotAHeaderValue)?;
        header.set_sensitive(true);
        Ok(Self {
            generation,
            store_generation,
            login,
            store_login,
            tokens,
            header,
            schedule,
            #[cfg(feature = "dpop")]
            dpop,
        })
    }

    /// The generation: grows with every refresh and every sign-in, and never repeats within a
    /// session's lifetime (also across sign-out and sign-in).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The login these tokens belong to: the generation of the sign-in (or restore) that
    /// started it. Refreshes keep it. A refusal of a token from another login is handed back
    /// to its caller as it is: it never retries, refreshes or ends the current login.
    pub fn login(&self) -> u64 {
        self.login
    }

    /// `Bearer <access token>` (`DPoP <access token>` for a DPoP-bound token), marked sensitive
    /// so HTTP stacks and `Debug` do not print it.
    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// Whether the access token is DPoP-bound: every request needs a proof besides
    /// [`header_value`](Self::header_value) ([`dpop_proof`](Self::dpop_proof)).
    pub fn is_dpop_bound(&self) -> bool {
        self.tokens.is_dpop_bound()
    }

    /// The `DPoP` header value for a request with this credential (a proof with `ath` and the
    /// nonce `url`'s origin handed out last), or `None` for a bearer token. For code that
    /// sends requests without the session's adapters.
    ///
    /// ```
    /// # async fn example(session: tokenkeeper::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let credential = session.credential().await?;
    /// let url = "https://api.example.com/items/1".parse()?;
    /// let mut request = reqwest::Request::new(reqwest::Method::GET, url);
    /// if let Some(proof) = credential.dpop_proof(request.method(), request.url()) {
    ///     request.headers_mut().insert("dpop", proof?);
    /// }
    /// request.headers_mut().insert("authorization", credential.header_value());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "dpop")]
    pub fn dpop_proof(
        &self,
        method: &http::Method,
        url: &url::Url,
    ) -> Option<Result<HeaderValue, crate::dpop::DpopError>> {
        self.dpop.as_ref().map(|binding| binding.proof(method, url))
    }

    #[cfg(feature = "dpop")]
    pub(crate) fn dpop_key(&self) -> Option<&crate::dpop::DpopKey> {
        self.dpop.as_ref().map(|binding| &binding.key)
    }

    /// The access token.
    pub fn access_token(&self) -> &SecretString {
        self.tokens.access_token()
    }

    /// The whole token set.
    pub fn tokens(&self) -> &TokenSet {
        &self.tokens
    }

    /// Whether the access token is known to have expired (by the local clock, with a safety
    /// margin for the request's transit).
    pub fn is_expired(&self) -> bool {
        self.schedule.is_past_hard(Instant::now())
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("generation", &self.generation)
            .field("login", &self.login)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// What a request gets now, judged from one reading of the session's state.
pub(crate) enum Judged {
    /// Attach this credential (past its soft deadline a background refresh has started).
    Ready(Arc<Credential>),
    /// This credential is past its hard deadline: wait for the refresh that replaces it.
    Refresh(Arc<Credential>),
    /// Nobody signed in, and the refresher obtains a first token without a login.
    ObtainFirst,
}

impl Session {
    /// [`Session::credential`] without awaiting: `Ok(Some(_))` is what it would return at once
    /// (past the soft deadline this also starts the background refresh), `Ok(None)` means it
    /// would wait for a refresh, so the caller awaits `credential()` instead. Adapters call this
    /// on every request so that the refresh's future is not part of theirs.
    pub(crate) fn credential_now(&self) -> Result<Option<Arc<Credential>>, Error> {
        Ok(match self.judge()? {
            Judged::Ready(current) => Some(current),
            Judged::Refresh(_) | Judged::ObtainFirst => None,
        })
    }

    /// Reads the state once and judges it. The credential found past its deadline is the one
    /// to refresh *from*: reading the state a second time could find the refresh's result
    /// installed meanwhile, and refreshing that would rotate a token that was just issued.
    pub(crate) fn judge(&self) -> Result<Judged, Error> {
        let Some(current) = self.inner.current() else {
            // A refresher that needs no login obtains the first token: that is a wait.
            if self.inner.refresher.obtains_without_login() {
                return Ok(Judged::ObtainFirst);
            }
            return Err(Error::LoginRequired);
        };
        let (past_soft, past_hard) = current.schedule.deadlines_passed();
        if past_hard {
            return Ok(Judged::Refresh(current));
        }
        if past_soft {
            self.inner.refresh_in_background(&current);
        }
        Ok(Judged::Ready(current))
    }
}

#[cfg(test)]
mod tests {
    use crate::{RefreshMode, Session, TokenSet, refresh};
    use futures_util::FutureExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// Callers keep arriving while the refresh of an expired token completes on the other
    /// thread: the refresh's own result is never refreshed again. The credential judged
    /// expired is the one refreshed from; reading the state a second time (as `credential()`
    /// once did) could find the new token installed in between and rotate it at once, which a
    /// saturated machine did in one of a few hundred bursts of 1,000. Each arrival here is one
    /// poll of `credential()` (it judges, joins the flight, and is dropped), so arrivals are
    /// continuous while the flight installs its result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expiry_seen_by_callers_arriving_during_the_refresh_is_refreshed_once() {
        for round in 0..100 {
            let calls = Arc::new(AtomicU64::new(0));
            let counted = Arc::clone(&calls);
            let session = Session::builder()
                .mode(RefreshMode::default())
                .attach_to(["https://api.example.com"])
                .refresher(refresh::from_fn(move |_| {
                    let call = counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        Ok(TokenSet::new(format!("access-{call}"))
                            .with_refresh_token("refresh")
                            .with_expires_in(Duration::from_secs(3600)))
                    }
                }))
                .build()
                .unwrap();
            session
                .sign_in(
                    TokenSet::new("first")
                        .with_refresh_token("refresh")
                        .with_expires_in(Duration::from_millis(60)),
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(70)).await;
            // Arrivals come from a thread of their own, so the flight runs on a worker while
            // they keep coming (a worker spinning here would hold the flight in its queue).
            let runtime = tokio::runtime::Handle::current();
            let arrivals = {
                let session = session.clone();
                std::thread::spawn(move || {
                    let _entered = runtime.enter();
                    // Until the refreshed credential is installed, and a while after.
                    let mut after = 0;
                    while after < 1000 {
                        if let Some(credential) = session.credential().now_or_never() {
                            assert_eq!(credential.unwrap().generation(), 2);
                            after += 1;
                        }
                    }
                })
            };
            tokio::task::spawn_blocking(move || arrivals.join())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}");
            assert_eq!(session.stats().refreshes, 1, "round {round}");
        }
    }
}
