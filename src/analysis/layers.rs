//! Per-layer analysis: a `layers` cell's top-level layers summed and reconciled with the
//! whole-model cell of the same settings, and one summary row per layer and component (energy,
//! latency, shares, savings against the baseline precision's layer).

use std::borrow::Cow;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::labels::same_except;
use super::methods::{self, Metric};
use super::savings::savings_between;
use super::{window_stats, Savings, WindowStats};
use crate::config::{Precision, Scope};
use crate::measure::WindowRecord;
use crate::results::{CellRecord, CellStatus, Phase, Reconciliation};

/// Σ layers beyond ±3 % of the whole model is flagged (issue 30's target for both methods,
/// both phases, energy and latency).
pub const RECONCILIATION_FLAG: f64 = 0.03;

/// The phase a `layers` record's units ran in: a decoder's view of one phase (see
/// [`phase_views`]) has one; an encoder's units none.
pub fn phase_of(r: &CellRecord) -> Option<Phase> {
    r.layers
        .iter()
        .map(|l| l.phase)
        .chain(r.prefixes.iter().map(|p| p.phase))
        .next()
        .flatten()
}

/// What one call of a unit is per: the batch for an encoder and a decode step (one generated
/// token per sequence), the batch's prompt tokens for a prefill.
pub fn items_per_call(r: &CellRecord) -> usize {
    match phase_of(r) {
        Some(Phase::Prefill) => r.cell.batch_size * r.cell.prompt_len.unwrap_or(r.cell.seq_len),
        _ => r.cell.batch_size,
    }
}

/// What [`items_per_call`] counts, in words.
pub fn per_item(r: &CellRecord) -> &'static str {
    phase_of(r).map_or("inference", Phase::per)
}

/// A `layers` record per phase: an encoder's (or a record of one phase) as it is; a decoder's,
/// which profiles its prefill and its decode step in one cell, as one record per phase holding
/// that phase's units only, so that every per-layer figure (sums, shares, the two methods, the
/// ranking) is taken within one phase.
pub fn phase_views(r: &CellRecord) -> Vec<Cow<'_, CellRecord>> {
    let mut phases: Vec<Option<Phase>> = Vec::new();
    for p in r
        .layers
        .iter()
        .map(|l| l.phase)
        .chain(r.prefixes.iter().map(|p| p.phase))
    {
        if !phases.contains(&p) {
            phases.push(p);
        }
    }
    if phases.len() <= 1 {
        return vec![Cow::Borrowed(r)];
    }
    phases.sort();
    phases
        .into_iter()
        .map(|phase| {
            let mut view = r.clone();
            view.layers.retain(|l| l.phase == phase);
            view.prefixes.retain(|p| p.phase == phase);
            Cow::Owned(view)
        })
        .collect()
}

/// The view a single figure of the cell is taken from: a decoder's decode step (its cells'
/// own figures are per generated token), else the record itself.
pub fn primary_view(r: &CellRecord) -> Cow<'_, CellRecord> {
    let mut views = phase_views(r);
    let decode = views
        .iter()
        .position(|v| phase_of(v) == Some(Phase::Decode));
    views.swap_remove(decode.unwrap_or(0))
}

/// The whole-model record matching a `layers` record (the same on every axis but scope and
/// layer method: the same precision, shapes and `quantize` selection), and their reconciliation
/// (a decoder's: the decode step's, with the prefill's inside it).
pub fn reconcile_in(layers: &CellRecord, records: &[CellRecord]) -> Option<Reconciliation> {
    if layers.cell.scope != Scope::Layers || layers.status != CellStatus::Ok {
        return None;
    }
    let whole = records.iter().find(|r| {
        r.cell.scope == Scope::Model
            && r.status == CellStatus::Ok
            && same_except(&r.cell, &layers.cell, &["scope", "layer_method"])
    })?;
    reconcile(layers, whole)
}

