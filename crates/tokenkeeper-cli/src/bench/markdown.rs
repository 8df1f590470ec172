//! BENCHMARKS.md: the bench report as Markdown (printed as is, too).

use super::burst::{Burst, Case};
use super::contenders::Contender;
use super::instructions::{ContenderFigures, Instructions, Outcome};
use super::overhead::{Overhead, Ratio, Side};
use super::report::BenchReport;
use crate::table::Table;
use std::fmt::Write as _;

const MIB: f64 = 1024.0 * 1024.0;

/// The whole report.
pub fn render(report: &BenchReport) -> String {
    let mut out = String::new();
    header(&mut out, report);
    overhead(&mut out, report);
    bursts(&mut out, report);
    waiters(&mut out, report);
    steady(&mut out, report);
    attach(&mut out, report);
    shared_stores(&mut out, report);
    server_memory(&mut out, report.server_memory.as_ref());
    keyed_memory(&mut out, report.keyed_memory.as_ref());
    out
}

fn header(out: &mut String, report: &BenchReport) {
    let m = &report.machine;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Measured by `{}`{} on **{}**, {} logical CPUs, {}, at {} (wall time {:.0} s).\n",
        report.command,
        if report.quick {
            " (quick smoke run: small sizes, few rounds; not for quoting)"
        } else {
            ""
        },
        m.cpu,
        m.cores,
        m.os,
        m.date,
        report.elapsed_s
    );
    let _ = writeln!(
        out,
        "Every figure is measured in the same run as the baseline it is compared with. The \
machine is small and shared (client, server and other work on the same cores), so timings \
are medians of several rounds and ratios matter more than absolute numbers; instruction counts \
(callgrind) do not depend on load. Regenerate with `bash scripts/valgrind.sh && cargo bench -p \
tokenkeeper --bench attach && cargo bench -p tokenkeeper-cli --bench server_memory && cargo bench \
-p tokenkeeper-cli --bench keyed_memory && cargo run --release -p tokenkeeper-cli -- bench`.\n"
    );
}

fn overhead(out: &mut String, report: &BenchReport) {
    let _ = writeln!(out, "## 1. Overhead per request\n");
    let before = report
        .instructions_before
        .as_ref()
        .map(|(label, figures)| (label.as_str(), figures));
    instructions(out, &report.instructions, before);
    throughput(out, &report.overhead);
}

/// Just the instruction section, for `bench --instructions-only`.
pub fn instructions_only(
    outcome: &Outcome,
    before: Option<&(String, Instructions)>,
    command: &str,
) -> String {
    let mut out = String::new();
    let m = crate::bench::machine::Machine::detect();
    let _ = writeln!(
        out,
        "Measured by `{command}` on **{}**, {} logical CPUs, {}, at {}.\n",
        m.cpu, m.cores, m.os, m.date
    );
    instructions(
        &mut out,
        outcome,
        before.map(|(label, figures)| (label.as_str(), figures)),
    );
    out
}

