//! The demo's core, with tiny settings: tokenkeeper meets its criterion, and the naive
//! interceptor shows the problem the demo is about. No timing assertions: counts only.

use std::time::Duration;
use tokenkeeper_cli::demo::progress::Progress;
use tokenkeeper_cli::demo::{self, DemoConfig, Kind};

fn tiny() -> DemoConfig {
    let mut config = DemoConfig::default();
    config.storm.users = 30;
    config.storm.duration = Duration::from_millis(2500);
    config.access_ttl = Duration::from_secs(1);
    config.api_latency = Duration::from_millis(50);
    config.relogin_delay = Duration::from_millis(200);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenkeeper_passes_and_the_naive_interceptor_wastes_refreshes() {
    let config = tiny();
    let report = demo::run(&config, &Progress::hidden())
        .await
        .expect("demo runs");
    assert_eq!(report.runs.len(), 3);

    let keeper = report
        .runs
        .iter()
        .find(|r| r.client == Kind::Tokenkeeper)
        .expect("a tokenkeeper run");
    assert_eq!(keeper.problems.as_deref(), Some(&[][..]), "{keeper:#?}");
    assert_eq!(keeper.failed, 0);
    assert_eq!(keeper.reuse_detections, 0);
    assert!(keeper.ok > 0);
    assert!(report.passed);

    // Every 401 of the naive interceptor refreshes on its own: far more calls than expiries,
    // and with rotation those concurrent calls are reuse.
    let naive = report
        .runs
        .iter()
        .find(|r| r.client == Kind::Naive)
        .expect("a naive run");
    assert!(
        naive.refresh_calls > naive.ideal_refresh_calls || naive.reuse_detections > 0,
        "{naive:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactive_tokenkeeper_passes_in_every_contract() {
    for style in tokenkeeper_server::Contract::ALL {
        let mut config = tiny();
        config.style = style;
        config.storm.users = 20;
        config.clients = vec![Kind::TokenkeeperReactive];
        let report = demo::run(&config, &Progress::hidden())
            .await
            .expect("demo runs");
        let run = &report.runs[0];
        assert_eq!(run.problems.as_deref(), Some(&[][..]), "{style}: {run:#?}");
        // Reactive mode meets the expiry: it must have refreshed.
        assert!(run.refresh_calls >= 1, "{style}: {run:#?}");
        assert_eq!(run.reuse_detections, 0);
    }
}
