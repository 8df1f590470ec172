//! Server configuration: [`ServerConfig`] and [`Latency`].

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access::{Origin, valid_host_name};
use crate::errors::ServerError;

/// Largest accepted [`ServerConfig::max_connections`] (the semaphore counts in `u32`).
const MAX_CONNECTIONS: usize = 1 << 20;

/// Artificial latency added to each kind of endpoint, after the request has
/// been decided and before the response is sent.
///
/// "Decided at arrival, answered late" is what makes the late-401 race
/// reproducible: an API request validated just before its token expired can
/// still be answered after the client already refreshed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Added to `POST /login` and the oauth2 `grant_type=password`.
    pub login: Duration,
    /// Added to the four refresh endpoints (also to injected failures).
    pub refresh: Duration,
    /// Added to the protected API (`/api/items...`), to 200s and 401s alike.
    pub api: Duration,
}

impl Latency {
    /// The same latency for every endpoint kind.
    pub fn uniform(latency: Duration) -> Self {
        Self {
            login: latency,
            refresh: latency,
            api: latency,
        }
    }
}

/// Everything the reference server can be told at start.
///
/// `Default` gives a server on `127.0.0.1:0` (any free port) with a 60 s
/// access token, a 24 h refresh token, no grace period, no latency, no faults,
/// a random JWT secret and one user `demo`/`demo`; at most 100,000 sessions, dead ones
/// forgotten 10 minutes after they died; at most 1,024 connections, each given 10 s to send
/// a request's headers; no CORS; only loopback `Host` names; raw tokens in the header
/// contract's response headers.
///
/// ```
/// use std::time::Duration;
/// use tokenkeeper_server::ServerConfig;
///
/// let config = ServerConfig::default()
///     .with_access_ttl(Duration::from_millis(500))
///     .with_grace_period(Duration::from_secs(2));
/// assert_eq!(config.users, vec![("demo".to_string(), "demo".to_string())]);
/// ```
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:0` (the OS picks a port).
    pub bind: SocketAddr,
    /// Lifetime of access tokens; may be fractional (`exp` is a fractional
    /// NumericDate). Default 60 s.
    pub access_ttl: Duration,
    /// Lifetime of each refresh token, counted from when it was issued (every
    /// rotation issues a fresh one). Default 24 h.
    pub refresh_ttl: Duration,
    /// Window after a rotation during which the immediately previous refresh
    /// token is accepted once more and answers with the same new pair.
    /// Default zero (off): any second presentation is reuse.
    pub grace_period: Duration,
    /// Artificial latency per endpoint kind. Default zero.
    pub latency: Latency,
    /// Probability (0.0..=1.0) that a refresh request is answered 503 without
    /// touching the session. Default 0.
    pub refresh_failure_rate: f64,
    /// When true, refresh requests are never answered (until shutdown).
    pub refresh_hang: bool,
    /// HS256 secret for access tokens. `None` = 256 random bits per start.
    pub jwt_secret: Option<String>,
    /// Accepted `(username, password)` pairs. Default `[("demo", "demo")]`.
    pub users: Vec<(String, String)>,
    /// Most refresh-token families (sessions) held at once. A login that finds the table full
    /// forgets every dead family (revoked, or all its tokens expired); if every family is still
    /// live it is refused with 503 and `Retry-After` (live sessions are never evicted).
    /// Default 100,000.
    pub max_families: usize,
    /// How long a dead family (revoked, or its newest refresh and access tokens expired) is
    /// kept so that its tokens are still answered as expired, revoked or reused rather than
    /// unknown. Default 10 minutes.
    pub family_retention: Duration,
    /// Whether dead families are pruned. Default true; false keeps every family until a
    /// reset (memory grows with every login: only for measuring what pruning saves).
    pub prune_families: bool,
    /// Origins (`scheme://host[:port]`, e.g. `http://localhost:5173`) that may call the
    /// login, refresh and API routes from a browser, with credentials. Default none: no CORS
    /// headers at all. Operator routes (`/__…`) never answer CORS, whatever this says.
    pub allowed_origins: Vec<String>,
    /// Host names accepted in the `Host` header besides loopback (`localhost`, `127.0.0.0/8`,
    /// `[::1]`) and the bound address. Anything else is refused with 421 on every route, which
    /// defeats DNS rebinding. Default none.
    pub allowed_hosts: Vec<String>,
    /// How long a connection may take to send a request's headers, counted from when the
    /// server starts waiting for them: on a new connection, and between requests on a
    /// keep-alive one (so it also closes idle connections); and then as long again for the
    /// request's body (408 when it is late). Default 10 s.
    pub header_read_timeout: Duration,
    /// Most connections served at once. Further connections wait in the listen backlog
    /// until one closes. Default 1,024.
    pub max_connections: usize,
    /// Length of the listen backlog: connections whose handshake completed, waiting to be
    /// accepted. Default 4,096 (the kernel caps it, at `net.core.somaxconn` on Linux). A burst
    /// of new connections larger than the backlog overflows it while the accept loop is busy:
    /// the kernel then drops the handshakes' last packets and some clients see their
    /// connection reset instead of served late (the 128 of `std`'s `bind` did that to bursts
    /// of 1,000 on a saturated machine).
    pub listen_backlog: u32,
    /// How the header contract returns new tokens in its response headers: `false` (default)
    /// sends them raw (`Authorization: <access>`), as the header-contract article's server
    /// does; `true` sends `Authorization: Bearer <access>` (and the same for
    /// `Authorization-refresh`).
    pub header_bearer_prefix: bool,
    /// DPoP (RFC 9449) on the oauth2 token endpoint and the protected API. Default `None`:
    /// no DPoP, every token is a bearer token. See [`DpopConfig`].
    pub dpop: Option<DpopConfig>,
}