fn instructions(out: &mut String, outcome: &Outcome, before: Option<(&str, &Instructions)>) {
    let _ = writeln!(out, "### Instructions and allocations (callgrind)\n");
    let figures = match outcome {
        Outcome::Measured(figures) => figures,
        Outcome::Skipped(why) => {
            let _ = writeln!(out, "Not measured in this run: {why}.\n");
            return;
        }
    };
    let _ = writeln!(
        out,
        "Counted by callgrind ({}) in the client process only: the reference server runs in a \
process of its own, and each client is a fresh process (`tokenkeeper __bench-client`) that signs \
in, sends {} warm-up requests, then sends {} `GET /api/items/1` one at a time on a \
current-thread runtime inside the one function callgrind counts in (`--toggle-collect`), each \
answer read to the end. Start-up, sign-in, warm-up and exit are not counted. Allocations are \
new heap blocks (calls to `malloc`, `calloc`, `posix_memalign` from outside the allocator), \
reallocations calls to `realloc`. Callgrind's call counts include the warm-up's calls, so each \
client also runs once with a third of the requests, and allocations per request are the \
difference between the runs over the difference in requests. Every client runs {} time(s) in a \
shuffled order; medians. The counts are those of this build on \
this machine's CPU features; they barely move between runs, unlike time.\n",
        figures.valgrind, figures.warm_up, figures.requests, figures.runs
    );
    let bearer = figures
        .of(Contender::Bearer)
        .map(|b| b.instructions_per_request);
    let mut header = vec![String::new()];
    header.extend(Contender::COUNTED.iter().map(|c| c.label().to_owned()));
    let mut table = Table::new(header);
    let row = |name: &str, cell: &dyn Fn(&ContenderFigures) -> String| {
        let mut row = vec![name.to_owned()];
        row.extend(
            Contender::COUNTED
                .iter()
                .map(|&c| figures.of(c).map_or("—".to_owned(), cell)),
        );
        row
    };
    table.row(row("instructions per request", &|c| {
        format!("{:.0}", c.instructions_per_request)
    }));
    table.row(row("× hand-written bearer middleware", &|c| {
        let ratio = bearer.filter(|&b| b > 0.0).map_or("—".to_owned(), |b| {
            format!("{:.3}", c.instructions_per_request / b)
        });
        if c.contender == Contender::Tokenkeeper {
            format!("**{ratio}**")
        } else {
            ratio
        }
    }));
    table.row(row("allocations per request", &|c| {
        format!("{:.2}", c.allocations_per_request)
    }));
    table.row(row("reallocations per request", &|c| {
        format!("{:.2}", c.reallocations_per_request)
    }));
    table.row(row("instructions per request, every run", &|c| {
        c.instruction_runs
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    }));
    out.push_str(&table.markdown());
    let keeper_allocations = figures
        .of(Contender::Tokenkeeper)
        .map_or(0.0, |c| c.allocations_per_request);
    let bearer_allocations = figures
        .of(Contender::Bearer)
        .map_or(0.0, |c| c.allocations_per_request);
    let _ = writeln!(
        out,
        "\nTarget (issue 12 §3): tokenkeeper ≤ 1.01 × the hand-written bearer middleware's \
instructions per request, and no more allocations — **{}** ({}, {:.2} vs {:.2} allocations; \
within single rounds the ratio ranged {}).\n",
        match figures.target_met() {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not measured",
        },
        figures
            .ratio_to_bearer()
            .map_or("—".to_owned(), |r| format!("{r:.3}×")),
        keeper_allocations,
        bearer_allocations,
        range_text(figures.round_ratio_range(Contender::Tokenkeeper, Contender::Bearer)),
    );
    if let (Some(keyed), Some(single)) = (
        figures.of(Contender::Keyed),
        figures.of(Contender::Tokenkeeper),
    ) {
        let ratio = keyed.instructions_per_request / single.instructions_per_request;
        let _ = writeln!(
            out,
            "Many logins (issue 13): the keyed middleware (a `Sessions<u64>` of 100 signed-in keys, \
each request naming the next key in a `Key` extension) costs **{ratio:.3}×** the single-session \
middleware's instructions per request ({:+.0} instructions, {:+.2} allocations; within single \
rounds the ratio ranged {}). Target ≤ 1.03×: {}. What the difference is: the caller's `Key` \
extension (the request's first extension, so `http::Extensions` allocates its map, the map's \
table and the boxed key: the allocations, a cost any key carried in an extension has) and the \
cache lookup (SipHash of the key, moka's lookup and its recording of the read for idle and size \
eviction).\n",
            keyed.instructions_per_request - single.instructions_per_request,
            keyed.allocations_per_request - single.allocations_per_request,
            range_text(figures.round_ratio_range(Contender::Keyed, Contender::Tokenkeeper)),
            if ratio <= 1.03 { "met" } else { "**not met**" }
        );
    }
    if let (Some(dpop), Some(single)) = (
        figures.of(Contender::Dpop),
        figures.of(Contender::Tokenkeeper),
    ) {
        let _ = writeln!(
            out,
            "DPoP (issue 14): with a DPoP-bound token (RFC 9449, ES256) tokenkeeper signs a fresh proof for every request: **{:.0}** instructions per request against {:.0} with a bearer token ({:+.0} instructions, {:.1}×; {:+.2} allocations), nearly all of it the P-256 signature. The server offers DPoP to this client only (the others sign in without a proof and get bearer tokens); the DPoP client sends a tenth of the requests and of the warm-up ({} and {}), since each takes some 25 times as long under callgrind.\n",
            dpop.instructions_per_request,
            single.instructions_per_request,
            dpop.instructions_per_request - single.instructions_per_request,
            dpop.instructions_per_request / single.instructions_per_request,
            dpop.allocations_per_request - single.allocations_per_request,
            figures.requests / Contender::Dpop.request_divisor(),
            figures.warm_up / Contender::Dpop.request_divisor(),
        );
    }
    if let Some((label, before)) = before {
        before_and_after(out, label, before, figures);
    }
}

fn range_text(range: Option<(f64, f64)>) -> String {
    range.map_or("—".to_owned(), |(low, high)| {
        format!("{low:.3}–{high:.3}×")
    })
}

