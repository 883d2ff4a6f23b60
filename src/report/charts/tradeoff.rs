//! Cost against quality: energy (or latency) per inference against 1 - cosine to fp32 or against
//! accuracy, one colour per precision (a marker per series of one precision: its `quantize`
//! selections, say), the Pareto front joined and labelled.

use anyhow::Result;
use plotters::prelude::*;

use super::labels::{place, text_extent, Label, Rect};
use super::{draw_marker, encode_png, ensure_font, fail, precision_color, Area};

/// One cell on a trade-off chart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TradeoffPoint {
    pub cell_id: String,
    pub precision: String,
    /// The cell's label without its batch size: every other axis that varies among the chart's
    /// cells (`q8_0 quantize=ffn`). A legend entry, colour and marker each.
    pub series: String,
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
/// points labelled with their series and batch size.
pub fn tradeoff_chart(
    title: &str,
    cost_label: &str,
    quality: Quality,
    points: &[TradeoffPoint],
) -> Result<(String, Vec<u8>)> {
    // The legend as wide as its longest series (DejaVu at 14 px: ~8.5 px a character).
    let longest = points.iter().map(|p| p.series.chars().count()).max();
    let legend_w = (longest.unwrap_or(0) as f64 * 8.5).ceil() as u32 + 36;
    Ok(render!(title, (620 + legend_w.max(140), 460), |root| {
        draw_tradeoff(&root, title, cost_label, quality, points)
    }))
}

