//! Resident memory of this process, from `/proc/self/status` (Linux).

/// Bytes of a `/proc/self/status` field such as `VmRSS` or `VmHWM`.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status(&status, field)
}

/// Resident set size now.
pub fn current() -> Option<u64> {
    status_bytes("VmRSS")
}

/// Peak resident set size since start or the last [`reset_peak`].
pub fn peak() -> Option<u64> {
    status_bytes("VmHWM")
}

/// Resets the peak to the current size (writes `5` to `/proc/self/clear_refs`). Returns whether
/// the kernel accepted it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn parse_status(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => Some(value * 1024),
            None => Some(value),
            Some(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse_to_bytes() {
        let status = "Name:\ttokenkeeper\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        if cfg!(target_os = "linux") {
            assert!(current().is_some_and(|bytes| bytes > 0));
        }
    }
}
