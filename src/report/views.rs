//! What the report shows beyond the cells themselves, each gathered from the records into the
//! shape its template section reads: the kernels that ran, the workers that measured, the
//! cost-against-quality trade-offs (with their charts), and why quantized cells were slower.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{charts, file_safe, ChartRef};
use crate::analysis::{CellSummary, Labels};
use crate::results::{CellRecord, CellStatus, Session};

/// Why quantized cells were slower than the float path they replace, from this run: its device
/// and its own ratios (no figures from another machine or model).
pub(super) fn quantized_slower_why(
    backend: &str,
    device: &str,
    quantized: &[crate::analysis::QuantizedComparison],
) -> String {
    let slower: Vec<_> = quantized.iter().filter(|q| q.slower).collect();
    let (lo, hi) = slower.iter().fold((f64::INFINITY, 0f64), |(a, b), q| {
        (a.min(q.latency_ratio), b.max(q.latency_ratio))
    });
    let mut formats: Vec<&str> = Vec::new();
    for q in &slower {
        if !formats.contains(&q.precision.as_str()) {
            formats.push(&q.precision);
        }
    }
    let measured = format!(
        "on this run's {device}, {} took {lo:.2}x to {hi:.2}x the time per batch of the float path \
         at the same batch size.",
        formats.join(", ")
    );
    if backend == "cuda" {
        format!(
            "{measured} Each quantized linear runs candle's GGML kernels: the activations are first \
             quantized to 8-bit blocks (a pass of its own), then multiplied by integer kernels \
             written for the few rows of token-by-token generation, while the float path runs \
             cuBLAS's tensor-core GEMMs on rows = batch x sequence length. The weights' memory \
             saving pays only where reading weights dominates; the records' implementation \
             section says which kernels ran (examples/op_timing.rs profiles them per operation)."
        )
    } else {
        format!(
            "{measured} The runner has not profiled candle's quantized CPU kernels (GGML block \
             formats); the per-cell precision and implementation records say exactly what ran."
        )
    }
}

#[derive(Debug, Serialize)]
pub(super) struct ImplementationView {
    /// The label of each cell that ran these kernels (every axis that varies among the run's
    /// cells: `fp32 seq 16`, `q8_0 quantize=ffn`).
    used_by: Vec<String>,
    parts: BTreeMap<String, String>,
    /// Each part's head (its text up to the first `:`, `;` or parenthesis): the compact table;
    /// the full texts follow it.
    short: BTreeMap<String, String>,
}

/// The head of an implementation text: what ran, before how (`W8A8 int8 on tensor cores`).
fn head(text: &str) -> String {
    let end = [": ", "; ", " ("]
        .iter()
        .filter_map(|sep| text.find(sep))
        .min()
        .unwrap_or(text.len());
    let head = text[..end].trim();
    if head.chars().count() > 60 {
        format!("{}…", head.chars().take(58).collect::<String>())
    } else {
        head.to_string()
    }
}

/// Groups the records by the implementation they recorded (records from before it was recorded
/// have none and are left out).
pub(super) fn implementation_views(records: &[CellRecord]) -> Vec<ImplementationView> {
    // Labels, not `model precision`: cells differing in seq_len, scope, ... are named apart.
    let labels = Labels::new(records.iter().map(|r| &r.cell));
    let mut views: Vec<ImplementationView> = Vec::new();
    for r in records {
        let Some(parts) = &r.implementation else {
            continue;
        };
        let who = labels.label(&r.cell);
        match views.iter_mut().find(|v| &v.parts == parts) {
            Some(v) if !v.used_by.contains(&who) => v.used_by.push(who),
            Some(_) => {}
            None => views.push(ImplementationView {
                used_by: vec![who],
                short: parts.iter().map(|(k, v)| (k.clone(), head(v))).collect(),
                parts: parts.clone(),
            }),
        }
    }
    views
}

/// A precision as it executed, where the record says more than its name (a quantized format's
/// kernels, a W8A8 reference), with the cells that ran it.
#[derive(Debug, Serialize)]
pub(super) struct ExecutedView {
    precision: String,
    executed: String,
    cells: Vec<String>,
}