pub fn reconcile(layers: &CellRecord, whole: &CellRecord) -> Option<Reconciliation> {
    let views = phase_views(layers);
    let mut prefill = None;
    let mut out = None;
    for view in &views {
        let rec = reconcile_phase(view, whole);
        match phase_of(view) {
            Some(Phase::Prefill) if views.len() > 1 => prefill = rec.map(Box::new),
            _ => out = rec,
        }
    }
    let mut out = out?;
    out.prefill = prefill;
    Some(out)
}

/// The whole-model cell's windows of `phase` and what they are per: a decoder's prefill
/// windows per prompt token, its (per-step) decode windows per generated token.
fn whole_windows(whole: &CellRecord, phase: Option<Phase>) -> Option<(&[WindowRecord], usize)> {
    match phase {
        Some(Phase::Prefill) => {
            let g = whole.generate.as_ref()?;
            Some((&g.prefill_windows, whole.cell.batch_size * g.prompt_len))
        }
        _ => Some((&whole.windows, whole.cell.batch_size)),
    }
}

fn reconcile_phase(layers: &CellRecord, whole: &CellRecord) -> Option<Reconciliation> {
    let totals = layer_totals(layers);
    let phase = phase_of(layers);
    let (windows, items) = whole_windows(whole, phase)?;
    let w = window_stats(windows, items, whole.idle_power_w);
    let whole_latency_ms = w.latency_median_ms?;
    let energy_ratio = match (totals.energy_per_inference_mj, w.energy_per_inference_mj) {
        (Some(l), Some(whole)) if whole > 0.0 => Some(l / whole),
        _ => None,
    };
    let prefix = |metric: Metric, whole: Option<f64>| {
        let p = methods::prefix_whole(layers, metric)?.value;
        whole.filter(|w| *w > 0.0).map(|w| p / w)
    };
    Some(Reconciliation {
        prefix_latency_ratio: prefix(Metric::Latency, Some(whole_latency_ms)),
        prefix_energy_ratio: prefix(Metric::Energy, w.energy_per_inference_mj),
        model_cell_id: whole.cell.id.clone(),
        layers_latency_ms: totals.latency_ms,
        whole_latency_ms,
        latency_ratio: totals.latency_ms / whole_latency_ms,
        layers_energy_per_inference_mj: totals.energy_per_inference_mj,
        whole_energy_per_inference_mj: w.energy_per_inference_mj,
        energy_ratio,
        phase,
        prefill: None,
    })
}

/// One line of a layers cell's reconciliation: one phase (a decoder's) and one method, Σ of its
/// top-level layers against the whole-model cell's same phase, in latency and energy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconciliationRow {
    pub phase: Option<Phase>,
    /// `isolated` (Σ of the units alone) or `prefix` (Σ of the differences: the longest prefix).
    pub method: &'static str,
    /// Isolated rows: `warm` or `cold` ([`isolation_of`]); `None` for prefix rows.
    pub isolation: Option<&'static str>,
    pub layers_latency_ms: f64,
    pub whole_latency_ms: f64,
    pub latency_ratio: f64,
    pub layers_energy_mj: Option<f64>,
    pub whole_energy_mj: Option<f64>,
    pub energy_ratio: Option<f64>,
    /// Both ratios (energy where measured) within ±[`RECONCILIATION_FLAG`].
    pub within: bool,
}

