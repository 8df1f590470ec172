//! `tokenkeeper serve`: the reference auth server on 127.0.0.1.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokenkeeper_server::{DpopConfig, Latency, ServerConfig, ServerHandle};

/// The long `--help` text of `serve`.
pub const LONG_ABOUT: &str = "\
Run the tokenkeeper reference auth server on 127.0.0.1: a realistic backend to
develop and test token-refreshing clients and interceptors against.

One process serves four refresh contracts at once. Log in with
POST /login {\"username\",\"password\",\"style\"} (style: oauth2, json, header or
cookie; default json) or with the oauth2 password grant. The style of a token
decides how the protected API words its 401s for it.

  oauth2  POST /oauth2/token (form, RFC 6749): grant_type=password,
          grant_type=refresh_token and grant_type=client_credentials (a user's
          name and password as client id and secret, HTTP Basic or in the
          body; an access token, no refresh token). Errors: 400 invalid_grant,
          invalid_request, unsupported_grant_type; 401 invalid_client. API 401s carry
          WWW-Authenticate: Bearer error=\"invalid_token\", error_description=...
  json    POST /refresh/token {\"refreshToken\"} -> {\"accessToken\",\"refreshToken\"}.
          Rejection: 401 {\"message\":\"InvalidRefreshTokenError\"} or
          RefreshTokenExpiredError. API 401s: {\"message\":\"TokenExpiredError\"} or
          JsonWebTokenError.
  header  POST /api/refresh-token with Authorization-refresh: Bearer <refresh>;
          new tokens come back raw in the Authorization and
          Authorization-refresh response headers (Bearer-prefixed with
          --header-bearer-prefix). Rejection: 401 text InvalidRefreshToken.
          API 401s: text ExpiredToken or InvalidToken.
  cookie  POST /v3/jwt/reissue with the HttpOnly tk_refresh cookie set by
          /login; answers {\"accessToken\"} and a rotated cookie. Rejection: 401
          {\"result\":{\"errorCode\":\"INVALID_REFRESH_TOKEN\"}}. API 401s:
          EXPIRED_TOKEN or INVALID_TOKEN error codes.

Every refresh rotates the refresh token. Presenting an already-used refresh
token is reuse: the whole session (family) is revoked, its access tokens too.
Protected API: GET /api/items/{id}, POST /api/items (echoes the JSON body).

DPoP (RFC 9449), with --dpop: the oauth2 token endpoint verifies the DPoP proof
of every grant (ES256 or EdDSA, typ dpop+jwt, public jwk, htm, htu, iat within
--dpop-max-age, a jti never seen before) and binds the tokens to its key:
token_type DPoP, cnf.jkt in the access token, and a refresh token that only a
proof by the same key redeems (another key: 400 invalid_grant, session kept).
Bad proofs: 400 invalid_dpop_proof. The API then wants Authorization: DPoP
<token> plus a proof with ath = base64url(SHA-256(token)) by the bound key; bad
proofs get 401 WWW-Authenticate: DPoP error=\"invalid_dpop_proof\", and a bound
token sent as Bearer is refused (invalid_token). With --dpop-nonce every proof
needs the server's nonce: 400 {\"error\":\"use_dpop_nonce\"} (token endpoint) or 401
WWW-Authenticate: DPoP error=\"use_dpop_nonce\" (API), each with a DPoP-Nonce
header; every answer carries the current nonce, which rotates every
--dpop-nonce-lifetime (POST /__dpop/rotate-nonce rotates it at once). The json,
header and cookie contracts and /login stay bearer-only. /__stats counts proofs
accepted and rejected by reason, nonce challenges and jti replays under \"dpop\".
Operator endpoints: GET /__stats, POST /__reset, GET|POST /__faults,
POST /__dpop/rotate-nonce; each needs the header X-Tokenkeeper-Admin: 1
(curl -H 'x-tokenkeeper-admin: 1' ...).

Safe to leave running: only loopback Host names are served (421 otherwise, against
DNS rebinding; add names with --allow-host); a browser page may call the login,
refresh and API routes only from an origin given with --allow-origin (others get
403, and there is no CORS by default); operator endpoints never answer a browser
origin. Sessions are pruned once dead (--family-retention after their tokens expired
or they were revoked) and capped (--max-families; when every session is live, new
logins get 503 with Retry-After). Each connection gets --header-read-timeout to send
a request's headers, idle keep-alive connections included (and as long again for
its body), and at most --max-connections are served at once (more wait).

Durations accept humantime (500ms, 2s, 1m, 24h) or fractional seconds (1.5s).";

/// Flags of `tokenkeeper serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,

    /// Lifetime of access tokens (JWT exp - iat; may be fractional).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    access_ttl: Duration,

    /// Lifetime of each refresh token, from when it was issued.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    refresh_ttl: Duration,

    /// Grace period after a rotation during which the previous refresh token
    /// is accepted once more (returning the same new pair). 0 = off: any
    /// second use is reuse and revokes the session.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    grace: Duration,

    /// Latency added to /login and the oauth2 password grant.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    login_latency: Duration,

    /// Latency added to the four refresh endpoints (after the decision).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    refresh_latency: Duration,

    /// Latency added to the protected API. Tokens are checked on arrival, so
    /// an expiry 401 can arrive after the client already refreshed.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    api_latency: Duration,

    /// Probability (0.0 to 1.0) that a refresh request is answered 503
    /// without touching the session. Changeable live: POST /__faults (with
    /// -H 'x-tokenkeeper-admin: 1').
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    refresh_failure_rate: f64,

    /// Never answer refresh requests (until shutdown). Changeable live:
    /// POST /__faults (with -H 'x-tokenkeeper-admin: 1').
    #[arg(long)]
    refresh_hang: bool,

    /// HS256 secret for access tokens (default: random at every start).
    #[arg(
        long,
        value_name = "SECRET",
        env = "TOKENKEEPER_JWT_SECRET",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,

    /// Accepted user, repeatable (default: demo:demo).
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = parse_user)]
    users: Vec<(String, String)>,

    /// Browser origin (scheme://host or scheme://host:port, e.g. http://localhost:5173)
    /// allowed to call the login, refresh and API routes with credentials (CORS),
    /// repeatable. Default: none, no CORS; requests from other origins get 403. Never
    /// applies to /__ routes.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,

    /// Host name served besides localhost, 127.0.0.0/8 and ::1, repeatable (for a
    /// name that points at this machine). Other Host headers get 421.
    #[arg(long = "allow-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,

    /// Most sessions (refresh-token families) held at once. When every one is live, new
    /// logins get 503 with Retry-After; live sessions are never evicted.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_families: usize,

    /// How long a dead session (revoked, or its tokens expired) is remembered, so its
    /// tokens are answered as expired/revoked/reused rather than unknown.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    family_retention: Duration,

    /// Time a connection gets to send a request's headers (also the idle keep-alive
    /// limit between requests), and then as long again for its body.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,

    /// Most connections served at once; more wait until one closes.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,

    /// Connections waiting to be accepted before the kernel drops new ones (capped by the
    /// kernel, at net.core.somaxconn on Linux).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    listen_backlog: u32,

    /// Header contract: send the new tokens as `Bearer <token>` in the
    /// Authorization and Authorization-refresh response headers instead of
    /// raw (the default, as the header-contract article's server does).
    #[arg(long)]
    header_bearer_prefix: bool,

    /// DPoP (RFC 9449) on the oauth2 token endpoint and the API: proofs required,
    /// tokens bound to the proof's key (token_type DPoP, cnf.jkt).
    #[arg(long)]
    dpop: bool,

    /// With DPoP: a grant without a proof gets bearer tokens instead of
    /// 400 invalid_dpop_proof. Implies --dpop.
    #[arg(long)]
    dpop_optional: bool,

    /// With DPoP: demand a server nonce in every proof (use_dpop_nonce challenges,
    /// DPoP-Nonce headers). Implies --dpop.
    #[arg(long)]
    dpop_nonce: bool,

    /// How long a DPoP nonce is current (the previous one is accepted as long again).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    dpop_nonce_lifetime: Duration,

    /// Oldest DPoP proof accepted (its iat at most this far in the past).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    dpop_max_age: Duration,

    /// Most proof jtis remembered against replay; when full the oldest is forgotten and
    /// proofs no newer than it are refused.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    dpop_replay_capacity: usize,
}

/// A humantime duration, or fractional seconds (`1.5s`, `0.25`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let seconds = text.strip_suffix('s').unwrap_or(text);
    if let Ok(seconds) = seconds.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{text:?} is not a duration (negative or too large)"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration: {e}"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{text:?} is not a probability between 0.0 and 1.0")),
    }
}

