//! Post-processing of cell records (in parallel with rayon): latency and energy statistics, and the
//! flags a reviewer should see (noisy cells, warm-up that never settled).
//!
//! `layers.rs`: the per-layer side: each `layers` cell reconciled with its whole-model cell, and
//! one summary row per layer and component.
//!
//! `window_stats.rs`: the statistics of one series of windows, which every summary is built from.
//!
//! May import the records (results) and what they hold (config, measure, sensor, fidelity,
//! probe), and stats; never report, run or scale.

pub mod domains;
mod findings;
pub mod generate;
pub mod labels;
mod layers;
pub mod methods;
pub mod quantize;
mod savings;
pub mod throttling;
mod window_stats;
mod windows;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::Precision;
use crate::matrix::Cell;
use crate::results::{CellRecord, CellStatus};
use crate::stats::MIN_FOR_INTERVAL;

pub use domains::DomainSummary;
pub use findings::{findings, ratio_text, FindingGroup, Findings, Leader, RatioGroup, RatioLine};
pub use labels::{axis_title, description, same_except, Labels};
pub use layers::{
    items_per_call, layer_summaries, layer_totals, per_item, phase_of, phase_views, primary_view,
    reconcile, reconcile_in, reconciliation_rows, LayerSummary, LayerTotals, ReconciliationRow,
    RECONCILIATION_FLAG,
};
pub use savings::{quantized_comparisons, QuantizedComparison, Savings, QUANTIZED_SLOWER};
pub use window_stats::{window_stats, WindowStats};
pub use windows::{window_checks, WindowCheck};

/// Cells whose per-window latencies vary more than this (coefficient of variation) are flagged.
pub const NOISY_CV: f64 = 0.05;

/// The sampled instant power covers only part of each counter interval (on Hopper, ~25 ms of
/// every 100 ms), so trace and counter differ somewhat; beyond this the cell is flagged.
pub const TRACE_DISAGREEMENT_FLAG: f64 = 0.10;

/// A window of fewer counter updates than this is coarse: a trace-vs-counter difference beyond
/// [`COARSE_DISAGREEMENT`] in it is flagged with what it may mean.
pub const COARSE_TICKS: u64 = 20;
pub const COARSE_DISAGREEMENT: f64 = 0.05;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    pub id: String,
    /// The cell as planned: its axes are what labels, columns and comparisons are made of.
    pub cell: Cell,
    /// Names the cell's value on every axis that varies in the run (`fp8-fp16 b16 quantize=ffn`).
    pub label: String,
    /// Every axis's value, constant or not (`distilbert fp16 b16 seq 128 layers`): a heading.
    pub description: String,
    /// Each axis's value by name (empty where the axis does not apply to the cell).
    pub axis_values: std::collections::BTreeMap<String, String>,
    /// The cell's time is not a speed figure: W8A8 precisions on the CPU run the numerics
    /// reference (the GPU kernels' arithmetic in f32), so it is never ranked or charted on speed.
    pub speed_is_reference: bool,
    pub model: String,
    pub precision: String,
    pub precision_executed: Option<String>,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Decoder cells: prompt tokens and generated tokens (see `generate` for their figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tokens: Option<usize>,
    pub scope: String,
    pub status: CellStatus,
    pub reason: Option<String>,
    pub device: String,
    /// Median of the per-window median latencies (one batch, synchronized): the same estimator
    /// as its interval.
    pub latency_per_loop_ms: Option<f64>,
    pub latency_p10_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    /// 95 % interval of that median over the windows (order statistics; none below 6 windows).
    pub latency_ci_low_ms: Option<f64>,
    pub latency_ci_high_ms: Option<f64>,
    /// Spread of the per-window median latencies (standard deviation / mean).
    pub window_cv: Option<f64>,
    pub latency_per_sample_ms: Option<f64>,
    pub throughput_samples_per_s: Option<f64>,
    /// Median over windows of energy / samples, in millijoules (gross: includes idle power).
    pub energy_per_inference_mj: Option<f64>,
    /// 95 % interval of the median per-window energy per inference.
    pub energy_ci_low_mj: Option<f64>,
    pub energy_ci_high_mj: Option<f64>,
    /// The same above the idle baseline (gross minus idle power over the window).
    pub energy_net_per_inference_mj: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub idle_power_w: Option<f64>,
    /// What the energy figures cover (`gpu-board`, `cpu-package`, `dram`; the GPU board for
    /// records made before sensors said so); empty without energy.
    pub metered: Vec<String>,
    /// The whole-model (or decode) windows' energy domain by domain.
    pub domains: Vec<DomainSummary>,
    /// The worst window's (trace-integrated energy / counter energy - 1), by magnitude.
    pub trace_vs_counter: Option<f64>,
    /// Which window (1-based) that was.
    pub trace_vs_counter_window: Option<usize>,
    /// Windows that disagree with the others (latency, energy, or trace against counter).
    pub window_checks: Vec<WindowCheck>,
    /// Per-window values behind the medians and intervals, for ratios between cells and runs.
    #[serde(skip)]
    pub window_latency_ms: Vec<f64>,
    #[serde(skip)]
    pub window_energy_mj: Vec<f64>,
    /// Fewest counter updates seen in any window of the cell.
    pub min_window_ticks: Option<u64>,
    pub total_time_s: Option<f64>,
    pub num_loops: Option<u64>,
    pub repeats: usize,
    pub num_power_samples: usize,
    pub counter_ticks: Option<u64>,
    pub dataset_wraparounds: Option<u64>,
    pub warmup_steady: Option<bool>,
    /// Human-readable warnings for the report.
    pub flags: Vec<String>,
    pub gpu_before: Option<crate::sensor::GpuState>,
    pub gpu_after: Option<crate::sensor::GpuState>,
    /// Whether a power cap, heat or a hardware slowdown held the clocks back in its windows.
    pub throttling: throttling::Throttling,
    /// `layers` cells: Σ top-level layers / the whole-model cell (1.0 = reconciled).
    pub layers_vs_whole_latency: Option<f64>,
    pub layers_vs_whole_energy: Option<f64>,
    /// The whole-model cell a `layers` cell was reconciled with.
    pub whole_model_cell_id: Option<String>,
    pub fidelity: Option<crate::fidelity::Fidelity>,
    pub accuracy: Option<crate::probe::Accuracy>,
    /// Against the declared baseline precision's cell of the same model and shapes.
    pub savings: Option<Savings>,
    /// Decoder cells: prefill and decode apart, per request, fidelity and perplexity. The
    /// cell's latency and energy fields above are its decode steps' (per step, per token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<generate::GenerateSummary>,
}

