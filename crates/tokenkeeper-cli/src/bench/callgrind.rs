//! Running a process under valgrind's callgrind and reading what it counted.
//!
//! Callgrind executes the program on a synthetic CPU and counts every instruction it executes
//! (`Ir`), the same count on every machine for the same binary and input, unlike time. It does
//! not replace the allocator (unlike memcheck or DHAT), so glibc's `malloc` runs and is counted
//! like any other code, and the call graph records how often it was called.

use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// What callgrind counted in one run.
///
/// Collection toggling (`--toggle-collect`) limits the instruction count, but callgrind counts
/// *calls* for the whole run whatever the toggle says, so the allocator call counts cover the
/// whole process: compare two runs to isolate a part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Profile {
    /// Instructions executed while collection was on.
    pub instructions: u64,
    /// New heap blocks (calls to `malloc`, `calloc` and the `memalign` family from outside the
    /// allocator) in the whole run.
    pub allocations: u64,
    /// Calls to `realloc` from outside the allocator in the whole run.
    pub reallocations: u64,
}

/// The installed valgrind's version (`valgrind-3.19.0`), or `None` when it is not on `PATH`.
pub fn version() -> Option<String> {
    let output = Command::new("valgrind").arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!version.is_empty()).then_some(version)
}

/// Runs `program` with `args` under callgrind, counting only while a function whose name
/// contains `toggle` runs (on the thread that runs it), and reads the counts.
/// Callgrind's own messages go to `log`.
pub fn run(
    program: &Path,
    args: &[String],
    toggle: &str,
    out: &Path,
    log: &Path,
) -> anyhow::Result<(Profile, std::process::Output)> {
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect=*{toggle}*"))
        .arg("--dump-line=no")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--log-file={}", log.display()))
        .arg(program)
        .args(args)
        .output()
        .context("running valgrind")?;
    if !output.status.success() {
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = log_text.lines().rev().take(15).collect();
        bail!(
            "valgrind {} exited with {}: {}\n{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let text = std::fs::read_to_string(out)
        .with_context(|| format!("reading callgrind's output {}", out.display()))?;
    Ok((parse(&text)?, output))
}

/// What an allocator entry point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Hands out a new block.
    Allocate,
    /// Resizes a block.
    Reallocate,
}

/// The allocator's entry points as glibc exports them.
fn allocator_entry(name: &str) -> Option<Entry> {
    // Callgrind marks recursion depths (`malloc'2`) and may name an alias.
    let name = name.split('\'').next().unwrap_or(name);
    match name {
        "malloc" | "calloc" | "posix_memalign" | "aligned_alloc" | "memalign" | "__libc_malloc"
        | "__libc_calloc" | "__libc_memalign" | "__posix_memalign" => Some(Entry::Allocate),
        "realloc" | "__libc_realloc" => Some(Entry::Reallocate),
        _ => None,
    }
}

/// Reads a callgrind output file (format version 1): the `totals:` (or `summary:`) line, and the
/// call counts of every call arc into the allocator from a function outside it.
pub fn parse(text: &str) -> anyhow::Result<Profile> {
    // Compressed names: "(12) malloc" defines id 12, a later "(12)" refers to it.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut resolve = |spec: &str| -> String {
        let spec = spec.trim();
        match spec.strip_prefix('(').and_then(|rest| rest.split_once(')')) {
            Some((id, name)) => {
                let name = name.trim();
                if name.is_empty() {
                    names.get(id).cloned().unwrap_or_default()
                } else {
                    names.insert(id.to_owned(), name.to_owned());
                    name.to_owned()
                }
            }
            None => spec.to_owned(),
        }
    };
    let mut profile = Profile::default();
    let (mut totals, mut summary) = (None, None);
    let mut caller = String::new();
    let mut callee = String::new();
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("fn=") {
            caller = resolve(spec);
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            callee = resolve(spec);
        } else if let Some(rest) = line.strip_prefix("calls=") {
            let count: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("a calls= line without a count: {line}"))?;
            // The allocator calling itself (realloc → malloc) is one call from outside.
            if allocator_entry(&caller).is_none() {
                match allocator_entry(&callee) {
                    Some(Entry::Allocate) => profile.allocations += count,
                    Some(Entry::Reallocate) => profile.reallocations += count,
                    None => {}
                }
            }
        } else if let Some(value) = line.strip_prefix("totals:") {
            totals = first_number(value);
        } else if let Some(value) = line.strip_prefix("summary:") {
            summary = first_number(value);
        }
    }
    match totals.or(summary) {
        Some(instructions) => profile.instructions = instructions,
        None => bail!("callgrind's output has neither totals: nor summary:"),
    }
    Ok(profile)
}

fn first_number(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# callgrind format
version: 1
creator: callgrind-3.19.0
events: Ir
summary: 5000

ob=(1) /usr/lib/libc.so.6
fl=(1) ???
fn=(1) malloc
0 40

ob=(2) /bin/tokenkeeper
fl=(2) ???
fn=(2) callgrind_measured_requests
0 100
cob=(1)
cfi=(1)
cfn=(1)
calls=3 0
0 120
cfn=(3) realloc
calls=2 0
0 60
fn=(3)
0 30
cfn=(1)
calls=7 0
0 280
fn=(4) alloc::raw_vec::finish_grow
cfn=(5) posix_memalign
calls=1 0
0 50

totals: 5000
";

    #[test]
    fn totals_and_allocator_calls_from_outside_it_are_read() {
        let profile = parse(SAMPLE).unwrap();
        // 3 mallocs and 2 reallocs from the measured function, 1 posix_memalign; the 7 mallocs
        // realloc made itself are inside the allocator and not counted again.
        assert_eq!(
            profile,
            Profile {
                instructions: 5000,
                allocations: 4,
                reallocations: 2,
            }
        );
    }

    #[test]
    fn summary_stands_in_for_missing_totals_and_garbage_is_an_error() {
        let text = SAMPLE.replace("totals: 5000\n", "");
        assert_eq!(parse(&text).unwrap().instructions, 5000);
        assert!(parse("nothing to see").is_err());
        assert!(parse("summary: 1\ncalls=x 0\n").is_err());
    }

    #[test]
    fn recursion_marks_and_aliases_are_the_allocator_too() {
        assert_eq!(allocator_entry("malloc'2"), Some(Entry::Allocate));
        assert_eq!(allocator_entry("__libc_malloc"), Some(Entry::Allocate));
        assert_eq!(allocator_entry("realloc"), Some(Entry::Reallocate));
        assert_eq!(allocator_entry("malloc_consolidate"), None);
        assert_eq!(allocator_entry("alloc::alloc::alloc"), None);
    }
}
