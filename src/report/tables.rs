//! summary.csv (one row per cell, the original notebook's column names) and per_layer.csv (one
//! row per layer or component of every `layers` cell, by each method it ran); empty fields where
//! nothing was measured. Both start with the cell's id and a column for every axis of the
//! matrix ([`crate::matrix::Cell::axes`]), so every row names everything its cell varies in.
//! Each table is a list of (column, value) pairs: a column and its value are written together.

use anyhow::{bail, Result};

use crate::analysis::methods::{self, Estimate, Metric};
use crate::analysis::{CellSummary, DomainSummary, LayerSummary, ReconciliationRow};
use crate::config::AXES;
use crate::results::{CellRecord, CellStatus, Phase};
use crate::sensor::{CPU_PACKAGE, DRAM, GPU_BOARD};

/// A text cell as a spreadsheet should show it: one that starts with `=`, `+`, `-`, `@`, a tab or
/// a carriage return would open as a formula (OWASP's CSV injection), so it gets a leading `'`.
/// Text here comes from users (model names, paths in failure reasons); numbers are not text.
pub fn csv_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

fn num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn int<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn text(v: Option<&str>) -> String {
    v.map(|t| csv_safe(t).into_owned()).unwrap_or_default()
}

type Column<T> = (&'static str, fn(&T) -> String);

/// summary.csv after the cell id and the axes.
const SUMMARY: &[Column<CellSummary>] = &[
    ("precision_executed", |s| {
        text(s.precision_executed.as_deref())
    }),
    ("status", |s| status(s.status).into()),
    ("device", |s| text(Some(&s.device))),
    (
        "energy_per_inference_mj",
        |s| num(s.energy_per_inference_mj),
    ),
    ("energy_ci_low_mj", |s| num(s.energy_ci_low_mj)),
    ("energy_ci_high_mj", |s| num(s.energy_ci_high_mj)),
    ("energy_net_per_inference_mj", |s| {
        num(s.energy_net_per_inference_mj)
    }),
    ("avg_power_w", |s| num(s.avg_power_w)),
    ("idle_power_w", |s| num(s.idle_power_w)),
    // What the energy above covers, then each domain apart (empty where not metered).
    ("metered_domains", |s| s.metered.join("+")),
    ("energy_gpu_board_per_inference_mj", |s| {
        num(domain(s, GPU_BOARD).and_then(|d| d.energy_per_inference_mj))
    }),
    ("energy_net_gpu_board_per_inference_mj", |s| {
        num(domain(s, GPU_BOARD).and_then(|d| d.energy_net_per_inference_mj))
    }),
    ("avg_power_gpu_board_w", |s| {
        num(domain(s, GPU_BOARD).and_then(|d| d.avg_power_w))
    }),
    ("idle_power_gpu_board_w", |s| {
        num(domain(s, GPU_BOARD).and_then(|d| d.idle_power_w))
    }),
    ("energy_cpu_package_per_inference_mj", |s| {
        num(domain(s, CPU_PACKAGE).and_then(|d| d.energy_per_inference_mj))
    }),
    ("energy_net_cpu_package_per_inference_mj", |s| {
        num(domain(s, CPU_PACKAGE).and_then(|d| d.energy_net_per_inference_mj))
    }),
    ("avg_power_cpu_package_w", |s| {
        num(domain(s, CPU_PACKAGE).and_then(|d| d.avg_power_w))
    }),
    ("idle_power_cpu_package_w", |s| {
        num(domain(s, CPU_PACKAGE).and_then(|d| d.idle_power_w))
    }),
    ("energy_dram_per_inference_mj", |s| {
        num(domain(s, DRAM).and_then(|d| d.energy_per_inference_mj))
    }),
    ("energy_net_dram_per_inference_mj", |s| {
        num(domain(s, DRAM).and_then(|d| d.energy_net_per_inference_mj))
    }),
    ("avg_power_dram_w", |s| {
        num(domain(s, DRAM).and_then(|d| d.avg_power_w))
    }),
    ("idle_power_dram_w", |s| {
        num(domain(s, DRAM).and_then(|d| d.idle_power_w))
    }),
    ("latency_per_loop_ms", |s| num(s.latency_per_loop_ms)),
    ("latency_p10_ms", |s| num(s.latency_p10_ms)),
    ("latency_p90_ms", |s| num(s.latency_p90_ms)),
    ("latency_ci_low_ms", |s| num(s.latency_ci_low_ms)),
    ("latency_ci_high_ms", |s| num(s.latency_ci_high_ms)),
    ("latency_per_sample_ms", |s| num(s.latency_per_sample_ms)),
    ("throughput_samples_per_s", |s| {
        num(s.throughput_samples_per_s)
    }),
    ("speed_is_reference", |s| s.speed_is_reference.to_string()),
    ("total_time_s", |s| num(s.total_time_s)),
    ("num_loops", |s| int(s.num_loops)),
    ("repeats", |s| s.repeats.to_string()),
    ("num_power_samples", |s| s.num_power_samples.to_string()),
    ("counter_ticks", |s| int(s.counter_ticks)),
    ("min_window_ticks", |s| int(s.min_window_ticks)),
    ("trace_vs_counter", |s| num(s.trace_vs_counter)),
    ("window_cv", |s| num(s.window_cv)),
    ("dataset_wraparounds", |s| int(s.dataset_wraparounds)),
    ("fidelity_cosine_vs_fp32", |s| {
        num(s.fidelity.as_ref().map(|f| f.cosine))
    }),
    ("fidelity_min_example_cosine", |s| {
        num(s.fidelity.as_ref().map(|f| f.min_example_cosine))
    }),
    ("fidelity_max_abs_error", |s| {
        num(s.fidelity.as_ref().map(|f| f.max_abs_error))
    }),
    ("fidelity_mean_kl", |s| {
        num(s.fidelity.as_ref().and_then(|f| f.mean_kl))
    }),
    ("fidelity_max_logit_diff_error", |s| {
        num(s.fidelity.as_ref().and_then(|f| f.max_logit_diff_error))
    }),
    ("fidelity_label_agreement", |s| {
        num(s.fidelity.as_ref().map(|f| f.label_agreement))
    }),
    ("fidelity_examples", |s| {
        int(s.fidelity.as_ref().map(|f| f.examples))
    }),
    ("accuracy", |s| num(s.accuracy.as_ref().map(|a| a.accuracy))),
    ("accuracy_ci95_low", |s| {
        num(s.accuracy.as_ref().map(|a| a.ci95_low))
    }),
    ("accuracy_ci95_high", |s| {
        num(s.accuracy.as_ref().map(|a| a.ci95_high))
    }),
    ("accuracy_examples", |s| {
        int(s.accuracy.as_ref().map(|a| a.examples))
    }),
    ("baseline_precision", |s| {
        text(s.savings.as_ref().map(|v| v.baseline_precision.as_str()))
    }),
    ("energy_saving_pct", |s| {
        num(s.savings.as_ref().and_then(|v| v.energy_pct))
    }),
    ("energy_saving_ci_low_pct", |s| {
        num(s.savings.as_ref().and_then(|v| v.energy_ci_low_pct))
    }),
    ("energy_saving_ci_high_pct", |s| {
        num(s.savings.as_ref().and_then(|v| v.energy_ci_high_pct))
    }),
    ("latency_saving_pct", |s| {
        num(s.savings.as_ref().and_then(|v| v.latency_pct))
    }),
    ("latency_saving_ci_low_pct", |s| {
        num(s.savings.as_ref().and_then(|v| v.latency_ci_low_pct))
    }),
    ("latency_saving_ci_high_pct", |s| {
        num(s.savings.as_ref().and_then(|v| v.latency_ci_high_pct))
    }),
    // Decoder cells (empty for encoders): prefill and decode apart, per request, fidelity
    // against the reference precision (teacher-forced), perplexity with real weights.
    ("prefill_ms", |s| num(g(s).and_then(|g| g.prefill_ms))),
    ("prefill_ci_low_ms", |s| {
        num(g(s).and_then(|g| g.prefill_ci_low_ms))
    }),
    ("prefill_ci_high_ms", |s| {
        num(g(s).and_then(|g| g.prefill_ci_high_ms))
    }),
    ("prefill_mj_per_prompt_token", |s| {
        num(g(s).and_then(|g| g.prefill_mj_per_prompt_token))
    }),
    ("prefill_net_mj_per_prompt_token", |s| {
        num(g(s).and_then(|g| g.prefill_net_mj_per_prompt_token))
    }),
    ("decode_ms_per_step", |s| {
        num(g(s).and_then(|g| g.decode_ms_per_step))
    }),
    ("decode_tokens_per_s", |s| {
        num(g(s).and_then(|g| g.decode_tokens_per_s))
    }),
    ("decode_mj_per_token", |s| {
        num(g(s).and_then(|g| g.decode_mj_per_token))
    }),
    ("decode_net_mj_per_token", |s| {
        num(g(s).and_then(|g| g.decode_net_mj_per_token))
    }),
    ("j_per_request", |s| num(g(s).and_then(|g| g.j_per_request))),
    ("j_per_request_net", |s| {
        num(g(s).and_then(|g| g.j_per_request_net))
    }),
    ("prefill_energy_share", |s| {
        num(g(s).and_then(|g| g.prefill_energy_share))
    }),
    ("kv_cache_bytes", |s| int(g(s).map(|g| g.kv_cache_bytes))),
    ("fidelity_reference", |s| {
        text(gf(s).map(|f| f.reference.as_str()))
    }),
    ("greedy_agreement", |s| {
        num(gf(s).map(|f| f.greedy_agreement))
    }),
    ("next_token_kl_mean", |s| num(gf(s).map(|f| f.mean_kl))),
    ("next_token_kl_max", |s| num(gf(s).map(|f| f.max_kl))),
    ("max_logit_error", |s| num(gf(s).map(|f| f.max_logit_error))),
    ("perplexity", |s| {
        num(g(s)
            .and_then(|g| g.perplexity.as_ref())
            .map(|p| p.perplexity))
    }),
    ("flags", |s| text(Some(&s.flags.join("; ")))),
    ("reason", |s| text(s.reason.as_deref())),
];

/// A decoder cell's figures and its fidelity against the reference precision.
fn g(s: &CellSummary) -> Option<&crate::analysis::generate::GenerateSummary> {
    s.generate.as_ref()
}

fn gf(s: &CellSummary) -> Option<&crate::fidelity::generate::GenerateFidelity> {
    g(s).and_then(|g| g.fidelity.as_ref())
}

/// A cell's figures in one energy domain, where it was metered.
fn domain<'a>(s: &'a CellSummary, name: &str) -> Option<&'a DomainSummary> {
    s.domains.iter().find(|d| d.domain == name)
}

