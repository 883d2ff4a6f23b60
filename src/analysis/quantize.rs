//! Which layers to quantize first, from the profile: each layer's share of the float model's
//! energy times the saving that quantizing it brought (its layers cell in the quantized precision
//! against the float path's), ranked; and the `quantize` selections that ran, energy against
//! fidelity.

use serde::Serialize;

use super::labels::same_except;
use super::methods::{self, Estimate, Metric};
use super::CellSummary;
use crate::config::Scope;
use crate::results::{CellRecord, CellStatus};

/// One layer of the "quantize first" table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantizeFirstRow {
    pub rank: usize,
    pub layer: String,
    /// Share of Σ top-level layers in the float precision's layers cell, %.
    pub share_pct: f64,
    /// The layer's own saving when quantized: 1 - quantized / float, %, with its interval.
    pub saving_pct: f64,
    pub saving_ci_low_pct: Option<f64>,
    pub saving_ci_high_pct: Option<f64>,
    /// share x saving: the part of the whole model's energy (or latency) that quantizing this
    /// layer saves, %, with the saving's interval scaled by the share.
    pub score_pct: f64,
    pub score_ci_low_pct: Option<f64>,
    pub score_ci_high_pct: Option<f64>,
}

/// The table for one model, shape and quantized precision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantizeFirst {
    pub model: String,
    pub batch_size: usize,
    pub seq_len: usize,
    pub precision: String,
    pub float_precision: String,
    pub float_cell_id: String,
    pub quantized_cell_id: String,
    pub metric: Metric,
    pub rows: Vec<QuantizeFirstRow>,
}

/// Per-layer values of a layers cell: the isolated method's where it ran, else the prefix
/// differences.
fn per_layer(r: &CellRecord, metric: Metric) -> Vec<(String, Option<Estimate>)> {
    let isolated = methods::isolated_layers(r, metric);
    if isolated.is_empty() {
        methods::prefix_layers(r, metric)
    } else {
        isolated
    }
}

fn half_width(e: &Estimate) -> Option<f64> {
    Some(((e.ci_high? - e.value).abs() + (e.value - e.ci_low?).abs()) / 2.0)
}

/// Every quantized precision's layers cell (all layers quantized) with a layers cell of its
/// float path at the same model and shapes.
pub fn quantize_first(records: &[CellRecord]) -> Vec<QuantizeFirst> {
    let layers_cells = || {
        records.iter().filter(|r| {
            r.status == CellStatus::Ok
                && r.cell.scope == Scope::Layers
                && (!r.layers.is_empty() || !r.prefixes.is_empty())
        })
    };
    layers_cells()
        .filter(|q| q.cell.quantize.is_all())
        .filter_map(|q| {
            let float = q.cell.precision.float_path()?;
            let f = layers_cells().find(|f| {
                f.cell.precision == float
                    && same_except(&q.cell, &f.cell, &["precision", "layer_method"])
            })?;
            let metric = match (methods::metric_of(f), methods::metric_of(q)) {
                (Metric::Energy, Metric::Energy) => Metric::Energy,
                _ => Metric::Latency,
            };
            let fl = per_layer(f, metric);
            let ql = per_layer(q, metric);
            let total: f64 = fl.iter().filter_map(|(_, e)| e.map(|e| e.value)).sum();
            let mut rows: Vec<QuantizeFirstRow> = fl
                .iter()
                .filter(|(name, _)| methods::has_linear_weights(name))
                .filter_map(|(name, fe)| {
                    let fe = (*fe)?;
                    let qe = ql.iter().find(|(n, _)| n == name)?.1?;
                    if fe.value <= 0.0 || total <= 0.0 {
                        return None;
                    }
                    let ratio = qe.value / fe.value;
                    // Relative errors in quadrature (separate windows, independent errors).
                    let rel = half_width(&qe)
                        .zip(half_width(&fe))
                        .map(|(hq, hf)| ((hq / qe.value).powi(2) + (hf / fe.value).powi(2)).sqrt());
                    let saving = (1.0 - ratio) * 100.0;
                    let saving_hw = rel.map(|r| ratio * r * 100.0);
                    let share = fe.value / total * 100.0;
                    Some(QuantizeFirstRow {
                        rank: 0,
                        layer: name.clone(),
                        share_pct: share,
                        saving_pct: saving,
                        saving_ci_low_pct: saving_hw.map(|h| saving - h),
                        saving_ci_high_pct: saving_hw.map(|h| saving + h),
                        score_pct: share * saving / 100.0,
                        score_ci_low_pct: saving_hw.map(|h| share * (saving - h) / 100.0),
                        score_ci_high_pct: saving_hw.map(|h| share * (saving + h) / 100.0),
                    })
                })
                .collect();
            rows.sort_by(|a, b| b.score_pct.total_cmp(&a.score_pct));
            for (i, row) in rows.iter_mut().enumerate() {
                row.rank = i + 1;
            }
            Some(QuantizeFirst {
                model: q.cell.model.clone(),
                batch_size: q.cell.batch_size,
                seq_len: q.cell.seq_len,
                precision: q.cell.precision.name().to_string(),
                float_precision: float.name().to_string(),
                float_cell_id: f.cell.id.clone(),
                quantized_cell_id: q.cell.id.clone(),
                metric,
                rows,
            })
        })
        .collect()
}

