//! The two per-layer methods side by side: isolated units (K calls per loop) and prefix
//! differencing (a layer = prefix through it minus the prefix before it). Σ of the prefix
//! differences telescopes to the longest prefix, the whole model, by construction; what checks
//! the isolated method is the per-layer agreement of the two, within their intervals.
//!
//! The metric is energy per inference where the cell measured energy, else latency per batch
//! (the CPU), so that the comparison runs on every machine.

use serde::Serialize;

use super::layers::{items_per_call, per_item, phase_of, phase_views, primary_view};
use super::window_stats;
use crate::measure::WindowRecord;
use crate::results::{CellRecord, CellStatus};

/// What a per-layer value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Energy per inference, mJ.
    Energy,
    /// Latency per batch (one call of the unit), ms.
    Latency,
}

impl Metric {
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Energy => "mJ",
            Metric::Latency => "ms",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Energy => "energy",
            Metric::Latency => "latency",
        }
    }
}

/// A value with its 95 % interval (none with fewer than 3 windows).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

impl Estimate {
    fn of(value: Option<f64>, ci: Option<(f64, f64)>) -> Option<Self> {
        value.map(|value| Self {
            value,
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
        })
    }

    /// `a - b`, its interval from both: each side's half-widths added in quadrature (the two
    /// are measured in separate windows, so their errors are independent).
    pub fn minus(&self, b: &Estimate) -> Estimate {
        let value = self.value - b.value;
        let half = |x: Option<f64>, m: f64| x.map(|x| (x - m).abs());
        let interval = match (
            half(self.ci_low, self.value),
            half(self.ci_high, self.value),
            half(b.ci_low, b.value),
            half(b.ci_high, b.value),
        ) {
            (Some(al), Some(ah), Some(bl), Some(bh)) => Some((
                value - (al * al + bh * bh).sqrt(),
                value + (ah * ah + bl * bl).sqrt(),
            )),
            _ => None,
        };
        Estimate {
            value,
            ci_low: interval.map(|i| i.0),
            ci_high: interval.map(|i| i.1),
        }
    }

    /// Whether the two intervals are disjoint; `None` when either has none.
    pub fn disagrees_with(&self, other: &Estimate) -> Option<bool> {
        let (al, ah) = (self.ci_low?, self.ci_high?);
        let (bl, bh) = (other.ci_low?, other.ci_high?);
        Some(ah < bl || bh < al)
    }
}

/// Energy where any of the cell's windows measured it, else latency.
pub fn metric_of(r: &CellRecord) -> Metric {
    let metered = |w: &[WindowRecord]| w.iter().any(|w| w.energy_j.is_some());
    let any = r.layers.iter().any(|l| metered(&l.windows))
        || r.prefixes.iter().any(|p| metered(&p.windows))
        || metered(&r.windows);
    if any {
        Metric::Energy
    } else {
        Metric::Latency
    }
}

pub fn estimate(
    windows: &[WindowRecord],
    batch: usize,
    idle: Option<f64>,
    metric: Metric,
) -> Option<Estimate> {
    let s = window_stats(windows, batch, idle);
    match metric {
        Metric::Energy => Estimate::of(s.energy_per_inference_mj, s.energy_ci),
        Metric::Latency => Estimate::of(s.latency_median_ms, s.latency_ci),
    }
}

/// The top-level layers measured alone (per call of the unit), in execution order (a decoder's
/// decode step's, unless `r` is a view of its prefill: [`super::layers::phase_views`]).
pub fn isolated_layers(r: &CellRecord, metric: Metric) -> Vec<(String, Option<Estimate>)> {
    let r = &*primary_view(r);
    let items = items_per_call(r);
    r.layers
        .iter()
        .filter(|l| l.parent.is_none())
        .map(|l| {
            let windows = l.per_call_windows();
            let e = estimate(&windows, items, r.idle_power_w, metric);
            (l.name.clone(), e)
        })
        .collect()
}