pub(super) fn executed_views(cells: &[CellSummary]) -> Vec<ExecutedView> {
    let mut views: Vec<ExecutedView> = Vec::new();
    for c in cells {
        let Some(executed) = c.precision_executed.as_ref().filter(|e| **e != c.precision) else {
            continue;
        };
        match views
            .iter_mut()
            .find(|v| v.precision == c.precision && &v.executed == executed)
        {
            Some(v) => v.cells.push(c.label.clone()),
            None => views.push(ExecutedView {
                precision: c.precision.clone(),
                executed: executed.clone(),
                cells: vec![c.label.clone()],
            }),
        }
    }
    views
}

#[derive(Debug, Serialize)]
pub(super) struct WorkerView {
    label: String,
    /// backend, name, ordinal and UUID of the device the worker measured on.
    device: String,
    pub(super) host: Option<String>,
    cells: Vec<String>,
    failed: usize,
}

/// The records grouped by the worker that measured them (plan order within each).
pub(super) fn worker_views(records: &[CellRecord], sessions: &[Session]) -> Vec<WorkerView> {
    let mut views: Vec<WorkerView> = Vec::new();
    for r in records {
        let Some(label) = &r.worker else { continue };
        let view = match views.iter_mut().position(|v| &v.label == label) {
            Some(i) => &mut views[i],
            None => {
                let d = &r.device;
                let mut device = format!("{} ({})", d.name, d.backend);
                if let Some(k) = d.ordinal {
                    device.push_str(&format!(", CUDA ordinal {k}"));
                }
                if let Some(uuid) = &d.uuid {
                    device.push_str(&format!(", {uuid}"));
                }
                let host = sessions
                    .iter()
                    .find(|s| s.worker.as_ref().is_some_and(|w| &w.label == label))
                    .map(|s| s.hostname.clone());
                views.push(WorkerView {
                    label: label.clone(),
                    device,
                    host,
                    cells: Vec::new(),
                    failed: 0,
                });
                views.last_mut().expect("just pushed")
            }
        };
        view.cells.push(r.cell.id.clone());
        view.failed += usize::from(r.status == CellStatus::Failed);
    }
    views.sort_by(|a, b| a.label.cmp(&b.label));
    views
}

/// The union of the parts the records name, sorted: records written by different runner
/// versions (a resumed run) may name different parts.
pub(super) fn implementation_parts(records: &[CellRecord]) -> Vec<String> {
    let parts: std::collections::BTreeSet<&String> = records
        .iter()
        .filter_map(|r| r.implementation.as_ref())
        .flat_map(|parts| parts.keys())
        .collect();
    parts.into_iter().cloned().collect()
}

#[derive(Debug, Serialize)]
pub(super) struct TradeoffView {
    model: String,
    seq_len: usize,
    /// `fidelity` or `accuracy`.
    quality: &'static str,
    cost_label: &'static str,
    chart: ChartRef,
    /// The Pareto-optimal cells, by increasing cost.
    front: Vec<charts::TradeoffPoint>,
}

/// (what is plotted, its name, its value for a cell).
type QualitySpec = (
    charts::Quality,
    &'static str,
    fn(&CellSummary) -> Option<f64>,
);