fn before_and_after(out: &mut String, label: &str, before: &Instructions, now: &Instructions) {
    let _ = writeln!(
        out,
        "Against an earlier build ({label}), measured the same way ({} requests, {} run(s)) by \
`tokenkeeper bench --instructions-only --json` built with that version of the library \
(`git checkout <commit> -- crates/tokenkeeper/src`, then build as usual), and read back with \
`--instructions-before`:\n",
        before.requests, before.runs
    );
    let mut table = Table::new([
        "client",
        "instructions before",
        "instructions now",
        "change",
        "allocations before",
        "allocations now",
    ]);
    for contender in Contender::COUNTED {
        let (Some(b), Some(n)) = (before.of(contender), now.of(contender)) else {
            continue;
        };
        table.row([
            contender.label().to_owned(),
            format!("{:.0}", b.instructions_per_request),
            format!("{:.0}", n.instructions_per_request),
            format!(
                "{:+.1} %",
                (ratio(n.instructions_per_request, b.instructions_per_request) - 1.0) * 100.0
            ),
            format!("{:.2}", b.allocations_per_request),
            format!("{:.2}", n.allocations_per_request),
        ]);
    }
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\ntokenkeeper × hand-written: {} before, {} now. Keyed × single-session: {} before, {} \
now.\n",
        before
            .ratio_to_bearer()
            .map_or("—".to_owned(), |r| format!("{r:.3}")),
        now.ratio_to_bearer()
            .map_or("—".to_owned(), |r| format!("{r:.3}")),
        before
            .keyed_ratio()
            .map_or("—".to_owned(), |r| format!("{r:.3}")),
        now.keyed_ratio()
            .map_or("—".to_owned(), |r| format!("{r:.3}"))
    );
}

fn throughput(out: &mut String, o: &Overhead) {
    let _ = writeln!(out, "### Throughput (secondary)\n");
    let _ = writeln!(
        out,
        "The same four clients, same settings and token, {} concurrent request loops each, \
keep-alive, loopback, against the reference server in its own process (its own runtime, no \
latency, token valid for an hour). {} rounds of {:.2} s per client; in every round each client \
runs once, in a freshly shuffled order. CPU per request is this process's CPU time (all its \
threads, from `/proc/self/task/*/schedstat`) over the round's requests: the client's alone, \
since the server is elsewhere. Medians over rounds.\n",
        o.concurrency, o.rounds, o.round_s
    );
    let mut header = vec![String::new()];
    header.extend(Contender::ALL.iter().map(|c| c.label().to_owned()));
    let mut table = Table::new(header);
    let row = |name: &str, cell: &dyn Fn(&Side) -> String| {
        let mut row = vec![name.to_owned()];
        row.extend(
            Contender::ALL
                .iter()
                .map(|&c| o.side(c).map_or("—".to_owned(), cell)),
        );
        row
    };
    table.row(row("requests/s", &|s| format!("{:.0}", s.requests_per_s)));
    table.row(row("client CPU per request (µs)", &|s| {
        s.cpu_us_per_request
            .map_or("—".to_owned(), |us| format!("{us:.1}"))
    }));
    table.row(row("p50 latency (µs)", &|s| format!("{:.0}", s.p50_us)));
    table.row(row("p99 latency (µs)", &|s| format!("{:.0}", s.p99_us)));
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nRatios are medians of the per-round ratios with their interquartile range; a ratio \
is *resolved* only when that range lies on one side of 1 (the spread between rounds is smaller \
than the effect). Otherwise the rounds cannot tell the two clients apart: **not resolved**, \
neither met nor missed.\n"
    );
    let mut table = Table::new([
        "comparison",
        "requests/s ratio (IQR)",
        "",
        "CPU per request ratio (IQR)",
        "",
    ]);
    for c in &o.comparisons {
        let (rps, rps_verdict) = ratio_cell(c.throughput);
        let (cpu, cpu_verdict) = ratio_cell(c.cpu);
        table.row([
            format!("{} / {}", c.contender.label(), c.baseline.label()),
            rps,
            rps_verdict,
            cpu,
            cpu_verdict,
        ]);
    }
    out.push_str(&table.markdown());
    let list = |rounds: &[f64]| {
        rounds
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "\nFailed requests: {}. Rounds (requests/s):\n",
        o.failures
    );
    for side in &o.sides {
        let _ = writeln!(out, "- {}: {}", side.contender.label(), list(&side.rounds));
    }
    out.push('\n');
}

fn ratio_cell(ratio: Option<Ratio>) -> (String, String) {
    match ratio {
        None => ("—".to_owned(), String::new()),
        Some(r) => (
            format!("{:.3} ({:.3}–{:.3})", r.median, r.p25, r.p75),
            if r.resolved() {
                "resolved".to_owned()
            } else {
                "not resolved".to_owned()
            },
        ),
    }
}

