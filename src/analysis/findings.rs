//! The findings a report opens with: per model and sequence length, the cheapest whole-model cell
//! for each metric with its interval and the cells statistically tied with it, and the ratios
//! readers ask for, in hyperfine's words ("fp16 b64 uses 0.14x [0.13, 0.15] the energy per
//! inference of fp32 b64"): each precision against the baseline, each quantized precision against
//! its float path, each batch size against batch 1. Ratios are Hodges–Lehmann estimates over
//! both cells' windows with exact Mann–Whitney intervals (within this run).
//!
//! A group is one workload: the cells equal on every axis but those a deployment chooses
//! (precision, `quantize` selection, batch size). Cells compared in a ratio are equal on every
//! axis but the one the ratio is about, and every label names every axis that varies.

use serde::Serialize;

use super::labels::{same_except, Labels};
use super::CellSummary;
use crate::config::Precision;
use crate::results::CellStatus;
use crate::stats::{median_ci95, ratio_ci95, Estimate, MIN_FOR_RATIO_INTERVAL};

#[derive(Debug, Clone, Serialize)]
pub struct Findings {
    pub groups: Vec<FindingGroup>,
    /// Cells whose time is not a speed figure (the CPU's W8A8 numerics reference): left out of
    /// every ranking and ratio of time, named here.
    pub not_ranked_on_speed: Vec<String>,
}

/// The axes a deployment chooses; every other axis (model, shapes) defines the workload.
const CHOSEN: [&str; 3] = ["precision", "quantize", "batch_size"];