fn status(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Ok => "ok",
        CellStatus::Skipped => "skipped",
        CellStatus::Failed => "failed",
    }
}

/// The cell id, then one column per axis.
fn lead_columns() -> impl Iterator<Item = &'static str> {
    std::iter::once("cell_id").chain(AXES)
}

/// The cell's id and its value on each axis (empty where the axis does not apply).
fn lead_values(cell: &CellSummary) -> impl Iterator<Item = String> + '_ {
    std::iter::once(cell.id.clone()).chain(AXES.iter().map(|a| {
        text(Some(
            cell.axis_values.get(*a).map(String::as_str).unwrap_or(""),
        ))
    }))
}

/// summary.csv's header.
pub fn summary_columns() -> Vec<&'static str> {
    lead_columns().chain(SUMMARY.iter().map(|c| c.0)).collect()
}

pub(super) fn summary_csv_bytes(summaries: &[CellSummary]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(summary_columns())?;
    for s in summaries {
        w.write_record(lead_values(s).chain(SUMMARY.iter().map(|c| (c.1)(s))))?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    if bytes.is_empty() {
        bail!("summary.csv came out empty");
    }
    Ok(bytes)
}

/// One row of per_layer.csv: a layer or component measured alone (`isolated`), or a top-level
/// layer as the difference of two prefixes (`prefix`), with its cell.
struct LayerRow<'a> {
    cell: &'a CellSummary,
    method: &'static str,
    /// A decoder's phase (`prefill`, `decode`); none for an encoder.
    phase: Option<Phase>,
    /// What energy is per: `inference`, `prompt token`, `generated token`.
    per: &'static str,
    name: &'a str,
    index: usize,
    parent: Option<&'a str>,
    isolated: Option<&'a LayerSummary>,
    energy: Option<Estimate>,
    latency: Option<Estimate>,
    calls_per_loop: Option<u32>,
    /// Isolated and prefix disagree beyond their intervals on this layer.
    disagree: Option<bool>,
    /// Σ of this row's method in this row's phase against the whole model's same phase.
    reconciled: Option<ReconciliationRow>,
}

