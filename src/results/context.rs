//! `protocol.layer_isolation = "in-step"`: a top-level unit of a decoder's step measured after
//! the unit that precedes it in the step. Its record's windows are the pair's (the predecessor,
//! then the unit, K times a loop); [`StepContext`] holds the predecessor's own loops, K calls of it
//! alone; the unit's figures are the difference, per call ([`unit_windows`]).

use serde::{Deserialize, Serialize};

use crate::measure::WindowRecord;
use crate::stats::percentile;

/// What a unit ran after, and that predecessor's own loops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepContext {
    /// The unit that precedes this one in the step (the head before the embeddings: the
    /// previous step's tail).
    pub predecessor: String,
    /// The predecessor alone, K calls a loop (the pair's K), as measured.
    pub windows: Vec<WindowRecord>,
}

/// The unit's windows per call: each of the pair's windows (already per call) less the
/// predecessor's median per call, in latency (each loop), energy and every energy part, and
/// duration (so that energy net of idle power subtracts the predecessor's idle share too).
/// Counter ticks and power samples stay the pair window's: they say how it was measured.
pub fn unit_windows(pair: &[WindowRecord], predecessor: &[WindowRecord]) -> Vec<WindowRecord> {
    let latency: Vec<f64> = predecessor
        .iter()
        .flat_map(|w| w.loop_ms.iter().copied())
        .collect();
    let latency_ms = if latency.is_empty() {
        0.0
    } else {
        percentile(&latency, 50.0)
    };
    // The predecessor's median per call of one window quantity; None where any window lacks it.
    let each_call = |f: &dyn Fn(&WindowRecord) -> Option<f64>| -> Option<f64> {
        let v: Option<Vec<f64>> = predecessor
            .iter()
            .map(|w| f(w).map(|x| x / f64::from(w.loops.max(1))))
            .collect();
        v.filter(|v| !v.is_empty()).map(|v| percentile(&v, 50.0))
    };
    let energy = each_call(&|w| w.energy_j);
    let counter = each_call(&|w| w.counter_delta_j);
    let tail = each_call(&|w| w.tail_correction_j);
    let trace = each_call(&|w| w.trace_energy_j);
    pair.iter()
        .map(|w| {
            let calls = f64::from(w.loops);
            let less = |x: Option<f64>, each: Option<f64>| match (x, each) {
                (Some(x), Some(each)) => Some(x - calls * each),
                _ => None,
            };
            let mut out = w.clone();
            out.loop_ms = w.loop_ms.iter().map(|ms| ms - latency_ms).collect();
            out.duration_s = w.duration_s - calls * latency_ms / 1e3;
            out.energy_j = less(w.energy_j, energy);
            out.counter_delta_j = less(w.counter_delta_j, counter);
            out.tail_correction_j = less(w.tail_correction_j, tail);
            out.trace_energy_j = less(w.trace_energy_j, trace);
            out.domain_energy_j = w
                .domain_energy_j
                .iter()
                .filter_map(|(domain, j)| {
                    let each = each_call(&|p| p.domain_energy_j.get(domain).copied())?;
                    Some((domain.clone(), j - calls * each))
                })
                .collect();
            out
        })
        .collect()
}

/// Windows of K calls a loop as windows of one call: loop latencies divided by K, loops
/// multiplied by K (durations and energies are the windows' own).
pub(crate) fn per_call(windows: &[WindowRecord], k: u32) -> Vec<WindowRecord> {
    if k <= 1 {
        return windows.to_vec();
    }
    windows
        .iter()
        .map(|w| WindowRecord {
            loops: w.loops.saturating_mul(k),
            loop_ms: w.loop_ms.iter().map(|ms| ms / f64::from(k)).collect(),
            ..w.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(loops: u32, loop_ms: &[f64], energy_j: f64) -> WindowRecord {
        let duration_s =
            loop_ms.iter().sum::<f64>() / 1e3 * f64::from(loops) / loop_ms.len() as f64;
        let mut w: WindowRecord = serde_json::from_value(serde_json::json!({
            "loops": loops, "duration_s": duration_s, "loop_ms": loop_ms,
            "energy_j": energy_j, "counter_delta_j": energy_j, "tail_correction_j": 0.0,
            "trace_energy_j": energy_j, "counter_ticks": 10, "num_power_samples": 100
        }))
        .unwrap();
        w.domain_energy_j.insert("gpu-board".into(), energy_j);
        w
    }

    #[test]
    fn the_unit_is_the_pair_less_its_predecessor_per_call() {
        // Per call: the pair 0.20 ms and 30 mJ, the predecessor 0.105 ms and 14 mJ.
        let pair = [window(1000, &[0.20, 0.21, 0.19], 30.0)];
        let pred = [
            window(2000, &[0.105, 0.104, 0.106], 28.0),
            window(1000, &[0.105], 14.0),
        ];
        let unit = unit_windows(&pair, &pred);
        assert_eq!(unit.len(), 1);
        let u = &unit[0];
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let ms: Vec<f64> = u.loop_ms.clone();
        assert!(
            close(ms[0], 0.095) && close(ms[1], 0.105) && close(ms[2], 0.085),
            "{ms:?}"
        );
        assert!(close(u.energy_j.unwrap(), 30.0 - 1000.0 * 0.014));
        assert!(close(u.counter_delta_j.unwrap(), 16.0));
        assert!(close(u.trace_energy_j.unwrap(), 16.0));
        assert!(close(u.domain_energy_j["gpu-board"], 16.0));
        assert!(close(u.duration_s, 0.2 - 1000.0 * 0.105 / 1e3));
        assert_eq!((u.loops, u.counter_ticks), (1000, Some(10)));
        // No energy measured (the CPU): none made up.
        let mut bare = pred.clone();
        bare[1].energy_j = None;
        assert_eq!(unit_windows(&pair, &bare)[0].energy_j, None);
    }
}