fn parse_user(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok((name.to_owned(), password.to_owned())),
        _ => Err(format!("{text:?} is not NAME:PASSWORD")),
    }
}

impl ServeArgs {
    fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::default()
            .with_port(self.port)
            .with_access_ttl(self.access_ttl)
            .with_refresh_ttl(self.refresh_ttl)
            .with_grace_period(self.grace)
            .with_latency(Latency {
                login: self.login_latency,
                refresh: self.refresh_latency,
                api: self.api_latency,
            })
            .with_refresh_failure_rate(self.refresh_failure_rate)
            .with_refresh_hang(self.refresh_hang)
            .with_max_families(self.max_families)
            .with_family_retention(self.family_retention)
            .with_header_read_timeout(self.header_read_timeout)
            .with_max_connections(self.max_connections)
            .with_listen_backlog(self.listen_backlog)
            .with_header_bearer_prefix(self.header_bearer_prefix);
        config.allowed_origins = self.allowed_origins.clone();
        config.allowed_hosts = self.allowed_hosts.clone();
        if let Some(secret) = &self.jwt_secret {
            config = config.with_jwt_secret(secret.clone());
        }
        if !self.users.is_empty() {
            config = config.with_users(self.users.clone());
        }
        if self.dpop || self.dpop_optional || self.dpop_nonce {
            config = config.with_dpop(
                DpopConfig::default()
                    .with_required(!self.dpop_optional)
                    .with_nonce(self.dpop_nonce)
                    .with_nonce_lifetime(self.dpop_nonce_lifetime)
                    .with_max_age(self.dpop_max_age)
                    .with_replay_capacity(self.dpop_replay_capacity),
            );
        }
        config
    }

    /// One banner line about DPoP.
    fn dpop_summary(&self) -> String {
        match self.config().dpop {
            None => "off (--dpop to bind tokens to keys)".to_owned(),
            Some(dpop) => format!(
                "on at /oauth2/token and the API ({}, {}, proofs up to {} old, {} jtis remembered)",
                if dpop.required {
                    "proofs required"
                } else {
                    "proofs optional"
                },
                if dpop.nonce {
                    format!(
                        "nonces rotated every {}",
                        humantime::format_duration(dpop.nonce_lifetime)
                    )
                } else {
                    "no nonces".to_owned()
                },
                humantime::format_duration(dpop.max_age),
                dpop.replay_capacity,
            ),
        }
    }
}