/// Energy (or, where not measured, latency) against fidelity and accuracy for each model and
/// sequence length, whole-model cells only.
pub(super) fn tradeoff_views(
    summaries: &[CellSummary],
    chart_dir: &Path,
) -> Result<Vec<TradeoffView>> {
    use charts::{Quality, TradeoffPoint};
    let mut groups: std::collections::BTreeMap<(String, usize), Vec<&CellSummary>> =
        Default::default();
    for s in summaries
        .iter()
        .filter(|s| s.scope == "model" && s.status == CellStatus::Ok)
    {
        groups
            .entry((s.model.clone(), s.seq_len))
            .or_default()
            .push(s);
    }
    let mut views = Vec::new();
    for ((model, seq_len), cells) in groups {
        let energy = cells.iter().any(|s| s.energy_per_inference_mj.is_some());
        let (cost_label, cost): (&str, fn(&CellSummary) -> Option<f64>) = if energy {
            ("energy per inference, mJ", |s| s.energy_per_inference_mj)
        } else {
            ("latency per sample, ms (energy not measured)", |s| {
                s.latency_per_sample_ms
            })
        };
        let qualities: [QualitySpec; 2] = [
            (Quality::CosineDistance, "fidelity", |s| match &s.fidelity {
                Some(f) => Some((1.0 - f.cosine).max(0.0)),
                None if s.precision == "fp32" => Some(0.0),
                None => None,
            }),
            (Quality::Accuracy, "accuracy", |s| {
                s.accuracy.as_ref().map(|a| a.accuracy * 100.0)
            }),
        ];
        // A series names every axis that varies among the chart's cells but the batch size (on
        // each point): q8_0 quantize=all and q8_0 quantize=ffn are two series.
        let labels = Labels::new(cells.iter().map(|s| &s.cell));
        for (quality, name, value) in qualities {
            let points: Vec<TradeoffPoint> = cells
                .iter()
                .filter_map(|s| {
                    Some(TradeoffPoint {
                        cell_id: s.id.clone(),
                        precision: s.precision.clone(),
                        series: labels.label_without(&s.cell, &["batch_size"]),
                        batch_size: s.batch_size,
                        cost: cost(s)?,
                        quality: value(s)?,
                    })
                })
                .collect();
            // A trade-off needs something to trade: two precisions at least.
            let distinct: std::collections::BTreeSet<&str> =
                points.iter().map(|p| p.precision.as_str()).collect();
            if name == "fidelity" && !cells.iter().any(|s| s.fidelity.is_some())
                || distinct.len() < 2
            {
                continue;
            }
            let title = format!("{model}, seq {seq_len}: cost against {name}");
            let (svg, png) = charts::tradeoff_chart(&title, cost_label, quality, &points)?;
            let mut file_name = format!("tradeoff-{name}-{}-s{seq_len}.svg", file_safe(&model));
            // file_safe maps `tiny.v2` and `tiny_v2` alike: the second chart takes its first
            // cell's id too, never overwriting the first.
            if views
                .iter()
                .any(|v: &TradeoffView| v.chart.file_name == format!("charts/{file_name}"))
            {
                file_name = file_name.replace(".svg", &format!("-{}.svg", cells[0].id));
            }
            let chart = charts::Chart {
                file_name,
                title,
                svg,
                png,
            };
            let front = charts::tradeoff_front(&points, quality)
                .into_iter()
                .map(|i| points[i].clone())
                .collect();
            views.push(TradeoffView {
                model: model.clone(),
                seq_len,
                quality: name,
                cost_label,
                chart: ChartRef::write(&chart, chart_dir)?,
                front,
            });
        }
    }
    Ok(views)
}

