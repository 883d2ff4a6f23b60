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
}

/// A decode window's loops as steps.
pub fn per_step(windows: &[WindowRecord], steps: usize) -> Vec<WindowRecord> {
    super::per_call(windows, steps.min(u32::MAX as usize) as u32)
}
