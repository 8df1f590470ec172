//! `tokenkeeper demo` from flags to printed results and exit status.

use super::DemoArgs;
use super::{report, timeline};
use crate::demo::progress::Progress;
use anyhow::Context;

/// Runs the demo as the flags say, prints the table (or JSON), draws the timeline if asked,
/// and fails when tokenkeeper did not meet its criterion, so CI can use it as a smoke test.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let progress = Progress::new(!args.quiet && !args.json);
    let report = super::run(&config, &progress).await?;
    if let Some(path) = &args.timeline {
        timeline::write(path, &report.runs)
            .with_context(|| format!("writing the timeline to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::render(&report));
        if let Some(path) = &args.timeline {
            println!("timeline: {}", path.display());
        }
    }
    if report.passed {
        Ok(())
    } else {
        anyhow::bail!("tokenkeeper did not meet its criterion")
    }
}