/// Each prefix's own estimate, shortest first.
fn prefix_estimates(r: &CellRecord, metric: Metric) -> Vec<(String, Option<Estimate>)> {
    let r = &*primary_view(r);
    let items = items_per_call(r);
    let mut prefixes: Vec<_> = r.prefixes.iter().collect();
    prefixes.sort_by_key(|p| p.layers);
    prefixes
        .iter()
        .map(|p| {
            let e = estimate(&p.per_call_windows(), items, r.idle_power_w, metric);
            (p.name.clone(), e)
        })
        .collect()
}

/// The layers by prefix differencing: prefix n minus prefix n-1 (the first prefix, the
/// embeddings, is its own layer). Their sum is the longest prefix exactly.
pub fn prefix_layers(r: &CellRecord, metric: Metric) -> Vec<(String, Option<Estimate>)> {
    let prefixes = prefix_estimates(r, metric);
    let mut previous: Option<Estimate> = Some(Estimate {
        value: 0.0,
        ci_low: Some(0.0),
        ci_high: Some(0.0),
    });
    prefixes
        .into_iter()
        .map(|(name, e)| {
            let layer = e.zip(previous).map(|(e, p)| e.minus(&p));
            previous = e;
            (name, layer)
        })
        .collect()
}

/// The longest prefix: the whole model, measured inside the layers cell.
pub fn prefix_whole(r: &CellRecord, metric: Metric) -> Option<Estimate> {
    prefix_estimates(r, metric).pop().and_then(|p| p.1)
}

/// One layer by both methods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerComparison {
    pub name: String,
    pub isolated: Option<Estimate>,
    pub prefix: Option<Estimate>,
    /// The intervals are disjoint (`None`: a method or an interval is missing).
    pub disagree: Option<bool>,
    /// Isolated / prefix - 1, in %.
    pub difference_pct: Option<f64>,
}

/// A layers cell's layers by the methods it ran, with the sums against its whole model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodComparison {
    pub cell_id: String,
    pub model: String,
    pub precision: String,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Decoders: the phase compared (`prefill`, `decode`); `None` for encoders.
    pub phase: Option<&'static str>,
    /// What energy is per: `inference`, `prompt token`, `generated token`.
    pub per: &'static str,
    pub method: String,
    pub metric: Metric,
    pub unit: &'static str,
    pub layers: Vec<LayerComparison>,
    pub isolated_sum: Option<f64>,
    /// Σ prefix differences = the longest prefix (telescoping).
    pub prefix_sum: Option<f64>,
    /// The layers where the methods disagree beyond their intervals.
    pub disagreeing: Vec<String>,
}

/// [`method_comparison`] of each phase a layers record profiled (one for an encoder).
pub fn method_comparisons(r: &CellRecord) -> Vec<MethodComparison> {
    phase_views(r)
        .iter()
        .filter_map(|v| method_comparison(v))
        .collect()
}

