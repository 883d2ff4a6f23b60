//! What the report shows beyond the cells themselves, each gathered from the records into the
//! shape its template section reads: the kernels that ran, the workers that measured, the
//! cost-against-quality trade-offs (with their charts), and why quantized cells were slower.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{charts, file_safe, ChartRef};
use crate::analysis::CellSummary;
use crate::results::{CellRecord, CellStatus, Session};

/// Why a quantized precision is slower than the float path it replaces, by backend; the CUDA
/// numbers are the runner's own profile (examples/op_timing.rs).
pub(super) fn quantized_slower_why(backend: &str) -> &'static str {
    if backend == "cuda" {
        "each quantized linear runs candle's GGML kernels: the activations are first quantized to \
         8-bit blocks (a pass of its own), then multiplied by integer MMQ kernels written for the few \
         rows of LLM token generation. At the hundreds to thousands of rows of a batch here a forward \
         pass is compute-bound, and cuBLAS's fp16/bf16 tensor-core GEMMs do several times more work \
         per second: on an H100 at batch 64 x seq 128, DistilBERT's FFN-in linear took 374 us as a \
         q8_0 QMatMul (103 TFLOP/s) against 62 us in fp16 (625 TFLOP/s; \
         docs/results/2026-11-24-nvidia-h100-80gb-hbm3-speed/op_timing.txt). The memory 4- and \
         8-bit weights save (DistilBERT's 85 MB of fp16 linear weights become 24-45 MB) pays only \
         where reading weights dominates, as in token-by-token decoding of much larger models. The \
         quantized path also keeps Q, K and V as three matmuls with three head-split copies where \
         the float path runs one GEMM and one fused kernel. Here quantization saves GPU memory, not \
         time or energy."
    } else {
        "the runner has not profiled candle's quantized CPU kernels (GGML block formats); the ratios \
         are what they measured against the float path on this CPU, and the per-cell precision \
         and implementation records say exactly what ran."
    }
}

#[derive(Debug, Serialize)]
pub(super) struct ImplementationView {
    /// `model precision`, one entry per distinct pair that ran these kernels.
    used_by: Vec<String>,
    parts: BTreeMap<String, String>,
}

/// Groups the records by the implementation they recorded (records from before it was recorded
/// have none and are left out).
pub(super) fn implementation_views(records: &[CellRecord]) -> Vec<ImplementationView> {
    let mut views: Vec<ImplementationView> = Vec::new();
    for r in records {
        let Some(parts) = &r.implementation else {
            continue;
        };
        let who = format!("{} {}", r.cell.model, r.cell.precision.name());
        match views.iter_mut().find(|v| &v.parts == parts) {
            Some(v) if !v.used_by.contains(&who) => v.used_by.push(who),
            Some(_) => {}
            None => views.push(ImplementationView {
                used_by: vec![who],
                parts: parts.clone(),
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
        for (quality, name, value) in qualities {
            let points: Vec<TradeoffPoint> = cells
                .iter()
                .filter_map(|s| {
                    Some(TradeoffPoint {
                        cell_id: s.id.clone(),
                        precision: s.precision.clone(),
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
            let chart = charts::Chart {
                file_name: format!("tradeoff-{name}-{}-s{seq_len}.svg", file_safe(&model)),
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