/// One `quantize` selection's whole-model cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectionRow {
    pub cell_id: String,
    pub selection: String,
    /// Linear sites quantized, of all the model's.
    pub quantized_sites: Option<usize>,
    pub all_sites: Option<usize>,
    pub quantized: Vec<String>,
    pub energy_per_inference_mj: Option<f64>,
    pub energy_ci_low_mj: Option<f64>,
    pub energy_ci_high_mj: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Against the `none` selection of the same precision (the float path in the same cell
    /// shape), % (positive = less energy / time).
    pub energy_saving_pct: Option<f64>,
    pub latency_saving_pct: Option<f64>,
    pub cosine: Option<f64>,
    pub min_example_cosine: Option<f64>,
    pub label_agreement: Option<f64>,
}

/// The selections of one model, precision and shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectionGroup {
    /// The first selection's cell: the others are the same on every axis but `quantize`.
    #[serde(skip)]
    pub cell: crate::matrix::Cell,
    pub model: String,
    pub precision: String,
    pub batch_size: usize,
    pub seq_len: usize,
    pub rows: Vec<SelectionRow>,
}

/// The whole-model cells of quantized precisions, grouped where more than one selection ran
/// (a single `all` is the plain precision, shown elsewhere).
pub fn selections(records: &[CellRecord], summaries: &[CellSummary]) -> Vec<SelectionGroup> {
    let mut groups: Vec<SelectionGroup> = Vec::new();
    for r in records.iter().filter(|r| {
        r.status == CellStatus::Ok
            && r.cell.scope == Scope::Model
            && r.cell.precision.float_path().is_some()
    }) {
        let Some(s) = summaries.iter().find(|s| s.id == r.cell.id) else {
            continue;
        };
        let q = r.quantization.as_ref();
        let row = SelectionRow {
            cell_id: r.cell.id.clone(),
            selection: r.cell.quantize.name(),
            quantized_sites: q.map(|q| q.quantized.len()),
            all_sites: q.map(|q| q.quantized.len() + q.float.len()),
            quantized: q.map(|q| q.quantized.clone()).unwrap_or_default(),
            energy_per_inference_mj: s.energy_per_inference_mj,
            energy_ci_low_mj: s.energy_ci_low_mj,
            energy_ci_high_mj: s.energy_ci_high_mj,
            latency_ms: s.latency_per_loop_ms,
            energy_saving_pct: None,
            latency_saving_pct: None,
            cosine: s.fidelity.as_ref().map(|f| f.cosine),
            min_example_cosine: s.fidelity.as_ref().map(|f| f.min_example_cosine),
            label_agreement: s.fidelity.as_ref().map(|f| f.label_agreement),
        };
        match groups
            .iter_mut()
            .find(|g| same_except(&g.cell, &r.cell, &["quantize"]))
        {
            Some(g) => g.rows.push(row),
            None => groups.push(SelectionGroup {
                cell: r.cell.clone(),
                model: r.cell.model.clone(),
                precision: r.cell.precision.name().to_string(),
                batch_size: r.cell.batch_size,
                seq_len: r.cell.seq_len,
                rows: vec![row],
            }),
        }
    }
    groups.retain(|g| g.rows.len() > 1 || g.rows.iter().any(|r| r.selection != "all"));
    for g in &mut groups {
        let none = g.rows.iter().find(|r| r.selection == "none").cloned();
        for row in &mut g.rows {
            let saving = |mine: Option<f64>, theirs: Option<f64>| {
                mine.zip(theirs)
                    .filter(|(_, t)| *t > 0.0)
                    .map(|(m, t)| (1.0 - m / t) * 100.0)
            };
            if let Some(n) = &none {
                row.energy_saving_pct =
                    saving(row.energy_per_inference_mj, n.energy_per_inference_mj);
                row.latency_saving_pct = saving(row.latency_ms, n.latency_ms);
            }
        }
        // Most quantized last: none, the partial selections, all.
        g.rows
            .sort_by_key(|r| (r.quantized_sites, r.selection.clone()));
    }
    groups
}