/// Summaries of every record, in parallel, then the cross-cell part: each `layers` cell is
/// reconciled with the whole-model cell of the same model, precision and shapes, and each
/// whole-model cell is compared with the `baseline` precision's cell of the same model and shapes.
pub fn summarize_all(records: &[CellRecord], baseline: Precision) -> Vec<CellSummary> {
    let mut summaries: Vec<CellSummary> = records.par_iter().map(summarize).collect();
    let labels = Labels::new(records.iter().map(|r| &r.cell));
    for s in &mut summaries {
        s.label = labels.label(&s.cell);
    }
    let savings: Vec<Option<Savings>> = records
        .par_iter()
        .map(|r| savings::savings_in(r, records, baseline))
        .collect();
    for (s, saving) in summaries.iter_mut().zip(savings) {
        s.savings = saving;
    }
    for (i, r) in records.iter().enumerate() {
        if let Some(rec) = reconcile_in(r, records) {
            let s = &mut summaries[i];
            s.layers_vs_whole_latency = Some(rec.latency_ratio);
            s.layers_vs_whole_energy = rec.energy_ratio;
            s.whole_model_cell_id = Some(rec.model_cell_id.clone());
            // A prefix-only cell's isolated figures are its longest prefix: said once, as prefix.
            let isolated = !r.layers.is_empty();
            // A decoder's: the decode step's, then the prefill's, each named.
            for rec in std::iter::once(&rec).chain(rec.prefill.as_deref()) {
                let phase = rec
                    .phase
                    .map(|p| format!("{} ", p.name()))
                    .unwrap_or_default();
                for (what, ratio) in [
                    (
                        "layers' latency sum",
                        Some(rec.latency_ratio).filter(|_| isolated),
                    ),
                    ("layers' energy sum", rec.energy_ratio.filter(|_| isolated)),
                    ("prefix-differenced latency sum", rec.prefix_latency_ratio),
                    ("prefix-differenced energy sum", rec.prefix_energy_ratio),
                ] {
                    if let Some(ratio) = ratio.filter(|r| (r - 1.0).abs() > RECONCILIATION_FLAG) {
                        s.flags.push(format!(
                            "{phase}{what} is {:.1} % of the whole model's (cell {})",
                            ratio * 100.0,
                            rec.model_cell_id
                        ));
                    }
                }
            }
        }
        for c in methods::method_comparisons(r) {
            let phase = c.phase.map(|p| format!("{p}: ")).unwrap_or_default();
            if !c.disagreeing.is_empty() {
                summaries[i].flags.push(format!(
                    "{phase}isolated and prefix-differenced {} disagree beyond their intervals in {}: a unit alone does not run as it runs inside the whole pass (overlap with its neighbours, clocks, caches); the prefix figures are the ones that add up to the whole model",
                    c.metric.name(),
                    c.disagreeing.join(", ")
                ));
            }
            for l in &c.layers {
                let Some(p) = l.prefix.filter(|p| p.value < 0.0) else {
                    continue;
                };
                let beyond = p.ci_high.is_some_and(|hi| hi < 0.0);
                summaries[i].flags.push(format!(
                    "{phase}negative prefix difference: {} {:.4} {} (the prefix through it measured less than the prefix before it): {}",
                    l.name,
                    p.value,
                    c.unit,
                    if beyond {
                        "beyond its interval, so adding the layer made the pass cheaper: its work overlaps the layers before it (or the longer prefix ran in another regime); the layer's own cost is not measurable this way"
                    } else {
                        "its interval holds 0: the layer costs less than this run's noise can resolve"
                    }
                ));
            }
        }
    }
    summaries
}