/// The series of `points`, in order of appearance: (name, precision, variant), where the
/// variant tells apart the series of one precision (its colour) by marker.
fn series(points: &[TradeoffPoint]) -> Vec<(&str, &str, usize)> {
    let mut out: Vec<(&str, &str, usize)> = Vec::new();
    for p in points {
        if !out.iter().any(|s| s.0 == p.series) {
            let variant = out.iter().filter(|s| s.1 == p.precision).count();
            out.push((&p.series, &p.precision, variant));
        }
    }
    out
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
    let log_axis = quality == Quality::CosineDistance;
    // Cells whose outputs equal fp32's (fp32 itself, the reference) have no place on a log axis:
    // they sit in a band below it, labelled "identical to fp32", never on an invented decade.
    let identical = |p: &TradeoffPoint| log_axis && p.quality <= 0.0;
    let any_identical = points.iter().any(identical);
    // The lowest decade of the log axis, and the band's height below it.
    let (mut axis_lo, band) = (f64::NEG_INFINITY, 1.0);
    let (plotted, y_range, y_desc): (Vec<f64>, _, _) = match quality {
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
            axis_lo = lo;
            let ys = points
                .iter()
                .map(|p| {
                    if identical(p) {
                        lo - 0.6 * band
                    } else {
                        p.quality.log10()
                    }
                })
                .collect();
            let bottom = if any_identical { lo - band } else { lo };
            (ys, bottom..hi, "1 - cosine to fp32 (log; lower is better)")
        }
        Quality::Accuracy => {
            let lo = points.iter().map(|p| p.quality).fold(f64::MAX, f64::min);
            let hi = points.iter().map(|p| p.quality).fold(f64::MIN, f64::max);
            let pad = ((hi - lo) * 0.2).max(1.0);
            (
                points.iter().map(|p| p.quality).collect(),
                (lo - pad)..(hi + pad).min(100.0),
                "accuracy, % (higher is better)",
            )
        }
    };
    let y_ticks = if log_axis {
        (y_range.end - y_range.start).round() as usize + 1
    } else {
        8
    };
    let series = series(points);
    let variant = |p: &TradeoffPoint| series.iter().find(|s| s.0 == p.series).map_or(0, |s| s.2);
    root.fill(&WHITE).map_err(err)?;
    let (plot, legend) = root.split_horizontally(620);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..x_max, y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(cost_label)
        .y_desc(y_desc)
        .y_labels(y_ticks)
        .y_label_formatter(&|v| {
            if log_axis && ((v - v.round()).abs() > 1e-6 || *v < axis_lo - 1e-6) {
                String::new()
            } else if log_axis {
                format!("1e{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let bounds = Rect::new(xs.start, ys.start, xs.end, ys.end);
    let mut obstacles = Vec::new();
    if any_identical {
        let edge = axis_lo - 0.25 * band;
        chart
            .draw_series(LineSeries::new(
                [(0.0, edge), (x_max, edge)],
                BLACK.mix(0.35).stroke_width(1),
            ))
            .map_err(err)?;
        // The band's words where no identical point is.
        let text = "identical to fp32 (1 - cosine = 0)";
        let (w, h) = text_extent(text, 12);
        let (_, band_y) = chart.backend_coord(&(0.0, axis_lo - 0.6 * band));
        let taken: Vec<i32> = points
            .iter()
            .filter(|p| identical(p))
            .map(|p| chart.backend_coord(&(p.cost, 0.0)).0)
            .collect();
        let x0 = band_gap(&taken, w, 10, bounds.x0 + 4, bounds.x1 - 4);
        let rect = Rect::new(x0, band_y - h / 2, x0 + w, band_y - h / 2 + h);
        root.draw(&Text::new(
            text,
            (rect.x0, rect.y0),
            ("sans-serif", 12).into_font().color(&BLACK.mix(0.6)),
        ))
        .map_err(err)?;
        obstacles.push(rect);
    }
    let line: Vec<(f64, f64)> = front
        .iter()
        .map(|&i| (points[i].cost, plotted[i]))
        .collect();
    chart
        .draw_series(LineSeries::new(line, BLACK.mix(0.6).stroke_width(1)))
        .map_err(err)?;
    for (p, &y) in points.iter().zip(&plotted) {
        let at = chart.backend_coord(&(p.cost, y));
        draw_marker(root, variant(p), at, precision_color(&p.precision)).map_err(err)?;
    }
    for &i in &front {
        let p = &points[i];
        chart
            .draw_series([Circle::new(
                (p.cost, plotted[i]),
                8,
                precision_color(&p.precision),
            )])
            .map_err(err)?;
    }
    // Labels: the front's (series and batch) first and always, then every other point's batch
    // where it finds room.
    let marks: Vec<(i32, i32)> = points
        .iter()
        .zip(&plotted)
        .map(|(p, &y)| chart.backend_coord(&(p.cost, y)))
        .collect();
    let order: Vec<usize> = front
        .iter()
        .copied()
        .chain((0..points.len()).filter(|i| !front.contains(i)))
        .collect();
    let texts: Vec<(String, u32)> = order
        .iter()
        .map(|&i| {
            let p = &points[i];
            if front.contains(&i) {
                (format!("{} b{}", p.series, p.batch_size), 12)
            } else {
                (format!("b{}", p.batch_size), 11)
            }
        })
        .collect();
    let labels: Vec<Label> = order
        .iter()
        .zip(&texts)
        .map(|(&i, (text, size))| Label {
            at: marks[i],
            size: text_extent(text, *size),
            optional: !front.contains(&i),
        })
        .collect();
    let placed = place(&labels, &marks, 8, bounds, &obstacles);
    for ((&i, (text, size)), spot) in order.iter().zip(&texts).zip(placed) {
        let Some(spot) = spot else { continue };
        let shade = if front.contains(&i) { 0.9 } else { 0.6 };
        if spot.far {
            root.draw(&PathElement::new(
                vec![marks[i], spot.rect.nearest(marks[i])],
                BLACK.mix(0.4).stroke_width(1),
            ))
            .map_err(err)?;
        }
        root.draw(&Text::new(
            text.clone(),
            (spot.rect.x0 + 1, spot.rect.y0 + 1),
            ("sans-serif", *size).into_font().color(&BLACK.mix(shade)),
        ))
        .map_err(err)?;
    }
    // The legend, right of the plot where it covers no point.
    let font = ("sans-serif", 14).into_font();
    for (k, (name, precision, variant)) in series.iter().enumerate() {
        let y = 48 + k as i32 * 22;
        draw_marker(&legend, *variant, (12, y + 7), precision_color(precision)).map_err(err)?;
        legend
            .draw(&Text::new(name.to_string(), (24, y), font.clone()))
            .map_err(err)?;
    }
    let y = 48 + series.len() as i32 * 22 + 10;
    legend
        .draw(&Circle::new((12, y + 7), 8, BLACK.mix(0.6)))
        .map_err(err)?;
    legend
        .draw(&Text::new("Pareto front", (24, y), font.clone()))
        .map_err(err)?;
    Ok(())
}

/// The left edge of a `width`-wide gap between `lo` and `hi` that keeps `margin` pixels from
/// every x in `taken`, leftmost first; `lo` when there is none.
fn band_gap(taken: &[i32], width: i32, margin: i32, lo: i32, hi: i32) -> i32 {
    let mut xs: Vec<i32> = taken.to_vec();
    xs.sort_unstable();
    let mut start = lo;
    for x in xs.into_iter().chain([i32::MAX]) {
        let end = if x == i32::MAX { hi } else { x - margin };
        if end - start >= width {
            return start;
        }
        if x != i32::MAX {
            start = start.max(x + margin);
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identical_band_label_finds_a_gap() {
        assert_eq!(band_gap(&[], 100, 10, 0, 500), 0);
        // A point near the left edge: the words start after it.
        assert_eq!(band_gap(&[20], 100, 10, 0, 500), 30);
        // Points at both ends: between them.
        assert_eq!(band_gap(&[20, 480], 100, 10, 0, 500), 30);
        // No room: the left edge.
        assert_eq!(band_gap(&[50, 150, 250], 100, 10, 0, 300), 0);
    }

    fn point(precision: &str, batch: usize, cost: f64, quality: f64) -> TradeoffPoint {
        TradeoffPoint {
            cell_id: format!("{precision}{batch}"),
            precision: precision.into(),
            series: precision.into(),
            batch_size: batch,
            cost,
            quality,
        }
    }

    #[test]
    fn fp32_is_drawn_as_identical_not_on_an_invented_decade() {
        let points = [
            point("fp32", 8, 10.0, 0.0),
            point("fp16", 8, 4.0, 3e-6),
            point("bf16", 8, 4.1, 2e-4),
            point("q8_0", 8, 6.0, 5e-5),
        ];
        let (svg, _) = tradeoff_chart(
            "t",
            "energy per inference, mJ",
            Quality::CosineDistance,
            &points,
        )
        .unwrap();
        assert!(svg.contains("identical to fp32"), "{svg}");
        // The axis starts a decade below the smallest distance (1e-7 here) and no lower.
        let texts: Vec<&str> = svg.lines().map(str::trim).collect();
        assert!(texts.contains(&"1e-7") && !texts.contains(&"1e-8"), "{svg}");
        for label in ["fp16 b8", "fp32 b8"] {
            assert!(svg.contains(label), "{label} on the front is labelled");
        }
    }

    #[test]
    fn series_of_one_precision_are_told_apart_in_legend_and_front_labels() {
        let mut points = vec![
            point("fp32", 4, 10.0, 0.0),
            point("q8_0", 4, 6.0, 5e-5),
            point("q8_0", 4, 5.0, 4e-4),
        ];
        points[1].series = "q8_0 quantize=all".into();
        points[2].series = "q8_0 quantize=ffn".into();
        assert_eq!(
            series(&points),
            [
                ("fp32", "fp32", 0),
                ("q8_0 quantize=all", "q8_0", 0),
                ("q8_0 quantize=ffn", "q8_0", 1)
            ]
        );
        let (svg, _) = tradeoff_chart("t", "mJ", Quality::CosineDistance, &points).unwrap();
        for label in ["q8_0 quantize=all b4", "q8_0 quantize=ffn b4"] {
            assert!(
                svg.contains(label),
                "{label} on the front is labelled: {svg}"
            );
        }
    }
}