/// The two methods side by side (a decoder's decode step, unless `r` is a view of its prefill).
pub fn method_comparison(r: &CellRecord) -> Option<MethodComparison> {
    let r = &*primary_view(r);
    if r.status != CellStatus::Ok || (r.layers.is_empty() && r.prefixes.is_empty()) {
        return None;
    }
    let metric = metric_of(r);
    let isolated = isolated_layers(r, metric);
    let prefix = prefix_layers(r, metric);
    let mut names: Vec<String> = isolated.iter().map(|l| l.0.clone()).collect();
    for (n, _) in &prefix {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let find = |v: &[(String, Option<Estimate>)], n: &str| {
        v.iter().find(|(m, _)| m == n).and_then(|(_, e)| *e)
    };
    let layers: Vec<LayerComparison> = names
        .iter()
        .map(|n| {
            let (i, p) = (find(&isolated, n), find(&prefix, n));
            let both = i.zip(p);
            LayerComparison {
                name: n.clone(),
                isolated: i,
                prefix: p,
                disagree: both.and_then(|(i, p)| i.disagrees_with(&p)),
                difference_pct: both
                    .filter(|(_, p)| p.value != 0.0)
                    .map(|(i, p)| (i.value / p.value - 1.0) * 100.0),
            }
        })
        .collect();
    let sum = |v: &[(String, Option<Estimate>)]| -> Option<f64> {
        (!v.is_empty())
            .then(|| v.iter().map(|(_, e)| e.map(|e| e.value)).sum())
            .flatten()
    };
    Some(MethodComparison {
        cell_id: r.cell.id.clone(),
        model: r.cell.model.clone(),
        precision: r.cell.precision.name().to_string(),
        batch_size: r.cell.batch_size,
        seq_len: r.cell.seq_len,
        phase: phase_of(r).map(|p| p.name()),
        per: per_item(r),
        method: r.cell.layer_method.name().to_string(),
        metric,
        unit: metric.unit(),
        disagreeing: layers
            .iter()
            .filter(|l| l.disagree == Some(true))
            .map(|l| l.name.clone())
            .collect(),
        layers,
        isolated_sum: sum(&isolated),
        prefix_sum: sum(&prefix),
    })
}

/// Top-level layers that hold linear weights (what a `quantize` selection can pick; a
/// decoder's output projection too).
pub fn has_linear_weights(layer: &str) -> bool {
    layer.starts_with("transformer_block_") && !layer.contains('.')
        || matches!(
            layer,
            "pre_classifier" | "pooler" | "classifier" | "lm_head"
        )
}

/// A layers cell's quantizable layers by their share of Σ top-level layers, largest first:
/// the isolated method's where it ran, else prefix differencing's.
pub fn layer_ranking(r: &CellRecord) -> (Metric, Vec<(String, f64)>) {
    let metric = metric_of(r);
    let mut values = isolated_layers(r, metric);
    if values.is_empty() {
        values = prefix_layers(r, metric);
    }
    let total: f64 = values.iter().filter_map(|(_, e)| e.map(|e| e.value)).sum();
    let mut ranked: Vec<(String, f64)> = values
        .into_iter()
        .filter(|(n, _)| has_linear_weights(n))
        .filter_map(|(n, e)| Some((n, e?.value / total * 100.0)))
        .filter(|(_, share)| share.is_finite())
        .collect();
    // Largest first; ties (and equal shares) in execution order, so the ranking is stable.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    (metric, ranked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(value: f64, lo: f64, hi: f64) -> Estimate {
        Estimate {
            value,
            ci_low: Some(lo),
            ci_high: Some(hi),
        }
    }

    #[test]
    fn a_difference_carries_both_intervals_in_quadrature() {
        let d = e(10.0, 7.0, 14.0).minus(&e(4.0, 0.0, 7.0));
        assert!((d.value - 6.0).abs() < 1e-12);
        // low: 3 below (a) and 3 above (b): sqrt(18); high: 4 above (a), 4 below (b): sqrt(32).
        assert!((d.ci_low.unwrap() - (6.0 - 18f64.sqrt())).abs() < 1e-12);
        assert!((d.ci_high.unwrap() - (6.0 + 32f64.sqrt())).abs() < 1e-12);
        let no_interval = Estimate {
            value: 1.0,
            ci_low: None,
            ci_high: None,
        };
        assert_eq!(e(3.0, 2.0, 4.0).minus(&no_interval).ci_low, None);
    }

    #[test]
    fn disagreement_needs_disjoint_intervals() {
        assert_eq!(
            e(1.0, 0.9, 1.1).disagrees_with(&e(1.3, 1.2, 1.4)),
            Some(true)
        );
        assert_eq!(
            e(1.0, 0.9, 1.25).disagrees_with(&e(1.3, 1.2, 1.4)),
            Some(false)
        );
        let bare = Estimate {
            value: 1.0,
            ci_low: None,
            ci_high: None,
        };
        assert_eq!(bare.disagrees_with(&e(1.3, 1.2, 1.4)), None);
    }

    #[test]
    fn quantizable_layers_are_blocks_and_heads() {
        for yes in [
            "transformer_block_0",
            "transformer_block_11",
            "pre_classifier",
            "classifier",
            "pooler",
        ] {
            assert!(has_linear_weights(yes), "{yes}");
        }
        for no in ["embeddings", "mean_pooling", "transformer_block_0.ffn"] {
            assert!(!has_linear_weights(no), "{no}");
        }
    }
}
