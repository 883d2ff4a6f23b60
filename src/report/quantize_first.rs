//! The report's answer to "which layers should we quantize?": the two per-layer methods side by
//! side where a `layers` cell ran prefix differencing, the "quantize first" ranking (a layer's
//! share of the float model x the saving quantizing it brought), and the `quantize` selections'
//! energy against fidelity. Rendered by one block of each template (`r.per_layer`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::methods::{method_comparisons, MethodComparison};
use crate::analysis::quantize::{quantize_first, selections, QuantizeFirst, SelectionGroup};
use crate::analysis::{description, CellSummary};
use crate::analysis::{reconcile_in, reconciliation_rows, ReconciliationRow};
use crate::results::CellRecord;

#[derive(Debug, Serialize)]
pub(super) struct PerLayerView {
    /// Layers cells that ran prefix differencing (alone or beside the isolated units).
    pub methods: Vec<MethodComparison>,
    /// Each of those cells on every axis (`sm1 fp32 b1 prompt 8 +2 layers method=both`), by id:
    /// their headings name them as fully as the per-layer breakdown's.
    pub descriptions: BTreeMap<String, String>,
    /// Layers cells that ran prefix differencing alone, against their whole-model cell: they
    /// have no isolated units, so the per-layer breakdown (which reconciles the others) has
    /// no place for them.
    pub prefix_only: Vec<PrefixOnly>,
    pub quantize_first: Vec<QuantizeFirst>,
    pub selections: Vec<SelectionGroup>,
    /// Whether any of the three has something to show.
    pub any: bool,
}

/// A prefix-only layers cell's Σ (the longest prefix) against the whole model, per phase.
#[derive(Debug, Serialize)]
pub(super) struct PrefixOnly {
    pub cell_id: String,
    /// The cell on every axis, for its heading.
    pub description: String,
    pub whole_cell_id: String,
    pub rows: Vec<ReconciliationRow>,
}

pub(super) fn per_layer_view(records: &[CellRecord], summaries: &[CellSummary]) -> PerLayerView {
    let methods: Vec<MethodComparison> = records
        .iter()
        .filter(|r| !r.prefixes.is_empty())
        .flat_map(method_comparisons)
        .collect();
    let prefix_only = records
        .iter()
        .filter(|r| !r.prefixes.is_empty() && r.layers.is_empty())
        .filter_map(|r| {
            let rec = reconcile_in(r, records)?;
            Some(PrefixOnly {
                cell_id: r.cell.id.clone(),
                description: description(&r.cell),
                whole_cell_id: rec.model_cell_id.clone(),
                rows: reconciliation_rows(r, &rec),
            })
        })
        .collect();
    let descriptions = records
        .iter()
        .filter(|r| !r.prefixes.is_empty())
        .map(|r| (r.cell.id.clone(), description(&r.cell)))
        .collect();
    let quantize_first = quantize_first(records);
    let selections = selections(records, summaries);
    PerLayerView {
        any: !(methods.is_empty() && quantize_first.is_empty() && selections.is_empty()),
        methods,
        descriptions,
        prefix_only,
        quantize_first,
        selections,
    }
}
