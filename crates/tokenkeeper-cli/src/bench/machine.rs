//! What the figures were measured on, and when.

use serde::Serialize;
use std::time::SystemTime;

/// The machine and the moment.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model (lscpu's "Model name", or /proc/cpuinfo's "model name").
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// UTC, to the second.
    pub date: String,
    /// The operating system.
    pub os: &'static str,
}

impl Machine {
    /// Reads the machine now.
    pub fn detect() -> Self {
        Self {
            cpu: cpu_model().unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            os: std::env::consts::OS,
        }
    }
}

fn cpu_model() -> Option<String> {
    let lscpu = std::process::Command::new("lscpu")
        .env("LC_ALL", "C")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok());
    let from = |text: &str, key: &str| {
        text.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim().eq_ignore_ascii_case(key)).then(|| value.trim().to_owned())
        })
    };
    lscpu
        .as_deref()
        .and_then(|text| from(text, "Model name"))
        .or_else(|| {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
            from(&cpuinfo, "model name")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_described() {
        let machine = Machine::detect();
        assert!(machine.cores >= 1);
        assert!(machine.date.ends_with('Z'), "{}", machine.date);
    }
}
