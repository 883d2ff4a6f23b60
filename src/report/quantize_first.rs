//! The report's answer to "which layers should we quantize?": the two per-layer methods side by
//! side where a `layers` cell ran prefix differencing, the "quantize first" ranking (a layer's
//! share of the float model x the saving quantizing it brought), and the `quantize` selections'
//! energy against fidelity. Rendered by one block of each template (`r.per_layer`).

use serde::Serialize;

use crate::analysis::methods::{method_comparisons, MethodComparison};
use crate::analysis::quantize::{quantize_first, selections, QuantizeFirst, SelectionGroup};
use crate::analysis::CellSummary;
use crate::results::CellRecord;

#[derive(Debug, Serialize)]
pub(super) struct PerLayerView {
    /// Layers cells that ran prefix differencing (alone or beside the isolated units).
    pub methods: Vec<MethodComparison>,
    pub quantize_first: Vec<QuantizeFirst>,
    pub selections: Vec<SelectionGroup>,
    /// Whether any of the three has something to show.
    pub any: bool,
}

pub(super) fn per_layer_view(records: &[CellRecord], summaries: &[CellSummary]) -> PerLayerView {
    let methods: Vec<MethodComparison> = records
        .iter()
        .filter(|r| !r.prefixes.is_empty())
        .flat_map(method_comparisons)
        .collect();
    let quantize_first = quantize_first(records);
    let selections = selections(records, summaries);
    PerLayerView {
        any: !(methods.is_empty() && quantize_first.is_empty() && selections.is_empty()),
        methods,
        quantize_first,
        selections,
    }
}