/// Whether a record's time is not a speed figure: W8A8 (`int8-*`, `fp8-*`) off CUDA runs the
/// numerics reference, f32 arithmetic standing in for the tensor-core kernels.
pub fn speed_is_reference(r: &CellRecord) -> bool {
    matches!(r.cell.precision, Precision::EightBit(..)) && r.device.backend != "cuda"
}

pub fn summarize(r: &CellRecord) -> CellSummary {
    let measured = r.status == CellStatus::Ok;
    let batch = r.cell.batch_size as f64;
    let w = window_stats(&r.windows, r.cell.batch_size, r.idle_power_w);
    // A layers cell's own figures are the sums over its top-level layers.
    let (latency, energy, energy_net) = if r.layers.is_empty() && r.prefixes.is_empty() {
        (
            w.latency_median_ms,
            w.energy_per_inference_mj,
            w.energy_net_per_inference_mj,
        )
    } else {
        let t = layer_totals(r);
        (
            Some(t.latency_ms),
            t.energy_per_inference_mj,
            t.energy_net_per_inference_mj,
        )
    };
    let latency = latency.filter(|_| measured);

    let mut flags = Vec::new();
    if let Some(cv) = w.window_cv.filter(|&cv| cv > NOISY_CV) {
        flags.push(format!(
            "noisy: per-window median latencies vary by {:.1} % (> {:.0} %){}",
            cv * 100.0,
            NOISY_CV * 100.0,
            host_bound_note(r, cv).unwrap_or_default()
        ));
    }
    if let Some(d) = w
        .trace_vs_counter
        .filter(|d| d.abs() > TRACE_DISAGREEMENT_FLAG)
    {
        flags.push(format!(
            "power trace and energy counter disagree by {:+.1} % (window {} of {}, the worst)",
            d * 100.0,
            w.trace_vs_counter_window.unwrap_or(0),
            r.windows.len()
        ));
    }
    // Below the flag's 10 %, a disagreement still says something when the window spanned few
    // counter updates: its energy rests on few reads of a counter that moves every ~100 ms.
    if let (Some(d), Some(w)) = (w.trace_vs_counter, w.trace_vs_counter_window) {
        let ticks = r.windows.get(w - 1).and_then(|w| w.counter_ticks);
        if let Some(t) = ticks.filter(|&t| t < COARSE_TICKS) {
            if d.abs() > COARSE_DISAGREEMENT && d.abs() <= TRACE_DISAGREEMENT_FLAG {
                flags.push(format!(
                    "coarse counter: trace vs counter {:+.1} % in window {w}, which spanned only {t} counter updates (one update is ~{:.0} % of it): at that resolution the counter, not the power, may be what disagrees; longer windows (protocol.min_window_s) would tell",
                    d * 100.0,
                    100.0 / t as f64
                ));
            }
        }
    }
    let domains = if r.layers.is_empty() && r.prefixes.is_empty() {
        domains::domain_summaries(r, &r.windows)
    } else {
        Vec::new()
    };
    // The GPU's power limit is about the GPU board's power, not the host's.
    let gpu_power_w = domains
        .iter()
        .find(|d| d.domain == crate::sensor::GPU_BOARD)
        .and_then(|d| d.avg_power_w);
    let throttled = throttling::throttling(r, gpu_power_w);
    flags.extend(throttled.flag(r.windows.len(), gpu_power_w));
    let checks = window_checks(&r.windows, r.cell.batch_size, r.cell.prompt_len.is_some());
    flags.extend(checks.iter().map(|c| c.message.clone()));
    if r.warmup.as_ref().is_some_and(|w| !w.steady) {
        flags.push("warm-up ended before latency was steady".into());
    }
    let unsteady_layers = r.layers.iter().filter(|l| !l.warmup.steady).count()
        + r.prefixes.iter().filter(|p| !p.warmup.steady).count();
    if unsteady_layers > 0 {
        flags.push(format!(
            "warm-up ended before latency was steady in {unsteady_layers} layer(s)"
        ));
    }
    if measured
        && r.layers.is_empty()
        && r.prefixes.is_empty()
        && r.windows.len() < MIN_FOR_INTERVAL
    {
        flags.push(format!(
            "{} window(s) only: no interval (a 95 % interval of the median needs {MIN_FOR_INTERVAL} windows: [min, max] of {} covers {:.1} %)",
            r.windows.len(),
            r.windows.len(),
            (1.0 - 0.5f64.powi(r.windows.len() as i32 - 1)) * 100.0
        ));
    }
    let speed_reference = speed_is_reference(r);
    if measured && speed_reference {
        flags.push(
            "numerics reference: W8A8 arithmetic in f32 on the CPU, so its time is not a speed figure (not ranked or charted on speed)"
                .into(),
        );
    }

    let axes = r.cell.axes();
    CellSummary {
        id: r.cell.id.clone(),
        label: Labels::default().label(&r.cell),
        description: labels::description(&r.cell),
        axis_values: axes
            .into_iter()
            .map(|a| (a.axis, a.value.unwrap_or_default()))
            .collect(),
        cell: r.cell.clone(),
        speed_is_reference: speed_reference,
        model: r.cell.model.clone(),
        precision: r.cell.precision.name().to_string(),
        precision_executed: r.precision_executed.clone(),
        batch_size: r.cell.batch_size,
        seq_len: r.cell.seq_len,
        prompt_len: r.cell.prompt_len,
        new_tokens: r.cell.new_tokens,
        scope: r.cell.scope.name().to_string(),
        status: r.status,
        reason: r.reason.clone(),
        device: r.device.name.clone(),
        latency_per_loop_ms: latency,
        latency_p10_ms: w.latency_p10_ms,
        latency_p90_ms: w.latency_p90_ms,
        latency_ci_low_ms: w.latency_ci.map(|c| c.0),
        latency_ci_high_ms: w.latency_ci.map(|c| c.1),
        window_cv: w.window_cv,
        latency_per_sample_ms: latency.map(|m| m / batch),
        throughput_samples_per_s: latency.map(|m| batch * 1e3 / m),
        energy_per_inference_mj: energy,
        energy_ci_low_mj: w.energy_ci.map(|c| c.0),
        energy_ci_high_mj: w.energy_ci.map(|c| c.1),
        energy_net_per_inference_mj: energy_net,
        avg_power_w: w.avg_power_w,
        idle_power_w: r.idle_power_w,
        metered: r.sensor.domains(),
        domains,
        trace_vs_counter: w.trace_vs_counter,
        trace_vs_counter_window: w.trace_vs_counter_window,
        window_checks: checks,
        window_latency_ms: w.window_latency_medians_ms.clone(),
        window_energy_mj: w.window_energy_per_inference_mj.clone(),
        min_window_ticks: w.min_window_ticks,
        total_time_s: (measured && !r.windows.is_empty()).then_some(w.total_time_s),
        num_loops: (measured && !r.windows.is_empty()).then_some(w.num_loops),
        repeats: r.windows.len(),
        num_power_samples: w.num_power_samples
            + r.layers
                .iter()
                .flat_map(|l| &l.windows)
                .chain(r.prefixes.iter().flat_map(|p| &p.windows))
                .map(|w| w.num_power_samples)
                .sum::<usize>(),
        counter_ticks: r
            .windows
            .iter()
            .map(|w| w.counter_ticks)
            .sum::<Option<u64>>()
            .filter(|_| !r.windows.is_empty()),
        dataset_wraparounds: r.dataset.map(|d| d.wraparounds),
        warmup_steady: r.warmup.as_ref().map(|w| w.steady),
        flags,
        gpu_before: r.gpu_before.clone(),
        gpu_after: r.gpu_after.clone(),
        throttling: throttled,
        layers_vs_whole_latency: None,
        layers_vs_whole_energy: None,
        whole_model_cell_id: None,
        fidelity: r.fidelity.clone(),
        accuracy: r.accuracy.clone(),
        savings: None,
        generate: generate::summarize(r),
    }
}

