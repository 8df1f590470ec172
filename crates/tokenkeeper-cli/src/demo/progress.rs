//! Live progress on the terminal (indicatif), or nothing when output is not a terminal.

use crate::demo::storm::Live;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Where progress goes: a set of bars on stderr, or nowhere.
#[derive(Debug, Clone)]
pub struct Progress {
    bars: Option<MultiProgress>,
}

impl Progress {
    /// Shows progress only if `wanted` and stdout is a terminal (so CI logs and pipes stay clean).
    pub fn new(wanted: bool) -> Self {
        if wanted && std::io::stdout().is_terminal() {
            Self {
                bars: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            }
        } else {
            Self::hidden()
        }
    }

    /// No progress display.
    pub fn hidden() -> Self {
        Self { bars: None }
    }

    /// A bar for one storm of `duration`.
    pub fn run_bar(&self, label: &str, duration: Duration) -> RunBar {
        let Some(bars) = &self.bars else {
            return RunBar {
                bar: ProgressBar::hidden(),
            };
        };
        let length = u64::try_from(duration.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let bar = bars.add(ProgressBar::new(length));
        let style = ProgressStyle::with_template(
            "{prefix:>24.bold} [{bar:30.cyan/blue}] {elapsed:>4} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        RunBar { bar }
    }

    /// A spinner with a message, for the bench's steps.
    pub fn step(&self, message: &str) -> ProgressBar {
        let Some(bars) = &self.bars else {
            return ProgressBar::hidden();
        };
        let spinner = bars.add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(message.to_owned());
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    }
}

/// The bar of one storm.
#[derive(Debug, Clone)]
pub struct RunBar {
    bar: ProgressBar,
}

impl RunBar {
    /// Shows the live counts.
    pub fn update(&self, live: &Live, refresh_calls: u64) {
        let elapsed = u64::try_from(self.bar.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.bar.set_position(elapsed);
        self.bar.set_message(message(live, refresh_calls));
    }

    /// Leaves the final counts on screen.
    pub fn finish(&self, live: &Live, refresh_calls: u64) {
        self.bar.finish_with_message(message(live, refresh_calls));
    }
}

fn message(live: &Live, refresh_calls: u64) -> String {
    format!(
        "{} requests, {} failed, {} refresh calls",
        live.requests.load(Ordering::Relaxed),
        live.failed.load(Ordering::Relaxed),
        refresh_calls
    )
}
