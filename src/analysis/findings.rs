//! The findings a report opens with: per model and sequence length, the cheapest whole-model cell
//! for each metric with its interval and the cells statistically tied with it, and the ratios
//! readers ask for, in hyperfine's words ("fp16 b64 uses 0.14x [0.13, 0.15] the energy per
//! inference of fp32 b64"): each precision against the baseline, each quantized precision against
//! its float path, each batch size against batch 1. Ratios are of medians, with bootstrap
//! intervals over both cells' windows (within this run).

use serde::Serialize;

use super::CellSummary;
use crate::config::Precision;
use crate::results::CellStatus;
use crate::stats::{median_ci95, ratio_ci95, Estimate};

#[derive(Debug, Clone, Serialize)]
pub struct Findings {
    pub groups: Vec<FindingGroup>,
}

/// One model at one sequence length.
#[derive(Debug, Clone, Serialize)]
pub struct FindingGroup {
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
    /// `fp16 b64`.
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
    /// Every interval of the line holds 1: no difference beyond this run's noise.
    pub within_noise: bool,
}

fn label(s: &CellSummary) -> String {
    format!("{} b{}", s.precision, s.batch_size)
}

/// `0.14x [0.13, 0.15]`; three decimals below 0.1 so small ratios keep two significant digits.
pub fn ratio_text(e: &Estimate) -> String {
    let d = if e.0 < 0.1 { 3 } else { 2 };
    match e.1 {
        Some((lo, hi)) => format!("{:.d$}x [{lo:.d$}, {hi:.d$}]", e.0),
        None => format!("{:.d$}x (no interval: fewer than 3 windows)", e.0),
    }
}

fn holds_one(e: &Estimate) -> bool {
    e.1.is_none_or(|(lo, hi)| lo <= 1.0 && 1.0 <= hi)
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

/// `a` against `b`: energy per inference and `time` (per batch, or per sample across batch sizes).
fn sentence(a: &CellSummary, b: &CellSummary, per_sample_time: bool) -> Option<RatioLine> {
    let energy = ratio_ci95(&a.window_energy_mj, &b.window_energy_mj);
    let time = if per_sample_time {
        ratio_ci95(&per_sample(a), &per_sample(b))
    } else {
        ratio_ci95(&a.window_latency_ms, &b.window_latency_ms)
    }?;
    let what = if per_sample_time {
        "time per inference"
    } else {
        "time per batch"
    };
    let text = match &energy {
        Some(e) => format!(
            "{} uses {} the energy per inference of {} and takes {} its {what}",
            label(a),
            ratio_text(e),
            label(b),
            ratio_text(&time)
        ),
        None => format!(
            "{} takes {} the {what} of {}",
            label(a),
            ratio_text(&time),
            label(b)
        ),
    };
    Some(RatioLine {
        text,
        within_noise: holds_one(&time) && energy.as_ref().is_none_or(holds_one),
    })
}

/// Findings of every whole-model cell measured, per model and sequence length, in plan order.
pub fn findings(summaries: &[CellSummary], baseline: Precision) -> Findings {
    let cells: Vec<&CellSummary> = summaries
        .iter()
        .filter(|s| s.scope == "model" && s.status == CellStatus::Ok)
        .filter(|s| !s.window_latency_ms.is_empty())
        .collect();
    let mut keys: Vec<(&str, usize)> = Vec::new();
    for s in &cells {
        if !keys.contains(&(s.model.as_str(), s.seq_len)) {
            keys.push((s.model.as_str(), s.seq_len));
        }
    }
    let groups = keys
        .into_iter()
        .map(|(model, seq)| {
            let g: Vec<&CellSummary> = cells
                .iter()
                .copied()
                .filter(|s| s.model == model && s.seq_len == seq)
                .collect();
            FindingGroup {
                model: model.to_string(),
                seq_len: seq,
                leaders: leaders(&g),
                ratios: ratio_groups(&g, baseline),
            }
        })
        .collect();
    Findings { groups }
}

type Values = fn(&CellSummary) -> Vec<f64>;

fn leaders(g: &[&CellSummary]) -> Vec<Leader> {
    let metrics: [(&str, &str, Values, bool); 3] = [
        (
            "lowest energy per inference",
            "mJ",
            |s| s.window_energy_mj.clone(),
            false,
        ),
        (
            "lowest latency per batch",
            "ms",
            |s| s.window_latency_ms.clone(),
            false,
        ),
        ("highest throughput", "inferences/s", throughput, true),
    ];
    let mut out = Vec::new();
    for (metric, unit, values, higher_is_better) in metrics {
        let estimates: Vec<(&CellSummary, Vec<f64>, Estimate)> = g
            .iter()
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

fn ratio_groups(g: &[&CellSummary], baseline: Precision) -> Vec<RatioGroup> {
    let find = |precision: &str, batch: usize| {
        g.iter()
            .copied()
            .find(|s| s.precision == precision && s.batch_size == batch)
    };
    let mut groups = Vec::new();
    // Each precision against the baseline, at each batch size.
    let lines: Vec<RatioLine> = g
        .iter()
        .filter(|s| s.precision != baseline.name())
        .filter_map(|s| sentence(s, find(baseline.name(), s.batch_size)?, false))
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
            sentence(s, find(float.name(), s.batch_size)?, false)
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
                .filter(|o| o.precision == s.precision)
                .map(|o| o.batch_size)
                .min()?;
            (s.batch_size != smallest)
                .then(|| sentence(s, find(&s.precision, smallest)?, true))
                .flatten()
        })
        .collect();
    if !lines.is_empty() {
        groups.push(RatioGroup {
            title: "Each batch size against the smallest, per precision (per inference)".into(),
            lines,
        });
    }
    groups
}
