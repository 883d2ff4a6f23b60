//! Charts, each drawn once by a backend-generic function into an SVG string (inlined in the HTML
//! report) and a PNG (beside the Markdown report). Text uses the DejaVu Sans font shipped in
//! assets/fonts, so rendering needs no system font library and gives the same bytes everywhere.
//!
//! Here: the shared drawing (font, palette, the SVG + PNG pair) and the charts by precision and
//! batch size, and power traces; `layers.rs`: per-layer and per-component bars; `tradeoff.rs`:
//! cost against quality with the Pareto front.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::{CellSummary, Labels};
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

/// One fixed colour per precision, the same in every report: the float precisions first, then
/// each quantized format; its variants with other floats take shades of the format's colour
/// (darker with fp16, lighter with bf16), so q8_0-fp16 and q8_0-bf16 differ on one chart.
pub(crate) fn precision_color(precision: &str) -> RGBAColor {
    const ORDER: [&str; 9] = [
        "fp32", "fp16", "bf16", "q8_0", "q4_0", "q4k", "q6k", "int8", "fp8",
    ];
    let (base, floats) = precision.split_once('-').unwrap_or((precision, ""));
    let i = ORDER.iter().position(|p| *p == precision).or_else(|| {
        // q8_0-fp16 takes a shade of q8_0's colour; int8-fp16 and fp8-bf16 of their format's.
        ORDER.iter().position(|p| *p == base)
    });
    let c = color(
        i.unwrap_or_else(|| precision.bytes().map(usize::from).sum::<usize>() % PALETTE.len()),
    );
    let shade = |v: u8| -> u8 {
        match floats {
            "fp16" => (f64::from(v) * 0.65).round() as u8,
            "bf16" => (f64::from(v) + (255.0 - f64::from(v)) * 0.45).round() as u8,
            _ => v,
        }
    };
    RGBColor(shade(c.0), shade(c.1), shade(c.2)).to_rgba()
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

mod decoders;
mod labels;
mod layers;
mod tradeoff;

pub use decoders::decoder_charts;
pub use layers::{grouped_bars, layer_charts, BarSeries};
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

/// (batch size, value, 95 % interval where there is one).
type Point = (f64, f64, Option<(f64, f64)>);

/// One line of a chart by batch size: the cells equal on every axis but batch size.
struct Line {
    /// The cells' label without the batch size: every other axis that varies in the run.
    name: String,
    precision: String,
    /// Lines of one precision (several `quantize` selections, say) take the precision's colour
    /// each, told apart by marker and dash: 0 solid with discs, 1 dashed with triangles, ...
    variant: usize,
    points: Vec<Point>,
}

/// (file name, title, y-axis label, the metric plotted, its interval, whether it is a speed).
type ChartSpec = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CellSummary) -> Option<f64>,
    fn(&CellSummary) -> Option<(f64, f64)>,
    bool,
);