fn bursts(out: &mut String, report: &BenchReport) {
    let _ = writeln!(
        out,
        "## 2. Burst: N concurrent requests meeting an expired token\n"
    );
    let _ = writeln!(
        out,
        "N requests are issued at once (one tokio task each) through one session; latency runs \
from issuing a request to its answer. The process may hold at most 20,000 file descriptors, so \
10k and 100k concurrent HTTP/1 connections are impossible: every request is inside \
tokenkeeper's middleware at the same time, and *below* it a semaphore middleware lets {} \
requests onto the wire at once over {} keep-alive connections (HTTP/1, no HTTP/2). The same \
stack runs the valid-token burst, the baseline. *Expired, default mode*: the session knows the \
token expired and every request waits for the one refresh before it is sent. *Expired, \
reactive mode*: requests go out with the expired token (attached before the connection cap), \
the first 401 refreshes once, every other 401 is for the old generation and is retried with the \
new token without refreshing. Peak RSS is the whole process (server thread included), reset \
before each burst; bytes/request = (peak − RSS before) / N, a rough figure: the allocator \
reuses memory earlier bursts freed, so it is understated for every burst after the largest \
one (see the session-level figure below for the cost of one waiting request).\n",
        report.burst_connections, report.burst_connections
    );
    let mut table = Table::new([
        "N",
        "token at start",
        "refresh calls",
        "failures",
        "reuse detections",
        "requests on the wire",
        "p50 ms",
        "p99 ms",
        "p99 − valid p99 (ms)",
        "elapsed s",
        "peak RSS MiB",
        "bytes/request",
    ]);
    for burst in &report.bursts {
        let valid_p99 = report
            .bursts
            .iter()
            .find(|b| b.n == burst.n && b.case == Case::Valid)
            .map(|b| b.latency.p99_ms);
        table.row(burst_row(burst, valid_p99));
    }
    out.push_str(&table.markdown());
    let expired: Vec<&Burst> = report
        .bursts
        .iter()
        .filter(|b| b.case != Case::Valid)
        .collect();
    let once = expired.iter().all(|b| b.refresh_calls == 1);
    let clean = expired
        .iter()
        .all(|b| b.failures == 0 && b.reuse_detections == 0);
    let _ = writeln!(
        out,
        "\nTarget: exactly 1 refresh call, 0 failures, 0 reuse detections for every N — **{}**.\n",
        if once && clean { "met" } else { "not met" }
    );
}

fn burst_row(burst: &Burst, valid_p99: Option<f64>) -> Vec<String> {
    let added = match (burst.case, valid_p99) {
        (Case::Valid, _) | (_, None) => "—".to_owned(),
        (_, Some(valid)) => format!("{:+.1}", burst.latency.p99_ms - valid),
    };
    vec![
        format!("{}", burst.n),
        burst.case.label().to_owned(),
        burst.refresh_calls.to_string(),
        burst.failures.to_string(),
        burst.reuse_detections.to_string(),
        burst.wire_requests.to_string(),
        format!("{:.1}", burst.latency.p50_ms),
        format!("{:.1}", burst.latency.p99_ms),
        added,
        format!("{:.2}", burst.elapsed_s),
        burst
            .peak_rss
            .map_or("—".into(), |b| format!("{:.0}", b as f64 / MIB)),
        burst
            .bytes_per_request
            .map_or("—".into(), |b| format!("{b:.0}")),
    ]
}

fn waiters(out: &mut String, report: &BenchReport) {
    let w = &report.waiters;
    let _ = writeln!(out, "### Memory per waiting request (session level)\n");
    let _ = writeln!(
        out,
        "{} tasks each await `session.token_rejected(g)` while the refresh is held (a \
`refresh::from_fn` refresher waiting on a `Notify`); RSS growth / N. Baseline: {} tasks each \
awaiting a plain `tokio::sync::Notify`, still alive while the waiters are measured. Both \
include the tokio task itself.\n",
        w.n, w.n
    );
    let mut table = Table::new(["", "bytes per task"]);
    table
        .row([
            "task awaiting a `Notify` (baseline)".to_owned(),
            format!("{:.0}", w.idle_task_bytes),
        ])
        .row([
            "task awaiting a refresh through the session".to_owned(),
            format!("{:.0}", w.waiting_request_bytes),
        ])
        .row([
            "**what tokenkeeper adds per waiting request**".to_owned(),
            format!("**{:.0}**", w.tokenkeeper_bytes),
        ]);
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nRefresh calls for all {} waiters: {} (target 1). Target: a few hundred bytes per \
waiting request — **{}**.\n",
        w.n,
        w.refreshes,
        if w.tokenkeeper_bytes <= 512.0 && w.refreshes == 1 {
            "met"
        } else {
            "not met"
        }
    );
}

