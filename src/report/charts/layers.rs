//! Per-layer charts of `layers` cells: one bar per precision for each layer, and for each block
//! component, side by side.

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{encode_png, ensure_font, fail, precision_color, Area, Chart};
use crate::analysis::{axis_title, same_except, CellSummary, Labels, LayerSummary};
use crate::matrix::Cell;

/// One series of bars: its name (a cell's label), the precision whose colour it takes, and its
/// value for each category (`None`: no bar).
pub type BarSeries = (String, String, Vec<Option<f64>>);

/// Grouped bars: one group per category (e.g. a layer), one bar per series (e.g. a cell).
pub fn grouped_bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[BarSeries],
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
    series: &[BarSeries],
) -> Result<()> {
    let n = categories.len().max(1) as f64;
    let y_max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().flatten())
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
        for (k, (name, precision, values)) in series.iter().enumerate() {
            let color = precision_color(precision);
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
type LayerMetric = (&'static str, &'static str, fn(&LayerSummary) -> Option<f64>);

/// Per-layer charts, one set per workload and batch size (the `layers` cells equal on every axis
/// but precision, `quantize` and layer method): energy (where measured) and latency per
/// top-level layer, and the transformer-block components summed over blocks, one bar per cell
/// side by side. A chart with a single bar is not drawn (the table says it).
pub fn layer_charts(layers: &[LayerSummary], cells: &[CellSummary]) -> Result<Vec<Chart>> {
    let labels = Labels::new(cells.iter().map(|c| &c.cell));
    const CHOSEN: [&str; 3] = ["precision", "quantize", "layer_method"];
    // Groups of layers cells, in plan order.
    let mut groups: Vec<Vec<&CellSummary>> = Vec::new();
    for c in cells
        .iter()
        .filter(|c| layers.iter().any(|l| l.cell_id == c.id))
    {
        match groups
            .iter_mut()
            .find(|g| same_except(&g[0].cell, &c.cell, &CHOSEN))
        {
            Some(g) => g.push(c),
            None => groups.push(vec![c]),
        }
    }
    let mut charts = Vec::new();
    for group in groups {
        let first = &group[0];
        let rows: Vec<&LayerSummary> = layers
            .iter()
            .filter(|l| group.iter().any(|c| c.id == l.cell_id))
            .collect();
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
        // The group's own axes name the chart; each cell's label without them names its bars.
        let fixed: Vec<String> = first
            .cell
            .axes()
            .into_iter()
            .filter(|a| !CHOSEN.contains(&a.axis.as_str()) && a.axis != "scope")
            .map(|a| a.axis)
            .collect();
        let omit: Vec<&str> = fixed.iter().map(String::as_str).chain(["scope"]).collect();
        let series_name = |c: &CellSummary| {
            let name = labels.label_without(&c.cell, &omit);
            if name.is_empty() {
                c.precision.clone()
            } else {
                name
            }
        };
        let what_ran = what_ran(&first.cell, &[&CHOSEN[..], &["scope"]].concat());
        let tag = format!(
            "{}-b{}-s{}",
            super::super::file_safe(&first.model),
            first.batch_size,
            first.seq_len
        );
        // Two groups that differ on an axis beyond model, batch and seq get their own file names.
        let tag = if charts
            .iter()
            .any(|c: &Chart| c.file_name.ends_with(&format!("-{tag}.svg")))
        {
            format!("{tag}-{}", first.id)
        } else {
            tag
        };
        for (what, y_label, metric) in metrics {
            let per_layer: Vec<BarSeries> = group
                .iter()
                .map(|c| {
                    let values = layer_names
                        .iter()
                        .map(|(_, name)| {
                            rows.iter()
                                .find(|r| r.cell_id == c.id && &r.layer_name == name)
                                .and_then(|r| metric(r))
                        })
                        .collect();
                    (series_name(c), c.precision.clone(), values)
                })
                .collect();
            let short: Vec<String> = layer_names
                .iter()
                .map(|(_, n)| short_layer_name(n))
                .collect();
            let title = format!("{what_ran}: {what} per layer");
            if bars(&per_layer) >= 2 {
                let (svg, png) = grouped_bars(&title, y_label, &short, &per_layer)?;
                charts.push(Chart {
                    file_name: format!("layers-{what}-{tag}.svg"),
                    svg,
                    png,
                    title,
                });
            }
            let per_component: Vec<BarSeries> = group
                .iter()
                .map(|c| {
                    let values = components
                        .iter()
                        .map(|comp| {
                            let parts: Vec<f64> = rows
                                .iter()
                                .filter(|r| {
                                    r.cell_id == c.id
                                        && r.parent.is_some()
                                        && r.layer_name.ends_with(&format!(".{comp}"))
                                })
                                .filter_map(|r| metric(r))
                                .collect();
                            (!parts.is_empty()).then(|| parts.iter().sum())
                        })
                        .collect();
                    (series_name(c), c.precision.clone(), values)
                })
                .collect();
            let short: Vec<String> = components.iter().map(|c| c.to_string()).collect();
            let title = format!("{what_ran}: {what} by block component (all blocks)");
            if bars(&per_component) >= 2 {
                let (svg, png) = grouped_bars(&title, y_label, &short, &per_component)?;
                charts.push(Chart {
                    file_name: format!("components-{what}-{tag}.svg"),
                    svg,
                    png,
                    title,
                });
            }
        }
    }
    Ok(charts)
}

/// What a group of layers cells shares, on every axis that applies to it but `omit` (those its
/// bars tell apart): `tiny, batch 2, seq 16`; a decoder's `sm1, batch 1, prompt 8, new tokens 2`,
/// so groups that differ only in new tokens get titles of their own.
fn what_ran(cell: &Cell, omit: &[&str]) -> String {
    cell.axes()
        .into_iter()
        .filter(|a| !omit.contains(&a.axis.as_str()))
        .filter_map(|a| {
            let v = a.value?;
            Some(if a.axis == "model" {
                v
            } else {
                format!("{} {v}", axis_title(&a.axis))
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn bars(series: &[BarSeries]) -> usize {
    series
        .iter()
        .map(|(_, _, v)| v.iter().flatten().count())
        .sum()
}

fn short_layer_name(name: &str) -> String {
    match name {
        "embeddings" => "emb".into(),
        "pre_classifier" => "pre_cls".into(),
        "classifier" => "cls".into(),
        other => other.replace("transformer_block_", "block "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LayerMethod, Precision, PrefillAttention, QuantizeSelection, Scope};

    fn decoder(new_tokens: usize) -> Cell {
        Cell {
            id: format!("n{new_tokens}"),
            model: "sm1".into(),
            precision: Precision::Fp32,
            batch_size: 1,
            seq_len: 8,
            prompt_len: Some(8),
            new_tokens: Some(new_tokens),
            scope: Scope::Layers,
            quantize: QuantizeSelection::default(),
            layer_method: LayerMethod::Isolated,
            prefill_attention: PrefillAttention::Plain,
        }
    }

    #[test]
    fn a_decoder_groups_title_names_its_prompt_and_new_tokens() {
        let omit = ["precision", "quantize", "layer_method", "scope"];
        assert_eq!(
            what_ran(&decoder(2), &omit),
            "sm1, batch 1, prompt 8, new tokens 2"
        );
        assert_ne!(what_ran(&decoder(2), &omit), what_ran(&decoder(4), &omit));
        let mut encoder = decoder(2);
        (encoder.prompt_len, encoder.new_tokens, encoder.seq_len) = (None, None, 16);
        assert_eq!(what_ran(&encoder, &omit), "sm1, batch 1, seq 16");
    }
}
