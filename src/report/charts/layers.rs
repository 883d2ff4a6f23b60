//! Per-layer charts of `layers` cells: one bar per precision for each layer, and for each block
//! component, side by side.

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{encode_png, ensure_font, fail, precision_color, Area, Chart};

/// Grouped bars: one group per category (e.g. a layer), one bar per series (e.g. a precision).
/// `series[k].1[i]` is series k's value for category i (`None`: no bar).
/// Series are named by precision and drawn in its fixed colour.
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
            let color = precision_color(name);
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
        let tag = format!("{}-b{batch}-s{seq}", super::super::file_safe(&model));
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
