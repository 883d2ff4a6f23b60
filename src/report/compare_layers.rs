//! `runner compare`, per layer: for every `layers` cell both runs measured, each unit (a layer
//! or block component alone, per call of the unit; each prefix of the forward pass) as ratios B/A
//! of latency and energy per inference, with 95 % intervals over both runs' windows. This is
//! the run-to-run check of a per-layer profile ("two runs agree per layer within 3 %"). A unit
//! that regressed (slower or costlier in B beyond its interval and the threshold, as a whole cell
//! is judged) makes its layers cell regressed, and the exit status says so.

use serde::Serialize;

use super::compare_verdict::{metric, MetricView, Verdict};
use crate::analysis::window_stats;
use crate::measure::WindowRecord;
use crate::results::{CellRecord, CellStatus, LayerRecord, PrefixRecord};
use crate::stats::ratio_ci95;

#[derive(Debug, Serialize)]
pub(super) struct UnitView {
    pub name: String,
    /// `alone` (isolated, K calls per loop) or `prefix` (the forward pass through this layer).
    pub method: &'static str,
    /// A block's component: listed under its block.
    pub component: bool,
    pub metrics: Vec<MetricView>,
    /// Some metric's ratio is off 1 by more than the threshold (point estimate).
    pub beyond_threshold: bool,
    /// Some metric's interval excludes 1.
    pub differs: bool,
    /// Worse in B by more than the threshold, beyond noise.
    pub regressed: bool,
    pub verdict: Verdict,
}

#[derive(Debug, Serialize)]
pub(super) struct LayersCellView {
    pub id: String,
    pub label: String,
    pub units: Vec<UnitView>,
    /// The largest |B/A - 1| in % over the top-level layers measured alone and the prefixes,
    /// energy where both runs metered it, else latency; components are left out, being what
    /// their blocks are made of.
    pub worst_pct: Option<f64>,
    pub worst_unit: Option<String>,
    pub beyond_threshold: usize,
    /// Units that regressed; the cell regressed when any did.
    pub regressed_units: usize,
    pub regressed: bool,
    pub differs: bool,
    /// Regressed if a unit did, else improved if a unit did.
    pub verdict: Verdict,
}

/// Per-window latency medians and energies per inference of one unit's windows.
fn series(windows: &[WindowRecord], batch: usize) -> (Vec<f64>, Vec<f64>) {
    let s = window_stats(windows, batch, None);
    (
        s.window_latency_medians_ms,
        s.window_energy_per_inference_mj,
    )
}

