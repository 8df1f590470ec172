//! The processes behind `tokenkeeper bench`'s per-request figures: the reference server in a
//! process of its own, measured client processes that talk to it, and callgrind counting only
//! the measured requests of a client.
//!
//! The callgrind test needs valgrind (`bash scripts/valgrind.sh`): without it, it skips with a
//! loud message (the CI smoke run does not install valgrind).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokenkeeper_cli::bench::callgrind;
use tokenkeeper_cli::bench::contenders::Contender;
use tokenkeeper_cli::bench::instructions::CLIENT_SUBCOMMAND;
use tokenkeeper_cli::bench::server_process::ServerProcess;

const EXE: &str = env!("CARGO_BIN_EXE_tokenkeeper");

fn client_args(contender: Contender, base_url: &str, requests: usize) -> Vec<String> {
    [
        CLIENT_SUBCOMMAND,
        "--client",
        contender.arg(),
        "--base-url",
        base_url,
        "--requests",
        &requests.to_string(),
        "--warm-up",
        "3",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// What a client process printed: (requests, ok).
fn report(stdout: &[u8]) -> (u64, u64) {
    let json: serde_json::Value = serde_json::from_slice(stdout).unwrap();
    (
        json["requests"].as_u64().unwrap(),
        json["ok"].as_u64().unwrap(),
    )
}

/// Every contender the instruction counts measure, the DPoP one included (the server offers
/// DPoP, as in the bench, and verifies each of its proofs).
#[test]
fn every_contender_runs_as_a_client_process_against_a_server_process() {
    let server = ServerProcess::start(Path::new(EXE), Duration::from_secs(3600), true).unwrap();
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    for contender in Contender::COUNTED {
        let output = Command::new(EXE)
            .args(client_args(contender, server.base_url(), 7))
            .output()
            .unwrap();
        assert!(output.status.success(), "{contender:?}: {output:?}");
        assert_eq!(report(&output.stdout), (7, 7), "{contender:?}");
    }
    server.stop();
}

#[test]
fn a_client_process_fails_when_the_server_is_gone() {
    let server = ServerProcess::start(Path::new(EXE), Duration::from_secs(3600), false).unwrap();
    let base_url = server.base_url().to_owned();
    server.stop();
    let output = Command::new(EXE)
        .args(client_args(Contender::Bare, &base_url, 3))
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
}

/// Callgrind counts the measured requests and nothing else: twice the requests, twice the
/// instructions (start-up, sign-in and warm-up would otherwise dominate a short run).
#[test]
fn callgrind_counts_only_the_measured_requests() {
    let Some(version) = callgrind::version() else {
        eprintln!("\n*** SKIPPED: valgrind is not installed; run `bash scripts/valgrind.sh` ***\n");
        return;
    };
    eprintln!("{version}");
    let server = ServerProcess::start(Path::new(EXE), Duration::from_secs(3600), false).unwrap();
    let scratch = tempdir();
    let count = |requests: usize| {
        let (profile, output) = callgrind::run(
            Path::new(EXE),
            &client_args(Contender::Bearer, server.base_url(), requests),
            "callgrind_measured_requests",
            &scratch.join(format!("{requests}.callgrind")),
            &scratch.join(format!("{requests}.log")),
        )
        .unwrap();
        assert_eq!(report(&output.stdout), (requests as u64, requests as u64));
        profile
    };
    let (ten, twenty) = (count(10), count(20));
    let _ = std::fs::remove_dir_all(&scratch);
    let per_request = ten.instructions / 10;
    assert!(per_request > 10_000, "{ten:?}");
    let ratio = twenty.instructions as f64 / ten.instructions as f64;
    assert!((1.8..2.2).contains(&ratio), "{ten:?} vs {twenty:?}");
    // Call counts cover the warm-up too, so only their difference is per request: every
    // request allocates.
    assert!(
        twenty.allocations > ten.allocations + 10,
        "{ten:?} vs {twenty:?}"
    );
    server.stop();
}

fn tempdir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tokenkeeper-callgrind-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
