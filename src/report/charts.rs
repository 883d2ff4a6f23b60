//! Charts, each drawn once by a backend-generic function into an SVG string (inlined in the HTML
//! report) and a PNG (beside the Markdown report). Text uses the DejaVu Sans font shipped in
//! assets/fonts, so rendering needs no system font library and gives the same bytes everywhere.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

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

/// Grouped bars: one group per category (e.g. a layer), one bar per series (e.g. a precision).
/// `series[k].1[i]` is series k's value for category i (`None`: no bar).
pub fn grouped_bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> Result<(String, Vec<u8>)> {
    // Wide enough for the bars and for the title (about 10 px a character at 18 px).
    let width = (140 + 70 * categories.len())
        .max(10 * title.chars().count() + 40)
        .clamp(480, 1200) as u32;
    Ok(render!(title, (width, 380), |root| draw_bars(
        &root, title, y_label, categories, series
    )))
}

fn draw_bars<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> Result<()> {
    let n = categories.len().max(1) as f64;
    let y_max = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0f64, |a, &b| a.max(b))
        .max(1e-9);
    let err = |e| fail(title, e);
    {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n, 0f64..y_max * 1.15)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let width_each = 0.8 / series.len().max(1) as f64;
        for (k, (name, values)) in series.iter().enumerate() {
            let color = color(k);
            let bars = values.iter().enumerate().filter_map(|(i, v)| {
                v.map(|y| {
                    let x0 = i as f64 + 0.1 + k as f64 * width_each;
                    Rectangle::new([(x0, 0.0), (x0 + width_each, y)], color.filled())
                })
            });
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        for (i, label) in categories.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                label.clone(),
                (px, py + 8),
                TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// (file tag, y-axis label, the value plotted).
type LayerMetric = (
    &'static str,
    &'static str,
    fn(&crate::analysis::LayerSummary) -> Option<f64>,
);

/// Per-layer charts, one set per (model, batch, seq): energy (where measured) and latency per
/// top-level layer, and the transformer-block components summed over blocks, each with one bar
/// per precision side by side.
pub fn layer_charts(layers: &[crate::analysis::LayerSummary]) -> Result<Vec<Chart>> {
    use crate::analysis::LayerSummary;
    let mut groups: BTreeMap<(String, usize, usize), Vec<&LayerSummary>> = BTreeMap::new();
    for l in layers {
        groups
            .entry((l.model.clone(), l.batch_size, l.seq_len))
            .or_default()
            .push(l);
    }
    let mut charts = Vec::new();
    for ((model, batch, seq), rows) in groups {
        let mut precisions: Vec<String> = Vec::new();
        for r in &rows {
            if !precisions.contains(&r.precision) {
                precisions.push(r.precision.clone());
            }
        }
        let mut layer_names: Vec<(usize, String)> = rows
            .iter()
            .filter(|r| r.parent.is_none())
            .map(|r| (r.layer_idx, r.layer_name.clone()))
            .collect();
        layer_names.sort();
        layer_names.dedup();
        let components = ["attention", "sa_layer_norm", "ffn", "output_layer_norm"];
        let energy = rows.iter().any(|r| r.energy_per_inference_mj.is_some());
        let metrics: Vec<LayerMetric> = if energy {
            vec![
                ("energy", "mJ per inference", |r| r.energy_per_inference_mj),
                ("latency", "ms per batch", |r| r.latency_per_loop_ms),
            ]
        } else {
            vec![("latency", "ms per batch", |r| r.latency_per_loop_ms)]
        };
        let tag = format!("{}-b{batch}-s{seq}", super::file_safe(&model));
        for (what, y_label, metric) in metrics {
            let per_layer: Vec<(String, Vec<Option<f64>>)> = precisions
                .iter()
                .map(|p| {
                    let values = layer_names
                        .iter()
                        .map(|(_, name)| {
                            rows.iter()
                                .find(|r| &r.precision == p && &r.layer_name == name)
                                .and_then(|r| metric(r))
                        })
                        .collect();
                    (p.clone(), values)
                })
                .collect();
            let labels: Vec<String> = layer_names
                .iter()
                .map(|(_, n)| short_layer_name(n))
                .collect();
            let title = format!("{model}, batch {batch}, seq {seq}: {what} per layer");
            let (svg, png) = grouped_bars(&title, y_label, &labels, &per_layer)?;
            charts.push(Chart {
                file_name: format!("layers-{what}-{tag}.svg"),
                svg,
                png,
                title,
            });
            let per_component: Vec<(String, Vec<Option<f64>>)> = precisions
                .iter()
                .map(|p| {
                    let values = components
                        .iter()
                        .map(|c| {
                            let parts: Vec<f64> = rows
                                .iter()
                                .filter(|r| {
                                    &r.precision == p
                                        && r.parent.is_some()
                                        && r.layer_name.ends_with(&format!(".{c}"))
                                })
                                .filter_map(|r| metric(r))
                                .collect();
                            (!parts.is_empty()).then(|| parts.iter().sum())
                        })
                        .collect();
                    (p.clone(), values)
                })
                .collect();
            let labels: Vec<String> = components.iter().map(|c| c.to_string()).collect();
            let title = format!(
                "{model}, batch {batch}, seq {seq}: {what} by block component (all blocks)"
            );
            let (svg, png) = grouped_bars(&title, y_label, &labels, &per_component)?;
            charts.push(Chart {
                file_name: format!("components-{what}-{tag}.svg"),
                svg,
                png,
                title,
            });
        }
    }
    Ok(charts)
}

fn short_layer_name(name: &str) -> String {
    match name {
        "embeddings" => "emb".into(),
        "pre_classifier" => "pre_cls".into(),
        "classifier" => "cls".into(),
        other => other.replace("transformer_block_", "block "),
    }
}

/// One cell on a trade-off chart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TradeoffPoint {
    pub cell_id: String,
    pub precision: String,
    pub batch_size: usize,
    /// Cost: energy per inference (mJ), or latency per sample (ms) where energy was not measured.
    pub cost: f64,
    /// Quality, as plotted (see [`Quality`]).
    pub quality: f64,
}

