//! The Llama family's config.json, read once for all four architectures the runner's own decoder
//! runs (llama, mistral, qwen2, qwen3): the keys they share, and what each adds (qwen2's Q/K/V
//! biases, qwen3's per-head Q/K norms and explicit head_dim, llama 3's rope scaling). The
//! candle-transformers Config types stay the check that a config.json is one of theirs
//! (`zoo::Entry::check_config`); this reads the same keys the same way.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The architectures that have the runner's own implementation.
pub const OWN_ARCHITECTURES: [&str; 4] = ["llama", "mistral", "qwen2", "qwen3"];

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    sliding_window: Option<usize>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}

/// Llama 3's frequency-dependent rope scaling (`rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// One Llama-family model's shapes and numerics.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyConfig {
    pub architecture: &'static str,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    pub rope_scaling: Option<Llama3Scaling>,
    pub tie_word_embeddings: bool,
    /// Biases on the Q, K and V projections (qwen2 always; others by `attention_bias`).
    pub qkv_bias: bool,
    /// RMSNorm of each head's queries and keys before the rotary embedding (qwen3).
    pub qk_norm: bool,
    /// Mistral's sliding window, where one applies: contexts beyond it are refused (the static
    /// cache attends to every position).
    pub sliding_window: Option<usize>,
}

impl FamilyConfig {
    /// `architecture` is the zoo entry's name; `json` its config.json.
    pub fn from_json(architecture: &str, json: &str) -> Result<Self> {
        let Some(&architecture) = OWN_ARCHITECTURES.iter().find(|a| **a == architecture) else {
            bail!(
                "architecture {architecture:?} has no runner's own implementation (those with one: {}); use implementation = \"crate\"",
                OWN_ARCHITECTURES.join(", ")
            );
        };
        let raw: Raw = serde_json::from_str(json).context("config.json")?;
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "silu" {
                bail!("config.json: hidden_act {act:?}: the runner's own Llama-family decoder computes SwiGLU (silu)");
            }
        }
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            bail!("config.json: {heads} attention heads are not a multiple of {kv_heads} KV heads");
        }
        // candle-transformers' llama and qwen2 derive head_dim from the width; mistral and
        // qwen3 read the key when it is there.
        let head_dim = match architecture {
            "mistral" | "qwen3" => raw.head_dim.unwrap_or(raw.hidden_size / heads),
            _ => raw.hidden_size / heads,
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            bail!("config.json: head_dim {head_dim} must be even and positive (rotary embeddings rotate pairs)");
        }
        let rope_scaling = match (&raw.rope_scaling, architecture) {
            (Some(v), "llama") if !v.is_null() => Some(llama3_scaling(v)?),
            _ => None,
        };
        let sliding_window = match architecture {
            "mistral" => raw.sliding_window,
            "qwen2" | "qwen3" if raw.use_sliding_window == Some(true) => raw.sliding_window,
            _ => None,
        };
        Ok(Self {
            architecture,
            hidden: raw.hidden_size,
            intermediate: raw.intermediate_size,
            layers: raw.num_hidden_layers,
            heads,
            kv_heads,
            head_dim,
            vocab: raw.vocab_size,
            max_positions: raw.max_position_embeddings,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta as f32,
            rope_scaling,
            tie_word_embeddings: raw.tie_word_embeddings,
            qkv_bias: architecture == "qwen2" || raw.attention_bias == Some(true),
            qk_norm: architecture == "qwen3",
            sliding_window,
        })
    }

    /// The rotary inverse frequencies, one per pair of a head's dimensions.
    pub fn inverse_frequencies(&self) -> Vec<f32> {
        let d = self.head_dim;
        let base: Vec<f32> = (0..d)
            .step_by(2)
            .map(|i| 1f32 / self.rope_theta.powf(i as f32 / d as f32))
            .collect();
        let Some(s) = self.rope_scaling else {
            return base;
        };
        // As candle-transformers' llama.rs (and Meta's reference) compute them.
        let original = s.original_max_position_embeddings as f32;
        let low_wavelen = original / s.low_freq_factor;
        let high_wavelen = original / s.high_freq_factor;
        base.into_iter()
            .map(|freq| {
                let wavelen = 2. * std::f32::consts::PI / freq;
                if wavelen < high_wavelen {
                    freq
                } else if wavelen > low_wavelen {
                    freq / s.factor
                } else {
                    let smooth = (original / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1. - smooth) * freq / s.factor + smooth * freq
                }
            })
            .collect()
    }
}

fn llama3_scaling(v: &serde_json::Value) -> Result<Llama3Scaling> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|t| t.as_str());
    if kind != Some("llama3") {
        bail!(
            "config.json: rope_scaling {v}: the runner's own llama reads rope_type \"llama3\" only"
        );
    }
    let f = |k: &str| -> Result<f64> {
        v.get(k)
            .and_then(|x| x.as_f64())
            .with_context(|| format!("config.json: rope_scaling.{k} is missing"))
    };
    Ok(Llama3Scaling {
        factor: f("factor")? as f32,
        low_freq_factor: f("low_freq_factor")? as f32,
        high_freq_factor: f("high_freq_factor")? as f32,
        original_max_position_embeddings: f("original_max_position_embeddings")? as usize,
    })
}