/// Where a noisy eager decode cell's windows moved with the host: its launching thread on a CPU
/// nearly the whole of every window and the steps it issued slower in the slow windows (their
/// medians spread at least half as much as the windows'), the spread is the host CPU's speed.
fn host_bound_note(r: &CellRecord, window_cv: f64) -> Option<String> {
    let steps = &r.generate.as_ref()?.decode_host_steps;
    if steps.len() != r.windows.len() || steps.len() < 2 {
        return None;
    }
    let on_cpu: Vec<f64> = r
        .windows
        .iter()
        .map(|w| Some(w.host?.thread_cpu_s / w.duration_s).filter(|f| f.is_finite()))
        .collect::<Option<_>>()?;
    let least = on_cpu.iter().copied().fold(f64::INFINITY, f64::min);
    let p50: Vec<f64> = steps.iter().map(|s| s.p50_ms).collect();
    let p50_cv = crate::stats::coefficient_of_variation(&p50)?;
    (least >= 0.95 && p50_cv >= window_cv / 2.0).then(|| {
        format!(
            "; the host moved: the launching thread was on a CPU {:.0} % or more of every window and issued each step slower in the slow ones (its steps' window medians vary by {:.1} %)",
            least * 100.0,
            p50_cv * 100.0
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record_with_energy(
        windows: Vec<(f64, u32, f64, f64)>,
        idle_w: Option<f64>,
    ) -> CellRecord {
        use crate::config::{Precision, ProtocolSection, Scope};
        use crate::measure::WindowRecord;
        CellRecord {
            schema_version: crate::results::SCHEMA_VERSION,
            cell: crate::matrix::Cell {
                id: "abc".into(),
                model: "m".into(),
                precision: Precision::Fp16,
                batch_size: 4,
                seq_len: 128,
                prompt_len: None,
                new_tokens: None,
                scope: Scope::Model,
                quantize: Default::default(),
                layer_method: Default::default(),
                prefill_attention: crate::config::PrefillAttention::Plain,
            },
            status: CellStatus::Ok,
            reason: None,
            precision_executed: Some("fp16".into()),
            implementation: None,
            worker: None,
            device: crate::device::DeviceInfo {
                backend: "cuda".into(),
                ordinal: Some(0),
                name: "gpu".into(),
                uuid: None,
                cpu_threads: 1,
                cublas_version: None,
            },
            sensor: crate::sensor::SensorInfo {
                kind: "test".into(),
                measures_energy: true,
                note: String::new(),
                metered: Vec::new(),
            },
            protocol: ProtocolSection::default(),
            idle_power_w: idle_w,
            idle_domain_power_w: Default::default(),
            gpu_before: None,
            gpu_after: None,
            warmup: None,
            layers: Vec::new(),
            prefixes: Vec::new(),
            quantization: None,
            reconciliation: None,
            fidelity: None,
            accuracy: None,
            generate: None,
            windows: windows
                .into_iter()
                .map(|(duration_s, loops, energy_j, trace_j)| WindowRecord {
                    loops,
                    duration_s,
                    loop_ms: vec![duration_s * 1e3 / loops as f64; loops as usize],
                    loop_ms_stride: 1,
                    energy_j: Some(energy_j),
                    counter_delta_j: Some(energy_j),
                    tail_correction_j: Some(0.0),
                    trace_energy_j: Some(trace_j),
                    counter_ticks: Some(20),
                    num_power_samples: 100,
                    throttle_reasons: None,
                    sm_clock_min_mhz: None,
                    sm_clock_max_mhz: None,
                    host: None,
                    domain_energy_j: Default::default(),
                })
                .collect(),
            dataset: None,
            truncated_examples: None,
            started_at: String::new(),
            ended_at: String::new(),
        }
    }

    /// A noisy eager decode cell whose launching thread was on a CPU every whole window and whose
    /// steps' medians moved with the windows is flagged as the host moving; stalls (the steps'
    /// medians steady) or a thread often off the CPU are not.
    #[test]
    fn a_noisy_cell_says_when_the_host_moved() {
        let mut r = record_with_energy(
            vec![
                (1.0, 100, 200.0, 200.0),
                (1.3, 100, 260.0, 260.0),
                (1.0, 100, 200.0, 200.0),
            ],
            None,
        );
        let generate = |p50: [f64; 3]| -> crate::results::GenerateRecord {
            let steps: Vec<serde_json::Value> = p50
                .iter()
                .map(|p| serde_json::json!({"steps": 100, "p50_ms": p, "p90_ms": p, "max_ms": p, "stalls": 0, "stall_ms": 0.0}))
                .collect();
            let warmup = serde_json::json!({"loops": 1, "duration_s": 1.0, "first_loop_ms": 1.0, "steady": true});
            serde_json::from_value(serde_json::json!({
                "prompt_len": 8, "new_tokens": 1, "prefill_warmup": warmup, "prefill_windows": [],
                "decode_steps_per_loop": 1, "decode_windowing": "", "kv_cache_bytes": 1, "weight_bytes": 1,
                "memory_estimate_bytes": 1, "prompt_texts": 1, "prompt_wraparounds": 0, "tokenizer": "",
                "decode_host_steps": steps,
            }))
            .unwrap()
        };
        let on_cpu = |r: &mut CellRecord, share: f64| {
            for w in &mut r.windows {
                w.host = Some(crate::measure::HostUsage {
                    thread_cpu_s: w.duration_s * share,
                    involuntary_switches: 0,
                });
            }
        };
        let noisy = |r: &CellRecord| {
            summarize(r)
                .flags
                .into_iter()
                .find(|f| f.starts_with("noisy"))
                .unwrap()
        };
        on_cpu(&mut r, 0.99);
        r.generate = Some(generate([10.0, 13.0, 10.0]));
        assert!(noisy(&r).contains("the host moved"), "{}", noisy(&r));
        // A few stalls: the steps' medians did not move.
        r.generate = Some(generate([10.0, 10.1, 10.0]));
        assert!(!noisy(&r).contains("host moved"), "{}", noisy(&r));
        // The thread was off the CPU a fifth of the time: not said.
        r.generate = Some(generate([10.0, 13.0, 10.0]));
        on_cpu(&mut r, 0.8);
        assert!(!noisy(&r).contains("host moved"), "{}", noisy(&r));
    }

    #[test]
    fn energy_per_inference_gross_net_power_and_trace_agreement() {
        // Six 2 s windows of 100 loops at batch 4 (400 inferences), 200 J each; idle 50 W.
        let r = record_with_energy(vec![(2.0, 100, 200.0, 210.0); 6], Some(50.0));
        let s = summarize(&r);
        assert!((s.energy_per_inference_mj.unwrap() - 500.0).abs() < 1e-9);
        // Net: (200 J - 50 W * 2 s) / 400 = 250 mJ.
        assert!((s.energy_net_per_inference_mj.unwrap() - 250.0).abs() < 1e-9);
        assert!((s.avg_power_w.unwrap() - 100.0).abs() < 1e-9);
        assert!((s.trace_vs_counter.unwrap() - 0.05).abs() < 1e-9);
        assert_eq!(s.min_window_ticks, Some(20));
        assert_eq!(s.num_power_samples, 600);
        let (lo, hi) = (s.energy_ci_low_mj.unwrap(), s.energy_ci_high_mj.unwrap());
        assert!(
            (lo - 500.0).abs() < 1e-9 && (hi - 500.0).abs() < 1e-9,
            "identical windows"
        );
        assert!(s.flags.is_empty(), "{:?}", s.flags);
        // Without an idle baseline there is no net figure, and a 20 % disagreement is flagged.
        let r = record_with_energy(vec![(2.0, 100, 200.0, 240.0); 6], None);
        let s = summarize(&r);
        assert_eq!(s.energy_net_per_inference_mj, None);
        assert!(
            s.flags.iter().any(|f| f.contains("disagree by +20.0 %")),
            "{:?}",
            s.flags
        );
    }
}
