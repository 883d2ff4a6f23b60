//! Charts, each drawn once by a backend-generic function into an SVG string (inlined in the HTML
//! report) and a PNG (beside the Markdown report). Text uses the DejaVu Sans font shipped in
//! assets/fonts, so rendering needs no system font library and gives the same bytes everywhere.
//!
//! Here: the shared drawing (font, palette, the SVG + PNG pair) and the charts by precision and
//! batch size, and power traces; `layers.rs`: per-layer and per-component bars; `tradeoff.rs`:
//! cost against quality with the Pareto front.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::CellSummary;
use crate::sensor::PowerSample;

pub struct Chart {
    /// File name of the SVG, e.g. `latency.svg`; the PNG has the same stem.
    pub file_name: String,
    pub title: String,
    pub svg: String,
    pub png: Vec<u8>,
}

impl Chart {
    pub fn png_name(&self) -> String {
        self.file_name.replace(".svg", ".png")
    }
}

const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

fn ensure_font() {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        let registered =
            plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok();
        assert!(
            registered,
            "the bundled DejaVu Sans font is a valid TrueType font"
        );
    });
}

type Area<DB> = DrawingArea<DB, Shift>;

/// Tableau 10: distinguishable colours, none too pale on white.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

fn color(i: usize) -> RGBAColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b).to_rgba()
}

fn fail(what: &str, e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow!("drawing chart {what:?}: {e:?}")
}

/// Draws with `draw` into an SVG string and a PNG of the same size.
macro_rules! render {
    ($title:expr, $size:expr, |$root:ident| $draw:expr) => {{
        ensure_font();
        let size: (u32, u32) = $size;
        let mut svg = String::new();
        {
            let $root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            $draw?;
            $root.present().map_err(|e| fail($title, e))?;
        }
        let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
        {
            let $root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
            $draw?;
            $root.present().map_err(|e| fail($title, e))?;
        }
        let png = encode_png(&pixels, size)?;
        (svg, png)
    }};
}

mod layers;
mod tradeoff;

pub use layers::{grouped_bars, layer_charts};
pub use tradeoff::{tradeoff_chart, tradeoff_front, Quality, TradeoffPoint};

fn encode_png(pixels: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(
        pixels,
        w,
        h,
        image::ColorType::Rgb8,
    )?;
    Ok(out)
}

type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// (file name, title, y-axis label, the metric plotted).
type ChartSpec = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CellSummary) -> Option<f64>,
);

fn series(summaries: &[CellSummary], metric: impl Fn(&CellSummary) -> Option<f64>) -> Series {
    let mut out: Series = BTreeMap::new();
    // Whole-model cells only: layers cells have their own charts.
    for s in summaries.iter().filter(|s| s.scope == "model") {
        if let Some(y) = metric(s) {
            let key = format!("{} {} seq {}", s.model, s.precision, s.seq_len);
            out.entry(key).or_default().push((s.batch_size as f64, y));
        }
    }
    for points in out.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

pub fn all_charts(summaries: &[CellSummary]) -> Result<Vec<Chart>> {
    let specs: [ChartSpec; 5] = [
        (
            "latency.svg",
            "Latency per batch (median, ms)",
            "ms per batch",
            |s| s.latency_per_loop_ms,
        ),
        (
            "throughput.svg",
            "Throughput (samples/s)",
            "samples / s",
            |s| s.throughput_samples_per_s,
        ),
        (
            "energy.svg",
            "Energy per inference (mJ)",
            "mJ per sample",
            |s| s.energy_per_inference_mj,
        ),
        (
            "energy_net.svg",
            "Energy per inference above idle (mJ)",
            "mJ per sample, net",
            |s| s.energy_net_per_inference_mj,
        ),
        ("power.svg", "Average power (W)", "W", |s| s.avg_power_w),
    ];
    let mut charts = Vec::new();
    for (file, title, y_label, metric) in specs {
        let data = series(summaries, metric);
        if data.is_empty() {
            continue;
        }
        let (svg, png) = render!(title, (720, 420), |root| draw_lines(
            &root, title, y_label, &data
        ));
        charts.push(Chart {
            file_name: file.to_string(),
            title: title.to_string(),
            svg,
            png,
        });
    }
    Ok(charts)
}

fn draw_lines<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    y_label: &str,
    data: &Series,
) -> Result<()> {
    // Batch sizes on a log2 axis: ticks at powers of two, labelled with the batch size.
    let xs = data.values().flatten().map(|p| p.0.log2());
    let ys = data.values().flatten().map(|p| p.1);
    let x_min = xs.clone().fold(f64::MAX, f64::min);
    let x_max = xs.fold(f64::MIN, f64::max);
    let y_max = ys.fold(0f64, f64::max);
    let (x_lo, x_hi) = (x_min.floor() - 0.5, x_max.ceil() + 0.5);
    let err = |e| fail(title, e);
    {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x_lo..x_hi, 0f64..(y_max * 1.15).max(1e-9))
            .map_err(err)?;
        let ticks = (x_hi - x_lo).round() as usize + 1;
        chart
            .configure_mesh()
            .x_desc("batch size")
            .y_desc(y_label)
            .x_labels(ticks)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", 2f64.powi(x.round() as i32))
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for (i, (name, points)) in data.iter().enumerate() {
            let color = color(i);
            let points: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x.log2(), y)).collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Power over time for one cell (all its windows on one time axis), with the idle baseline.
pub fn power_trace(
    title: &str,
    samples: &[PowerSample],
    idle_w: Option<f64>,
) -> Result<(String, Vec<u8>)> {
    Ok(render!(title, (560, 260), |root| draw_trace(
        &root, title, samples, idle_w
    )))
}

fn draw_trace<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    samples: &[PowerSample],
    idle_w: Option<f64>,
) -> Result<()> {
    let t_max = samples.iter().map(|s| s.t_s).fold(0f64, f64::max).max(1e-3);
    let p_max = samples
        .iter()
        .map(|s| s.power_w)
        .chain(idle_w)
        .fold(0f64, f64::max)
        .max(1.0);
    let err = |e| fail(title, e);
    {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..t_max, 0f64..p_max * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("s since the first window")
            .y_desc("W (instant)")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.t_s, s.power_w)),
                BLUE.stroke_width(1),
            ))
            .map_err(err)?;
        if let Some(idle) = idle_w {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, idle), (t_max, idle)],
                    BLACK.mix(0.5).stroke_width(1),
                ))
                .map_err(err)?;
        }
    }
    Ok(())
}
