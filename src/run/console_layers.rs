//! The per-layer breakdown a run prints when a `layers` cell ends (console.rs prints the rest).

use crate::analysis;
use crate::results::CellRecord;

/// The console breakdown printed when a `layers` cell ends (energy where measured, else latency):
/// the isolated units, and beside each top-level layer its prefix difference when the cell ran
/// that method too (`!` where the two disagree beyond their intervals). A decoder's: one per
/// phase, the prefill's per prompt token, the decode step's per generated token.
pub(super) fn layer_breakdown(r: &CellRecord) -> String {
    let rec = r.reconciliation.as_ref();
    analysis::phase_views(r)
        .iter()
        .map(|view| {
            let rec = match analysis::phase_of(view) {
                Some(crate::results::Phase::Prefill) => rec.and_then(|c| c.prefill.as_deref()),
                _ => rec,
            };
            phase_breakdown(view, rec)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn phase_breakdown(r: &CellRecord, rec: Option<&crate::results::Reconciliation>) -> String {
    use analysis::methods::{self, Metric};
    let metric = methods::metric_of(r);
    let energy = metric == Metric::Energy;
    let (title, unit) = if energy {
        ("ENERGY", "mJ")
    } else {
        ("LATENCY", "ms")
    };
    let comparison = methods::method_comparison(r);
    let prefix = comparison
        .as_ref()
        .filter(|c| c.prefix_sum.is_some())
        .map(|c| (c.layers.clone(), c.prefix_sum.unwrap_or(f64::NAN)));
    let isolated = !r.layers.is_empty();
    let total = if isolated {
        let totals = analysis::layer_totals(r);
        if energy {
            totals.energy_per_inference_mj.unwrap_or(f64::NAN)
        } else {
            totals.latency_ms
        }
    } else {
        prefix.as_ref().map_or(f64::NAN, |p| p.1)
    };
    let methods_used = match (isolated, prefix.is_some()) {
        (true, true) => "isolated | prefix-differenced; ",
        (false, true) => "prefix-differenced; ",
        _ => "",
    };
    let phase = analysis::phase_of(r);
    let (shape, per_batch) = match phase {
        Some(p) => (
            format!(
                "{} prompt {}+{}",
                p.name(),
                r.cell.prompt_len.unwrap_or(r.cell.seq_len),
                r.cell.new_tokens.unwrap_or(0)
            ),
            match p {
                crate::results::Phase::Prefill => "per prefill of the batch",
                crate::results::Phase::Decode => "per decode step",
            },
        ),
        None => (format!("seq {}", r.cell.seq_len), "per batch"),
    };
    let mut out = format!(
        "{title} BREAKDOWN BY LAYER  ({} {} batch {} {shape}; {methods_used}{})\n",
        r.cell.id,
        r.cell.precision.name(),
        r.cell.batch_size,
        if energy {
            format!("per {}", analysis::per_item(r))
        } else {
            format!("{per_batch}; energy not measured")
        }
    );
    let items = analysis::items_per_call(r);
    let prefix_cell = |name: &str| -> String {
        let Some((layers, sum)) = &prefix else {
            return String::new();
        };
        let Some(l) = layers.iter().find(|l| l.name == name) else {
            return String::new();
        };
        let v = l.prefix.map_or(f64::NAN, |e| e.value);
        let flag = if l.disagree == Some(true) { " !" } else { "" };
        let bar = if isolated { " | " } else { "" };
        format!("{bar}{v:>9.3} {unit} ({:>6.2}%){flag}", v / sum * 100.0)
    };
    if isolated {
        for l in &r.layers {
            let s = analysis::window_stats(&l.per_call_windows(), items, r.idle_power_w);
            let value = if energy {
                s.energy_per_inference_mj
            } else {
                s.latency_median_ms
            };
            let value = value.unwrap_or(f64::NAN);
            // Components are indented under their block, in the same columns.
            let label = match &l.parent {
                Some(_) => format!("  {}", l.name.rsplit('.').next().unwrap_or(&l.name)),
                None => l.name.clone(),
            };
            let k = if l.calls_per_loop > 1 {
                format!(" x{}", l.calls_per_loop)
            } else {
                String::new()
            };
            let beside = if l.parent.is_none() {
                prefix_cell(&l.name)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  {label:<25}: {value:>9.3} {unit} ({:>6.2}%){beside}{k}\n",
                value / total * 100.0
            ));
        }
    } else if let Some((layers, _)) = &prefix {
        for l in layers {
            out.push_str(&format!("  {:<25}: {}\n", l.name, prefix_cell(&l.name)));
        }
    }
    let whole = rec.map(|rec| {
        let (w, ratio, prefix_ratio) = if energy {
            (
                rec.whole_energy_per_inference_mj,
                rec.energy_ratio,
                rec.prefix_energy_ratio,
            )
        } else {
            (
                Some(rec.whole_latency_ms),
                Some(rec.latency_ratio),
                rec.prefix_latency_ratio,
            )
        };
        let iso = if isolated {
            format!(" (Σ/whole {:.1}%)", ratio.unwrap_or(f64::NAN) * 100.0)
        } else {
            String::new()
        };
        let pre = prefix_ratio
            .map(|p| format!(" (prefix Σ/whole {:.1}%)", p * 100.0))
            .unwrap_or_default();
        // Energy printed: latency's reconciliation beside it (the target is on both).
        let latency = if energy {
            let iso = if isolated {
                format!(" Σ/whole {:.1}%", rec.latency_ratio * 100.0)
            } else {
                String::new()
            };
            let pre = rec
                .prefix_latency_ratio
                .map(|p| format!(" prefix Σ/whole {:.1}%", p * 100.0))
                .unwrap_or_default();
            format!("; latency{iso}{pre}")
        } else {
            String::new()
        };
        format!(
            "   whole model: {:.3} {unit}{iso}{pre}{latency}",
            w.unwrap_or(f64::NAN)
        )
    });
    let total_beside = match (&prefix, isolated) {
        (Some((_, sum)), true) => format!(" | {sum:>9.3} {unit} (100.00%)"),
        _ => String::new(),
    };
    out.push_str(&format!(
        "  {:<25}: {total:>9.3} {unit} (100.00%){total_beside}{}",
        "TOTAL",
        whole.unwrap_or_default()
    ));
    if let Some(c) = comparison.filter(|c| !c.disagreeing.is_empty()) {
        out.push_str(&format!(
            "\n  ! isolated and prefix-differenced disagree beyond their intervals: {}",
            c.disagreeing.join(", ")
        ));
    }
    out
}
