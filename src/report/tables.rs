//! summary.csv (one row per cell, the original notebook's column names) and per_layer.csv (one
//! row per layer or component of every `layers` cell); empty fields where nothing was measured.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::analysis::{CellSummary, LayerSummary};
use crate::results::CellStatus;

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

fn csv_text<S: serde::Serializer, T: AsRef<str>>(text: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&csv_safe(text.as_ref()))
}

fn csv_opt_text<S: serde::Serializer>(text: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    match text {
        Some(t) => s.serialize_str(&csv_safe(t)),
        None => s.serialize_none(),
    }
}

/// One row per cell, with the original notebook's column names; empty where not measured.
#[derive(Serialize)]
struct SummaryRow<'a> {
    cell_id: &'a str,
    #[serde(serialize_with = "csv_text")]
    model: &'a str,
    #[serde(serialize_with = "csv_text")]
    precision: &'a str,
    #[serde(serialize_with = "csv_opt_text")]
    precision_executed: Option<&'a str>,
    batch_size: usize,
    seq_len: usize,
    #[serde(serialize_with = "csv_text")]
    scope: &'a str,
    status: CellStatus,
    #[serde(serialize_with = "csv_text")]
    device: &'a str,
    energy_per_inference_mj: Option<f64>,
    energy_ci_low_mj: Option<f64>,
    energy_ci_high_mj: Option<f64>,
    energy_net_per_inference_mj: Option<f64>,
    avg_power_w: Option<f64>,
    idle_power_w: Option<f64>,
    latency_per_loop_ms: Option<f64>,
    latency_p10_ms: Option<f64>,
    latency_p90_ms: Option<f64>,
    latency_ci_low_ms: Option<f64>,
    latency_ci_high_ms: Option<f64>,
    latency_per_sample_ms: Option<f64>,
    throughput_samples_per_s: Option<f64>,
    total_time_s: Option<f64>,
    num_loops: Option<u64>,
    repeats: usize,
    num_power_samples: usize,
    counter_ticks: Option<u64>,
    min_window_ticks: Option<u64>,
    trace_vs_counter: Option<f64>,
    window_cv: Option<f64>,
    dataset_wraparounds: Option<u64>,
    fidelity_cosine_vs_fp32: Option<f64>,
    fidelity_min_example_cosine: Option<f64>,
    fidelity_max_abs_error: Option<f64>,
    fidelity_mean_kl: Option<f64>,
    fidelity_max_logit_diff_error: Option<f64>,
    fidelity_label_agreement: Option<f64>,
    fidelity_examples: Option<usize>,
    accuracy: Option<f64>,
    accuracy_ci95_low: Option<f64>,
    accuracy_ci95_high: Option<f64>,
    accuracy_examples: Option<usize>,
    #[serde(serialize_with = "csv_opt_text")]
    baseline_precision: Option<&'a str>,
    energy_saving_pct: Option<f64>,
    energy_saving_ci_low_pct: Option<f64>,
    energy_saving_ci_high_pct: Option<f64>,
    latency_saving_pct: Option<f64>,
    latency_saving_ci_low_pct: Option<f64>,
    latency_saving_ci_high_pct: Option<f64>,
    #[serde(serialize_with = "csv_text")]
    flags: String,
    #[serde(serialize_with = "csv_opt_text")]
    reason: Option<&'a str>,
}

