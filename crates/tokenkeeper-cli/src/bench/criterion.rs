//! The attach micro-benchmark's results, read from criterion's output
//! (`cargo bench -p tokenkeeper --bench attach`).

use serde::Serialize;
use std::path::{Path, PathBuf};

/// The criterion group of the attach benchmark.
pub const GROUP: &str = "attach";
/// tokenkeeper's fast path: `session.credential()` + inserting its header into a request.
pub const TOKENKEEPER: &str = "credential_and_insert";
/// The baseline: inserting a precomputed header into the same request.
pub const BASELINE: &str = "precomputed_insert";

/// Median times in nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Attach {
    /// tokenkeeper's attach fast path.
    pub tokenkeeper_ns: f64,
    /// Inserting a precomputed header.
    pub baseline_ns: f64,
}

/// Where criterion writes: `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`.
pub fn directory() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("criterion"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion"),
    }
}

/// The results, if the benchmark was run.
pub fn read(directory: &Path) -> Option<Attach> {
    Some(Attach {
        tokenkeeper_ns: median_ns(&directory.join(GROUP).join(TOKENKEEPER))?,
        baseline_ns: median_ns(&directory.join(GROUP).join(BASELINE))?,
    })
}

fn median_ns(bench: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(bench.join("new").join("estimates.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.pointer("/median/point_estimate")?.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_read_from_criterions_layout() {
        let dir = std::env::temp_dir().join(format!("tk-criterion-{}", std::process::id()));
        for (name, ns) in [(TOKENKEEPER, 25.5), (BASELINE, 10.0)] {
            let path = dir.join(GROUP).join(name).join("new");
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(
                path.join("estimates.json"),
                format!(r#"{{"median":{{"point_estimate":{ns}}}}}"#),
            )
            .unwrap();
        }
        let attach = read(&dir).unwrap();
        assert_eq!(attach.tokenkeeper_ns, 25.5);
        assert_eq!(attach.baseline_ns, 10.0);
        assert!(read(&dir.join("missing")).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
