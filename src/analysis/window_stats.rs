//! The statistics of a series of windows (a cell's, a layer's, a prefill's): latency median,
//! percentiles and interval, energy per inference gross and net of idle, power, and the worst
//! trace-vs-counter disagreement.

use crate::measure::WindowRecord;
use crate::sensor::energy;
use crate::stats::{coefficient_of_variation, median_ci95, percentile};

/// Statistics of a series of windows (a cell's, or one layer's).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowStats {
    pub latency_median_ms: Option<f64>,
    pub latency_p10_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub latency_ci: Option<(f64, f64)>,
    pub window_cv: Option<f64>,
    pub energy_per_inference_mj: Option<f64>,
    pub energy_ci: Option<(f64, f64)>,
    pub energy_net_per_inference_mj: Option<f64>,
    pub energy_total_j: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub trace_vs_counter: Option<f64>,
    pub trace_vs_counter_window: Option<usize>,
    pub min_window_ticks: Option<u64>,
    pub total_time_s: f64,
    pub num_loops: u64,
    pub num_power_samples: usize,
    /// Per-window values behind the medians and intervals (for comparisons between cells).
    pub window_latency_medians_ms: Vec<f64>,
    pub window_energy_per_inference_mj: Vec<f64>,
}

pub fn window_stats(
    windows: &[WindowRecord],
    batch: usize,
    idle_power_w: Option<f64>,
) -> WindowStats {
    let loops: Vec<f64> = windows
        .iter()
        .flat_map(|w| w.loop_ms.iter().copied())
        .collect();
    // Per-window medians: the statistic the CI and the noise flag are about, so they describe the
    // same quantity as the reported median (window means would let a few slow loops pull the
    // interval away from the median).
    let window_medians: Vec<f64> = windows
        .iter()
        .filter(|w| !w.loop_ms.is_empty())
        .map(|w| percentile(&w.loop_ms, 50.0))
        .collect();
    let batch = batch as f64;
    let per_inference_mj = |energy_j: f64, loops: u32| energy_j * 1e3 / (loops as f64 * batch);
    let gross: Vec<f64> = windows
        .iter()
        .filter_map(|w| w.energy_j.map(|e| per_inference_mj(e, w.loops)))
        .collect();
    let net: Vec<f64> = match idle_power_w {
        Some(idle) => windows
            .iter()
            .filter_map(|w| {
                w.energy_j
                    .map(|e| per_inference_mj(energy::net_energy_j(e, idle, w.duration_s), w.loops))
            })
            .collect(),
        None => Vec::new(),
    };
    // The worst window, not the median: one bad window is what a reader must see.
    let worst_disagreement = windows
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let counter = w.gpu_counter_energy_j()?;
            Some((i + 1, energy::disagreement(counter, w.trace_energy_j?)?))
        })
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
    let total_time_s: f64 = windows.iter().map(|w| w.duration_s).sum();
    let energies: Vec<f64> = windows.iter().filter_map(|w| w.energy_j).collect();
    let all_metered = !energies.is_empty() && energies.len() == windows.len();
    let median = |v: &[f64]| (!v.is_empty()).then(|| percentile(v, 50.0));
    let latency = median_ci95(&window_medians);
    let energy = median_ci95(&gross);
    WindowStats {
        latency_median_ms: latency.map(|l| l.0),
        latency_p10_ms: (!loops.is_empty()).then(|| percentile(&loops, 10.0)),
        latency_p90_ms: (!loops.is_empty()).then(|| percentile(&loops, 90.0)),
        latency_ci: latency.and_then(|l| l.1),
        window_cv: coefficient_of_variation(&window_medians),
        energy_per_inference_mj: energy.map(|e| e.0),
        energy_ci: energy.and_then(|e| e.1),
        energy_net_per_inference_mj: median(&net),
        energy_total_j: all_metered.then(|| energies.iter().sum()),
        avg_power_w: (all_metered && total_time_s > 0.0)
            .then(|| energies.iter().sum::<f64>() / total_time_s),
        trace_vs_counter: worst_disagreement.map(|d| d.1),
        trace_vs_counter_window: worst_disagreement.map(|d| d.0),
        min_window_ticks: windows.iter().filter_map(|w| w.counter_ticks).min(),
        total_time_s,
        num_loops: windows.iter().map(|w| w.loops as u64).sum(),
        num_power_samples: windows.iter().map(|w| w.num_power_samples).sum(),
        window_latency_medians_ms: window_medians,
        window_energy_per_inference_mj: gross,
    }
}
