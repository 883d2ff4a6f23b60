//! Every candle-transformers decoder the runner measures: one table entry each, naming the
//! experiment file's architecture, the config.json `model_type` values it reads, and one of the
//! crate's calling conventions (each implemented once, in `crate_run.rs`). A new architecture
//! whose forward fits a convention is one entry here plus its tiny config.
//!
//! Left out, each for a reason a user can check in the crate's source: stable_lm (its Model is
//! not Clone, so a decode window cannot be rewound to the same context), yi, mpt and chatglm
//! (their Config has no serde Deserialize: no config.json can be read), bigcode and deepseek2
//! (no Clone), glm4 (glm4_new's prefill of two prompts fails in 0.11.1: "shape mismatch in
//! matmul, lhs: [1, 4, 5, 5], rhs: [2, 4, 5, 16]" on its tiny config), falcon (its multi-query
//! attention broadcasts one sequence's keys to the whole batch: "cannot broadcast [2, 5, 16] to
//! [8, 5, 16]" for two prompts), mamba, rwkv and
//! recurrent_gemma (recurrent state, no KV cache: another workload).

use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;
use candle_transformers::models as m;

use super::crate_run::{External, Forward, NoOffset, Offset};

/// How the crate's forward is called (the record names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// `forward(&mut self, ids, seqlen_offset)`, the KV cache inside the model.
    Offset,
    /// `forward(&self, ids, index_pos, &mut Cache)`: llama and granite.
    ExternalCache,
    /// `forward(&mut self, ids)`, the model counting its own position: phi.
    NoOffset,
}

impl Convention {
    pub fn describe(self) -> &'static str {
        match self {
            Convention::Offset => "forward(ids, seqlen_offset), KV cache inside the model",
            Convention::ExternalCache => {
                "forward(ids, index_pos, &mut Cache), an external KV cache"
            }
            Convention::NoOffset => "forward(ids), the model tracking its own position",
        }
    }
}

type Build = fn(&str, VarBuilder) -> candle_core::Result<Box<dyn Forward>>;
type Check = fn(&str) -> Result<()>;

pub struct Entry {
    /// The experiment file's `architecture`.
    pub name: &'static str,
    /// config.json `model_type` values this entry reads (the first names its tiny preset).
    pub model_types: &'static [&'static str],
    pub convention: Convention,
    /// Parses a config.json with the crate's own Config type.
    pub check_config: Check,
    /// The crate's model on a VarBuilder, behind the convention's adapter.
    pub build: Build,
    /// The keys of this architecture's config.json beyond the tiny base (presets.rs).
    pub tiny: &'static str,
    /// How the crate keeps its KV cache, for the record.
    pub kv_cache: &'static str,
}

/// Most of the crate's models: the cache grows by one token per step.
const CAT_CACHE: &str =
    "grows by Tensor::cat every step (a new allocation and a copy of the cache per token)";

fn parse<C: serde::de::DeserializeOwned>(json: &str) -> candle_core::Result<C> {
    serde_json::from_str(json).map_err(|e| candle_core::Error::Msg(format!("config.json: {e}")))
}

/// An entry whose model is `$model::new(&cfg, vb)` (or `new(false, &cfg, vb)` for the
/// flash-attention-flag constructors) and `forward(&mut self, ids, offset)`.
macro_rules! offset {
    ($name:literal, [$($mt:literal),+], $config:ty, $model:ty, $new:expr, $tiny:literal) => {
        Entry {
            name: $name,
            model_types: &[$($mt),+],
            convention: Convention::Offset,
            check_config: |json| Ok(parse::<$config>(json).map(|_| ())?),
            build: |json, vb| {
                let cfg: $config = parse(json)?;
                let new: fn(&$config, VarBuilder) -> candle_core::Result<$model> = $new;
                Ok(Box::new(Offset {
                    model: new(&cfg, vb)?,
                    forward: |model: &mut $model, ids: &Tensor, offset: usize| {
                        model.forward(ids, offset)
                    },
                }))
            },
            tiny: $tiny,
            kv_cache: CAT_CACHE,
        }
    };
}