fn unit(
    name: &str,
    method: &'static str,
    component: bool,
    a: (Vec<f64>, Vec<f64>),
    b: (Vec<f64>, Vec<f64>),
    threshold: f64,
) -> UnitView {
    let metrics: Vec<MetricView> = [
        ratio_ci95(&b.0, &a.0).and_then(|e| metric("latency", e, threshold, true)),
        ratio_ci95(&b.1, &a.1).and_then(|e| metric("energy", e, threshold, true)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let limit = threshold / 100.0;
    UnitView {
        name: name.to_string(),
        method,
        component,
        beyond_threshold: metrics.iter().any(|m| (m.ratio - 1.0).abs() > limit),
        differs: metrics.iter().any(|m| m.differs),
        regressed: metrics.iter().any(|m| m.regressed),
        verdict: Verdict::of(&metrics),
        metrics,
    }
}

/// The per-unit comparison of one layers cell measured in both runs; `None` when either run has
/// no per-layer windows for it.
pub(super) fn compare_layers_cell(
    a: &CellRecord,
    b: &CellRecord,
    label: String,
    threshold: f64,
) -> Option<LayersCellView> {
    if a.status != CellStatus::Ok || b.status != CellStatus::Ok {
        return None;
    }
    let units = compare_units(
        (&a.layers, &a.prefixes),
        (&b.layers, &b.prefixes),
        a.cell.batch_size,
        threshold,
    );
    summarize(a.cell.id.clone(), label, units)
}

type Units<'a> = (&'a [LayerRecord], &'a [PrefixRecord]);

fn compare_units(a: Units, b: Units, batch: usize, threshold: f64) -> Vec<UnitView> {
    let mut units = Vec::new();
    for la in a.0 {
        let Some(lb) =
            b.0.iter()
                .find(|l| l.name == la.name && l.phase == la.phase)
        else {
            continue;
        };
        units.push(unit(
            &phased(la.phase, &la.name),
            "alone",
            la.parent.is_some(),
            series(&la.per_call_windows(), batch),
            series(&lb.per_call_windows(), batch),
            threshold,
        ));
    }
    for pa in a.1 {
        let Some(pb) =
            b.1.iter()
                .find(|p| p.layers == pa.layers && p.phase == pa.phase)
        else {
            continue;
        };
        units.push(unit(
            &phased(pa.phase, &pa.name),
            "prefix",
            false,
            series(&pa.per_call_windows(), batch),
            series(&pb.per_call_windows(), batch),
            threshold,
        ));
    }
    units
}

/// A decoder's unit named with its phase (`decode: transformer_block_3`), an encoder's as is.
fn phased(phase: Option<crate::results::Phase>, name: &str) -> String {
    match phase {
        Some(p) => format!("{}: {name}", p.name()),
        None => name.to_string(),
    }
}

fn summarize(id: String, label: String, units: Vec<UnitView>) -> Option<LayersCellView> {
    if units.is_empty() {
        return None;
    }
    let headline = |u: &UnitView| {
        let m = u
            .metrics
            .iter()
            .find(|m| m.metric == "energy")
            .or_else(|| u.metrics.first())?;
        Some(((m.ratio - 1.0).abs() * 100.0, u.name.clone(), u.method))
    };
    let worst = units
        .iter()
        .filter(|u| !u.component)
        .filter_map(headline)
        .max_by(|x, y| x.0.total_cmp(&y.0));
    let regressed_units = units.iter().filter(|u| u.regressed).count();
    let verdict = if regressed_units > 0 {
        Verdict::Regressed
    } else if units.iter().any(|u| u.verdict == Verdict::Improved) {
        Verdict::Improved
    } else {
        Verdict::WithinNoise
    };
    Some(LayersCellView {
        verdict,
        id,
        label,
        regressed_units,
        regressed: regressed_units > 0,
        differs: units.iter().any(|u| u.differs),
        beyond_threshold: units.iter().filter(|u| u.beyond_threshold).count(),
        worst_pct: worst.as_ref().map(|w| w.0),
        worst_unit: worst.map(|w| format!("{} ({})", w.1, w.2)),
        units,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ms: f64, energy_j: f64) -> WindowRecord {
        WindowRecord {
            loops: 100,
            duration_s: ms * 0.1,
            loop_ms: vec![ms; 100],
            loop_ms_stride: 1,
            energy_j: Some(energy_j),
            counter_delta_j: Some(energy_j),
            tail_correction_j: Some(0.0),
            trace_energy_j: None,
            counter_ticks: Some(12),
            num_power_samples: 0,
            throttle_reasons: None,
            sm_clock_min_mhz: None,
            sm_clock_max_mhz: None,
            host: None,
            domain_energy_j: Default::default(),
        }
    }

    fn layer(name: &str, parent: Option<&str>, k: u32, ms: f64, j: f64) -> LayerRecord {
        LayerRecord {
            name: name.into(),
            index: 0,
            parent: parent.map(Into::into),
            warmup: crate::measure::WarmupRecord {
                loops: 3,
                duration_s: 0.1,
                first_loop_ms: ms,
                steady: true,
            },
            calls_per_loop: k,
            execution: None,
            phase: None,
            cold: None,
            context: None,
            windows: (0..3).map(|i| window(ms + 0.001 * i as f64, j)).collect(),
        }
    }

    #[test]
    fn a_unit_that_drifted_is_named_as_the_worst_and_components_do_not_count() {
        let a = [
            layer("embeddings", None, 8, 0.1, 1.0),
            layer("transformer_block_0", None, 4, 0.2, 2.0),
            layer(
                "transformer_block_0.ffn",
                Some("transformer_block_0"),
                8,
                0.1,
                1.0,
            ),
        ];
        let mut b = a.clone();
        // Block 0 spends 10 % more energy in B; its FFN 50 % more (a component: not the headline).
        b[1] = layer("transformer_block_0", None, 4, 0.2, 2.2);
        b[2] = layer(
            "transformer_block_0.ffn",
            Some("transformer_block_0"),
            8,
            0.1,
            1.5,
        );
        let units = compare_units((&a, &[]), (&b, &[]), 16, 3.0);
        let v = summarize("id".into(), "x".into(), units).unwrap();
        assert_eq!(v.units.len(), 3);
        assert_eq!(v.worst_unit.as_deref(), Some("transformer_block_0 (alone)"));
        assert!(
            (v.worst_pct.unwrap() - 10.0).abs() < 1e-6,
            "{:?}",
            v.worst_pct
        );
        assert_eq!(v.beyond_threshold, 2);
        assert!(!v.units[0].beyond_threshold);
        // Costlier beyond their (tight) intervals and the threshold: the cell regressed.
        assert_eq!(v.regressed_units, 2);
        assert!(v.regressed && !v.units[0].regressed);
        let lat = &v.units[0].metrics[0];
        assert_eq!(lat.metric, "latency");
        assert!((lat.ratio - 1.0).abs() < 1e-9);
        // Nothing in common: nothing to report.
        let other = [layer("classifier", None, 1, 0.1, 1.0)];
        assert!(summarize(
            "id".into(),
            "x".into(),
            compare_units((&a, &[]), (&other, &[]), 16, 3.0)
        )
        .is_none());
    }
}