fn steady(out: &mut String, report: &BenchReport) {
    let _ = writeln!(out, "## 3. Steady load across K expiries\n");
    let _ = writeln!(
        out,
        "The demo's storm (json contract, rotation and reuse detection on, grace 0), \
continuous load for K × TTL + TTL/2, so a reactive client, whose tokens live one TTL plus a \
401 round trip, crosses exactly K expiries. Ideal bound: see the demo's definition \
(floor(signed-in time / TTL) reactive, floor(signed-in time / 0.70 TTL) proactive).\n"
    );
    let mut table = Table::new([
        "mode",
        "K expiries",
        "refresh calls",
        "ideal bound",
        "failures",
        "expiry 401s",
        "reuse detections",
        "requests",
    ]);
    for row in &report.steady {
        table.row([
            row.client.label().to_owned(),
            row.expiries.to_string(),
            row.refresh_calls.to_string(),
            row.ideal_refresh_calls.to_string(),
            row.failures.to_string(),
            row.expiry_401s.to_string(),
            row.reuse_detections.to_string(),
            row.requests.to_string(),
        ]);
    }
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nTargets: reactive exactly K refreshes and 0 failures; proactive 0 expiry 401s \
(it refreshes at about 75 % of each lifetime, so it makes more calls than K by design, each one \
used).\n"
    );
}

fn attach(out: &mut String, report: &BenchReport) {
    let _ = writeln!(out, "## 4. Attach fast path (criterion)\n");
    match &report.attach {
        Some(a) => {
            let _ = writeln!(
                out,
                "`crates/tokenkeeper/benches/attach.rs`, read from criterion's last results \
(`cargo bench -p tokenkeeper --bench attach`, run before this report): a valid token, \
`session.credential()` + inserting its header into a `reqwest::Request`'s headers, vs inserting a \
precomputed header into the same request. Medians.\n"
            );
            let mut table = Table::new(["", "ns"]);
            table
                .row([
                    "insert a precomputed header (baseline)".to_owned(),
                    format!("{:.1}", a.baseline_ns),
                ])
                .row([
                    "`session.credential()` + insert its header".to_owned(),
                    format!("{:.1}", a.tokenkeeper_ns),
                ])
                .row([
                    "**added by tokenkeeper**".to_owned(),
                    format!("**{:.1}**", a.tokenkeeper_ns - a.baseline_ns),
                ]);
            out.push_str(&table.markdown());
            out.push('\n');
        }
        None => {
            let _ = writeln!(
                out,
                "Not in this report: criterion's results were not found. Run `cargo bench -p \
tokenkeeper --bench attach` first.\n"
            );
        }
    }
}

fn shared_stores(out: &mut String, report: &BenchReport) {
    let _ = writeln!(out, "## 5. Processes sharing one login\n");
    let _ = writeln!(
        out,
        "P separate processes (this binary as its hidden `__store-worker` subcommand) share one \
login through a shared token store, each sending requests from many concurrent tasks across \
several expiries, against one reference server with rotation and no reuse grace. Every \
generation that came due should be refreshed by exactly one process, the others adopting it.\n"
    );
    let mut table = Table::new([
        "store",
        "processes × tasks",
        "expiries",
        "refresh calls",
        "adopted",
        "reuse detections",
        "requests ok",
        "failed",
        "logouts",
        "target met",
    ]);
    for figures in &report.shared_stores {
        table.row([
            figures.store.clone(),
            format!("{} × {}", figures.processes, figures.tasks_per_process),
            figures.expiries.to_string(),
            figures.refresh_calls.to_string(),
            figures.adopted.to_string(),
            figures.reuse_detections.to_string(),
            figures.requests_ok.to_string(),
            figures.requests_failed.to_string(),
            figures.logouts.to_string(),
            if figures.passed() { "yes" } else { "no" }.to_owned(),
        ]);
    }
    out.push_str(&table.markdown());
    let _ = writeln!(
        out,
        "\nTarget: refresh calls = expiries, 0 reuse detections, 0 failures. Redis runs only with \
`tokenkeeper bench --redis redis://127.0.0.1:6379` (see `scripts/redis.sh`).\n"
    );
}

