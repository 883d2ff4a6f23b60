//! Window checks: a window that disagrees with the other windows of its cell (in latency, energy
//! per inference, or its power trace against the energy counter) is named with its numbers, so one
//! bad window is not hidden behind a median and a "noisy" flag.

use serde::{Deserialize, Serialize};

use crate::measure::WindowRecord;
use crate::sensor::energy;
use crate::stats::percentile;

/// Fewest windows among which one can be told to be the odd one out.
const MIN_WINDOWS: usize = 3;

/// A window whose latency or energy per inference lies further than this from the median of all
/// windows (relative) disagrees with the others.
pub const WINDOW_OUTLIER: f64 = 0.10;

/// A window whose trace-vs-counter differs from the windows' median by more than this (absolute,
/// as a fraction of the counter's energy) disagrees with them.
pub const TRACE_OUTLIER: f64 = 0.10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCheck {
    /// 1-based, in measurement order.
    pub window: usize,
    pub windows: usize,
    /// `latency`, `energy` or `trace vs counter`.
    pub metric: String,
    pub value: f64,
    pub others_low: f64,
    pub others_high: f64,
    /// The sentence the report shows.
    pub message: String,
}

/// Every window that disagrees with the others of its cell; needs three windows or more (with
/// two, neither can be told to be the odd one). A decoder's loop is a decode step, its energy per
/// generated token, and the message says so.
pub fn window_checks(windows: &[WindowRecord], batch: usize, decoder: bool) -> Vec<WindowCheck> {
    let n = windows.len();
    if n < MIN_WINDOWS {
        return Vec::new();
    }
    let per_window = |f: &dyn Fn(&WindowRecord) -> Option<f64>| -> Option<Vec<f64>> {
        windows.iter().map(f).collect()
    };
    let latency = per_window(&|w| (!w.loop_ms.is_empty()).then(|| percentile(&w.loop_ms, 50.0)));
    let energy = per_window(&|w| {
        w.energy_j
            .map(|e| e * 1e3 / (w.loops.max(1) as f64 * batch.max(1) as f64))
    });
    let trace = per_window(&|w| energy::disagreement(w.gpu_counter_energy_j()?, w.trace_energy_j?));
    let mut checks = Vec::new();
    let (per_loop, per_item) = if decoder {
        ("ms/decode step", "mJ/generated token")
    } else {
        ("ms/batch", "mJ/inference")
    };
    let series: [(&str, Option<Vec<f64>>, &str, bool); 3] = [
        ("latency", latency, per_loop, true),
        ("energy", energy, per_item, true),
        ("trace vs counter", trace, "%", false),
    ];
    for (metric, values, unit, relative) in series {
        let Some(values) = values else { continue };
        for (i, &v) in values.iter().enumerate() {
            let others: Vec<f64> = values
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &x)| x)
                .collect();
            // Against the median of all windows: the others' median would be pulled by the odd
            // one out when there are only three.
            let m = percentile(&values, 50.0);
            let (lo, hi) = others
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            let off = if relative {
                m > 0.0 && (v / m - 1.0).abs() > WINDOW_OUTLIER
            } else {
                (v - m).abs() > TRACE_OUTLIER
            };
            if !off {
                continue;
            }
            let message = if relative {
                format!(
                    "window {} of {n} disagrees: {metric} {v:.3} {unit} against {lo:.3} to {hi:.3} in the others ({:+.1} %)",
                    i + 1,
                    (v / m - 1.0) * 100.0
                )
            } else {
                format!(
                    "window {} of {n} disagrees: trace vs counter {:+.1} {unit} against {:+.1} to {:+.1} {unit} in the others",
                    i + 1,
                    v * 100.0,
                    lo * 100.0,
                    hi * 100.0
                )
            };
            checks.push(WindowCheck {
                window: i + 1,
                windows: n,
                metric: metric.to_string(),
                value: v,
                others_low: lo,
                others_high: hi,
                message,
            });
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(ms: f64, energy_j: f64, trace_j: f64) -> WindowRecord {
        WindowRecord {
            loops: 10,
            duration_s: ms * 10.0 / 1e3,
            loop_ms: vec![ms; 10],
            loop_ms_stride: 1,
            energy_j: Some(energy_j),
            counter_delta_j: Some(energy_j),
            tail_correction_j: Some(0.0),
            trace_energy_j: Some(trace_j),
            counter_ticks: Some(20),
            num_power_samples: 10,
            throttle_reasons: None,
            sm_clock_min_mhz: None,
            sm_clock_max_mhz: None,
            host: None,
            domain_energy_j: Default::default(),
        }
    }

    #[test]
    fn the_slow_window_of_three_is_named_with_its_numbers() {
        // Issue 18's cell: 7.33, 11.64 and 7.38 ms; the slow window's trace is 22.7 % under.
        let w = [
            window(7.33, 10.0, 9.9),
            window(11.64, 15.0, 15.0 * 0.773),
            window(7.38, 10.1, 10.0),
        ];
        let checks = window_checks(&w, 1, false);
        let metrics: Vec<(&str, usize)> = checks
            .iter()
            .map(|c| (c.metric.as_str(), c.window))
            .collect();
        assert_eq!(
            metrics,
            [("latency", 2), ("energy", 2), ("trace vs counter", 2)],
            "{checks:?}"
        );
        assert_eq!(
            checks[0].message,
            "window 2 of 3 disagrees: latency 11.640 ms/batch against 7.330 to 7.380 in the others (+57.7 %)"
        );
        assert!(
            checks[2].message.contains("-22.7 %"),
            "{}",
            checks[2].message
        );
        // Windows that agree, or too few to tell: nothing.
        assert!(window_checks(&vec![window(7.3, 10.0, 10.0); 3], 1, false).is_empty());
        assert!(window_checks(&w[..2], 1, false).is_empty());
    }
}
