//! What cells save against others: each whole-model cell against the baseline precision's cell
//! (energy and latency, with intervals over both cells' windows), and each quantized cell against
//! the float path it replaces. The partner is the cell equal on every other axis.

use serde::{Deserialize, Serialize};

use super::labels::same_except;
use super::{speed_is_reference, window_stats, CellSummary, WindowStats};
use crate::config::{Precision, Scope};
use crate::results::{CellRecord, CellStatus};
use crate::stats::ratio_ci95;

/// What a cell saves against the baseline precision's cell of the same model, batch size and
/// sequence length, in % of the baseline (positive = less energy or time), with 95 % confidence
/// intervals from the per-window values of both cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Savings {
    pub baseline_precision: String,
    pub baseline_cell_id: String,
    pub energy_pct: Option<f64>,
    pub energy_ci_low_pct: Option<f64>,
    pub energy_ci_high_pct: Option<f64>,
    pub latency_pct: Option<f64>,
    pub latency_ci_low_pct: Option<f64>,
    pub latency_ci_high_pct: Option<f64>,
}

/// The saving of a whole-model cell against the baseline precision's cell that is the same on
/// every other axis (model, shapes, and any axis added later).
pub(super) fn savings_in(
    r: &CellRecord,
    records: &[CellRecord],
    baseline: Precision,
) -> Option<Savings> {
    if r.cell.scope != Scope::Model || r.status != CellStatus::Ok || r.cell.precision == baseline {
        return None;
    }
    let candidates = || {
        records.iter().filter(|b| {
            b.cell.scope == Scope::Model
                && b.status == CellStatus::Ok
                && b.cell.precision == baseline
        })
    };
    // A quantized baseline: the same selection where there is one, else its plain cell.
    let base = candidates()
        .find(|b| same_except(&r.cell, &b.cell, &["precision"]))
        .or_else(|| {
            candidates().find(|b| {
                b.cell.quantize.is_all()
                    && same_except(&r.cell, &b.cell, &["precision", "quantize"])
            })
        })?;
    let mine = window_stats(&r.windows, r.cell.batch_size, r.idle_power_w);
    let theirs = window_stats(&base.windows, base.cell.batch_size, base.idle_power_w);
    let mut s = savings_between(&mine, &theirs, baseline, &base.cell.id);
    if speed_is_reference(r) || speed_is_reference(base) {
        s.latency_pct = None;
        s.latency_ci_low_pct = None;
        s.latency_ci_high_pct = None;
    }
    Some(s)
}

/// Energy and latency savings of `mine` against `theirs`, from their per-window values.
pub(crate) fn savings_between(
    mine: &WindowStats,
    theirs: &WindowStats,
    baseline: Precision,
    baseline_cell_id: &str,
) -> Savings {
    // A saving is 1 - the ratio (Hodges–Lehmann, over both cells' windows), its interval turned
    // around.
    let saving = |mine: &[f64], theirs: &[f64]| {
        ratio_ci95(mine, theirs).map(|(r, ci)| {
            (
                (1.0 - r) * 100.0,
                ci.map(|(lo, hi)| ((1.0 - hi) * 100.0, (1.0 - lo) * 100.0)),
            )
        })
    };
    let energy = saving(
        &mine.window_energy_per_inference_mj,
        &theirs.window_energy_per_inference_mj,
    );
    let latency = saving(
        &mine.window_latency_medians_ms,
        &theirs.window_latency_medians_ms,
    );
    Savings {
        baseline_precision: baseline.name().to_string(),
        baseline_cell_id: baseline_cell_id.to_string(),
        energy_pct: energy.map(|e| e.0),
        energy_ci_low_pct: energy.and_then(|e| e.1).map(|c| c.0),
        energy_ci_high_pct: energy.and_then(|e| e.1).map(|c| c.1),
        latency_pct: latency.map(|l| l.0),
        latency_ci_low_pct: latency.and_then(|l| l.1).map(|c| c.0),
        latency_ci_high_pct: latency.and_then(|l| l.1).map(|c| c.1),
    }
}

