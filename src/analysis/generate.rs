//! A decoder cell's figures as the field quotes them (ML.ENERGY, vLLM's benchmarks, LLM-Perf):
//! prefill (time to first token, mJ per prompt token) and decode (time per output token,
//! tokens/s, mJ per generated token) from their own windows, and per request the sum, J =
//! prefill + new_tokens x decode, gross and net of idle.

use serde::{Deserialize, Serialize};

use super::window_stats;
use crate::fidelity::generate::{GenerateFidelity, Perplexity};
use crate::results::{CellRecord, CellStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateSummary {
    pub prompt_len: usize,
    pub new_tokens: usize,
    /// Median ms per prefill of the batch: time to first token.
    pub prefill_ms: Option<f64>,
    pub prefill_ci_low_ms: Option<f64>,
    pub prefill_ci_high_ms: Option<f64>,
    pub prefill_mj_per_prompt_token: Option<f64>,
    pub prefill_net_mj_per_prompt_token: Option<f64>,
    /// Median ms per decode step (time per output token) and what it means for the batch.
    pub decode_ms_per_step: Option<f64>,
    pub decode_tokens_per_s: Option<f64>,
    pub decode_mj_per_token: Option<f64>,
    pub decode_net_mj_per_token: Option<f64>,
    /// One request (a prompt and its generated tokens): prefill share + new_tokens x decode.
    pub j_per_request: Option<f64>,
    pub j_per_request_net: Option<f64>,
    /// The prefill's part of a request's energy (0..1).
    pub prefill_energy_share: Option<f64>,
    pub kv_cache_bytes: u64,
    pub weight_bytes: u64,
    pub fidelity: Option<GenerateFidelity>,
    pub perplexity: Option<Perplexity>,
}

pub fn summarize(r: &CellRecord) -> Option<GenerateSummary> {
    let g = r.generate.as_ref()?;
    let measured = r.status == CellStatus::Ok;
    let batch = r.cell.batch_size;
    // Prefill windows per prompt token: loops x (batch x prompt_len) tokens.
    let prefill = window_stats(&g.prefill_windows, batch * g.prompt_len, r.idle_power_w);
    // Decode windows are per step already: loops x batch tokens.
    let decode = window_stats(&r.windows, batch, r.idle_power_w);
    let request = |prefill_mj: Option<f64>, token_mj: Option<f64>| {
        Some((prefill_mj? * g.prompt_len as f64 + token_mj? * g.new_tokens as f64) / 1e3)
    };
    let j_per_request = request(
        prefill.energy_per_inference_mj,
        decode.energy_per_inference_mj,
    );
    let share = prefill
        .energy_per_inference_mj
        .zip(j_per_request)
        .filter(|(_, j)| *j > 0.0)
        .map(|(p, j)| p * g.prompt_len as f64 / 1e3 / j);
    let ms = |v: Option<f64>| v.filter(|_| measured);
    Some(GenerateSummary {
        prompt_len: g.prompt_len,
        new_tokens: g.new_tokens,
        prefill_ms: ms(prefill.latency_median_ms),
        prefill_ci_low_ms: prefill.latency_ci.map(|c| c.0),
        prefill_ci_high_ms: prefill.latency_ci.map(|c| c.1),
        prefill_mj_per_prompt_token: prefill.energy_per_inference_mj,
        prefill_net_mj_per_prompt_token: prefill.energy_net_per_inference_mj,
        decode_ms_per_step: ms(decode.latency_median_ms),
        decode_tokens_per_s: ms(decode.latency_median_ms).map(|m| batch as f64 * 1e3 / m),
        decode_mj_per_token: decode.energy_per_inference_mj,
        decode_net_mj_per_token: decode.energy_net_per_inference_mj,
        j_per_request,
        j_per_request_net: request(
            prefill.energy_net_per_inference_mj,
            decode.energy_net_per_inference_mj,
        ),
        prefill_energy_share: share,
        kv_cache_bytes: g.kv_cache_bytes,
        weight_bytes: g.weight_bytes,
        fidelity: g.fidelity.clone(),
        perplexity: g.perplexity.clone(),
    })
}
