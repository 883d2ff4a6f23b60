//! Decoder presets: the config.json of published checkpoints, as text, read by
//! candle-transformers' own Config types exactly as a downloaded config.json would be. Random
//! weights with these shapes measure what the real model costs (LLM-Perf measures random
//! weights too) without any download. Every zoo entry also has a tiny preset (`<entry>-tiny`,
//! 2 layers of width 64) for tests and smoke runs.

use serde_json::Value;

use super::zoo;

/// (name, zoo entry, config.json) of the published checkpoints.
const PUBLISHED: [(&str, &str, &str); 10] = [
    (
        // HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0).
        "smollm2-135m",
        "llama",
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05, "rope_theta": 100000.0, "tie_word_embeddings": true,
        "bos_token_id": 1, "eos_token_id": 2, "initializer_range": 0.041666666666666664}"#,
    ),
    (
        // HuggingFaceTB/SmolLM2-360M-Instruct.
        "smollm2-360m",
        "llama",
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 960,
        "intermediate_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 15,
        "num_key_value_heads": 5, "vocab_size": 49152, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05, "rope_theta": 100000.0, "tie_word_embeddings": true,
        "bos_token_id": 1, "eos_token_id": 2, "initializer_range": 0.02}"#,
    ),
    (
        // Qwen/Qwen2.5-0.5B-Instruct.
        "qwen2.5-0.5b",
        "qwen2",
        r#"{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
        "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
        "sliding_window": 32768, "max_window_layers": 21, "use_sliding_window": false,
        "tie_word_embeddings": true, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
        "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151645,
        "initializer_range": 0.02}"#,
    ),
    (
        // Qwen/Qwen3-0.6B.
        "qwen3-0.6b",
        "qwen3",
        r#"{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
        "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
        "num_key_value_heads": 8, "head_dim": 128, "attention_bias": false,
        "vocab_size": 151936, "max_position_embeddings": 40960, "sliding_window": null,
        "max_window_layers": 28, "use_sliding_window": false, "tie_word_embeddings": true,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "hidden_act": "silu",
        "initializer_range": 0.02}"#,
    ),
    (
        // meta-llama/Llama-3.2-1B-Instruct.
        "llama-3.2-1b",
        "llama",
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
        "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": true,
        "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "initializer_range": 0.02}"#,
    ),
    (
        // meta-llama/Llama-3.2-3B-Instruct.
        "llama-3.2-3b",
        "llama",
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 3072,
        "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": true,
        "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "initializer_range": 0.02}"#,
    ),
    (
        // meta-llama/Llama-3.1-8B-Instruct.
        "llama-3.1-8b",
        "llama",
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": false,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "initializer_range": 0.02}"#,
    ),
    (
        // mistralai/Mistral-7B-v0.1.
        "mistral-7b",
        "mistral",
        r#"{"architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
        "sliding_window": 4096, "hidden_act": "silu", "tie_word_embeddings": false,
        "initializer_range": 0.02}"#,
    ),
    (
        // microsoft/Phi-3-mini-4k-instruct.
        "phi-3-mini-4k",
        "phi3",
        r#"{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 3072,
        "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 32, "vocab_size": 32064, "max_position_embeddings": 4096,
        "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "rope_scaling": null, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 32000, "tie_word_embeddings": false,
        "initializer_range": 0.02}"#,
    ),
    (
        // google/gemma-2-2b.
        "gemma-2-2b",
        "gemma2",
        r#"{"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 2304,
        "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 256000,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "attention_bias": false, "hidden_activation": "gelu_pytorch_tanh",
        "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
        "query_pre_attn_scalar": 256, "sliding_window": 4096, "tie_word_embeddings": true,
        "initializer_range": 0.02}"#,
    ),
];

/// The keys every tiny preset shares: 2 layers of width 64, 4 query heads over 2 KV heads, a
/// 32,000-token vocabulary (room for the BERT vocabulary the test datasets are tokenized with).
const TINY_BASE: &str = r#"{"hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 32000, "max_position_embeddings": 512, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "tie_word_embeddings": false, "initializer_range": 0.02}"#;

/// A preset: the zoo entry it builds and its config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderPreset {
    pub name: String,
    pub architecture: &'static str,
    pub config_json: String,
}

/// The preset of this name, for this architecture.
pub fn lookup(architecture: &str, name: &str) -> Option<DecoderPreset> {
    all()
        .into_iter()
        .find(|p| p.name == name && p.architecture == architecture)
}

