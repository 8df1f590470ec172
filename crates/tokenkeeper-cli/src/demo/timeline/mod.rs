//! `--timeline FILE.svg`: every run drawn over time, one panel per client, stacked, on one
//! shared scale, so the difference shows at a glance.
//!
//! Per panel: successful requests per second (blue), failed requests per second (red), 401s
//! on the wire per second (orange), a green line at every refresh call, a black line at every
//! failed refresh and a thick purple line at every forced re-login.

pub mod recorder;

use crate::demo::call::Failure;
use crate::demo::single_run::RunReport;
use crate::metrics;
use anyhow::anyhow;
use plotters::prelude::*;
use recorder::MarkKind;
use std::path::Path;

/// Width of a bin for the rates, in seconds.
const BIN: f64 = 0.1;
const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 250;
const LEGEND_HEIGHT: u32 = 30;

const OK: RGBColor = RGBColor(31, 119, 180);
const FAILED: RGBColor = RGBColor(214, 39, 40);
const WIRE_401: RGBColor = RGBColor(255, 127, 14);
const REFRESH: RGBColor = RGBColor(44, 160, 44);
const REFRESH_FAILED: RGBColor = RGBColor(0, 0, 0);
const RELOGIN: RGBColor = RGBColor(148, 103, 189);

/// The series of one panel.
struct Panel {
    title: String,
    ok: Vec<f64>,
    failed: Vec<f64>,
    wire_401: Vec<f64>,
    refreshes: Vec<f64>,
    refresh_failures: Vec<f64>,
    relogins: Vec<f64>,
}

impl Panel {
    fn new(run: &RunReport, end: f64) -> Self {
        let data = &run.timeline;
        let done = |wanted_ok: bool| {
            data.samples
                .iter()
                .filter(move |s| s.outcome.is_ok() == wanted_ok)
                .map(|s| s.sent_at + s.latency_ms / 1000.0)
        };
        let at = |kind: MarkKind| {
            data.marks
                .iter()
                .filter(move |m| m.kind == kind)
                .map(|m| m.at)
        };
        let logged_out = run.failures.get(&Failure::LoggedOut).copied().unwrap_or(0);
        Self {
            title: format!(
                "{}: {} requests, {} failed ({} logged out), {} refresh calls (ideal <= {}), {} sessions revoked, {} forced re-logins",
                run.label,
                run.requests,
                run.failed,
                logged_out,
                run.refresh_calls,
                run.ideal_refresh_calls,
                run.sessions_revoked,
                run.forced_relogins
            ),
            ok: metrics::rate(done(true), BIN, end),
            failed: metrics::rate(done(false), BIN, end),
            wire_401: metrics::rate(at(MarkKind::Wire401), BIN, end),
            refreshes: at(MarkKind::RefreshCall).collect(),
            refresh_failures: at(MarkKind::RefreshFailed).collect(),
            relogins: at(MarkKind::Relogin).collect(),
        }
    }

    fn peak(&self) -> f64 {
        self.ok
            .iter()
            .chain(&self.failed)
            .chain(&self.wire_401)
            .copied()
            .fold(0.0, f64::max)
    }
}

/// Draws `runs` into an SVG at `path`.
pub fn write(path: &Path, runs: &[RunReport]) -> anyhow::Result<()> {
    if runs.is_empty() {
        return Err(anyhow!("nothing to draw"));
    }
    let end = runs
        .iter()
        .map(|r| r.timeline.end)
        .fold(0.0, f64::max)
        .max(BIN);
    let panels: Vec<Panel> = runs.iter().map(|run| Panel::new(run, end)).collect();
    let y_max = panels.iter().map(Panel::peak).fold(1.0, f64::max) * 1.1;
    let height = LEGEND_HEIGHT + PANEL_HEIGHT * u32::try_from(panels.len()).unwrap_or(1);
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (legend, body) = root.split_vertically(LEGEND_HEIGHT);
    draw_legend(&legend)?;
    let areas = body.split_evenly((panels.len(), 1));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel, end, y_max)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    end: f64,
    y_max: f64,
) -> anyhow::Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..end, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;

    let vertical = |x: f64, top: f64| vec![(x, 0.0), (x, top)];
    chart
        .draw_series(
            panel
                .refreshes
                .iter()
                .map(|&x| PathElement::new(vertical(x, y_max), REFRESH.mix(0.5).stroke_width(1))),
        )
        .map_err(plot_error)?;
    chart
        .draw_series(
            panel.refresh_failures.iter().map(|&x| {
                PathElement::new(vertical(x, y_max * 0.5), REFRESH_FAILED.stroke_width(1))
            }),
        )
        .map_err(plot_error)?;
    chart
        .draw_series(
            panel
                .relogins
                .iter()
                .map(|&x| PathElement::new(vertical(x, y_max), RELOGIN.stroke_width(4))),
        )
        .map_err(plot_error)?;

    for (values, color) in [
        (&panel.ok, OK),
        (&panel.failed, FAILED),
        (&panel.wire_401, WIRE_401),
    ] {
        let points = values
            .iter()
            .enumerate()
            .map(|(i, &v)| ((i as f64 + 0.5) * BIN, v));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// One horizontal legend for all panels, above them.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> anyhow::Result<()> {
    let entries: [(&str, RGBColor, bool); 6] = [
        ("ok requests/s", OK, false),
        ("failed requests/s", FAILED, false),
        ("401s on the wire/s", WIRE_401, false),
        ("refresh call", REFRESH, true),
        ("failed refresh", REFRESH_FAILED, true),
        ("forced re-login", RELOGIN, true),
    ];
    let font = ("sans-serif", 14).into_font().color(&BLACK);
    let mut x = 70;
    let y = 15;
    for (label, color, vertical) in entries {
        let mark = if vertical {
            PathElement::new(vec![(x + 9, y - 8), (x + 9, y + 8)], color.stroke_width(3))
        } else {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
        };
        area.draw(&mark).map_err(plot_error)?;
        area.draw(&Text::new(label.to_owned(), (x + 24, y - 7), font.clone()))
            .map_err(plot_error)?;
        x += 24 + i32::try_from(label.len()).unwrap_or(20) * 8 + 30;
    }
    Ok(())
}

fn plot_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow!("drawing the timeline: {error}")
}