/// One workload: a model at one shape.
#[derive(Debug, Clone, Serialize)]
pub struct FindingGroup {
    /// `distilbert, seq 128`.
    pub title: String,
    pub model: String,
    pub seq_len: usize,
    pub leaders: Vec<Leader>,
    pub ratios: Vec<RatioGroup>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Leader {
    /// `lowest energy per inference`, `lowest latency per batch`, `highest throughput`.
    pub metric: String,
    pub unit: String,
    /// Decimals the value is shown with.
    pub digits: usize,
    pub cell_id: String,
    /// `fp16 b64`: the cell's value on every chosen axis that varies.
    pub label: String,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Cells whose ratio to the leader has an interval that holds 1.
    pub tied: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RatioGroup {
    pub title: String,
    pub lines: Vec<RatioLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RatioLine {
    /// The sentence, e.g. `fp16 b64 uses 0.14x [0.13, 0.15] the energy per inference of fp32 b64`.
    pub text: String,
    /// Every ratio of the line has an interval, and each holds 1: no difference beyond this
    /// run's noise. (Without intervals nothing is judged.)
    pub within_noise: bool,
    /// A ratio of the line has no interval (a cell with fewer than 4 windows).
    pub without_interval: bool,
}

/// The words a group's figures are given in. An encoder's windows time batches of inferences; a
/// decoder's time whole decode steps, one generated token per sequence, so its findings are about
/// decode (prefill has its own columns in the decoder table of the first screen).
struct Terms {
    energy: &'static str,
    time_per_loop: &'static str,
    time_per_sample: &'static str,
    lowest_energy: &'static str,
    lowest_latency: &'static str,
    highest_throughput: &'static str,
    throughput_unit: &'static str,
    /// What the batch-size ratios are per.
    per_item: &'static str,
}

const ENCODER: Terms = Terms {
    energy: "energy per inference",
    time_per_loop: "time per batch",
    time_per_sample: "time per inference",
    lowest_energy: "lowest energy per inference",
    lowest_latency: "lowest latency per batch",
    highest_throughput: "highest throughput",
    throughput_unit: "inferences/s",
    per_item: "per inference",
};

const DECODER: Terms = Terms {
    energy: "decode energy per generated token",
    time_per_loop: "time per decode step",
    time_per_sample: "time per generated token",
    lowest_energy: "lowest decode energy per generated token",
    lowest_latency: "lowest time per decode step",
    highest_throughput: "highest decode throughput",
    throughput_unit: "tokens/s",
    per_item: "per generated token",
};

fn terms(s: &CellSummary) -> &'static Terms {
    if s.prompt_len.is_some() {
        &DECODER
    } else {
        &ENCODER
    }
}

/// The workload axes of a cell, as a group's key and title.
fn workload(s: &CellSummary) -> Vec<(String, String)> {
    s.cell
        .axes()
        .into_iter()
        .filter(|a| !CHOSEN.contains(&a.axis.as_str()) && a.axis != "scope")
        .filter(|a| !a.short.is_empty())
        .map(|a| (a.axis, a.short))
        .collect()
}

/// `0.14x [0.13, 0.15]`, or `0.14x` without an interval (the line says so once).
fn short_ratio_text(e: &Estimate) -> String {
    let d = if e.0 < 0.1 { 3 } else { 2 };
    match e.1 {
        Some(_) => ratio_text(e),
        None => format!("{:.d$}x", e.0),
    }
}

/// `0.14x [0.13, 0.15]`; three decimals below 0.1 so small ratios keep two significant digits.
pub fn ratio_text(e: &Estimate) -> String {
    let d = if e.0 < 0.1 { 3 } else { 2 };
    match e.1 {
        Some((lo, hi)) => format!("{:.d$}x [{lo:.d$}, {hi:.d$}]", e.0),
        None => format!(
            "{:.d$}x (no interval: fewer than {MIN_FOR_RATIO_INTERVAL} windows a side)",
            e.0
        ),
    }
}

fn holds_one(e: &Estimate) -> bool {
    e.1.is_some_and(|(lo, hi)| lo <= 1.0 && 1.0 <= hi)
}

fn per_sample(s: &CellSummary) -> Vec<f64> {
    s.window_latency_ms
        .iter()
        .map(|ms| ms / s.batch_size as f64)
        .collect()
}

fn throughput(s: &CellSummary) -> Vec<f64> {
    s.window_latency_ms
        .iter()
        .map(|ms| s.batch_size as f64 * 1e3 / ms)
        .collect()
}

/// `a` against `b`: energy per inference and `time` (per batch, or per sample across batch
/// sizes); time only where both cells' times are speed figures.
fn sentence(
    a: &CellSummary,
    b: &CellSummary,
    per_sample_time: bool,
    label: &dyn Fn(&CellSummary) -> String,
) -> Option<RatioLine> {
    let t = terms(a);
    let energy_what = t.energy;
    let energy = ratio_ci95(&a.window_energy_mj, &b.window_energy_mj);
    let time = if a.speed_is_reference || b.speed_is_reference {
        None
    } else if per_sample_time {
        ratio_ci95(&per_sample(a), &per_sample(b))
    } else {
        ratio_ci95(&a.window_latency_ms, &b.window_latency_ms)
    };
    let what = if per_sample_time {
        t.time_per_sample
    } else {
        t.time_per_loop
    };
    let text = match (&energy, &time) {
        (Some(e), Some(t)) => format!(
            "{} uses {} the {energy_what} of {} and takes {} its {what}",
            label(a),
            short_ratio_text(e),
            label(b),
            short_ratio_text(t)
        ),
        (Some(e), None) => format!(
            "{} uses {} the {energy_what} of {}",
            label(a),
            short_ratio_text(e),
            label(b)
        ),
        (None, Some(t)) => format!(
            "{} takes {} the {what} of {}",
            label(a),
            short_ratio_text(t),
            label(b)
        ),
        (None, None) => return None,
    };
    let all: Vec<&Estimate> = energy.iter().chain(time.iter()).collect();
    Some(RatioLine {
        text,
        within_noise: all.iter().all(|e| holds_one(e)),
        without_interval: all.iter().any(|e| e.1.is_none()),
    })
}

/// Findings of every whole-model cell measured, per workload, in plan order.
pub fn findings(summaries: &[CellSummary], baseline: Precision) -> Findings {
    let cells: Vec<&CellSummary> = summaries
        .iter()
        .filter(|s| s.scope == "model" && s.status == CellStatus::Ok)
        .filter(|s| !s.window_latency_ms.is_empty())
        .collect();
    let labels = Labels::new(summaries.iter().map(|s| &s.cell));
    let mut keys: Vec<Vec<(String, String)>> = Vec::new();
    for s in &cells {
        let key = workload(s);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let groups = keys
        .into_iter()
        .map(|key| {
            let g: Vec<&CellSummary> = cells
                .iter()
                .copied()
                .filter(|s| workload(s) == key)
                .collect();
            // The group's title names the workload axes; labels name the chosen ones.
            let omit: Vec<&str> = key.iter().map(|(axis, _)| axis.as_str()).collect();
            let label = |s: &CellSummary| labels.label_without(&s.cell, &omit);
            FindingGroup {
                title: key
                    .iter()
                    .map(|(_, short)| short.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                model: g[0].model.clone(),
                seq_len: g[0].seq_len,
                leaders: leaders(&g, &label),
                ratios: ratio_groups(&g, baseline, &label),
            }
        })
        .collect();
    Findings {
        groups,
        not_ranked_on_speed: cells
            .iter()
            .filter(|s| s.speed_is_reference)
            .map(|s| s.label.clone())
            .collect(),
    }
}

type Values = fn(&CellSummary) -> Vec<f64>;

fn leaders(g: &[&CellSummary], label: &dyn Fn(&CellSummary) -> String) -> Vec<Leader> {
    // A group is one workload: encoders or decoders, never both.
    let t = terms(g[0]);
    // (metric, unit, values, higher is better, a speed).
    let metrics: [(&str, &str, Values, bool, bool); 3] = [
        (
            t.lowest_energy,
            "mJ",
            |s| s.window_energy_mj.clone(),
            false,
            false,
        ),
        (
            t.lowest_latency,
            "ms",
            |s| s.window_latency_ms.clone(),
            false,
            true,
        ),
        (
            t.highest_throughput,
            t.throughput_unit,
            throughput,
            true,
            true,
        ),
    ];
    let mut out = Vec::new();
    for (metric, unit, values, higher_is_better, speed) in metrics {
        let estimates: Vec<(&CellSummary, Vec<f64>, Estimate)> = g
            .iter()
            .filter(|s| !(speed && s.speed_is_reference))
            .filter_map(|s| {
                let v = values(s);
                let e = median_ci95(&v)?;
                Some((*s, v, e))
            })
            .collect();
        let best = estimates.iter().min_by(|a, b| {
            let (x, y) = (a.2 .0, b.2 .0);
            if higher_is_better {
                y.total_cmp(&x)
            } else {
                x.total_cmp(&y)
            }
        });
        let Some((leader, lv, le)) = best else {
            continue;
        };
        let tied = estimates
            .iter()
            .filter(|(s, _, _)| s.id != leader.id)
            .filter(|(_, v, _)| ratio_ci95(v, lv).is_some_and(|r| r.1.is_some() && holds_one(&r)))
            .map(|(s, _, _)| label(s))
            .collect();
        out.push(Leader {
            metric: metric.to_string(),
            unit: unit.to_string(),
            digits: if higher_is_better { 1 } else { 3 },
            cell_id: leader.id.clone(),
            label: label(leader),
            value: le.0,
            ci_low: le.1.map(|c| c.0),
            ci_high: le.1.map(|c| c.1),
            tied,
        });
    }
    out
}

fn ratio_groups(
    g: &[&CellSummary],
    baseline: Precision,
    label: &dyn Fn(&CellSummary) -> String,
) -> Vec<RatioGroup> {
    // The cell equal to `s` on every axis but `except`, with `precision` and `batch` given.
    let find = |s: &CellSummary, precision: &str, batch: usize, except: &[&str]| {
        g.iter().copied().find(|o| {
            o.precision == precision
                && o.batch_size == batch
                && o.id != s.id
                && same_except(&s.cell, &o.cell, except)
        })
    };
    let mut groups = Vec::new();
    // Each precision against the baseline, at each batch size.
    let lines: Vec<RatioLine> = g
        .iter()
        .filter(|s| s.precision != baseline.name())
        .filter_map(|s| {
            let b = find(s, baseline.name(), s.batch_size, &["precision"])?;
            sentence(s, b, false, label)
        })
        .collect();
    if !lines.is_empty() {
        groups.push(RatioGroup {
            title: format!("Each precision against {}", baseline.name()),
            lines,
        });
    }
    // Each precision with a float part of its own (q8_0-fp16: fp16) against that float path.
    let lines: Vec<RatioLine> = g
        .iter()
        .filter_map(|s| {
            let p = Precision::parse(&s.precision)?;
            let float = p.float().precision();
            if float == p || float == baseline {
                return None;
            }
            let f = find(s, float.name(), s.batch_size, &["precision"])?;
            sentence(s, f, false, label)
        })
        .collect();
    if !lines.is_empty() {
        groups.push(RatioGroup {
            title: "Each quantized precision against the float path it replaces".into(),
            lines,
        });
    }
    // Each batch size against the smallest (batch 1 where it ran), per precision.
    let lines: Vec<RatioLine> = g
        .iter()
        .filter_map(|s| {
            let smallest = g
                .iter()
                .filter(|o| same_except(&s.cell, &o.cell, &["batch_size"]))
                .map(|o| o.batch_size)
                .min()?;
            (s.batch_size != smallest)
                .then(|| {
                    sentence(
                        s,
                        find(s, &s.precision, smallest, &["batch_size"])?,
                        true,
                        label,
                    )
                })
                .flatten()
        })
        .collect();
    if !lines.is_empty() {
        groups.push(RatioGroup {
            title: format!(
                "Each batch size against the smallest, per precision ({})",
                terms(g[0]).per_item
            ),
            lines,
        });
    }
    groups
}