/// The quality axis of a trade-off chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quality {
    /// 1 - cosine similarity of the logits to fp32 (lower is better; log axis). fp32 itself is
    /// 0 and drawn on the bottom edge as the reference.
    CosineDistance,
    /// Accuracy on the probe's test split, in % (higher is better).
    Accuracy,
}

/// The Pareto-optimal points (least cost, best quality), sorted by cost.
pub fn tradeoff_front(points: &[TradeoffPoint], quality: Quality) -> Vec<usize> {
    let minimised: Vec<(f64, f64)> = points
        .iter()
        .map(|p| match quality {
            Quality::CosineDistance => (p.cost, p.quality),
            Quality::Accuracy => (p.cost, -p.quality),
        })
        .collect();
    crate::stats::pareto_front(&minimised)
}

/// Cost against quality, one colour per precision, the Pareto front joined by a line and its
/// points labelled with precision and batch size.
pub fn tradeoff_chart(
    title: &str,
    cost_label: &str,
    quality: Quality,
    points: &[TradeoffPoint],
) -> Result<(String, Vec<u8>)> {
    Ok(render!(title, (760, 460), |root| draw_tradeoff(
        &root, title, cost_label, quality, points
    )))
}

fn draw_tradeoff<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    cost_label: &str,
    quality: Quality,
    points: &[TradeoffPoint],
) -> Result<()> {
    let err = |e| fail(title, e);
    let front = tradeoff_front(points, quality);
    let x_max = points.iter().map(|p| p.cost).fold(0f64, f64::max).max(1e-9) * 1.12;
    // Cosine distances span decades: plotted as log10 on a linear axis labelled 1e-N. Zero
    // distance (the fp32 reference) sits on the bottom edge.
    let (plotted, y_range, y_desc, legend_at): (Vec<f64>, _, _, _) = match quality {
        Quality::CosineDistance => {
            let positive = points.iter().map(|p| p.quality).filter(|&q| q > 0.0);
            let lo = positive.clone().fold(f64::MAX, f64::min);
            let hi = positive.fold(0f64, f64::max);
            // Whole decades, so that every tick is a power of ten.
            let (lo, hi) = if hi > 0.0 {
                (lo.log10().floor() - 1.0, hi.log10().floor() + 1.0)
            } else {
                (-9.0, -3.0)
            };
            let ys = points
                .iter()
                .map(|p| {
                    if p.quality > 0.0 {
                        p.quality.log10()
                    } else {
                        lo
                    }
                })
                .collect();
            (
                ys,
                lo..hi,
                "1 - cosine to fp32 (log; lower is better)",
                SeriesLabelPosition::UpperRight,
            )
        }
        Quality::Accuracy => {
            let lo = points.iter().map(|p| p.quality).fold(f64::MAX, f64::min);
            let hi = points.iter().map(|p| p.quality).fold(f64::MIN, f64::max);
            let pad = ((hi - lo) * 0.2).max(1.0);
            (
                points.iter().map(|p| p.quality).collect(),
                (lo - pad)..(hi + pad).min(100.0),
                "accuracy, % (higher is better)",
                SeriesLabelPosition::LowerRight,
            )
        }
    };
    let log_axis = quality == Quality::CosineDistance;
    let y_ticks = if log_axis {
        (y_range.end - y_range.start).round() as usize + 1
    } else {
        8
    };
    let mut precisions: Vec<&str> = Vec::new();
    for p in points {
        if !precisions.contains(&p.precision.as_str()) {
            precisions.push(&p.precision);
        }
    }
    let colour_index = |p: &TradeoffPoint| precisions.iter().position(|q| *q == p.precision);
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..x_max, y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(cost_label)
        .y_desc(y_desc)
        .y_labels(y_ticks)
        .y_label_formatter(&|v| {
            if log_axis && (v - v.round()).abs() > 1e-6 {
                String::new()
            } else if log_axis {
                format!("1e{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let line: Vec<(f64, f64)> = front
        .iter()
        .map(|&i| (points[i].cost, plotted[i]))
        .collect();
    chart
        .draw_series(LineSeries::new(line, BLACK.mix(0.6).stroke_width(1)))
        .map_err(err)?;
    for (k, name) in precisions.iter().enumerate() {
        let c = color(k);
        let mine = points
            .iter()
            .zip(&plotted)
            .filter(|(p, _)| p.precision == *name)
            .map(|(p, &y)| Circle::new((p.cost, y), 5, c.filled()));
        chart
            .draw_series(mine)
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Circle::new((x + 6, y), 5, c.filled()));
    }
    let font = TextStyle::from(("sans-serif", 11).into_font());
    for &i in &front {
        let p = &points[i];
        let ring = color(colour_index(p).unwrap_or(0));
        chart
            .draw_series([Circle::new((p.cost, plotted[i]), 8, ring)])
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(p.cost, plotted[i]));
        let label = format!("{} b{}", p.precision, p.batch_size);
        root.draw(&Text::new(label, (px + 9, py - 14), font.clone()))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(legend_at)
        .draw()
        .map_err(err)?;
    Ok(())
}