/// Every (phase, method) a layers record measured against its whole-model cell, prefill first:
/// the figures the per-layer target is judged on.
pub fn reconciliation_rows(layers: &CellRecord, rec: &Reconciliation) -> Vec<ReconciliationRow> {
    let isolated = !layers.layers.is_empty();
    let mut rows = Vec::new();
    for r in rec
        .prefill
        .as_deref()
        .into_iter()
        .chain(std::iter::once(rec))
    {
        let methods = [
            (
                "isolated",
                Some(r.latency_ratio).filter(|_| isolated),
                r.energy_ratio.filter(|_| isolated),
            ),
            ("prefix", r.prefix_latency_ratio, r.prefix_energy_ratio),
        ];
        for (method, latency, energy) in methods {
            let Some(latency_ratio) = latency else {
                continue;
            };
            let within = |x: f64| (x - 1.0).abs() <= RECONCILIATION_FLAG;
            rows.push(ReconciliationRow {
                phase: r.phase,
                method,
                isolation: (method == "isolated").then(|| isolation_of(layers, r.phase)),
                layers_latency_ms: latency_ratio * r.whole_latency_ms,
                whole_latency_ms: r.whole_latency_ms,
                latency_ratio,
                layers_energy_mj: energy
                    .zip(r.whole_energy_per_inference_mj)
                    .map(|(e, w)| e * w),
                whole_energy_mj: r.whole_energy_per_inference_mj,
                energy_ratio: energy,
                within: within(latency_ratio) && energy.is_none_or(within),
            });
        }
    }
    rows
}

/// How a layers record's isolated units of `phase` ran: `in-step` where any unit ran after its
/// step predecessor, `cold` where any rotated through copies of its weights, else `warm` (every
/// record from before `protocol.layer_isolation`).
pub fn isolation_of(layers: &CellRecord, phase: Option<Phase>) -> &'static str {
    let of_phase = || layers.layers.iter().filter(|l| l.phase == phase);
    if of_phase().any(|l| l.context.is_some()) {
        "in-step"
    } else if of_phase().any(|l| l.cold.is_some()) {
        "cold"
    } else {
        "warm"
    }
}

/// Σ over the top-level layers (components are inside their blocks and not added again).
pub struct LayerTotals {
    pub latency_ms: f64,
    pub energy_per_inference_mj: Option<f64>,
    pub energy_net_per_inference_mj: Option<f64>,
}

/// (A cell measured by prefix differencing only: its layers' sum, which is its longest prefix.
/// A decoder's: its decode step's, per generated token.)
pub fn layer_totals(r: &CellRecord) -> LayerTotals {
    let r = &*primary_view(r);
    let items = items_per_call(r);
    let mut stats: Vec<WindowStats> = r
        .layers
        .iter()
        .filter(|l| l.parent.is_none())
        .map(|l| window_stats(&l.per_call_windows(), items, r.idle_power_w))
        .collect();
    if stats.is_empty() {
        if let Some(p) = r.prefixes.iter().max_by_key(|p| p.layers) {
            stats.push(window_stats(&p.per_call_windows(), items, r.idle_power_w));
        }
    }
    LayerTotals {
        latency_ms: stats.iter().filter_map(|s| s.latency_median_ms).sum(),
        energy_per_inference_mj: stats.iter().map(|s| s.energy_per_inference_mj).sum(),
        energy_net_per_inference_mj: stats.iter().map(|s| s.energy_net_per_inference_mj).sum(),
    }
}

/// One row of per_layer.csv / the report's breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub cell_id: String,
    pub model: String,
    pub precision: String,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Decoders: the phase (prefill or decode step); `None` for encoders.
    pub phase: Option<Phase>,
    /// What the energy figures are per: `inference` (an encoder's batch item), `prompt token`
    /// (a prefill), `generated token` (a decode step).
    pub per: String,
    pub layer_name: String,
    pub layer_idx: usize,
    /// The block of a component; empty for top-level layers.
    pub parent: Option<String>,
    pub avg_power_w: Option<f64>,
    pub total_time_s: f64,
    pub energy_total_j: Option<f64>,
    pub energy_per_inference_mj: Option<f64>,
    pub energy_ci_low_mj: Option<f64>,
    pub energy_ci_high_mj: Option<f64>,
    pub energy_net_per_inference_mj: Option<f64>,
    /// Calls of the unit (loops x calls per loop).
    pub num_loops: u64,
    /// K: calls of the unit per loop, i.e. per synchronize.
    pub calls_per_loop: u32,
    /// Per call of the unit (one batch: a forward pass, a prefill, a decode step).
    pub latency_per_loop_ms: Option<f64>,
    pub latency_ci_low_ms: Option<f64>,
    pub latency_ci_high_ms: Option<f64>,
    pub num_power_samples: usize,
    pub counter_ticks: Option<u64>,
    /// Share of Σ top-level layers, in % (components: of the same total, so they compare).
    pub energy_share_pct: Option<f64>,
    pub latency_share_pct: Option<f64>,
    /// Against the same layer in the baseline precision's layers cell (same model and shapes):
    /// which layers gain most from a precision.
    pub savings: Option<Savings>,
    /// Cold isolation: the copies the unit's calls rotated through; `None`: warm.
    #[serde(default)]
    pub cold: Option<crate::results::ColdCopies>,
    /// `in-step`: the unit its figures ran after (and had subtracted); `None`: alone.
    #[serde(default)]
    pub predecessor: Option<String>,
}