/// The lines of one chart: the encoders' cells, or (`decoders`) the decoders' (a decoder's
/// figures are per token, an encoder's per inference: never on one chart).
fn lines(
    summaries: &[CellSummary],
    metric: impl Fn(&CellSummary) -> Option<f64>,
    interval: impl Fn(&CellSummary) -> Option<(f64, f64)>,
    speed: bool,
    decoders: bool,
) -> Vec<Line> {
    let kind = |s: &&CellSummary| s.cell.prompt_len.is_some() == decoders;
    let labels = Labels::new(summaries.iter().filter(kind).map(|s| &s.cell));
    let mut out: Vec<Line> = Vec::new();
    // Whole-model cells only: layers cells have their own charts.
    for s in summaries
        .iter()
        .filter(kind)
        .filter(|s| s.scope == "model" && !(speed && s.speed_is_reference))
    {
        let Some(y) = metric(s) else { continue };
        let name = labels.label_without(&s.cell, &["batch_size"]);
        let point = (s.batch_size as f64, y, interval(s));
        match out.iter_mut().find(|l| l.name == name) {
            Some(l) => l.points.push(point),
            None => {
                let variant = out.iter().filter(|l| l.precision == s.precision).count();
                out.push(Line {
                    name,
                    precision: s.precision.clone(),
                    variant,
                    points: vec![point],
                });
            }
        }
    }
    for l in &mut out {
        l.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn no_interval(_: &CellSummary) -> Option<(f64, f64)> {
    None
}

/// Throughput's interval is latency's turned around (samples/s = batch / latency).
fn throughput_interval(s: &CellSummary) -> Option<(f64, f64)> {
    let b = s.batch_size as f64 * 1e3;
    Some((b / s.latency_ci_high_ms?, b / s.latency_ci_low_ms?))
}

/// The charts by batch size. A chart of a single point is not drawn: the tables say it.
pub fn all_charts(summaries: &[CellSummary]) -> Result<Vec<Chart>> {
    let specs: [ChartSpec; 5] = [
        (
            "energy.svg",
            "Energy per inference (mJ)",
            "mJ per sample",
            |s| s.energy_per_inference_mj,
            |s| Some((s.energy_ci_low_mj?, s.energy_ci_high_mj?)),
            false,
        ),
        (
            "latency.svg",
            "Latency per batch (median, ms)",
            "ms per batch",
            |s| s.latency_per_loop_ms,
            |s| Some((s.latency_ci_low_ms?, s.latency_ci_high_ms?)),
            true,
        ),
        (
            "throughput.svg",
            "Throughput (samples/s)",
            "samples / s",
            |s| s.throughput_samples_per_s,
            throughput_interval,
            true,
        ),
        (
            "energy_net.svg",
            "Energy per inference above idle (mJ)",
            "mJ per sample, net",
            |s| s.energy_net_per_inference_mj,
            no_interval,
            false,
        ),
        (
            "power.svg",
            "Average power (W)",
            "W",
            |s| s.avg_power_w,
            no_interval,
            false,
        ),
    ];
    let left_out = summaries
        .iter()
        .any(|s| s.scope == "model" && s.speed_is_reference);
    let mut charts = Vec::new();
    for (file, title, y_label, metric, interval, speed) in specs {
        let data = lines(summaries, metric, interval, speed, false);
        if data.iter().map(|l| l.points.len()).sum::<usize>() < 2 {
            continue;
        }
        let title = if speed && left_out {
            format!("{title}; W8A8 reference cells left out")
        } else {
            title.to_string()
        };
        // The legend beside the plot, as wide as its longest name (DejaVu at 14 px: ~8.5 px a
        // character).
        let longest = data
            .iter()
            .map(|l| l.name.chars().count())
            .max()
            .unwrap_or(0);
        let legend_w = (longest as f64 * 8.5).ceil() as u32 + 48;
        let size = (560 + legend_w.max(200), 420);
        let (svg, png) = render!(&title, size, |root| draw_lines(
            &root, &title, y_label, &data
        ));
        charts.push(Chart {
            file_name: file.to_string(),
            title,
            svg,
            png,
        });
    }
    Ok(charts)
}

/// The marker of a line's point at pixel `at` (and of its legend entry): discs, triangles,
/// squares, crosses.
fn draw_marker<DB: DrawingBackend>(
    area: &Area<DB>,
    variant: usize,
    at: (i32, i32),
    color: RGBAColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (x, y) = at;
    match variant % 4 {
        0 => area.draw(&Circle::new(at, 4, color.filled())),
        1 => area.draw(&TriangleMarker::new(at, 6, color.filled())),
        2 => area.draw(&Rectangle::new(
            [(x - 4, y - 4), (x + 4, y + 4)],
            color.filled(),
        )),
        _ => area.draw(&Cross::new(at, 5, color.stroke_width(2))),
    }
}

fn draw_lines<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    y_label: &str,
    data: &[Line],
) -> Result<()> {
    // Batch sizes on a log2 axis, ticked only at the batch sizes that ran; error bars are the
    // cells' 95 % intervals; the legend sits right of the plot, where it covers no point.
    let batches: Vec<f64> = {
        let mut b: Vec<f64> = data
            .iter()
            .flat_map(|l| &l.points)
            .map(|p| p.0.log2())
            .collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        b
    };
    let x_min = batches.first().copied().unwrap_or(0.0);
    let x_max = batches.last().copied().unwrap_or(0.0);
    let y_max = data
        .iter()
        .flat_map(|l| &l.points)
        .map(|p| p.2.map_or(p.1, |c| c.1.max(p.1)))
        .fold(0f64, f64::max);
    let (x_lo, x_hi) = (x_min - 0.5, x_max + 0.5);
    let err = |e| fail(title, e);
    {
        root.fill(&WHITE).map_err(err)?;
        let (plot, legend) = root.split_horizontally(560);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(x_lo..x_hi, 0f64..(y_max * 1.1).max(1e-9))
            .map_err(err)?;
        // No automatic x ticks (they would fall between batch sizes): a tick and its label at
        // each batch size that ran, drawn below.
        chart
            .configure_mesh()
            .x_desc("batch size")
            .y_desc(y_label)
            .x_labels(0)
            .disable_x_mesh()
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let tick_font =
            TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for &b in &batches {
            let (px, py) = chart.backend_coord(&(b, 0.0));
            plot.draw(&PathElement::new(
                vec![(px, py), (px, py + 5)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
            plot.draw(&Text::new(
                format!("{}", 2f64.powf(b).round()),
                (px, py + 8),
                tick_font.clone(),
            ))
            .map_err(err)?;
        }
        for line in data {
            let color = precision_color(&line.precision);
            let xy: Vec<(f64, f64)> = line.points.iter().map(|&(x, y, _)| (x.log2(), y)).collect();
            if line.variant == 0 {
                chart
                    .draw_series(LineSeries::new(xy.iter().copied(), color.stroke_width(2)))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(DashedLineSeries::new(
                        xy.iter().copied(),
                        4 + 2 * line.variant as u32,
                        4,
                        color.stroke_width(2),
                    ))
                    .map_err(err)?;
            }
            for p in &xy {
                draw_marker(&plot, line.variant, chart.backend_coord(p), color).map_err(err)?;
            }
            chart
                .draw_series(line.points.iter().filter_map(|&(x, y, ci)| {
                    let (lo, hi) = ci?;
                    Some(ErrorBar::new_vertical(
                        x.log2(),
                        lo,
                        y,
                        hi,
                        color.stroke_width(2),
                        10,
                    ))
                }))
                .map_err(err)?;
        }
        let font = ("sans-serif", 14).into_font();
        for (i, line) in data.iter().enumerate() {
            let y = 40 + i as i32 * 22;
            let color = precision_color(&line.precision);
            if line.variant == 0 {
                legend
                    .draw(&PathElement::new(
                        vec![(4, y + 7), (30, y + 7)],
                        color.stroke_width(3),
                    ))
                    .map_err(err)?;
            } else {
                legend
                    .draw(&DashedPathElement::new(
                        vec![(4, y + 7), (30, y + 7)],
                        4 + 2 * line.variant as u32,
                        4,
                        color.stroke_width(3),
                    ))
                    .map_err(err)?;
            }
            draw_marker(&legend, line.variant, (17, y + 7), color).map_err(err)?;
            legend
                .draw(&Text::new(line.name.clone(), (38, y), font.clone()))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Power over time for one cell (all its windows on one time axis), with the idle baseline.
/// `power_max` is the top of the y axis, shared by every trace of a report.
pub fn power_trace(
    title: &str,
    samples: &[PowerSample],
    idle_w: Option<f64>,
    power_max: f64,
) -> Result<(String, Vec<u8>)> {
    Ok(render!(title, (560, 260), |root| draw_trace(
        &root, title, samples, idle_w, power_max
    )))
}

fn draw_trace<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    samples: &[PowerSample],
    idle_w: Option<f64>,
    power_max: f64,
) -> Result<()> {
    let t_max = samples.iter().map(|s| s.t_s).fold(0f64, f64::max).max(1e-3);
    let p_max = samples
        .iter()
        .map(|s| s.power_w)
        .chain(idle_w)
        .fold(power_max, f64::max)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole-model summaries of fp16 and fp8-fp16 in three selections, at batch 16 and 64.
    fn selection_cells() -> Vec<CellSummary> {
        use crate::analysis::tests::record_with_energy;
        use crate::config::{Precision, QuantizeSelection};
        let mut records = Vec::new();
        for batch in [16, 64] {
            for (precision, quantize) in [
                ("fp16", "all"),
                ("fp8-fp16", "all"),
                ("fp8-fp16", "ffn"),
                ("fp8-fp16", "blocks:0-5"),
            ] {
                let mut r = record_with_energy(vec![(1.0, 100, 50.0, 50.0); 6], None);
                r.cell.precision = Precision::parse(precision).unwrap();
                r.cell.quantize = QuantizeSelection::parse(quantize).unwrap();
                r.cell.batch_size = batch;
                r.cell.id = format!("{precision}-{quantize}-{batch}");
                records.push(r);
            }
        }
        crate::analysis::summarize_all(&records, Precision::Fp32)
    }

    #[test]
    fn each_quantize_selection_is_a_line_of_its_own() {
        let cells = selection_cells();
        let data = lines(
            &cells,
            |s| s.energy_per_inference_mj,
            no_interval,
            false,
            false,
        );
        let names: Vec<(&str, usize, usize)> = data
            .iter()
            .map(|l| (l.name.as_str(), l.variant, l.points.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("fp16", 0, 2),
                ("fp8-fp16 quantize=all", 0, 2),
                ("fp8-fp16 quantize=ffn", 1, 2),
                ("fp8-fp16 quantize=blocks:0-5", 2, 2),
            ]
        );
        // The legend in the drawn chart names them.
        let charts = all_charts(&cells).unwrap();
        let energy = charts.iter().find(|c| c.file_name == "energy.svg").unwrap();
        for name in ["fp8-fp16 quantize=ffn", "fp8-fp16 quantize=blocks:0-5"] {
            assert!(energy.svg.contains(name), "{name}");
        }
    }

    #[test]
    fn a_chart_of_a_single_point_is_not_drawn() {
        let cells: Vec<CellSummary> = selection_cells().into_iter().take(1).collect();
        assert!(all_charts(&cells).unwrap().is_empty());
    }

    #[test]
    fn every_precision_has_its_own_fixed_colour() {
        let names = [
            "fp32",
            "fp16",
            "bf16",
            "q8_0",
            "q8_0-fp16",
            "q8_0-bf16",
            "q4_0",
            "q4_0-fp16",
            "q4k",
            "q4k-fp16",
            "q6k",
            "int8-fp32",
            "int8-fp16",
            "int8-bf16",
            "fp8-fp16",
            "fp8-bf16",
        ];
        let colours: Vec<RGBAColor> = names.iter().map(|p| precision_color(p)).collect();
        for (i, a) in colours.iter().enumerate() {
            for (j, b) in colours.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{} and {} share a colour", names[i], names[j]);
            }
        }
        // Fixed: the same precision gets the same colour whatever else a report holds.
        assert_eq!(precision_color("fp16"), RGBColor(255, 127, 14).to_rgba());
    }
}
