//! tokenkeeper's metrics in Prometheus text format, against the reference server started
//! in-process: a burst of requests meets an expired token (one refresh, the other requests join
//! it), the refresh endpoint fails for a moment (transient attempts), then the user signs out.
//!
//! `cargo run -p tokenkeeper --features metrics --example prometheus`
//!
//! The exporter is built with its default features off: only the recorder and `render()`, no
//! HTTP listener or push gateway. Serve `handle.render()` from your own `/metrics` route.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::time::Duration;
use tokenkeeper::{Session, TokenSet, refresh};
use tokenkeeper_server::ServerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Buckets for the refresh duration (a histogram; without buckets the exporter renders a
    // summary): a refresh takes one round trip, or up to the refresh timeout when it fails.
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(tokenkeeper::metrics::REFRESH_DURATION.into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .install_recorder()?;
    tokenkeeper::metrics::describe();

    let server =
        tokenkeeper_server::start(ServerConfig::default().with_access_ttl(Duration::from_secs(1)))
            .await?;
    let token_url = server.url("/oauth2/token");
    let login = reqwest::Client::new()
        .post(&token_url)
        .form(&[
            ("grant_type", "password"),
            ("username", "demo"),
            ("password", "demo"),
        ])
        .send()
        .await?
        .bytes()
        .await?;
    let session = Session::builder()
        .refresher(refresh::OAuth2::new(&token_url)?.client_id("example"))
        .attach_to([server.base_url()])
        .metrics_name("partner-api")
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .refresh_timeout(Duration::from_millis(500))
        .build()?;
    session.sign_in(TokenSet::from_response(&login)?).await?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(session.middleware())
        .build();

    // Let the first token expire, then send 50 requests at once: one refresh for all of them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let requests = (0..50).map(|id| client.get(server.url(&format!("/api/items/{id}"))).send());
    let ok = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status().is_success()))
        .count();
    println!("# burst at expiry: {ok}/50 ok");

    // The refresh endpoint answers 503 for a while: transient attempts, tokens kept.
    server.set_refresh_failure_rate(1.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let during = client.get(server.url("/api/items/1")).send().await;
    println!(
        "# during the outage: {}",
        match &during {
            Ok(response) => response.status().to_string(),
            Err(error) => error.to_string(),
        }
    );
    server.set_refresh_failure_rate(0.0);
    let after = client.get(server.url("/api/items/1")).send().await?;
    println!("# after the outage: {}", after.status());

    // Right before rendering: the seconds-until-expiry gauge counts down to now.
    tokenkeeper::metrics::update_gauges();
    let text = handle.render();
    println!("{text}");

    // The user signs out: a logout, and no token of this name left to expire.
    session.sign_out().await?;
    tokenkeeper::metrics::update_gauges();
    let after_sign_out = handle.render();
    for line in after_sign_out.lines() {
        if line.starts_with("tokenkeeper_logouts_total") || line.starts_with("tokenkeeper_soonest")
        {
            println!("{line}");
        }
    }

    // CI runs this example: it fails if the metrics it is about are missing. (Exact counts are
    // the tests' business; on a loaded machine a request can miss the burst's refresh.)
    let expect = |text: &str, line: &str| match text.contains(line) {
        true => Ok(()),
        false => Err(format!("the rendered metrics lack `{line}`")),
    };
    expect(
        &text,
        r#"tokenkeeper_refresh_attempts_total{session="partner-api",outcome="ok"} "#,
    )?;
    expect(
        &text,
        r#"tokenkeeper_refresh_attempts_total{session="partner-api",outcome="transient"} "#,
    )?;
    expect(
        &text,
        r#"tokenkeeper_refresh_waiters_joined_total{session="partner-api"} "#,
    )?;
    expect(
        &text,
        r#"tokenkeeper_refresh_duration_seconds_bucket{session="partner-api",outcome="refreshed",le="0.005"} "#,
    )?;
    expect(
        &text,
        r#"tokenkeeper_refresh_duration_seconds_count{session="partner-api",outcome="failed"} 1"#,
    )?;
    expect(
        &after_sign_out,
        r#"tokenkeeper_logouts_total{session="partner-api",reason="signed_out"} 1"#,
    )?;
    let until = |text: &str| {
        let prefix = r#"tokenkeeper_soonest_hard_expiry_seconds{session="partner-api"} "#;
        text.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|value| value.parse::<f64>().ok())
    };
    // The token refreshed after the outage lives a second; its hard deadline is just before.
    match until(&text) {
        Some(seconds) if seconds.is_finite() && seconds <= 1.0 => {}
        other => return Err(format!("seconds until the hard expiry: {other:?}").into()),
    }
    match until(&after_sign_out) {
        Some(seconds) if seconds == f64::INFINITY => {}
        other => return Err(format!("after the sign-out: {other:?}, not +Inf").into()),
    }
    server.shutdown().await;
    Ok(())
}