pub const SUMMARY_COLUMNS: [&str; 51] = [
    "cell_id",
    "model",
    "precision",
    "precision_executed",
    "batch_size",
    "seq_len",
    "scope",
    "status",
    "device",
    "energy_per_inference_mj",
    "energy_ci_low_mj",
    "energy_ci_high_mj",
    "energy_net_per_inference_mj",
    "avg_power_w",
    "idle_power_w",
    "latency_per_loop_ms",
    "latency_p10_ms",
    "latency_p90_ms",
    "latency_ci_low_ms",
    "latency_ci_high_ms",
    "latency_per_sample_ms",
    "throughput_samples_per_s",
    "total_time_s",
    "num_loops",
    "repeats",
    "num_power_samples",
    "counter_ticks",
    "min_window_ticks",
    "trace_vs_counter",
    "window_cv",
    "dataset_wraparounds",
    "fidelity_cosine_vs_fp32",
    "fidelity_min_example_cosine",
    "fidelity_max_abs_error",
    "fidelity_mean_kl",
    "fidelity_max_logit_diff_error",
    "fidelity_label_agreement",
    "fidelity_examples",
    "accuracy",
    "accuracy_ci95_low",
    "accuracy_ci95_high",
    "accuracy_examples",
    "baseline_precision",
    "energy_saving_pct",
    "energy_saving_ci_low_pct",
    "energy_saving_ci_high_pct",
    "latency_saving_pct",
    "latency_saving_ci_low_pct",
    "latency_saving_ci_high_pct",
    "flags",
    "reason",
];

