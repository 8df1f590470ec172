//! The `demo` subcommand's flags.

use super::{DemoConfig, Kind};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tokenkeeper_server::Contract;

/// `tokenkeeper demo`: the same request storm against hand-written refresh interceptors and
/// tokenkeeper, side by side, on an in-process reference server with rotation and reuse
/// detection on.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Refresh contract: oauth2, json, header or cookie.
    #[arg(long, default_value = "json", value_parser = parse_style)]
    pub style: Contract,
    /// Virtual users, each with one request in flight at a time.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// How long each storm runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Access-token lifetime on the server.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub access_ttl: Duration,
    /// Reuse grace period on the server (0: any second presentation is reuse).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Server latency on the API, applied after the request was decided (makes 401s late).
    #[arg(long, default_value = "75ms", value_parser = parse_duration)]
    pub api_latency: Duration,
    /// Server latency on the refresh endpoints.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub refresh_latency: Duration,
    /// Probability (0–1) that the server answers a refresh call with 503.
    #[arg(long, default_value_t = 0.0)]
    pub refresh_failure_rate: f64,
    /// Longest think time between a user's requests (uniformly random up to this).
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub think_max: Duration,
    /// Fraction of requests that are POSTs with a JSON body.
    #[arg(long, default_value_t = 0.3)]
    pub post_ratio: f64,
    /// Time a logged-out user spends at the login screen before signing in again.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub relogin_delay: Duration,
    /// Also run tokenkeeper in reactive mode (401s only), as a fourth row.
    #[arg(long)]
    pub reactive: bool,
    /// Seed for the users' random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Draw the runs over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub timeline: Option<PathBuf>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A duration such as `10s`, `75ms` or `1m 30s`; a bare number means seconds (`--duration 4`).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return if seconds.is_finite() && seconds >= 0.0 {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(format!("{value} is not a duration"))
        };
    }
    humantime::parse_duration(value).map_err(|e| format!("{value}: {e}"))
}

fn parse_style(value: &str) -> Result<Contract, String> {
    value.parse::<Contract>().map_err(|e| e.to_string())
}

impl DemoArgs {
    /// The demo configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<DemoConfig> {
        if self.users == 0 {
            anyhow::bail!("--users must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.refresh_failure_rate) {
            anyhow::bail!("--refresh-failure-rate must be within 0..=1");
        }
        if !(0.0..=1.0).contains(&self.post_ratio) {
            anyhow::bail!("--post-ratio must be within 0..=1");
        }
        if self.access_ttl.is_zero() {
            anyhow::bail!("--access-ttl must be greater than zero");
        }
        let defaults = DemoConfig::default();
        let mut clients = defaults.clients.clone();
        if self.reactive {
            clients.push(Kind::TokenkeeperReactive);
        }
        Ok(DemoConfig {
            style: self.style,
            storm: super::storm::Storm {
                users: self.users,
                duration: self.duration,
                think_max: self.think_max,
                post_ratio: self.post_ratio,
                seed: self.seed,
            },
            access_ttl: self.access_ttl,
            grace: self.grace,
            api_latency: self.api_latency,
            refresh_latency: self.refresh_latency,
            refresh_failure_rate: self.refresh_failure_rate,
            relogin_delay: self.relogin_delay,
            clients,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(parse_duration("4"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("75ms"), Ok(Duration::from_millis(75)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn ci_flags_parse() {
        use clap::Parser;

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            demo: DemoArgs,
        }
        let cli =
            Cli::try_parse_from(["demo", "--users", "50", "--duration", "4"]).expect("flags parse");
        let config = cli.demo.config().expect("valid");
        assert_eq!(config.storm.users, 50);
        assert_eq!(config.storm.duration, Duration::from_secs(4));
    }
}
