//! `tokenkeeper serve`: the reference auth server on 127.0.0.1.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokenkeeper_server::{Latency, ServerConfig, ServerHandle};

/// The long `--help` text of `serve`.
pub(crate) const LONG_ABOUT: &str = "\
Run the tokenkeeper reference auth server on 127.0.0.1: a realistic backend to
develop and test token-refreshing clients and interceptors against.

One process serves four refresh contracts at once. Log in with
POST /login {\"username\",\"password\",\"style\"} (style: oauth2, json, header or
cookie; default json) or with the oauth2 password grant. The style of a token
decides how the protected API words its 401s for it.

  oauth2  POST /oauth2/token (form, RFC 6749): grant_type=password and
          grant_type=refresh_token. Errors: 400 invalid_grant,
          invalid_request, unsupported_grant_type. API 401s carry
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
Operator endpoints: GET /__stats, POST /__reset, GET|POST /__faults.

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
    /// without touching the session. Changeable live: POST /__faults.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    refresh_failure_rate: f64,

    /// Never answer refresh requests (until shutdown). Changeable live:
    /// POST /__faults.
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

    /// Header contract: send the new tokens as `Bearer <token>` in the
    /// Authorization and Authorization-refresh response headers instead of
    /// raw (the default, as the header-contract article's server does).
    #[arg(long)]
    header_bearer_prefix: bool,
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
            .with_header_bearer_prefix(self.header_bearer_prefix);
        if let Some(secret) = &self.jwt_secret {
            config = config.with_jwt_secret(secret.clone());
        }
        if !self.users.is_empty() {
            config = config.with_users(self.users.clone());
        }
        config
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
    format!(
        "\
tokenkeeper reference server listening on {base}
  access ttl {access}, refresh ttl {refresh}, grace {grace}, faults: {faults}

Login (any contract)
  POST {base}/login              {{\"username\",\"password\",\"style\"}}  style: oauth2|json|header|cookie
Refresh contracts
  oauth2  POST {base}/oauth2/token     grant_type=password | grant_type=refresh_token (form)
  json    POST {base}/refresh/token    {{\"refreshToken\"}}
  header  POST {base}/api/refresh-token  Authorization-refresh: Bearer <refresh>  (tokens back {header_form})
  cookie  POST {base}/v3/jwt/reissue   cookie tk_refresh
Protected API
  GET  {base}/api/items/{{id}}    POST {base}/api/items    Authorization: Bearer <access>
Operator
  GET {base}/__stats   POST {base}/__reset   GET|POST {base}/__faults
  POST /logout {{\"refreshToken\"}} ends a session.

Try it (json contract; set ACCESS and REFRESH from each answer):
  curl -s {base}/login -H 'content-type: application/json' -d '{{\"username\":\"{user}\",\"password\":\"{password}\"}}'
  curl -s {base}/api/items/1 -H \"authorization: Bearer $ACCESS\"
  curl -s {base}/refresh/token -H 'content-type: application/json' -d \"{{\\\"refreshToken\\\":\\\"$REFRESH\\\"}}\"
  # run the refresh again with the old $REFRESH: reuse, the session is revoked
  curl -s {base}/__stats
oauth2:
  curl -s {base}/oauth2/token -d grant_type=password -d username={user} -d password={password}
  curl -s {base}/oauth2/token -d grant_type=refresh_token -d refresh_token=$REFRESH

Ctrl-C to stop.",
        access = human(args.access_ttl),
        refresh = human(args.refresh_ttl),
        grace = human(args.grace),
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
}