/// How the server speaks DPoP (RFC 9449): sender-constrained tokens.
///
/// With DPoP on, `POST /oauth2/token` verifies the `DPoP` proof (ES256 or EdDSA) of every
/// grant (password, refresh token, client credentials) and issues tokens bound to the proof's
/// key: `token_type: "DPoP"`, an access token whose `cnf.jkt` is the key's RFC 7638
/// thumbprint, and a refresh token that only a proof signed by the same key can redeem. The protected API accepts such a token only as
/// `Authorization: DPoP <token>` with a proof carrying `ath`. The other three contracts and
/// `POST /login` ignore DPoP and keep issuing bearer tokens.
///
/// `Default`: proofs required at the token endpoint, no nonces, `iat` accepted from 60 s in
/// the past to 5 s in the future, 100,000 `jti`s remembered, nonces rotated every 5 minutes
/// (when on).
///
/// ```
/// use std::time::Duration;
/// use tokenkeeper_server::{DpopConfig, ServerConfig};
///
/// let config = ServerConfig::default().with_dpop(
///     DpopConfig::default()
///         .with_nonce(true)
///         .with_nonce_lifetime(Duration::from_secs(30)),
/// );
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpopConfig {
    /// A grant without a `DPoP` proof is refused (`400
    /// invalid_dpop_proof`). When false, such a grant gets bearer tokens, as a server that
    /// offers DPoP without demanding it does. Default true.
    pub required: bool,
    /// Demand a server-issued nonce in every proof (RFC 9449 §8, §9): a proof without the
    /// current nonce gets `400 use_dpop_nonce` (token endpoint) or `401` with
    /// `WWW-Authenticate: DPoP error="use_dpop_nonce"` (API), with the nonce in the
    /// `DPoP-Nonce` header. Default false.
    pub nonce: bool,
    /// How long a nonce is current; the previous one is still accepted for as long again, so
    /// a nonce lives between one and two lifetimes. Default 5 minutes.
    pub nonce_lifetime: Duration,
    /// Oldest accepted proof: `iat` no further in the past than this. Default 60 s.
    pub max_age: Duration,
    /// Newest accepted proof: `iat` no further in the future than this (clock skew).
    /// Default 5 s.
    pub future_leeway: Duration,
    /// Most proof `jti`s remembered for replay detection. When full, the oldest is forgotten
    /// and proofs no newer than it are refused from then on (as too old), so memory stays
    /// bounded without opening a replay hole. Default 100,000.
    pub replay_capacity: usize,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            required: true,
            nonce: false,
            nonce_lifetime: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(60),
            future_leeway: Duration::from_secs(5),
            replay_capacity: 100_000,
        }
    }
}