/// Runs the server until Ctrl-C, then shuts it down gracefully.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config();
    let (user, password) = config
        .users
        .first()
        .cloned()
        .unwrap_or_else(|| ("demo".to_owned(), "demo".to_owned()));
    let server = tokenkeeper_server::start(config)
        .await
        .context("cannot start the reference server")?;
    println!("{}", banner(&server, &args, &user, &password));
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    eprintln!("shutting down...");
    server.shutdown().await;
    Ok(())
}

fn banner(server: &ServerHandle, args: &ServeArgs, user: &str, password: &str) -> String {
    let base = server.base_url();
    let human = |d: Duration| humantime::format_duration(d).to_string();
    let mut faults = Vec::new();
    if args.refresh_failure_rate > 0.0 {
        faults.push(format!(
            "refresh failure rate {}",
            args.refresh_failure_rate
        ));
    }
    if args.refresh_hang {
        faults.push("refresh hang".to_owned());
    }
    let faults = if faults.is_empty() {
        "none".to_owned()
    } else {
        faults.join(", ")
    };
    let cors = if args.allowed_origins.is_empty() {
        "off (no --allow-origin: browser pages from other origins are refused)".to_owned()
    } else {
        format!("for {}", args.allowed_origins.join(", "))
    };
    format!(
        "\
tokenkeeper reference server listening on {base}
  access ttl {access}, refresh ttl {refresh}, grace {grace}, faults: {faults}
  CORS {cors}
  DPoP {dpop}
  at most {max_families} sessions (dead ones kept {retention}), {max_connections} connections, \
{header_timeout} to send headers

Login (any contract)
  POST {base}/login              {{\"username\",\"password\",\"style\"}}  style: oauth2|json|header|cookie
Refresh contracts
  oauth2  POST {base}/oauth2/token     grant_type=password | refresh_token | client_credentials (form)
  json    POST {base}/refresh/token    {{\"refreshToken\"}}
  header  POST {base}/api/refresh-token  Authorization-refresh: Bearer <refresh>  (tokens back {header_form})
  cookie  POST {base}/v3/jwt/reissue   cookie tk_refresh
Protected API
  GET  {base}/api/items/{{id}}    POST {base}/api/items    Authorization: Bearer <access>
Operator (each needs the header x-tokenkeeper-admin: 1)
  GET {base}/__stats   POST {base}/__reset   GET|POST {base}/__faults   POST {base}/__dpop/rotate-nonce
  POST /logout {{\"refreshToken\"}} ends a session.

Try it (json contract; set ACCESS and REFRESH from each answer):
  curl -s {base}/login -H 'content-type: application/json' -d '{{\"username\":\"{user}\",\"password\":\"{password}\"}}'
  curl -s {base}/api/items/1 -H \"authorization: Bearer $ACCESS\"
  curl -s {base}/refresh/token -H 'content-type: application/json' -d \"{{\\\"refreshToken\\\":\\\"$REFRESH\\\"}}\"
  # run the refresh again with the old $REFRESH: reuse, the session is revoked
  curl -s {base}/__stats -H 'x-tokenkeeper-admin: 1'
oauth2:
  curl -s {base}/oauth2/token -d grant_type=password -d username={user} -d password={password}
  curl -s {base}/oauth2/token -d grant_type=refresh_token -d refresh_token=$REFRESH

Ctrl-C to stop.",
        access = human(args.access_ttl),
        refresh = human(args.refresh_ttl),
        grace = human(args.grace),
        retention = human(args.family_retention),
        header_timeout = human(args.header_read_timeout),
        max_families = args.max_families,
        max_connections = args.max_connections,
        dpop = args.dpop_summary(),
        header_form = if args.header_bearer_prefix {
            "as `Bearer <token>`"
        } else {
            "raw"
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_header_form_flag_reaches_the_config() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        use clap::Parser as _;
        let raw = Cli::try_parse_from(["serve"]).unwrap().serve;
        assert!(!raw.config().header_bearer_prefix);
        let prefixed = Cli::try_parse_from(["serve", "--header-bearer-prefix"])
            .unwrap()
            .serve;
        assert!(prefixed.config().header_bearer_prefix);
    }

    #[test]
    fn users_and_rates() {
        assert_eq!(
            parse_user("alice:se:cret").unwrap(),
            ("alice".to_owned(), "se:cret".to_owned())
        );
        assert!(parse_user("alice").is_err());
        assert!(parse_user(":pw").is_err());
        assert_eq!(parse_rate("0.5").unwrap(), 0.5);
        assert!(parse_rate("1.5").is_err());
        assert!(parse_rate("NaN").is_err());
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(flags: &[&str]) -> ServeArgs {
        use clap::Parser as _;
        Cli::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))
            .unwrap()
            .serve
    }

    #[test]
    fn safety_defaults_and_flags_reach_the_config() {
        let defaults = args(&[]).config();
        let server_defaults = ServerConfig::default();
        assert!(defaults.allowed_origins.is_empty());
        assert!(defaults.allowed_hosts.is_empty());
        assert_eq!(defaults.max_families, server_defaults.max_families);
        assert_eq!(defaults.family_retention, server_defaults.family_retention);
        assert_eq!(
            defaults.header_read_timeout,
            server_defaults.header_read_timeout
        );
        assert_eq!(defaults.max_connections, server_defaults.max_connections);
        assert_eq!(defaults.listen_backlog, server_defaults.listen_backlog);

        let config = args(&[
            "--allow-origin",
            "http://localhost:5173",
            "--allow-origin",
            "http://127.0.0.1:3000",
            "--allow-host",
            "dev.box",
            "--max-families",
            "500",
            "--family-retention",
            "30s",
            "--header-read-timeout",
            "2s",
            "--max-connections",
            "64",
        ])
        .config();
        assert_eq!(
            config.allowed_origins,
            ["http://localhost:5173", "http://127.0.0.1:3000"]
        );
        assert_eq!(config.allowed_hosts, ["dev.box"]);
        assert_eq!(config.max_families, 500);
        assert_eq!(config.family_retention, Duration::from_secs(30));
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.max_connections, 64);
        assert!(config.validate().is_ok());
        assert!(args(&["--allow-origin", "*"]).config().validate().is_err());
    }

    #[test]
    fn dpop_flags_reach_the_config() {
        assert_eq!(args(&[]).config().dpop, None);
        let on = args(&["--dpop"]).config().dpop.unwrap();
        assert!(on.required && !on.nonce);
        assert_eq!(on, DpopConfig::default());
        let nonce = args(&["--dpop-nonce", "--dpop-nonce-lifetime", "30s"])
            .config()
            .dpop
            .unwrap();
        assert!(nonce.required && nonce.nonce);
        assert_eq!(nonce.nonce_lifetime, Duration::from_secs(30));
        let optional = args(&[
            "--dpop-optional",
            "--dpop-max-age",
            "10s",
            "--dpop-replay-capacity",
            "50",
        ])
        .config()
        .dpop
        .unwrap();
        assert!(!optional.required);
        assert_eq!(optional.max_age, Duration::from_secs(10));
        assert_eq!(optional.replay_capacity, 50);
        assert!(
            args(&["--dpop", "--dpop-replay-capacity", "0"])
                .config()
                .validate()
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_banner_shows_operator_calls_with_the_admin_header() {
        let args = args(&["--port", "0"]);
        let server = tokenkeeper_server::start(args.config()).await.unwrap();
        let text = banner(&server, &args, "demo", "demo");
        let base = server.base_url();
        assert!(
            text.contains(&format!(
                "curl -s {base}/__stats -H 'x-tokenkeeper-admin: 1'"
            )),
            "{text}"
        );
        for line in text
            .lines()
            .filter(|line| line.contains("curl") && line.contains("/__"))
        {
            assert!(line.contains("x-tokenkeeper-admin: 1"), "{line}");
        }
        assert!(text.contains("CORS off"), "{text}");
        // The printed call works as printed.
        let stats = reqwest::Client::new()
            .get(format!("{base}/__stats"))
            .header("x-tokenkeeper-admin", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(stats.status(), reqwest::StatusCode::OK);
        server.shutdown().await;
    }
}
