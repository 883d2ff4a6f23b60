//! A decoder's shapes as the runner needs them beside the crate's own Config: to bound what a
//! config.json may say before anything is allocated, to check a prompt against the context, to
//! estimate memory (weights + KV cache) and the KV cache's size for the record. Read from
//! config.json with the key names Hugging Face configs use (and their GPT-style aliases), or
//! from a GGUF file's metadata.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bounds no real decoder comes near; a config.json past them is corrupt or hostile, and would
/// otherwise ask for terabytes before any check speaks.
const MAX_HIDDEN: u64 = 1 << 17;
const MAX_LAYERS: u64 = 1 << 10;
const MAX_HEADS: u64 = 1 << 10;
const MAX_VOCAB: u64 = 1 << 23;
const MAX_INTERMEDIATE: u64 = 1 << 20;
const MAX_POSITIONS: u64 = 1 << 24;
const MAX_EXPERTS: u64 = 1 << 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shapes {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub vocab: usize,
    /// The longest context the model is built for (`max_position_embeddings`).
    pub max_positions: usize,
    /// The output projection shares the embedding matrix.
    pub tied: bool,
    /// Experts per MoE layer (1 for a dense MLP).
    pub experts: usize,
    /// The standard deviation random weights are drawn with (`initializer_range`, else 0.02).
    pub initializer_range: f64,
}

impl Shapes {
    /// From a config.json's text; `what` names it in errors (a path, or a preset's name).
    pub fn from_config_json(text: &str, what: &str) -> Result<Self> {
        let cfg: Value = serde_json::from_str(text).with_context(|| format!("parsing {what}"))?;
        let get = |keys: &[&str]| -> Option<(String, u64)> {
            keys.iter().find_map(|k| {
                let v = cfg.get(*k)?;
                Some((k.to_string(), v.as_u64()?))
            })
        };
        let need = |keys: &[&str], max: u64| -> Result<usize> {
            let Some((key, v)) = get(keys) else {
                bail!(
                    "{what}: missing {} (is this a decoder's config.json?)",
                    keys.join(" / ")
                );
            };
            check(what, &key, v, max)
        };
        let hidden = need(&["hidden_size", "n_embd", "d_model"], MAX_HIDDEN)?;
        let layers = need(&["num_hidden_layers", "n_layer", "num_layers"], MAX_LAYERS)?;
        let heads = need(&["num_attention_heads", "n_head"], MAX_HEADS)?;
        let kv_heads = match get(&["num_key_value_heads", "n_head_kv", "multi_query_group_num"]) {
            Some((key, v)) => check(what, &key, v, MAX_HEADS)?,
            None if cfg.get("multi_query").and_then(Value::as_bool) == Some(true) => 1,
            None => heads,
        };
        let head_dim = match get(&["head_dim", "kv_channels"]) {
            Some((key, v)) => check(what, &key, v, MAX_HIDDEN)?,
            None => {
                if hidden % heads != 0 {
                    bail!("{what}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}");
                }
                hidden / heads
            }
        };
        if heads % kv_heads != 0 {
            bail!("{what}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}");
        }
        let intermediate = match get(&["intermediate_size", "ffn_hidden_size", "n_inner"]) {
            Some((key, v)) => check(what, &key, v, MAX_INTERMEDIATE)?,
            None => 4 * hidden,
        };
        let vocab = need(&["vocab_size", "padded_vocab_size"], MAX_VOCAB)?;
        let max_positions = match get(&["max_position_embeddings", "n_positions", "seq_length"]) {
            Some((key, v)) => check(what, &key, v, MAX_POSITIONS)?,
            // Gemma's config types default to 4096 when the key is absent.
            None => 4096,
        };
        let experts = match get(&["num_local_experts", "num_experts"]) {
            Some((key, v)) => check(what, &key, v, MAX_EXPERTS)?,
            None => 1,
        };
        let tied = cfg
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let initializer_range = cfg
            .get("initializer_range")
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite() && *v > 0.0 && *v < 1.0)
            .unwrap_or(0.02);
        Ok(Self {
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim,
            intermediate,
            vocab,
            max_positions,
            tied,
            experts,
            initializer_range,
        })
    }

    /// Parameters, counted from the shapes (embeddings, attention and gated MLP per layer, each
    /// expert counted, the output projection unless tied). Norms and biases are left out: under
    /// 0.1 % of any model here. An estimate for memory, not a published figure.
    pub fn parameters(&self) -> u64 {
        let (h, hd) = (self.hidden as u64, self.head_dim as u64);
        let attention = h * hd * (2 * self.heads as u64 + 2 * self.kv_heads as u64);
        let mlp = 3 * h * self.intermediate as u64 * self.experts as u64;
        let embeddings = self.vocab as u64 * h;
        let head = if self.tied { 0 } else { embeddings };
        embeddings + head + self.layers as u64 * (attention + mlp)
    }

    /// Bytes of the KV cache for `batch` sequences of `context` tokens, `bytes` per value.
    pub fn kv_cache_bytes(&self, batch: usize, context: usize, bytes: usize) -> u64 {
        2 * self.layers as u64
            * self.kv_heads as u64
            * self.head_dim as u64
            * context as u64
            * batch as u64
            * bytes as u64
    }

    /// Floating-point operations of one prefill of `batch` prompts of `prompt` tokens: every
    /// weight multiplied once per token (2 FLOPs a multiply-add), and causal attention (scores
    /// and their product with the values over half the square on average).
    pub fn prefill_flops(&self, batch: usize, prompt: usize) -> f64 {
        let tokens = (batch * prompt) as f64;
        let attention = 2.0
            * self.layers as f64
            * batch as f64
            * (self.heads * self.head_dim) as f64
            * (prompt * prompt) as f64;
        2.0 * self.parameters() as f64 * tokens + attention
    }

    /// Floating-point operations of `steps` decode steps of `batch` sequences after `prompt`
    /// tokens: the weights once per token, attention over the growing context.
    pub fn decode_flops(&self, batch: usize, prompt: usize, steps: usize) -> f64 {
        let mean_context = prompt as f64 + steps as f64 / 2.0;
        let per_token = 2.0 * self.parameters() as f64
            + 4.0 * self.layers as f64 * (self.heads * self.head_dim) as f64 * mean_context;
        per_token * (batch * steps) as f64
    }

    /// The largest transient of an eager prefill: the attention scores of one layer,
    /// (batch, heads, prompt, context) in f32 (softmax accumulates in f32), plus the logits.
    pub fn prefill_transient_bytes(&self, batch: usize, prompt: usize, context: usize) -> u64 {
        let scores = batch as u64 * self.heads as u64 * prompt as u64 * context as u64 * 4;
        let mlp = batch as u64 * prompt as u64 * self.intermediate as u64 * 4 * 3;
        scores + mlp + batch as u64 * self.vocab as u64 * 4
    }
}

