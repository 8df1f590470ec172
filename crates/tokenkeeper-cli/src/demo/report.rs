//! The demo's printed results: one column per client, one row per measure, and a verdict.

use crate::demo::DemoReport;
use crate::demo::call::Failure;
use crate::table::Table;
use std::fmt::Write as _;

/// What "ideal refresh calls" means, printed under the table and written in the docs.
pub const IDEAL_DEFINITION: &str = "ideal refresh calls = the most a perfect client of that kind needs: one refresh per token \
generation used up while signed in, i.e. floor(signed-in time / TTL) for a client that refreshes on 401 \
(a token must expire first), floor(signed-in time / 0.70 x TTL) for tokenkeeper's proactive mode (it \
refreshes at 75% of the lifetime, up to 5% earlier by jitter). Signed-in time runs from each sign-in to \
the next one or to the end of the run; a re-login starts a fresh token without a refresh.";

/// The whole printed report: configuration, table, definition, verdict.
pub fn render(report: &DemoReport) -> String {
    let config = &report.config;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tokenkeeper demo: {} users for {} each, {} contract, access TTL {}, API latency {}, \
refresh latency {}, grace {}, refresh failure rate {}, rotation + reuse detection on",
        report.users,
        human(config.storm.duration),
        config.style,
        human(config.access_ttl),
        human(config.api_latency),
        human(config.refresh_latency),
        human(config.grace),
        config.refresh_failure_rate,
    );
    let _ = writeln!(out);
    out.push_str(&table(report).plain());
    let _ = writeln!(out);
    for line in wrap(IDEAL_DEFINITION, 100) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    for line in verdicts(report) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The side-by-side table.
pub fn table(report: &DemoReport) -> Table {
    let runs = &report.runs;
    let mut table =
        Table::new(std::iter::once(String::new()).chain(runs.iter().map(|r| r.label.to_owned())));
    let mut row = |name: &str, value: &dyn Fn(&crate::demo::RunReport) -> String| {
        table.row(std::iter::once(name.to_owned()).chain(runs.iter().map(value)));
    };
    row("requests", &|r| r.requests.to_string());
    row("ok", &|r| r.ok.to_string());
    row("failed", &|r| r.failed.to_string());
    for failure in Failure::ALL {
        if runs.iter().any(|r| r.failures.contains_key(&failure)) {
            row(&format!("  {}", failure.label()), &|r| {
                r.failures.get(&failure).copied().unwrap_or(0).to_string()
            });
        }
    }
    row("expiry 401s seen (server)", &|r| r.expiry_401s.to_string());
    row("invalid-token 401s (server)", &|r| {
        r.invalid_401s.to_string()
    });
    row("refresh calls (server)", &|r| r.refresh_calls.to_string());
    row("ideal refresh calls (at most)", &|r| {
        r.ideal_refresh_calls.to_string()
    });
    row("reuse detections", &|r| r.reuse_detections.to_string());
    row("sessions revoked", &|r| r.sessions_revoked.to_string());
    row("forced re-logins", &|r| r.forced_relogins.to_string());
    row("ok latency p50 (ms)", &|r| {
        format!("{:.1}", r.latency.p50_ms)
    });
    row("ok latency p95 (ms)", &|r| {
        format!("{:.1}", r.latency.p95_ms)
    });
    row("ok latency p99 (ms)", &|r| {
        format!("{:.1}", r.latency.p99_ms)
    });
    row("ok requests/s", &|r| format!("{:.0}", r.ok_per_s));
    table
}

/// One line per tokenkeeper run: PASS with the evidence, or FAIL with what was not met.
pub fn verdicts(report: &DemoReport) -> Vec<String> {
    report
        .runs
        .iter()
        .filter_map(|run| {
            let problems = run.problems.as_ref()?;
            let session = run.session?;
            Some(if problems.is_empty() {
                let calls = if run.refresh_calls == session.refreshes {
                    format!(
                        "{} refresh calls at the server = {} successful refreshes by the session (no wasted call)",
                        run.refresh_calls, session.refreshes
                    )
                } else {
                    format!(
                        "{} refresh calls at the server = {} attempts by the session ({} answered 503 and \
were retried), {} successful refreshes",
                        run.refresh_calls,
                        session.refresh_attempts,
                        session.refresh_attempts.saturating_sub(session.refreshes),
                        session.refreshes
                    )
                };
                format!(
                    "{}: PASS - 0 failed requests, 0 reuse detections, {calls}, within the ideal {}",
                    run.label, run.ideal_refresh_calls
                )
            } else {
                format!("{}: FAIL - {}", run.label, problems.join("; "))
            })
        })
        .collect()
}

/// `2s`, `75ms`, `0s`.
fn human(duration: std::time::Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_word() {
        let lines = wrap("one two three four five", 9);
        assert_eq!(lines, vec!["one two", "three", "four five"]);
        assert!(wrap(IDEAL_DEFINITION, 100).iter().all(|l| l.len() <= 100));
    }
}
