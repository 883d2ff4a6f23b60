//! What a decoder cell (the generate workload) records beside the common fields. The cell's own
//! `windows` are its decode windows, per step: each window's loops each ran `decode_steps_per_loop`
//! whole decode steps, and the record holds them as steps (loop time / steps, loops x steps), so
//! that energy per loop and batch is energy per generated token and every statistic of the
//! encoders (medians, intervals, savings, flags) reads as per-token. Prefill has windows of its own.

use serde::{Deserialize, Serialize};

use crate::fidelity::generate::{GenerateFidelity, Perplexity};
use crate::measure::{WarmupRecord, WindowRecord};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRecord {
    pub prompt_len: usize,
    pub new_tokens: usize,
    /// Each prefill loop: the KV cache emptied, the batch's prompts run, the first token's
    /// argmax on the device, synchronized. One loop = one batch's time to first token.
    pub prefill_warmup: WarmupRecord,
    pub prefill_windows: Vec<WindowRecord>,
    /// Decode steps each decode loop ran (= new_tokens); the cell's `windows` are per step.
    pub decode_steps_per_loop: usize,
    /// How decode windows were made (prefill outside the window, the cache rewound per loop).
    pub decode_windowing: String,
    /// The KV cache of the whole batch at the full context (prompt + new tokens), in bytes.
    pub kv_cache_bytes: u64,
    /// The weights as loaded, in bytes.
    pub weight_bytes: u64,
    /// Weights + KV caches + the prefill's largest transient: what was checked against the
    /// device's memory before loading.
    pub memory_estimate_bytes: u64,
    /// The prompts' text: dataset texts read, start-overs, and the tokenizer that made them.
    pub prompt_texts: usize,
    pub prompt_wraparounds: u64,
    pub tokenizer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<GenerateFidelity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<Perplexity>,
    /// candle-transformers' eager decoders: each decode window's steps as the host issued them
    /// (one forward and the argmax launched, timed on the host without a synchronize: for a loop
    /// bound by its host, the step's cost), summarized per window, in the order of `windows`.
    /// Tells a window slow throughout (every step slower) from one slowed by a few stalls. Empty
    /// for the own decoder (one graph launch a step) and in records made before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_host_steps: Vec<HostSteps>,
}

/// One decode window's steps as the host issued them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSteps {
    pub steps: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
    /// Steps that took more than twice the window's median, and the time they took beyond it.
    pub stalls: u64,
    pub stall_ms: f64,
}

impl HostSteps {
    /// The summary of one window's step times (milliseconds); `None` for no steps.
    pub fn of(step_ms: &[f64]) -> Option<Self> {
        if step_ms.is_empty() {
            return None;
        }
        let p50 = crate::stats::percentile(step_ms, 50.0);
        let slow: Vec<f64> = step_ms.iter().copied().filter(|&t| t > 2.0 * p50).collect();
        Some(Self {
            steps: step_ms.len() as u64,
            p50_ms: p50,
            p90_ms: crate::stats::percentile(step_ms, 90.0),
            max_ms: step_ms.iter().copied().fold(0.0, f64::max),
            stalls: slow.len() as u64,
            stall_ms: slow.iter().map(|t| t - p50).sum(),
        })
    }

    /// Per window: `step_ms` holds every step of the protocol in order (warm-up's
    /// `warmup_loops` loops first), `steps` a loop; `window_loops` each window's loops.
    pub fn per_window(
        step_ms: &[f64],
        steps: usize,
        warmup_loops: usize,
        window_loops: &[usize],
    ) -> Vec<Self> {
        let mut at = warmup_loops * steps;
        window_loops
            .iter()
            .filter_map(|&loops| {
                let end = (at + loops * steps).min(step_ms.len());
                let summary = Self::of(&step_ms[at.min(end)..end]);
                at = end;
                summary
            })
            .collect()
    }
}

/// A decode window's loops as steps.
pub fn per_step(windows: &[WindowRecord], steps: usize) -> Vec<WindowRecord> {
    super::per_call(windows, steps.min(u32::MAX as usize) as u32)
}

#[cfg(test)]
mod tests {
    use super::HostSteps;

    /// A window slow throughout moves its median; one slowed by a stall keeps its median and
    /// counts the stall. The windows are cut after the warm-up's loops, a loop's steps each.
    #[test]
    fn host_steps_tell_a_stall_from_a_slow_window() {
        let mut steps = vec![1.0; 4]; // warm-up: 1 loop of 4 steps
        steps.extend([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]); // window 1: 2 loops, slow
        steps.extend([1.0, 1.0, 9.0, 1.0]); // window 2: 1 loop, one stall
        let w = HostSteps::per_window(&steps, 4, 1, &[2, 1]);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].steps, w[0].p50_ms, w[0].stalls), (8, 2.0, 0));
        assert_eq!((w[1].steps, w[1].p50_ms, w[1].stalls), (4, 1.0, 1));
        assert_eq!(w[1].stall_ms, 8.0);
        assert_eq!(w[1].max_ms, 9.0);
        // Fewer steps than the windows claim: what there is, no panic.
        assert_eq!(HostSteps::per_window(&steps[..6], 4, 1, &[2, 1]).len(), 1);
    }
}