/// A per_layer.csv column: its name and its value for any row.
type RowColumn = (&'static str, for<'r, 'a> fn(&'r LayerRow<'a>) -> String);

/// per_layer.csv after the cell id and the axes.
const PER_LAYER: &[RowColumn] = &[
    ("layer_name", |r| text(Some(r.name))),
    ("layer_idx", |r| r.index.to_string()),
    ("parent", |r| text(r.parent)),
    ("method", |r| r.method.into()),
    ("phase", |r| text(r.phase.map(Phase::name))),
    ("energy_per", |r| r.per.into()),
    ("avg_power_w", |r| {
        num(r.isolated.and_then(|l| l.avg_power_w))
    }),
    ("total_time_s", |r| num(r.isolated.map(|l| l.total_time_s))),
    ("energy_total_j", |r| {
        num(r.isolated.and_then(|l| l.energy_total_j))
    }),
    ("energy_per_inference_mj", |r| {
        num(r.energy.map(|e| e.value))
    }),
    ("energy_ci_low_mj", |r| num(r.energy.and_then(|e| e.ci_low))),
    ("energy_ci_high_mj", |r| {
        num(r.energy.and_then(|e| e.ci_high))
    }),
    ("energy_net_per_inference_mj", |r| {
        num(r.isolated.and_then(|l| l.energy_net_per_inference_mj))
    }),
    ("num_loops", |r| int(r.isolated.map(|l| l.num_loops))),
    ("calls_per_loop", |r| int(r.calls_per_loop)),
    ("latency_per_loop_ms", |r| num(r.latency.map(|e| e.value))),
    ("latency_ci_low_ms", |r| {
        num(r.latency.and_then(|e| e.ci_low))
    }),
    ("latency_ci_high_ms", |r| {
        num(r.latency.and_then(|e| e.ci_high))
    }),
    ("num_power_samples", |r| {
        int(r.isolated.map(|l| l.num_power_samples))
    }),
    ("counter_ticks", |r| {
        int(r.isolated.and_then(|l| l.counter_ticks))
    }),
    ("energy_share_pct", |r| {
        num(r.isolated.and_then(|l| l.energy_share_pct))
    }),
    ("latency_share_pct", |r| {
        num(r.isolated.and_then(|l| l.latency_share_pct))
    }),
    // Σ of the row's method in the row's phase (prefix: the longest prefix), against the whole
    // model's same phase; `reconciled` says whether both ratios are within the flag's bound.
    ("layers_sum_latency_ms", |r| {
        num(r.reconciled.as_ref().map(|c| c.layers_latency_ms))
    }),
    ("layers_sum_energy_per_inference_mj", |r| {
        num(r.reconciled.as_ref().and_then(|c| c.layers_energy_mj))
    }),
    ("whole_latency_ms", |r| {
        num(r.reconciled.as_ref().map(|c| c.whole_latency_ms))
    }),
    ("whole_energy_per_inference_mj", |r| {
        num(r.reconciled.as_ref().and_then(|c| c.whole_energy_mj))
    }),
    ("layers_vs_whole_latency", |r| {
        num(r.reconciled.as_ref().map(|c| c.latency_ratio))
    }),
    ("layers_vs_whole_energy", |r| {
        num(r.reconciled.as_ref().and_then(|c| c.energy_ratio))
    }),
    ("reconciled", |r| {
        int(r.reconciled.as_ref().map(|c| c.within))
    }),
    ("whole_model_cell_id", |r| {
        text(r.cell.whole_model_cell_id.as_deref())
    }),
    ("baseline_precision", |r| {
        text(
            r.isolated
                .and_then(|l| Some(l.savings.as_ref()?.baseline_precision.as_str())),
        )
    }),
    ("energy_saving_pct", |r| saving(r, |s| s.energy_pct)),
    ("energy_saving_ci_low_pct", |r| {
        saving(r, |s| s.energy_ci_low_pct)
    }),
    ("energy_saving_ci_high_pct", |r| {
        saving(r, |s| s.energy_ci_high_pct)
    }),
    ("latency_saving_pct", |r| saving(r, |s| s.latency_pct)),
    ("methods_disagree", |r| int(r.disagree)),
    // Isolated rows: what the unit ran on (`cold`: a rotation through copies of its weights
    // and KV cache larger than twice the device's cache; `warm`: the same weights every call;
    // `in-step`: cold, after its step predecessor, the pair less the predecessor).
    ("isolation", |r| {
        text(r.isolated.map(|l| match (&l.predecessor, l.cold) {
            (Some(_), _) => "in-step",
            (None, Some(_)) => "cold",
            (None, None) => "warm",
        }))
    }),
    ("step_predecessor", |r| {
        text(r.isolated.and_then(|l| l.predecessor.as_deref()))
    }),
    ("cold_copies", |r| {
        int(r.isolated.and_then(|l| l.cold).map(|c| c.copies))
    }),
    ("cold_copy_bytes", |r| {
        int(r.isolated.and_then(|l| l.cold).map(|c| c.copy_bytes))
    }),
    ("cache_bytes", |r| {
        int(r.isolated.and_then(|l| l.cold).map(|c| c.cache_bytes))
    }),
];

fn saving(r: &LayerRow<'_>, f: fn(&crate::analysis::Savings) -> Option<f64>) -> String {
    num(r.isolated.and_then(|l| f(l.savings.as_ref()?)))
}

/// per_layer.csv's header.
pub fn per_layer_columns() -> Vec<&'static str> {
    lead_columns()
        .chain(PER_LAYER.iter().map(|c| c.0))
        .collect()
}