/// Section 7, from the keyed-memory bench's own run (or a note that it was not run).
pub fn keyed_memory(out: &mut String, figures: Option<&super::keyed_memory::KeyedMemory>) {
    let _ = writeln!(out, "## 7. Many logins: memory per idle session\n");
    let Some(m) = figures else {
        let _ = writeln!(
            out,
            "Not in this report: the keyed-memory figures were not found. Run `cargo bench -p \
tokenkeeper-cli --bench keyed_memory` first.\n"
        );
        return;
    };
    let _ = writeln!(
        out,
        "Measured by `{}` on **{}**, at {}: its own process, whose global allocator counts live \
heap bytes (`stats_alloc`). One `Sessions<u64>` collection (capacity = keys, idle timeout 1 h), \
{} keys signed in one after the other, each with its own random tokens of the reference \
server's lengths ({}-byte JWT access token, {}-byte refresh token, valid for an hour); bytes \
per session = live bytes after the sign-ins minus before, over the keys; then every session \
is evicted (`evict_all`) and the live bytes are read again. Side by side in the same run: a \
shared store (Redis, PostgreSQL: the tokens live outside the process, so the bench's store \
keeps nothing here) and `MemoryStores` (the default: the store's copy of each pair lives in the \
process and outlives eviction). The cache's own bookkeeping is included.\n",
        m.command, m.machine, m.date, m.keys, m.access_token_bytes, m.refresh_token_bytes
    );
    let mut table = Table::new(["heap bytes per key", "shared store", "MemoryStores"]);
    table.row([
        "idle session, tokens included".into(),
        format!("**{:.0}**", m.shared_store.per_session),
        format!("{:.0}", m.memory_stores.per_session),
    ]);
    table.row([
        "after eviction".into(),
        format!("{:.0}", m.shared_store.after_eviction),
        format!("{:.0}", m.memory_stores.after_eviction),
    ]);
    out.push_str(&table.markdown());
    let met = if m.shared_store.per_session <= 2048.0 {
        "met"
    } else {
        "**not met**"
    };
    let _ = writeln!(
        out,
        "\nTarget: at most 2 KiB per idle session, tokens included: {met} ({:.0} bytes with a \
shared store). The scheduler's cost with {} idle keys: {:.0} ms of CPU (user + system, whole \
process, 10 ms ticks) in {:.0} s of idling: there is no scheduler; renewal ahead of expiry \
is started by requests past a token's soft deadline, so an idle key costs no timer, task or \
wake-up.\n",
        m.shared_store.per_session, m.keys, m.idle_cpu_ms, m.idle_seconds
    );
}

