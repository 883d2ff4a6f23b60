//! Cost against quality: energy (or latency) per inference against 1 - cosine to fp32 or against
//! accuracy, one colour per precision, the Pareto front joined and labelled.

use anyhow::Result;
use plotters::prelude::*;

use super::{color, encode_png, ensure_font, fail, Area};

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
