//! Post-processing of cell records (in parallel with rayon): latency and energy statistics, and the
//! flags a reviewer should see (noisy cells, warm-up that never settled).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::results::{CellRecord, CellStatus};

/// Cells whose per-window latencies vary more than this (coefficient of variation) are flagged.
pub const NOISY_CV: f64 = 0.05;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    pub id: String,
    pub model: String,
    pub precision: String,
    pub precision_executed: Option<String>,
    pub batch_size: usize,
    pub seq_len: usize,
    pub scope: String,
    pub status: CellStatus,
    pub reason: Option<String>,
    pub device: String,
    /// Median over every measured loop (one batch, synchronized).
    pub latency_per_loop_ms: Option<f64>,
    pub latency_p10_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    /// 95 % confidence interval of the mean per-window latency (Student t over the repeats).
    pub latency_ci_low_ms: Option<f64>,
    pub latency_ci_high_ms: Option<f64>,
    /// Spread of the per-window mean latencies (standard deviation / mean).
    pub window_cv: Option<f64>,
    pub latency_per_sample_ms: Option<f64>,
    pub throughput_samples_per_s: Option<f64>,
    /// Median over windows of energy / samples, in millijoules.
    pub energy_per_inference_mj: Option<f64>,
    pub avg_power_w: Option<f64>,
    pub total_time_s: Option<f64>,
    pub num_loops: Option<u64>,
    pub repeats: usize,
    pub num_power_samples: usize,
    pub counter_ticks: Option<u64>,
    pub dataset_wraparounds: Option<u64>,
    pub warmup_steady: Option<bool>,
    /// Human-readable warnings for the report.
    pub flags: Vec<String>,
}

pub fn summarize_all(records: &[CellRecord]) -> Vec<CellSummary> {
    records.par_iter().map(summarize).collect()
}

pub fn summarize(r: &CellRecord) -> CellSummary {
    let loops: Vec<f64> = r
        .windows
        .iter()
        .flat_map(|w| w.loop_ms.iter().copied())
        .collect();
    let window_means: Vec<f64> = r
        .windows
        .iter()
        .filter(|w| w.loops > 0)
        .map(|w| w.duration_s * 1e3 / w.loops as f64)
        .collect();
    let measured = r.status == CellStatus::Ok && !loops.is_empty();
    let median = measured.then(|| percentile(&loops, 50.0));
    let ci = mean_ci95(&window_means);
    let cv = coefficient_of_variation(&window_means);
    let batch = r.cell.batch_size as f64;

    let energy_per_inference_mj = {
        let per_window: Vec<f64> = r
            .windows
            .iter()
            .filter_map(|w| w.energy_j.map(|e| e * 1e3 / (w.loops as f64 * batch)))
            .collect();
        (!per_window.is_empty()).then(|| percentile(&per_window, 50.0))
    };
    let total_time_s: f64 = r.windows.iter().map(|w| w.duration_s).sum();
    let avg_power_w = {
        let energies: Vec<f64> = r.windows.iter().filter_map(|w| w.energy_j).collect();
        (energies.len() == r.windows.len() && !energies.is_empty() && total_time_s > 0.0)
            .then(|| energies.iter().sum::<f64>() / total_time_s)
    };
    let counter_ticks = r
        .windows
        .iter()
        .map(|w| w.counter_ticks)
        .sum::<Option<u64>>()
        .filter(|_| !r.windows.is_empty());

    let mut flags = Vec::new();
    if let Some(cv) = cv.filter(|&cv| cv > NOISY_CV) {
        flags.push(format!(
            "noisy: window latencies vary by {:.1} % (> {:.0} %)",
            cv * 100.0,
            NOISY_CV * 100.0
        ));
    }
    if r.warmup.as_ref().is_some_and(|w| !w.steady) {
        flags.push("warm-up ended before latency was steady".into());
    }
    if measured && r.windows.len() < 2 {
        flags.push("one window only: no confidence interval".into());
    }
    if let Some(d) = r.dataset.filter(|d| d.wraparounds > 0) {
        flags.push(format!(
            "dataset reused: {} wraparound(s) over {} examples",
            d.wraparounds, d.examples
        ));
    }

    CellSummary {
        id: r.cell.id.clone(),
        model: r.cell.model.clone(),
        precision: r.cell.precision.name().to_string(),
        precision_executed: r.precision_executed.clone(),
        batch_size: r.cell.batch_size,
        seq_len: r.cell.seq_len,
        scope: r.cell.scope.name().to_string(),
        status: r.status,
        reason: r.reason.clone(),
        device: r.device.name.clone(),
        latency_per_loop_ms: median,
        latency_p10_ms: measured.then(|| percentile(&loops, 10.0)),
        latency_p90_ms: measured.then(|| percentile(&loops, 90.0)),
        latency_ci_low_ms: ci.map(|c| c.0),
        latency_ci_high_ms: ci.map(|c| c.1),
        window_cv: cv,
        latency_per_sample_ms: median.map(|m| m / batch),
        throughput_samples_per_s: median.map(|m| batch * 1e3 / m),
        energy_per_inference_mj,
        avg_power_w,
        total_time_s: measured.then_some(total_time_s),
        num_loops: measured.then(|| r.windows.iter().map(|w| w.loops as u64).sum()),
        repeats: r.windows.len(),
        num_power_samples: r.windows.iter().map(|w| w.num_power_samples).sum(),
        counter_ticks,
        dataset_wraparounds: r.dataset.map(|d| d.wraparounds),
        warmup_steady: r.warmup.as_ref().map(|w| w.steady),
        flags,
    }
}

/// Linear-interpolated percentile (numpy's default), `p` in 0..=100. `values` must be non-empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation (n - 1).
pub fn std_dev(values: &[f64]) -> f64 {
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

pub fn coefficient_of_variation(values: &[f64]) -> Option<f64> {
    (values.len() >= 2).then(|| std_dev(values) / mean(values))
}

/// 95 % two-sided confidence interval of the mean (Student t); needs two values or more.
pub fn mean_ci95(values: &[f64]) -> Option<(f64, f64)> {
    if values.len() < 2 {
        return None;
    }
    let half = t95(values.len() - 1) * std_dev(values) / (values.len() as f64).sqrt();
    let m = mean(values);
    Some((m - half, m + half))
}

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom.
pub fn t95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 10.0) - 1.3).abs() < 1e-12);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
    }

    #[test]
    fn ci_uses_student_t_over_repeats() {
        // mean 10, sd 1, n 3: half width = 4.303 * 1 / sqrt(3) = 2.4843
        let (lo, hi) = mean_ci95(&[9.0, 10.0, 11.0]).unwrap();
        assert!((lo - 7.5157).abs() < 1e-3, "{lo}");
        assert!((hi - 12.4843).abs() < 1e-3, "{hi}");
        assert!(mean_ci95(&[5.0]).is_none());
    }

    #[test]
    fn coefficient_of_variation_is_sd_over_mean() {
        let cv = coefficient_of_variation(&[9.0, 10.0, 11.0]).unwrap();
        assert!((cv - 0.1).abs() < 1e-12);
    }
}