fn estimate(value: Option<f64>, lo: Option<f64>, hi: Option<f64>) -> Option<Estimate> {
    value.map(|value| Estimate {
        value,
        ci_low: lo,
        ci_high: hi,
    })
}

/// per_layer.csv: every layer and component of every `layers` cell measured alone, then its
/// top-level layers by prefix differencing where the cell ran that method, with the cell's
/// reconciliation against the whole model on each row.
pub(super) fn per_layer_csv_bytes(
    layers: &[LayerSummary],
    cells: &[CellSummary],
    records: &[CellRecord],
) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(per_layer_columns())?;
    for record in records {
        let Some(cell) = cells.iter().find(|c| c.id == record.cell.id) else {
            continue;
        };
        // A decoder's prefill rows, then its decode step's; an encoder's as they were.
        let views = crate::analysis::phase_views(record);
        let reconciliation = crate::analysis::reconcile_in(record, records)
            .map(|rec| crate::analysis::reconciliation_rows(record, &rec))
            .unwrap_or_default();
        let reconciled = |phase: Option<Phase>, method: &str| {
            reconciliation
                .iter()
                .find(|c| c.phase == phase && c.method == method)
                .cloned()
        };
        let mut rows: Vec<LayerRow> = Vec::new();
        for r in views.iter().map(|v| &**v) {
            let phase = crate::analysis::phase_of(r);
            let per = crate::analysis::per_item(r);
            let comparison = methods::method_comparison(r);
            let disagree = |name: &str| {
                comparison
                    .as_ref()
                    .and_then(|c| c.layers.iter().find(|l| l.name == name))
                    .and_then(|l| l.disagree)
            };
            rows.extend(
                layers
                    .iter()
                    .filter(|l| l.cell_id == r.cell.id && l.phase == phase)
                    .map(|l| LayerRow {
                        cell,
                        method: "isolated",
                        phase,
                        per,
                        name: &l.layer_name,
                        index: l.layer_idx,
                        parent: l.parent.as_deref(),
                        isolated: Some(l),
                        energy: estimate(
                            l.energy_per_inference_mj,
                            l.energy_ci_low_mj,
                            l.energy_ci_high_mj,
                        ),
                        latency: estimate(
                            l.latency_per_loop_ms,
                            l.latency_ci_low_ms,
                            l.latency_ci_high_ms,
                        ),
                        calls_per_loop: Some(l.calls_per_loop),
                        disagree: disagree(&l.layer_name),
                        reconciled: reconciled(phase, "isolated"),
                    }),
            );
            if r.prefixes.is_empty() {
                continue;
            }
            let energy = methods::prefix_layers(r, Metric::Energy);
            let latency = methods::prefix_layers(r, Metric::Latency);
            let k = r.prefixes.first().map(|p| p.calls_per_loop);
            for (i, ((name, e), (_, t))) in energy.into_iter().zip(latency).enumerate() {
                let disagree = disagree(&name);
                // Named by the record's own string (the rows borrow from the records).
                let Some(name) = r.prefixes.iter().find(|p| p.name == name) else {
                    continue;
                };
                rows.push(LayerRow {
                    cell,
                    method: "prefix",
                    phase,
                    per,
                    name: &name.name,
                    index: i,
                    parent: None,
                    isolated: None,
                    energy: e,
                    latency: t,
                    calls_per_loop: k,
                    disagree,
                    reconciled: reconciled(phase, "prefix"),
                });
            }
        }
        for row in &rows {
            w.write_record(lead_values(cell).chain(PER_LAYER.iter().map(|c| (c.1)(row))))?;
        }
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_a_spreadsheet_would_run_as_a_formula_is_prefixed() {
        for bad in ["=HYPERLINK(\"x\")", "+1", "-cmd", "@SUM(A1)", "\tx"] {
            assert_eq!(csv_safe(bad), format!("'{bad}"));
        }
        assert_eq!(csv_safe("fp32"), "fp32");
    }

    #[test]
    fn every_axis_has_a_column_in_both_tables() {
        let bytes = summary_csv_bytes(&[]).unwrap();
        let header = String::from_utf8(bytes).unwrap();
        assert_eq!(header.trim_end(), summary_columns().join(","));
        for axis in AXES {
            assert!(
                summary_columns().contains(&axis),
                "summary.csv lacks {axis}"
            );
            assert!(
                per_layer_columns().contains(&axis),
                "per_layer.csv lacks {axis}"
            );
        }
        assert!(summary_columns().contains(&"quantize"));
        assert!(per_layer_columns().contains(&"method"));
    }
}
