//! Child processes of the multi-process tests: the test binary re-runs *itself*, filtered to one
//! ignored worker test (`current_exe() <module>::<test> --exact --ignored`), with the worker's
//! configuration as JSON in an environment variable; the worker prints one report line that the
//! parent parses. This works in any `cargo test` invocation on a fresh clone: no extra binary or
//! example needs to be built first.
//!
//! A kind of worker is a [`Job`]: its configuration type names the ignored test that runs it,
//! the variable that carries the configuration and the report it answers with. The worker's
//! side is [`main`], the parent's [`spawn`] and [`Child`].

#![allow(dead_code)]

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::marker::PhantomData;
use std::process::{Command, Stdio};

/// A worker's configuration, and what names its kind of worker.
pub trait Job: Serialize + DeserializeOwned {
    /// The ignored test that runs the worker (`module::test`, as `--exact` matches it).
    const TEST: &'static str;
    /// The environment variable that carries the configuration.
    const ENV: &'static str;
    /// What starts the worker's report line on stdout.
    const REPORT: &'static str;
    /// What the worker answers when it finishes.
    type Report: Serialize + DeserializeOwned;
}

/// The worker's side, the body of its ignored test: does nothing unless started by [`spawn`];
/// otherwise runs `work` on a two-thread runtime and prints its report.
pub fn main<J: Job, F: Future<Output = J::Report>>(work: impl FnOnce(J) -> F) {
    let Ok(config) = std::env::var(J::ENV) else {
        return;
    };
    let config: J = serde_json::from_str(&config).expect("worker config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(work(config));
    use std::io::Write as _;
    // On a line of its own: libtest may have printed on the current one.
    let line = format!(
        "\n{}{}\n",
        J::REPORT,
        serde_json::to_string(&report).unwrap()
    );
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes()).unwrap();
    stdout.flush().unwrap();
}

/// A running worker.
pub struct Child<J: Job> {
    child: std::process::Child,
    job: PhantomData<fn() -> J>,
}

/// Starts this test binary again as a worker of `config`'s kind.
pub fn spawn<J: Job>(config: &J) -> Child<J> {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            J::TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(J::ENV, serde_json::to_string(config).unwrap())
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Child {
        child,
        job: PhantomData,
    }
}

impl<J: Job> Child<J> {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process itself, for whoever kills it (the conformance suite's `kill -9` test).
    pub fn into_process(self) -> std::process::Child {
        self.child
    }

    /// `kill -9`, and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the worker and parses its report; panics with its output if it failed.
    pub fn finish(self) -> J::Report {
        let output = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let report = stdout
            .lines()
            .find_map(|line| line.split_once(J::REPORT).map(|(_, json)| json))
            .unwrap_or_else(|| {
                panic!(
                    "worker printed no report ({}):\n{stdout}\n{stderr}",
                    output.status
                )
            });
        serde_json::from_str(report).unwrap()
    }
}

/// Waits for every worker (on a blocking thread, so the test's runtime keeps serving) and
/// returns their reports in order.
pub async fn finish_all<J: Job + 'static>(workers: Vec<Child<J>>) -> Vec<J::Report>
where
    J::Report: Send,
{
    tokio::task::spawn_blocking(move || workers.into_iter().map(Child::finish).collect())
        .await
        .unwrap()
}

/// `kill -9` on a blocking thread.
pub async fn kill<J: Job + 'static>(worker: Child<J>) {
    tokio::task::spawn_blocking(move || worker.kill())
        .await
        .unwrap();
}
