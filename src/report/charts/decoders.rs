//! The decoders' first screen: energy and time per generated token against batch size (one line
//! per set of cells equal on every other axis), the prefill's per prompt token and per batch, and
//! the split of a request's energy between prefill and decode.

use anyhow::Result;
use plotters::prelude::*;

use super::{draw_lines, encode_png, ensure_font, fail, lines, Chart};
use crate::analysis::{CellSummary, Labels};

/// (file name, title, y-axis label, the metric, its 95 % interval).
type Spec = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CellSummary) -> Option<f64>,
    fn(&CellSummary) -> Option<(f64, f64)>,
);

pub fn decoder_charts(summaries: &[CellSummary]) -> Result<Vec<Chart>> {
    // A decoder cell's energy and latency fields (and their intervals) are its decode steps'.
    let specs: [Spec; 4] = [
        (
            "decode_energy_per_token.svg",
            "Decode: energy per generated token (mJ)",
            "mJ per token",
            |s| s.generate.as_ref()?.decode_mj_per_token,
            |s| Some((s.energy_ci_low_mj?, s.energy_ci_high_mj?)),
        ),
        (
            "decode_time_per_token.svg",
            "Decode: time per output token (ms per step)",
            "ms per step",
            |s| s.generate.as_ref()?.decode_ms_per_step,
            |s| Some((s.latency_ci_low_ms?, s.latency_ci_high_ms?)),
        ),
        (
            "prefill_energy_per_token.svg",
            "Prefill: energy per prompt token (mJ)",
            "mJ per prompt token",
            |s| s.generate.as_ref()?.prefill_mj_per_prompt_token,
            |_| None,
        ),
        (
            "time_to_first_token.svg",
            "Prefill: time to first token (ms per batch)",
            "ms per batch",
            |s| s.generate.as_ref()?.prefill_ms,
            |s| {
                let g = s.generate.as_ref()?;
                Some((g.prefill_ci_low_ms?, g.prefill_ci_high_ms?))
            },
        ),
    ];
    let mut charts = Vec::new();
    for (file, title, y_label, metric, interval) in specs {
        let data = lines(summaries, metric, interval, false, true);
        if data.iter().map(|l| l.points.len()).sum::<usize>() < 2 {
            continue;
        }
        let longest = data
            .iter()
            .map(|l| l.name.chars().count())
            .max()
            .unwrap_or(0);
        let legend_w = (longest as f64 * 8.5).ceil() as u32 + 48;
        let size = (560 + legend_w.max(200), 420);
        let (svg, png) = render!(title, size, |root| draw_lines(&root, title, y_label, &data));
        charts.push(Chart {
            file_name: file.to_string(),
            title: title.to_string(),
            svg,
            png,
        });
    }
    if let Some(split) = split_chart(summaries)? {
        charts.push(split);
    }
    Ok(charts)
}

/// J per request, prefill beside decode, one group per measured decoder cell.
fn split_chart(summaries: &[CellSummary]) -> Result<Option<Chart>> {
    let cells: Vec<&CellSummary> = summaries
        .iter()
        .filter(|s| {
            s.generate
                .as_ref()
                .is_some_and(|g| g.j_per_request.is_some())
        })
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let labels = Labels::new(cells.iter().map(|s| &s.cell));
    let categories: Vec<String> = cells.iter().map(|s| labels.label(&s.cell)).collect();
    let part = |prefill: bool| -> Vec<Option<f64>> {
        cells
            .iter()
            .map(|s| {
                let g = s.generate.as_ref()?;
                let p = g.prefill_mj_per_prompt_token? * g.prompt_len as f64 / 1e3;
                let d = g.decode_mj_per_token? * g.new_tokens as f64 / 1e3;
                Some(if prefill { p } else { d })
            })
            .collect()
    };
    let title = "Energy per request: prefill and decode (J)";
    let (svg, png) = super::grouped_bars(
        title,
        "J per request",
        &categories,
        &[
            ("prefill".into(), "prefill".into(), part(true)),
            ("decode".into(), "decode".into(), part(false)),
        ],
    )?;
    Ok(Some(Chart {
        file_name: "request_energy_split.svg".into(),
        title: title.into(),
        svg,
        png,
    }))
}