pub const ENTRIES: &[Entry] = &[
    Entry {
        name: "llama",
        model_types: &["llama"],
        convention: Convention::ExternalCache,
        check_config: |json| Ok(parse::<m::llama::LlamaConfig>(json).map(|_| ())?),
        build: |json, vb| {
            let cfg = parse::<m::llama::LlamaConfig>(json)?.into_config(false);
            let cache = m::llama::Cache::new(true, vb.dtype(), &cfg, vb.device())?;
            Ok(Box::new(External::new(
                m::llama::Llama::load(vb, &cfg)?,
                cache,
                |model, ids, offset, cache| model.forward(ids, offset, cache),
            )))
        },
        tiny: r#"{"bos_token_id": 1, "eos_token_id": 2}"#,
        kv_cache: CAT_CACHE,
    },
    Entry {
        name: "granite",
        model_types: &["granite"],
        convention: Convention::ExternalCache,
        check_config: |json| Ok(parse::<m::granite::GraniteConfig>(json).map(|_| ())?),
        build: |json, vb| {
            let cfg = parse::<m::granite::GraniteConfig>(json)?.into_config(false);
            let cache = m::granite::Cache::new(true, vb.dtype(), &cfg, vb.device())?;
            Ok(Box::new(External::new(
                m::granite::Granite::load(vb, &cfg)?,
                cache,
                |model, ids, offset, cache| model.forward(ids, offset, cache),
            )))
        },
        tiny: r#"{}"#,
        kv_cache: CAT_CACHE,
    },
    offset!(
        "mistral",
        ["mistral"],
        m::mistral::Config,
        m::mistral::Model,
        |c, vb| m::mistral::Model::new(c, vb),
        r#"{"hidden_act": "silu", "sliding_window": 4096}"#
    ),
    offset!(
        "qwen2",
        ["qwen2"],
        m::qwen2::Config,
        m::qwen2::ModelForCausalLM,
        |c, vb| m::qwen2::ModelForCausalLM::new(c, vb),
        r#"{"sliding_window": 512, "max_window_layers": 2, "use_sliding_window": false,
            "hidden_act": "silu", "rms_norm_eps": 1e-06}"#
    ),
    offset!(
        "qwen3",
        ["qwen3"],
        m::qwen3::Config,
        m::qwen3::ModelForCausalLM,
        |c, vb| m::qwen3::ModelForCausalLM::new(c, vb),
        r#"{"head_dim": 16, "attention_bias": false, "sliding_window": null,
            "max_window_layers": 2, "use_sliding_window": false, "hidden_act": "silu"}"#
    ),
    offset!(
        "qwen2_moe",
        ["qwen2_moe"],
        m::qwen2_moe::Config,
        m::qwen2_moe::Model,
        |c, vb| m::qwen2_moe::Model::new(c, vb),
        r#"{"sliding_window": 512, "max_window_layers": 2, "use_sliding_window": false,
            "hidden_act": "silu", "decoder_sparse_step": 1, "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 64, "num_experts_per_tok": 2,
            "num_experts": 4, "norm_topk_prob": false}"#
    ),
    offset!(
        "qwen3_moe",
        ["qwen3_moe"],
        m::qwen3_moe::Config,
        m::qwen3_moe::ModelForCausalLM,
        |c, vb| m::qwen3_moe::ModelForCausalLM::new(c, vb),
        r#"{"head_dim": 16, "attention_bias": false, "sliding_window": null,
            "max_window_layers": 2, "use_sliding_window": false, "hidden_act": "silu",
            "decoder_sparse_step": 1, "moe_intermediate_size": 32, "num_experts_per_tok": 2,
            "num_experts": 4, "norm_topk_prob": true}"#
    ),
    offset!(
        "mixtral",
        ["mixtral"],
        m::mixtral::Config,
        m::mixtral::Model,
        |c, vb| m::mixtral::Model::new(c, vb),
        r#"{"hidden_act": "silu", "sliding_window": 4096, "num_experts_per_tok": 2,
            "num_local_experts": 4, "use_flash_attn": false}"#
    ),
    offset!(
        "phi3",
        ["phi3"],
        m::phi3::Config,
        m::phi3::Model,
        |c, vb| m::phi3::Model::new(c, vb),
        r#"{"hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
            "rope_scaling": null}"#
    ),
    offset!(
        "gemma",
        ["gemma"],
        m::gemma::Config,
        m::gemma::Model,
        |c, vb| m::gemma::Model::new(false, c, vb),
        r#"{"attention_bias": false, "head_dim": 16, "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": null}"#
    ),
    offset!(
        "gemma2",
        ["gemma2"],
        m::gemma2::Config,
        m::gemma2::Model,
        |c, vb| m::gemma2::Model::new(false, c, vb),
        r#"{"attention_bias": false, "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh",
            "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
            "query_pre_attn_scalar": 16, "sliding_window": 4096}"#
    ),
    Entry {
        // Its cache is candle-nn's: written in place, so a clone shares storage; a rewound clone
        // rewrites the same positions before it reads them (the zoo test checks it repeats).
        kv_cache: "candle-nn KvCache on global layers and RotatingKvCache on sliding-window layers: preallocated, written in place by slice_set",
        ..offset!(
        "gemma3",
        ["gemma3_text", "gemma3"],
        m::gemma3::Config,
        m::gemma3::Model,
        |c, vb| m::gemma3::Model::new(false, c, vb),
        r#"{"attention_bias": false, "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh",
            "rope_local_base_freq": 10000.0, "final_logit_softcapping": null,
            "attn_logit_softcapping": null, "query_pre_attn_scalar": 16,
            "sliding_window": 512, "sliding_window_pattern": 6}"#
        )
    },
    offset!(
        "olmo",
        ["olmo"],
        m::olmo::Config,
        m::olmo::Model,
        |c, vb| m::olmo::Model::new(c, vb),
        r#"{"attention_bias": false, "hidden_act": "silu", "clip_qkv": null}"#
    ),
    offset!(
        "olmo2",
        ["olmo2"],
        m::olmo2::Config,
        m::olmo2::Model,
        |c, vb| m::olmo2::Model::new(c, vb),
        r#"{"attention_bias": false, "hidden_act": "silu", "clip_qkv": null}"#
    ),
    offset!(
        "starcoder2",
        ["starcoder2"],
        m::starcoder2::Config,
        m::starcoder2::Model,
        |c, vb| m::starcoder2::Model::new(c, vb),
        r#"{"hidden_act": "gelu_pytorch_tanh", "norm_epsilon": 1e-05, "use_bias": true,
            "sliding_window": 4096}"#
    ),
    offset!(
        "helium",
        ["helium"],
        m::helium::Config,
        m::helium::Model,
        |c, vb| m::helium::Model::new(c, vb),
        r#"{"attention_bias": false, "bos_token_id": 1, "eos_token_id": 2, "head_dim": 16,
            "hidden_act": "silu", "mlp_bias": false}"#
    ),
    Entry {
        name: "phi",
        model_types: &["phi"],
        convention: Convention::NoOffset,
        check_config: |json| Ok(parse::<m::phi::Config>(json).map(|_| ())?),
        build: |json, vb| {
            let cfg = parse::<m::phi::Config>(json)?;
            Ok(Box::new(NoOffset {
                model: m::phi::Model::new(&cfg, vb)?,
                forward: |model: &mut m::phi::Model, ids: &Tensor| model.forward(ids),
            }))
        },
        tiny: r#"{"hidden_act": "gelu_new", "layer_norm_eps": 1e-05,
            "partial_rotary_factor": 0.5, "qk_layernorm": false}"#,
        kv_cache: CAT_CACHE,
    },
];

