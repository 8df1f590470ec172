//! CPU time this process has used (all threads, user + system), from `/proc/self/stat`.
//!
//! Throughput on a shared two-core machine swings with whatever else runs; CPU time per
//! request does not depend on how much CPU the others leave us, so the overhead figure
//! reports both.

use std::time::Duration;

/// Linux reports `/proc` times in USER_HZ ticks, 100 per second on every architecture.
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time of the whole process so far.
pub fn process() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&stat)
}

/// User + system CPU time of the process's live threads, in nanoseconds from
/// `/proc/self/task/*/schedstat` (10 ms ticks, as [`process`] reads them, are too coarse for
/// rounds of a fraction of a second). Falls back to [`process`] where schedstat is missing.
/// Threads that ended are not counted, so compare two readings taken while the same threads
/// live (a runtime's workers).
pub fn threads() -> Option<Duration> {
    let total = std::fs::read_dir("/proc/self/task").ok().and_then(|tasks| {
        tasks
            .map(|task| {
                let path = task.ok()?.path().join("schedstat");
                parse_schedstat(&std::fs::read_to_string(path).ok()?)
            })
            .sum::<Option<u64>>()
    });
    total.map(Duration::from_nanos).or_else(process)
}

/// The first field of a schedstat line: nanoseconds spent on a CPU.
fn parse_schedstat(line: &str) -> Option<u64> {
    line.split_whitespace().next()?.parse().ok()
}

fn parse_stat(stat: &str) -> Option<Duration> {
    // The command name is in parentheses and may contain spaces: start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are 11 and 12 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        let stat = "1234 (tokenkeeper (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(parse_stat(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        if cfg!(target_os = "linux") {
            assert!(process().is_some());
            let before = threads().unwrap();
            // Some CPU work (CPU time, so a loaded machine only makes it take longer).
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            assert!(threads().unwrap() > before);
        }
    }

    #[test]
    fn schedstat_lines_parse() {
        assert_eq!(parse_schedstat("123456789 2000 15\n"), Some(123_456_789));
        assert_eq!(parse_schedstat(""), None);
    }
}