/// Whether the fp32 cells' GEMMs ran on TF32 tensor cores, from the records' `gemm_precision`
/// (CUDA only; records from before it was recorded say so). The record states the reduced mode
/// it ran in (`reduced: TF32 tensor cores`) or full f32 (`... fp32 GEMMs without TF32`): what
/// decides is whether a reduced mode was on, not whether the text mentions TF32.
pub(super) fn tf32_statement(records: &[CellRecord]) -> Option<String> {
    let cuda: Vec<&CellRecord> = records
        .iter()
        .filter(|r| r.device.backend == "cuda")
        .collect();
    if cuda.is_empty() {
        return None;
    }
    let recorded: Vec<&String> = cuda
        .iter()
        .filter(|r| r.cell.precision.float() == crate::config::FloatPrecision::Fp32)
        .filter_map(|r| r.implementation.as_ref()?.get("gemm_precision"))
        .collect();
    let on = |g: &&String| g.starts_with("reduced:") && g.contains("TF32");
    Some(if recorded.is_empty() {
        "not recorded (no fp32 cell, or records that predate implementation.gemm_precision)"
            .to_string()
    } else if recorded.iter().all(on) {
        "on: fp32 GEMMs ran on TF32 tensor cores".to_string()
    } else if recorded.iter().any(on) {
        "mixed: some fp32 cells ran their GEMMs on TF32 tensor cores, others in full fp32 (see each record's implementation.gemm_precision)".to_string()
    } else {
        "off: fp32 GEMMs accumulated in full fp32 (CUBLAS_COMPUTE_32F)".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implementation_heads_say_what_ran_before_how() {
        assert_eq!(
            head("W8A8 int8 on tensor cores: each input quantized per token by a runner kernel"),
            "W8A8 int8 on tensor cores"
        );
        assert_eq!(
            head("cuda-graph: the whole forward captured once"),
            "cuda-graph"
        );
        assert_eq!(
            head("Q, K, V in one GEMM (int8 x int8 -> int32); then"),
            "Q, K, V in one GEMM"
        );
        assert_eq!(head("fp32"), "fp32");
        assert!(head(&"x".repeat(100)).ends_with('…'));
    }

    fn cuda_fp32(gemm: &str) -> CellRecord {
        let mut r = crate::analysis::tests::record_with_energy(vec![(1.0, 10, 1.0, 1.0)], None);
        r.cell.precision = crate::config::Precision::Fp32;
        r.implementation
            .get_or_insert_with(Default::default)
            .insert("gemm_precision".into(), gemm.into());
        r
    }

    #[test]
    fn a_kernel_set_names_each_cell_that_ran_it_by_every_varying_axis() {
        let cells: Vec<CellRecord> = [16, 32]
            .into_iter()
            .map(|seq| {
                let mut r = cuda_fp32("reduced: TF32 tensor cores");
                r.cell.seq_len = seq;
                r
            })
            .collect();
        let views = implementation_views(&cells);
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].used_by, ["seq 16", "seq 32"]);
    }

    #[test]
    fn the_tf32_line_follows_the_record_not_the_word() {
        // What the CUDA build records without TF32: it names TF32, and says it was off.
        let off = cuda_fp32("f32 accumulation (CUBLAS_COMPUTE_32F; fp32 GEMMs without TF32)");
        assert_eq!(
            tf32_statement(std::slice::from_ref(&off)).unwrap(),
            "off: fp32 GEMMs accumulated in full fp32 (CUBLAS_COMPUTE_32F)"
        );
        let on = cuda_fp32("reduced: TF32 tensor cores");
        assert!(tf32_statement(std::slice::from_ref(&on))
            .unwrap()
            .starts_with("on:"));
        assert!(tf32_statement(&[on, off.clone()])
            .unwrap()
            .starts_with("mixed:"));
        // Off CUDA: no line at all.
        let mut cpu = off;
        cpu.device.backend = "cpu".into();
        assert_eq!(tf32_statement(&[cpu]), None);
    }
}

/// The units of the results and energy tables. An encoder's loop is a batch of inferences; a
/// decoder's is one decode step, a generated token for each sequence of the batch. A run with
/// both names both, so no figure is read in the other's unit.
#[derive(Debug, Serialize)]
pub(super) struct TableUnits {
    pub latency: &'static str,
    pub rate: &'static str,
    pub energy: &'static str,
    /// What one latency figure times, for the sentence above the results table.
    pub loop_is: &'static str,
    /// The two figures in words, for sentences.
    pub latency_words: &'static str,
    pub energy_words: &'static str,
}

pub(super) fn table_units(cells: &[CellSummary]) -> TableUnits {
    let decoders = cells.iter().filter(|c| c.prompt_len.is_some()).count();
    if decoders == 0 {
        TableUnits {
            latency: "ms/batch",
            rate: "samples/s",
            energy: "mJ/inference",
            loop_is: "per batch (one synchronized forward pass)",
            latency_words: "latency per batch",
            energy_words: "energy per inference",
        }
    } else if decoders == cells.len() {
        TableUnits {
            latency: "ms/decode step",
            rate: "tokens/s",
            energy: "mJ/generated token",
            loop_is: "per decode step (one generated token for each sequence of the batch; \
                      prefill is in the decoder table above)",
            latency_words: "time per decode step",
            energy_words: "energy per generated token",
        }
    } else {
        TableUnits {
            latency: "ms/batch or decode step",
            rate: "samples or tokens/s",
            energy: "mJ/inference or generated token",
            loop_is: "per batch (one synchronized forward pass) for encoder cells and per \
                      decode step (one generated token for each sequence) for decoder cells",
            latency_words: "latency per batch (decoders: per decode step)",
            energy_words: "energy per inference (decoders: per generated token)",
        }
    }
}
