//! The fidelity section's rows, with the figure that means something for each cell's outputs:
//! a wide output (an embedding) keeps its lowest per-example cosine; a head of one or two logits
//! shows the KL divergence of its softmax and its logit-difference error instead, because the
//! cosine of two 2-vectors swings to -1 on a near-tie whatever the arithmetic did.

use serde::Serialize;

use crate::analysis::CellSummary;
use crate::config::ExperimentConfig;

/// Heads this narrow get KL and logit-difference error in place of the per-example cosine.
pub const FEW_LOGITS: usize = 2;

#[derive(Debug, Serialize)]
pub(super) struct FidelityRow<'a> {
    cell: &'a CellSummary,
    /// Logits per example: recorded, or for records from before it was, the label count of the
    /// model's architecture preset (every head the runner builds has that many logits).
    outputs: Option<usize>,
    /// One or two logits: KL and logit-difference error are shown, not the per-example cosine.
    few: bool,
    /// A few-logit record from before KL was recorded: its worst logit-difference error is shown
    /// as the bound 2 x max abs error.
    predates_kl: bool,
    /// 2 x max abs error: |(c1 - c0) - (r1 - r0)| <= |c1 - r1| + |c0 - r0|.
    diff_error_bound: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct FidelityView<'a> {
    rows: Vec<FidelityRow<'a>>,
    /// Some row has few logits (the KL and logit-difference columns).
    any_few: bool,
    /// Some row has wide outputs, or an unknown width (the per-example cosine column).
    any_wide: bool,
    /// Some few-logit row's record predates KL.
    any_predates_kl: bool,
    /// The widths seen, e.g. "2" or "2, 384", for the section's sentence.
    widths: String,
}

fn preset_labels(config: &ExperimentConfig, model: &str) -> Option<usize> {
    let m = config.models.get(model)?;
    m.encoder_preset().map(|p| p.num_labels)
}

pub(super) fn fidelity_view<'a>(
    config: &ExperimentConfig,
    cells: &'a [CellSummary],
) -> FidelityView<'a> {
    let rows: Vec<FidelityRow<'a>> = cells
        .iter()
        .filter_map(|cell| {
            let f = cell.fidelity.as_ref()?;
            let outputs = f.outputs.or_else(|| preset_labels(config, &cell.model));
            let few = outputs.is_some_and(|n| n <= FEW_LOGITS);
            Some(FidelityRow {
                cell,
                outputs,
                few,
                predates_kl: few && f.mean_kl.is_none(),
                diff_error_bound: 2.0 * f.max_abs_error,
            })
        })
        .collect();
    let mut widths: Vec<usize> = rows.iter().filter_map(|r| r.outputs).collect();
    widths.sort_unstable();
    widths.dedup();
    FidelityView {
        any_few: rows.iter().any(|r| r.few),
        any_wide: rows.iter().any(|r| !r.few),
        any_predates_kl: rows.iter().any(|r| r.predates_kl),
        widths: widths
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        rows,
    }
}