/// A quantized whole-model cell against the float precision it replaces (q8_0-fp16 against fp16)
/// at the same model, batch size and sequence length: whether quantizing bought time or energy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantizedComparison {
    pub cell_id: String,
    /// The quantized cell's label (every axis that varies in the run).
    pub label: String,
    pub model: String,
    pub precision: String,
    pub float_precision: String,
    pub float_cell_id: String,
    pub batch_size: usize,
    pub seq_len: usize,
    pub latency_ms: f64,
    pub float_latency_ms: f64,
    /// Quantized / float median latency per batch: above 1 the quantized cell is slower.
    pub latency_ratio: f64,
    /// Quantized / float energy per inference, where both were measured.
    pub energy_ratio: Option<f64>,
    /// Slower by more than [`QUANTIZED_SLOWER`].
    pub slower: bool,
}

/// A quantized cell more than 5 % slower than its float path is reported as slower.
pub const QUANTIZED_SLOWER: f64 = 1.05;

/// Every measured quantized whole-model cell that has a measured float counterpart.
pub fn quantized_comparisons(summaries: &[CellSummary]) -> Vec<QuantizedComparison> {
    let measured = |s: &&CellSummary| s.scope == "model" && s.status == CellStatus::Ok;
    summaries
        .iter()
        .filter(measured)
        .filter_map(|q| {
            let Some(Precision::Quantized(_, float)) = Precision::parse(&q.precision) else {
                return None;
            };
            let float = float.precision().name();
            let f = summaries
                .iter()
                .filter(measured)
                .find(|f| f.precision == float && same_except(&q.cell, &f.cell, &["precision"]))?;
            let (latency, float_latency) = (q.latency_per_loop_ms?, f.latency_per_loop_ms?);
            let latency_ratio = latency / float_latency;
            Some(QuantizedComparison {
                cell_id: q.id.clone(),
                label: q.label.clone(),
                model: q.model.clone(),
                precision: q.precision.clone(),
                float_precision: float.to_string(),
                float_cell_id: f.id.clone(),
                batch_size: q.batch_size,
                seq_len: q.seq_len,
                latency_ms: latency,
                float_latency_ms: float_latency,
                latency_ratio,
                energy_ratio: q
                    .energy_per_inference_mj
                    .zip(f.energy_per_inference_mj)
                    .map(|(a, b)| a / b),
                slower: latency_ratio > QUANTIZED_SLOWER,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::summarize;
    use super::super::tests::record_with_energy;
    use super::*;

    #[test]
    fn quantized_cells_are_compared_with_the_float_path_they_replace() {
        // fp16 at 10 ms per batch of 4 (100 loops in 1 s, 40 J); q8_0-fp16 at 25 ms (40 loops in
        // 1 s, 50 J); q4_0-fp16 as fast as fp16 (within 5 %); bf16's quantization has no bf16 cell.
        let cell = |id: &str, precision: &str, loops: u32, joules: f64| {
            let mut s = summarize(&record_with_energy(
                vec![(1.0, loops, joules, joules)],
                None,
            ));
            s.id = id.into();
            s.precision = precision.into();
            s.cell.precision = Precision::parse(precision).unwrap();
            s
        };
        let summaries = vec![
            cell("f", "fp16", 100, 40.0),
            cell("q8", "q8_0-fp16", 40, 50.0),
            cell("q4", "q4_0-fp16", 98, 40.0),
            cell("qb", "q8_0-bf16", 40, 50.0),
        ];
        let c = quantized_comparisons(&summaries);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(
            (c[0].cell_id.as_str(), c[0].float_cell_id.as_str()),
            ("q8", "f")
        );
        assert_eq!(c[0].float_precision, "fp16");
        assert!(
            (c[0].latency_ratio - 2.5).abs() < 1e-9,
            "{}",
            c[0].latency_ratio
        );
        // 50 J / 160 inferences against 40 J / 400.
        assert!((c[0].energy_ratio.unwrap() - 3.125).abs() < 1e-9);
        assert!(c[0].slower);
        assert_eq!(c[1].cell_id, "q4");
        assert!(!c[1].slower, "{}", c[1].latency_ratio);
    }
}