pub fn layer_summaries(records: &[CellRecord], baseline: Precision) -> Vec<LayerSummary> {
    records
        .par_iter()
        .filter(|r| r.status == CellStatus::Ok && !r.layers.is_empty())
        .flat_map_iter(|r| {
            let base = (r.cell.precision != baseline)
                .then(|| {
                    records.iter().find(|b| {
                        b.status == CellStatus::Ok
                            && !b.layers.is_empty()
                            && b.cell.precision == baseline
                            && same_except(&r.cell, &b.cell, &["precision", "layer_method"])
                    })
                })
                .flatten();
            phase_views(r)
                .iter()
                .flat_map(|view| view_summaries(view, base))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The rows of one phase of a layers record (all of an encoder's).
fn view_summaries(r: &CellRecord, base: Option<&CellRecord>) -> Vec<LayerSummary> {
    let totals = layer_totals(r);
    let items = items_per_call(r);
    let phase = phase_of(r);
    r.layers
        .iter()
        .map(|l| {
            let s = window_stats(&l.per_call_windows(), items, r.idle_power_w);
            let savings = base.and_then(|b| {
                let theirs = b
                    .layers
                    .iter()
                    .find(|bl| bl.name == l.name && bl.phase == l.phase)?;
                let t = window_stats(&theirs.per_call_windows(), items, b.idle_power_w);
                Some(savings_between(&s, &t, b.cell.precision, &b.cell.id))
            });
            LayerSummary {
                cell_id: r.cell.id.clone(),
                model: r.cell.model.clone(),
                precision: r.cell.precision.name().to_string(),
                batch_size: r.cell.batch_size,
                seq_len: r.cell.seq_len,
                phase,
                per: per_item(r).to_string(),
                layer_name: l.name.clone(),
                layer_idx: l.index,
                parent: l.parent.clone(),
                avg_power_w: s.avg_power_w,
                total_time_s: s.total_time_s,
                energy_total_j: s.energy_total_j,
                energy_per_inference_mj: s.energy_per_inference_mj,
                energy_ci_low_mj: s.energy_ci.map(|c| c.0),
                energy_ci_high_mj: s.energy_ci.map(|c| c.1),
                energy_net_per_inference_mj: s.energy_net_per_inference_mj,
                num_loops: s.num_loops,
                calls_per_loop: l.calls_per_loop,
                latency_per_loop_ms: s.latency_median_ms,
                latency_ci_low_ms: s.latency_ci.map(|c| c.0),
                latency_ci_high_ms: s.latency_ci.map(|c| c.1),
                num_power_samples: s.num_power_samples,
                counter_ticks: s.min_window_ticks,
                energy_share_pct: s
                    .energy_per_inference_mj
                    .zip(totals.energy_per_inference_mj)
                    .map(|(e, t)| e / t * 100.0),
                latency_share_pct: s.latency_median_ms.map(|l| l / totals.latency_ms * 100.0),
                savings,
                cold: l.cold,
                predecessor: l.context.as_ref().map(|c| c.predecessor.clone()),
            }
        })
        .collect()
}