/// Every preset's name for an architecture, for error messages.
pub fn names(architecture: &str) -> Vec<String> {
    all()
        .into_iter()
        .filter(|p| p.architecture == architecture)
        .map(|p| p.name)
        .collect()
}

pub fn all() -> Vec<DecoderPreset> {
    let mut out: Vec<DecoderPreset> = PUBLISHED
        .iter()
        .map(|(name, arch, json)| DecoderPreset {
            name: name.to_string(),
            architecture: arch,
            config_json: json.to_string(),
        })
        .collect();
    for entry in zoo::ENTRIES {
        out.push(DecoderPreset {
            name: format!("{}-tiny", entry.name),
            architecture: entry.name,
            config_json: tiny_config(entry),
        });
    }
    out
}

/// The tiny config of an entry: the shared keys, its model_type, and its own keys on top.
fn tiny_config(entry: &zoo::Entry) -> String {
    let mut cfg: Value = serde_json::from_str(TINY_BASE).expect("the tiny base is JSON");
    let extra: Value = serde_json::from_str(entry.tiny).expect("a zoo entry's tiny keys are JSON");
    let obj = cfg.as_object_mut().expect("an object");
    obj.insert("model_type".into(), Value::from(entry.model_types[0]));
    for (k, v) in extra.as_object().expect("an object") {
        obj.insert(k.clone(), v.clone());
    }
    serde_json::to_string_pretty(&cfg).expect("serializes")
}

impl super::DecoderSpec {
    /// A shallow cut (`models.NAME.layers`): the preset's first `layers` layers, its widths,
    /// embeddings and head as published. The config.json text the model is built from says so
    /// (and so the cell's id), and the preset's name carries the cut for the record.
    pub fn cut_layers(&mut self, layers: i64) -> anyhow::Result<()> {
        let super::DecoderSource::Random { .. } = self.source else {
            anyhow::bail!(
                "a cut of a checkpoint's layers is not the model it stores: leave the key out"
            );
        };
        let total = self.shapes.layers;
        let Some(layers) = usize::try_from(layers)
            .ok()
            .filter(|n| (1..=total).contains(n))
        else {
            anyhow::bail!(
                "{layers} layers: preset {} has {total}; choose 1 to {total} (its first N), or leave the key out",
                self.preset.as_deref().unwrap_or("?")
            );
        };
        let text = self
            .config_json
            .as_deref()
            .expect("random weights have a preset's config.json");
        let mut config: Value = serde_json::from_str(text)?;
        config["num_hidden_layers"] = Value::from(layers);
        // Qwen2's sliding-window layers count from the top: kept inside the cut.
        if let Some(w) = config.get("max_window_layers").and_then(Value::as_u64) {
            config["max_window_layers"] = Value::from(w.min(layers as u64));
        }
        let text = serde_json::to_string(&config)?;
        self.shapes = super::Shapes::from_config_json(&text, "the cut preset")?;
        self.config_json = Some(text);
        if layers < total {
            self.preset = self
                .preset
                .take()
                .map(|p| format!("{p} (first {layers} of {total} layers)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decoder::shapes::Shapes;

    #[test]
    fn every_preset_reads_as_its_entry_and_the_published_shapes_are_the_real_ones() {
        for p in all() {
            let entry = zoo::lookup(p.architecture).expect("a preset names a zoo entry");
            (entry.check_config)(&p.config_json)
                .unwrap_or_else(|e| panic!("preset {}: {e:#}", p.name));
            Shapes::from_config_json(&p.config_json, &p.name).unwrap();
        }
        let params = |name: &str, arch: &str| {
            let p = lookup(arch, name).unwrap();
            Shapes::from_config_json(&p.config_json, name)
                .unwrap()
                .parameters()
        };
        // Published counts (with norms and biases, which the estimate leaves out): SmolLM2-135M
        // 134.5 M, Qwen2.5-0.5B 494 M, Llama-3.2-1B 1.236 B, Llama-3.1-8B 8.03 B.
        let near = |got: u64, published: f64| (got as f64 / published - 1.0).abs() < 0.002;
        assert!(near(params("smollm2-135m", "llama"), 134.515e6));
        assert!(near(params("qwen2.5-0.5b", "qwen2"), 494.03e6));
        assert!(near(params("llama-3.2-1b", "llama"), 1235.8e6));
        assert!(near(params("llama-3.1-8b", "llama"), 8030.3e6));
        assert!(lookup("qwen2", "smollm2-135m").is_none());
    }
}