fn check(what: &str, key: &str, v: u64, max: u64) -> Result<usize> {
    if v == 0 {
        bail!("{what}: {key} = 0: a decoder needs at least one");
    }
    if v > max {
        bail!("{what}: {key} = {v} is beyond any real decoder (at most {max}): a corrupt or mistyped config.json");
    }
    Ok(v as usize)
}

/// Bytes as a person reads them: "512 B", "34.1 GB" (decimal units, as GPU memory is quoted).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=999 => format!("{bytes} B"),
        1_000..=999_999 => format!("{:.1} kB", b / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_come_from_the_keys_configs_use_and_absurd_sizes_are_refused() {
        let smol = r#"{"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
            "num_key_value_heads": 3, "intermediate_size": 1536, "vocab_size": 49152,
            "max_position_embeddings": 8192, "tie_word_embeddings": true}"#;
        let s = Shapes::from_config_json(smol, "smol").unwrap();
        assert_eq!((s.head_dim, s.kv_heads, s.tied), (64, 3, true));
        // SmolLM2-135M: 134,515,008 parameters published, 35,136 of them in its norms.
        assert_eq!(s.parameters(), 134_515_008 - 35_136);
        assert_eq!(s.kv_cache_bytes(1, 1000, 2), 2 * 30 * 3 * 64 * 1000 * 2);
        let absurd = smol.replace(
            "\"num_hidden_layers\": 30",
            "\"num_hidden_layers\": 1000000",
        );
        let e = Shapes::from_config_json(&absurd, "x/config.json").unwrap_err();
        assert!(
            format!("{e:#}").contains("num_hidden_layers = 1000000 is beyond any real decoder"),
            "{e:#}"
        );
        let odd = smol.replace("\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4");
        assert!(Shapes::from_config_json(&odd, "x").is_err());
        assert!(Shapes::from_config_json("{}", "x").is_err());
        assert_eq!(human_bytes(34_100_000_000), "34.1 GB");
    }
}