/// Section 6, from the server-memory bench's own run (or a note that it was not run).
pub fn server_memory(out: &mut String, figures: Option<&super::server_memory::ServerMemory>) {
    let _ = writeln!(
        out,
        "## 6. Reference server memory per login and per refresh\n"
    );
    let Some(m) = figures else {
        let _ = writeln!(
            out,
            "Not in this report: the server-memory figures were not found. Run `cargo bench -p \
tokenkeeper-cli --bench server_memory` first.\n"
        );
        return;
    };
    let _ = writeln!(
        out,
        "Measured by `{}` on **{}**, at {}: its own process, whose global allocator counts live \
heap bytes (`stats_alloc`), so it is not part of the run above. A server and one keep-alive \
client (json contract, one request at a time) share the process, so between requests only the \
server's state grows. Per round: {} refreshes of one session, then {} logins, then a wait until \
every session is dead (refresh TTL {:.0} s, access TTL 0.5 s, retention 0) and one more login, \
which lets the server prune. Baseline in the same run: pruning off (`prune_families: false`, \
every session kept until a reset, as before pruning). Medians of {} rounds per setting, the \
settings alternating; the hash table's spare capacity is included.\n",
        m.command,
        m.machine,
        m.date,
        m.refreshes,
        m.logins,
        m.refresh_ttl_s,
        m.pruning_on.rounds.len()
    );
    let (off, on) = (&m.pruning_off, &m.pruning_on);
    // One decimal, without a "-0.0" for a figure a hair below zero.
    let bytes = |value: f64| {
        let value = if value.abs() < 0.05 { 0.0 } else { value };
        format!("{value:.1}")
    };
    let mut table = Table::new([
        "heap bytes",
        "pruning off (baseline)",
        "pruning on (default)",
        "on / off",
    ]);
    for (name, off, on) in [
        (
            "per login, sessions live",
            off.login_bytes_live,
            on.login_bytes_live,
        ),
        (
            "per login, once every session is dead",
            off.login_bytes_dead,
            on.login_bytes_dead,
        ),
        ("per refresh", off.refresh_bytes, on.refresh_bytes),
    ] {
        table.row([
            name.to_owned(),
            bytes(off),
            bytes(on),
            // A ratio of two figures near zero says nothing.
            if off.abs() >= 1.0 {
                format!("{:.3}", (on / off).max(0.0))
            } else {
                "—".to_owned()
            },
        ]);
    }
    table.row([
        "sessions held once every session is dead".to_owned(),
        off.families_left.to_string(),
        on.families_left.to_string(),
        "—".to_owned(),
    ]);
    out.push_str(&table.markdown());
    let rounds = |setting: &super::server_memory::Setting| {
        setting
            .rounds
            .iter()
            .map(|[live, dead, refresh]| {
                format!("{} / {} / {}", bytes(*live), bytes(*dead), bytes(*refresh))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = writeln!(
        out,
        "\nA refresh token is a signed (session, generation), so a refresh stores nothing new \
whether pruning is on or not; what pruning bounds is the sessions that died. Rounds (per login \
live / dead / per refresh): off {}; on {}. Target: nothing grows with the number of refreshes, \
and a dead session's memory is given back — **{}**.\n",
        rounds(off),
        rounds(on),
        if on.refresh_bytes.abs() < 1.0 && on.login_bytes_dead < 0.05 * on.login_bytes_live.abs() {
            "met"
        } else {
            "not met"
        }
    );
}

fn ratio(value: f64, base: f64) -> f64 {
    if base > 0.0 { value / base } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::instructions::Instructions;
    use crate::bench::overhead::Comparison;
    use crate::bench::waiters::WaiterCost;
    use crate::metrics::Latencies;

    fn side(contender: Contender, rps: f64) -> Side {
        Side {
            contender,
            requests_per_s: rps,
            p50_us: 100.0,
            p99_us: 400.0,
            cpu_us_per_request: Some(50.0),
            rounds: vec![rps],
        }
    }

    fn burst(n: usize, case: Case, refresh_calls: u64, p99_ms: f64) -> Burst {
        Burst {
            n,
            case,
            refresh_calls,
            failures: 0,
            reuse_detections: 0,
            wire_requests: n as u64,
            latency: Latencies {
                p99_ms,
                ..Latencies::default()
            },
            elapsed_s: 1.0,
            peak_rss: Some(64 * 1024 * 1024),
            bytes_per_request: Some(300.0),
            session: tokenkeeper::SessionStats::default(),
        }
    }

    fn figures(keeper_instructions: f64, keeper_allocations: f64) -> Instructions {
        let contender = |contender, instructions: f64, allocations| ContenderFigures {
            contender,
            instructions_per_request: instructions,
            allocations_per_request: allocations,
            reallocations_per_request: 8.0,
            instruction_runs: vec![instructions],
        };
        Instructions {
            valgrind: "valgrind-3.19.0".into(),
            requests: 3000,
            warm_up: 300,
            runs: 1,
            contenders: vec![
                contender(Contender::Bare, 73_000.0, 45.0),
                contender(Contender::Stack, 74_500.0, 46.0),
                contender(Contender::Bearer, 75_000.0, 47.0),
                contender(
                    Contender::Tokenkeeper,
                    keeper_instructions,
                    keeper_allocations,
                ),
            ],
        }
    }

    fn report() -> BenchReport {
        let ratio = |median, p25, p75| Some(Ratio { median, p25, p75 });
        BenchReport {
            machine: crate::bench::machine::Machine::detect(),
            command: "tokenkeeper bench".into(),
            quick: false,
            waiters: WaiterCost {
                n: 1000,
                idle_task_bytes: 400.0,
                waiting_request_bytes: 420.0,
                tokenkeeper_bytes: 20.0,
                refreshes: 1,
            },
            instructions: Outcome::Measured(figures(75_600.0, 47.0)),
            instructions_before: None,
            overhead: Overhead {
                sides: vec![
                    side(Contender::Bare, 1000.0),
                    side(Contender::Stack, 990.0),
                    side(Contender::Bearer, 985.0),
                    side(Contender::Tokenkeeper, 980.0),
                ],
                comparisons: vec![
                    Comparison {
                        contender: Contender::Tokenkeeper,
                        baseline: Contender::Bearer,
                        throughput: ratio(0.99, 0.93, 1.06),
                        cpu: ratio(1.02, 1.01, 1.03),
                    },
                    Comparison {
                        contender: Contender::Stack,
                        baseline: Contender::Bare,
                        throughput: None,
                        cpu: None,
                    },
                ],
                failures: 0,
                concurrency: 64,
                round_s: 0.25,
                rounds: 40,
            },
            bursts: vec![
                burst(1000, Case::Valid, 0, 10.0),
                burst(1000, Case::ExpiredProactive, 1, 12.5),
            ],
            burst_connections: 256,
            steady: Vec::new(),
            shared_stores: Vec::new(),
            attach: None,
            server_memory: None,
            keyed_memory: None,
            elapsed_s: 60.0,
        }
    }

    #[test]
    fn every_section_is_rendered_with_its_verdict() {
        let text = render(&report());
        for heading in [
            "# Benchmarks",
            "## 1. Overhead per request",
            "### Instructions and allocations (callgrind)",
            "### Throughput (secondary)",
            "## 2. Burst",
            "### Memory per waiting request",
            "## 3. Steady load",
            "## 4. Attach fast path",
            "## 5. Processes sharing one login",
            "## 6. Reference server memory",
        ] {
            assert!(text.contains(heading), "missing {heading}");
        }
        // 75,600 / 75,000 = 1.008 ≤ 1.01 with as many allocations: met.
        assert!(text.contains("| **1.008** |"), "{text}");
        assert!(text.contains("— **met** (1.008×, 47.00 vs 47.00"), "{text}");
        assert!(text.contains("| +2.5 |"), "{text}");
        assert!(text.contains("criterion's results were not found"));
        assert!(text.contains("server-memory figures were not found"));
    }

    #[test]
    fn the_server_memory_section_compares_pruning_off_and_on() {
        use crate::bench::server_memory::{ServerMemory, Setting};
        let setting = |live: f64, dead: f64, refresh: f64, left: u64| Setting {
            login_bytes_live: live,
            login_bytes_dead: dead,
            refresh_bytes: refresh,
            families_left: left,
            rounds: vec![[live, dead, refresh]],
        };
        let mut figures = ServerMemory {
            logins: 10_000,
            refreshes: 10_000,
            refresh_ttl_s: 6.0,
            pruning_off: setting(400.0, 400.0, 0.0, 10_002),
            pruning_on: setting(400.0, -0.01, 0.1, 1),
            machine: "test machine".into(),
            date: "2026-01-01T00:00:00Z".into(),
            command: "cargo bench -p tokenkeeper-cli --bench server_memory".into(),
        };
        let mut text = String::new();
        server_memory(&mut text, Some(&figures));
        assert!(
            text.contains("| per login, sessions live | 400.0 | 400.0 | 1.000 |"),
            "{text}"
        );
        assert!(
            text.contains("| per login, once every session is dead | 400.0 | 0.0 | 0.000 |"),
            "{text}"
        );
        assert!(text.contains("| per refresh | 0.0 | 0.1 | — |"), "{text}");
        assert!(text.contains("| 10002 | 1 |"), "{text}");
        assert!(text.contains("— **met**"), "{text}");
        figures.pruning_on.refresh_bytes = 300.0;
        let mut text = String::new();
        server_memory(&mut text, Some(&figures));
        assert!(text.contains("— **not met**"), "{text}");
    }

    #[test]
    fn a_remainder_of_start_up_allocations_does_not_miss_the_target() {
        // 47.004 prints as 47.00, as the bearer's 47.00: the same whole number per request.
        let mut report = report();
        report.instructions = Outcome::Measured(figures(75_600.0, 47.004));
        let text = render(&report);
        assert!(text.contains("— **met** (1.008×, 47.00 vs 47.00"), "{text}");
    }

    #[test]
    fn one_allocation_more_or_two_percent_more_instructions_miss_the_target() {
        for figures in [figures(75_600.0, 48.0), figures(76_500.0, 47.0)] {
            let mut report = report();
            report.instructions = Outcome::Measured(figures);
            assert!(render(&report).contains("no more allocations — **not met**"));
        }
    }

    #[test]
    fn a_ratio_whose_spread_exceeds_the_effect_is_not_resolved() {
        let text = render(&report());
        let line = text
            .lines()
            .find(|l| l.starts_with("| tokenkeeper / hand-written"))
            .unwrap();
        // Throughput 0.99 with an IQR of 0.93–1.06: not resolved; CPU 1.02 (1.01–1.03): resolved.
        assert!(
            line.contains(
                "| 0.990 (0.930–1.060) | not resolved | 1.020 (1.010–1.030) | resolved |"
            ),
            "{line}"
        );
    }

    #[test]
    fn skipped_instructions_say_why_and_earlier_figures_are_compared() {
        let mut report = report();
        report.instructions = Outcome::Skipped("valgrind is not installed".into());
        assert!(render(&report).contains("Not measured in this run: valgrind is not installed."));

        let mut report = self::report();
        report.instructions_before = Some(("7b606f9".into(), figures(79_000.0, 51.0)));
        let text = render(&report);
        assert!(
            text.contains("Against an earlier build (7b606f9)"),
            "{text}"
        );
        assert!(
            text.contains("| tokenkeeper | 79000 | 75600 | -4.3 % | 51.00 | 47.00 |"),
            "{text}"
        );
        assert!(
            text.contains("tokenkeeper × hand-written: 1.053 before, 1.008 now."),
            "{text}"
        );
    }

    #[test]
    fn a_second_refresh_call_fails_the_burst_target() {
        let mut report = report();
        report.bursts[1].refresh_calls = 2;
        assert!(render(&report).contains("0 reuse detections for every N — **not met**"));
    }
}