pub fn lookup(name: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.name == name)
}

/// The entry that reads a config.json of this `model_type`.
pub fn by_model_type(model_type: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.model_types.contains(&model_type))
}

pub fn names() -> Vec<&'static str> {
    ENTRIES.iter().map(|e| e.name).collect()
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::config::Precision;
    use crate::model::decoder::DecoderSpec;
    use crate::model::workload::greedy;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Every entry on its tiny config with random weights, on the CPU: a prefill of two prompts,
    /// then decode steps with the KV cache, each step's logits equal to the same model re-fed the
    /// whole sequence without a cache; and a rewound cache repeats the same steps exactly.
    #[test]
    fn every_zoo_entry_prefills_and_steps_and_its_cache_matches_no_cache() {
        let device = Device::Cpu;
        for entry in ENTRIES {
            let spec = DecoderSpec::resolve(
                entry.name,
                Some(&format!("{}-tiny", entry.name)),
                None,
                7,
                crate::config::Implementation::Crate,
            )
            .unwrap_or_else(|e| panic!("{}: {e:#}", entry.name));
            let mut model = spec
                .load(Precision::Fp32, &device)
                .unwrap_or_else(|e| panic!("{}: {e:#}", entry.name));
            let prompt =
                Tensor::from_vec((1u32..=10).collect::<Vec<_>>(), (2, 5), &device).unwrap();
            let logits = model.prefill(&prompt).unwrap();
            assert_eq!(logits.dims(), &[2, 32000], "{}", entry.name);
            let mut sequence = prompt.clone();
            let mut tokens = greedy(&logits).unwrap();
            model.mark().unwrap();
            let mut cached_steps = Vec::new();
            for step in 0..3 {
                sequence = Tensor::cat(&[&sequence, &tokens], 1).unwrap();
                let cached = model.step(&tokens).unwrap();
                assert_eq!(model.position(), 6 + step, "{}", entry.name);
                let mut fresh = spec.load(Precision::Fp32, &device).unwrap();
                let uncached = fresh.prefill(&sequence).unwrap();
                let scale = uncached
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    .max(1e-3);
                let diff = max_abs_diff(&cached, &uncached);
                assert!(
                    diff <= 1e-3 * scale,
                    "{} step {step}: cached logits differ from uncached by {diff} (scale {scale})",
                    entry.name
                );
                tokens = greedy(&cached).unwrap();
                cached_steps.push(cached);
            }
            model.rewind().unwrap();
            assert_eq!(model.position(), 5);
            let mut tokens = greedy(&logits).unwrap();
            for (step, before) in cached_steps.iter().enumerate() {
                let again = model.step(&tokens).unwrap();
                assert_eq!(
                    max_abs_diff(&again, before),
                    0.0,
                    "{} step {step} after rewind",
                    entry.name
                );
                tokens = greedy(&again).unwrap();
            }
            model.reset().unwrap();
            assert_eq!(model.position(), 0);
        }
    }
}