impl DpopConfig {
    /// Sets [`DpopConfig::required`].
    pub fn with_required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Sets [`DpopConfig::nonce`].
    pub fn with_nonce(mut self, nonce: bool) -> Self {
        self.nonce = nonce;
        self
    }

    /// Sets [`DpopConfig::nonce_lifetime`].
    pub fn with_nonce_lifetime(mut self, lifetime: Duration) -> Self {
        self.nonce_lifetime = lifetime;
        self
    }

    /// Sets [`DpopConfig::max_age`].
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets [`DpopConfig::future_leeway`].
    pub fn with_future_leeway(mut self, leeway: Duration) -> Self {
        self.future_leeway = leeway;
        self
    }

    /// Sets [`DpopConfig::replay_capacity`].
    pub fn with_replay_capacity(mut self, capacity: usize) -> Self {
        self.replay_capacity = capacity;
        self
    }

    fn validate(&self) -> Result<(), ServerError> {
        let bad = |what: &str| Err(ServerError::InvalidConfig(format!("dpop: {what}")));
        if self.nonce_lifetime.is_zero() {
            return bad("nonce_lifetime must be greater than zero");
        }
        if self.max_age.is_zero() {
            return bad("max_age must be greater than zero");
        }
        if self.replay_capacity == 0 {
            return bad("replay_capacity must be at least 1");
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            access_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(24 * 60 * 60),
            grace_period: Duration::ZERO,
            latency: Latency::default(),
            refresh_failure_rate: 0.0,
            refresh_hang: false,
            jwt_secret: None,
            users: vec![("demo".to_owned(), "demo".to_owned())],
            max_families: 100_000,
            family_retention: Duration::from_secs(10 * 60),
            prune_families: true,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            listen_backlog: 4096,
            header_bearer_prefix: false,
            dpop: None,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets and passwords stay out of Debug output.
        let users: Vec<&str> = self.users.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("grace_period", &self.grace_period)
            .field("latency", &self.latency)
            .field("refresh_failure_rate", &self.refresh_failure_rate)
            .field("refresh_hang", &self.refresh_hang)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("users", &users)
            .field("max_families", &self.max_families)
            .field("family_retention", &self.family_retention)
            .field("prune_families", &self.prune_families)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("listen_backlog", &self.listen_backlog)
            .field("header_bearer_prefix", &self.header_bearer_prefix)
            .field("dpop", &self.dpop)
            .finish()
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::bind`].
    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    /// Listens on `127.0.0.1:port` (0 = any free port).
    pub fn with_port(mut self, port: u16) -> Self {
        self.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self
    }

    /// Sets [`ServerConfig::access_ttl`].
    pub fn with_access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// Sets [`ServerConfig::refresh_ttl`].
    pub fn with_refresh_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_ttl = ttl;
        self
    }

    /// Sets [`ServerConfig::grace_period`].
    pub fn with_grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Sets [`ServerConfig::latency`].
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Sets [`ServerConfig::refresh_failure_rate`].
    pub fn with_refresh_failure_rate(mut self, rate: f64) -> Self {
        self.refresh_failure_rate = rate;
        self
    }

    /// Sets [`ServerConfig::refresh_hang`].
    pub fn with_refresh_hang(mut self, hang: bool) -> Self {
        self.refresh_hang = hang;
        self
    }

    /// Sets [`ServerConfig::jwt_secret`].
    pub fn with_jwt_secret(mut self, secret: impl Into<String>) -> Self {
        self.jwt_secret = Some(secret.into());
        self
    }

    /// Replaces the user list with `users`.
    pub fn with_users<I, U, P>(mut self, users: I) -> Self
    where
        I: IntoIterator<Item = (U, P)>,
        U: Into<String>,
        P: Into<String>,
    {
        self.users = users
            .into_iter()
            .map(|(u, p)| (u.into(), p.into()))
            .collect();
        self
    }

    /// Adds one user to the list.
    pub fn with_user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((username.into(), password.into()));
        self
    }

    /// Sets [`ServerConfig::max_families`].
    pub fn with_max_families(mut self, max: usize) -> Self {
        self.max_families = max;
        self
    }

    /// Sets [`ServerConfig::family_retention`].
    pub fn with_family_retention(mut self, retention: Duration) -> Self {
        self.family_retention = retention;
        self
    }

    /// Sets [`ServerConfig::prune_families`].
    pub fn with_prune_families(mut self, prune: bool) -> Self {
        self.prune_families = prune;
        self
    }

    /// Adds an origin to [`ServerConfig::allowed_origins`].
    pub fn with_allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// Adds a host name to [`ServerConfig::allowed_hosts`].
    pub fn with_allowed_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// Sets [`ServerConfig::header_read_timeout`].
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`ServerConfig::max_connections`].
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets [`ServerConfig::listen_backlog`].
    pub fn with_listen_backlog(mut self, backlog: u32) -> Self {
        self.listen_backlog = backlog;
        self
    }

    /// Sets [`ServerConfig::header_bearer_prefix`].
    pub fn with_header_bearer_prefix(mut self, prefixed: bool) -> Self {
        self.header_bearer_prefix = prefixed;
        self
    }

    /// Sets [`ServerConfig::dpop`]: DPoP on, configured by `dpop`.
    pub fn with_dpop(mut self, dpop: DpopConfig) -> Self {
        self.dpop = Some(dpop);
        self
    }

    /// Checks the values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ServerError> {
        if !valid_rate(self.refresh_failure_rate) {
            return Err(ServerError::InvalidConfig(format!(
                "refresh_failure_rate must be within 0.0..=1.0, got {}",
                self.refresh_failure_rate
            )));
        }
        if self.access_ttl.is_zero() {
            return Err(ServerError::InvalidConfig(
                "access_ttl must be greater than zero".to_owned(),
            ));
        }
        if self.refresh_ttl.is_zero() {
            return Err(ServerError::InvalidConfig(
                "refresh_ttl must be greater than zero".to_owned(),
            ));
        }
        if let Some(secret) = &self.jwt_secret
            && secret.is_empty()
        {
            return Err(ServerError::InvalidConfig(
                "jwt_secret must not be empty".to_owned(),
            ));
        }
        if self.max_families == 0 {
            return Err(ServerError::InvalidConfig(
                "max_families must be at least 1".to_owned(),
            ));
        }
        if self.header_read_timeout.is_zero() {
            return Err(ServerError::InvalidConfig(
                "header_read_timeout must be greater than zero".to_owned(),
            ));
        }
        if self.listen_backlog == 0 {
            return Err(ServerError::InvalidConfig(
                "listen_backlog must be at least 1".to_owned(),
            ));
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            return Err(ServerError::InvalidConfig(format!(
                "max_connections must be within 1..={MAX_CONNECTIONS}, got {}",
                self.max_connections
            )));
        }
        if let Some(dpop) = &self.dpop {
            dpop.validate()?;
        }
        for origin in &self.allowed_origins {
            Origin::parse(origin).map_err(ServerError::InvalidConfig)?;
        }
        for host in &self.allowed_hosts {
            if !valid_host_name(host) {
                return Err(ServerError::InvalidConfig(format!(
                    "allowed host {host:?} is not a host name or IP address (no scheme, port or path)"
                )));
            }
        }
        Ok(())
    }
}

/// True when `rate` is a usable failure probability.
pub(crate) fn valid_rate(rate: f64) -> bool {
    rate.is_finite() && (0.0..=1.0).contains(&rate)
}