pub(super) fn summary_csv_bytes(summaries: &[CellSummary]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if summaries.is_empty() {
        w.write_record(SUMMARY_COLUMNS)?;
    }
    for s in summaries {
        w.serialize(SummaryRow {
            cell_id: &s.id,
            model: &s.model,
            precision: &s.precision,
            precision_executed: s.precision_executed.as_deref(),
            batch_size: s.batch_size,
            seq_len: s.seq_len,
            scope: &s.scope,
            status: s.status,
            device: &s.device,
            energy_per_inference_mj: s.energy_per_inference_mj,
            energy_ci_low_mj: s.energy_ci_low_mj,
            energy_ci_high_mj: s.energy_ci_high_mj,
            energy_net_per_inference_mj: s.energy_net_per_inference_mj,
            avg_power_w: s.avg_power_w,
            idle_power_w: s.idle_power_w,
            latency_per_loop_ms: s.latency_per_loop_ms,
            latency_p10_ms: s.latency_p10_ms,
            latency_p90_ms: s.latency_p90_ms,
            latency_ci_low_ms: s.latency_ci_low_ms,
            latency_ci_high_ms: s.latency_ci_high_ms,
            latency_per_sample_ms: s.latency_per_sample_ms,
            throughput_samples_per_s: s.throughput_samples_per_s,
            total_time_s: s.total_time_s,
            num_loops: s.num_loops,
            repeats: s.repeats,
            num_power_samples: s.num_power_samples,
            counter_ticks: s.counter_ticks,
            min_window_ticks: s.min_window_ticks,
            trace_vs_counter: s.trace_vs_counter,
            window_cv: s.window_cv,
            dataset_wraparounds: s.dataset_wraparounds,
            fidelity_cosine_vs_fp32: s.fidelity.as_ref().map(|f| f.cosine),
            fidelity_min_example_cosine: s.fidelity.as_ref().map(|f| f.min_example_cosine),
            fidelity_max_abs_error: s.fidelity.as_ref().map(|f| f.max_abs_error),
            fidelity_mean_kl: s.fidelity.as_ref().and_then(|f| f.mean_kl),
            fidelity_max_logit_diff_error: s.fidelity.as_ref().and_then(|f| f.max_logit_diff_error),
            fidelity_label_agreement: s.fidelity.as_ref().map(|f| f.label_agreement),
            fidelity_examples: s.fidelity.as_ref().map(|f| f.examples),
            accuracy: s.accuracy.as_ref().map(|a| a.accuracy),
            accuracy_ci95_low: s.accuracy.as_ref().map(|a| a.ci95_low),
            accuracy_ci95_high: s.accuracy.as_ref().map(|a| a.ci95_high),
            accuracy_examples: s.accuracy.as_ref().map(|a| a.examples),
            baseline_precision: s.savings.as_ref().map(|v| v.baseline_precision.as_str()),
            energy_saving_pct: s.savings.as_ref().and_then(|v| v.energy_pct),
            energy_saving_ci_low_pct: s.savings.as_ref().and_then(|v| v.energy_ci_low_pct),
            energy_saving_ci_high_pct: s.savings.as_ref().and_then(|v| v.energy_ci_high_pct),
            latency_saving_pct: s.savings.as_ref().and_then(|v| v.latency_pct),
            latency_saving_ci_low_pct: s.savings.as_ref().and_then(|v| v.latency_ci_low_pct),
            latency_saving_ci_high_pct: s.savings.as_ref().and_then(|v| v.latency_ci_high_pct),
            flags: s.flags.join("; "),
            reason: s.reason.as_deref(),
        })?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    if bytes.is_empty() {
        bail!("summary.csv came out empty");
    }
    Ok(bytes)
}

/// per_layer.csv: one row per layer or component of every `layers` cell, with the cell's
/// reconciliation against the whole model repeated on each row.
pub const PER_LAYER_COLUMNS: [&str; 32] = [
    "cell_id",
    "model",
    "precision",
    "batch_size",
    "seq_len",
    "layer_name",
    "layer_idx",
    "parent",
    "avg_power_w",
    "total_time_s",
    "energy_total_j",
    "energy_per_inference_mj",
    "energy_net_per_inference_mj",
    "num_loops",
    "calls_per_loop",
    "latency_per_loop_ms",
    "latency_ci_low_ms",
    "latency_ci_high_ms",
    "num_power_samples",
    "counter_ticks",
    "energy_share_pct",
    "latency_share_pct",
    "layers_sum_latency_ms",
    "layers_sum_energy_per_inference_mj",
    "layers_vs_whole_latency",
    "layers_vs_whole_energy",
    "whole_model_cell_id",
    "baseline_precision",
    "energy_saving_pct",
    "energy_saving_ci_low_pct",
    "energy_saving_ci_high_pct",
    "latency_saving_pct",
];

pub(super) fn per_layer_csv_bytes(
    layers: &[LayerSummary],
    cells: &[CellSummary],
) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(PER_LAYER_COLUMNS)?;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for l in layers {
        let cell = cells.iter().find(|c| c.id == l.cell_id);
        w.write_record([
            l.cell_id.clone(),
            csv_safe(&l.model).into_owned(),
            csv_safe(&l.precision).into_owned(),
            l.batch_size.to_string(),
            l.seq_len.to_string(),
            csv_safe(&l.layer_name).into_owned(),
            l.layer_idx.to_string(),
            csv_safe(l.parent.as_deref().unwrap_or_default()).into_owned(),
            opt(l.avg_power_w),
            l.total_time_s.to_string(),
            opt(l.energy_total_j),
            opt(l.energy_per_inference_mj),
            opt(l.energy_net_per_inference_mj),
            l.num_loops.to_string(),
            l.calls_per_loop.to_string(),
            opt(l.latency_per_loop_ms),
            opt(l.latency_ci_low_ms),
            opt(l.latency_ci_high_ms),
            l.num_power_samples.to_string(),
            l.counter_ticks.map(|t| t.to_string()).unwrap_or_default(),
            opt(l.energy_share_pct),
            opt(l.latency_share_pct),
            opt(cell.and_then(|c| c.latency_per_loop_ms)),
            opt(cell.and_then(|c| c.energy_per_inference_mj)),
            opt(cell.and_then(|c| c.layers_vs_whole_latency)),
            opt(cell.and_then(|c| c.layers_vs_whole_energy)),
            cell.and_then(|c| c.whole_model_cell_id.clone())
                .unwrap_or_default(),
            l.savings
                .as_ref()
                .map(|v| v.baseline_precision.clone())
                .unwrap_or_default(),
            opt(l.savings.as_ref().and_then(|v| v.energy_pct)),
            opt(l.savings.as_ref().and_then(|v| v.energy_ci_low_pct)),
            opt(l.savings.as_ref().and_then(|v| v.energy_ci_high_pct)),
            opt(l.savings.as_ref().and_then(|v| v.latency_pct)),
        ])?;
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
    fn csv_header_matches_the_documented_columns() {
        let bytes = summary_csv_bytes(&[]).unwrap();
        let header = String::from_utf8(bytes).unwrap();
        assert_eq!(header.trim_end(), SUMMARY_COLUMNS.join(","));
    }
}
