//! Quantized at load: a crate decoder's linear layers (the attention's q, k, v and output
//! projections and the MLP's gate, up and down) quantized into candle QTensors when a cell loads
//! them, and run by candle-transformers' own quantized model of the architecture, built from a
//! GGUF written in memory with candle's gguf_file writer. So candle's quantized kernels run
//! (on CUDA: MMVQ for up to 8 rows, MMQ above), as they do for a .gguf file.
//!
//! The crate's quantized models compute everything else in f32: embeddings, norms, attention,
//! the KV cache and the output projection (kept f32 here, as llama.cpp keeps it above the
//! linears' format). The precisions that run are therefore the f32-elsewhere ones (`q8_0`,
//! `q4k`, ...); `q4k-bf16` (bf16 elsewhere) is refused rather than run as another.
//!
//! What runs where (candle-transformers 0.11.1), each limit refused by name:
//! - only `llama`: quantized_llama is the crate's one quantized model that is Clone (decode
//!   windows rewind a clone of the model and its KV cache); quantized_qwen2, quantized_phi3,
//!   quantized_qwen3 and the others are not;
//! - no `rope_scaling`: quantized_llama computes plain RoPE from `rope_theta`, so Llama 3.x's
//!   scaled frequencies would make it another model than the fp32 cells';
//! - batch 1: its forward slices the last position of each prompt into a (batch, hidden) view
//!   that is not contiguous for two prompts or more, which candle's quantized and cuBLAS matmuls
//!   refuse (the same limit as a .gguf file run as stored);
//! - every linear's input length a multiple of the format's block (32, or 256 for k-quants).

use std::io::Cursor;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::crate_run::{Forward, Offset};
use super::{DecoderSource, DecoderSpec};
use crate::config::{FloatPrecision, Precision, QuantFormat};
use crate::model::ggml_for;
use crate::model::weights::random::RandomBackend;
use candle_transformers::models::quantized_llama;

/// The crate model quantized-at-load cells run.
pub const CRATE_MODEL: &str = "quantized_llama";

/// The HF names of one layer's linears, their GGUF names, and whether GGUF permutes their rows
/// (q and k: llama.cpp's interleaved RoPE over the rows of HF's half-split one).
const LINEARS: [(&str, &str, Permute); 7] = [
    ("self_attn.q_proj", "attn_q", Permute::Heads),
    ("self_attn.k_proj", "attn_k", Permute::KvHeads),
    ("self_attn.v_proj", "attn_v", Permute::No),
    ("self_attn.o_proj", "attn_output", Permute::No),
    ("mlp.gate_proj", "ffn_gate", Permute::No),
    ("mlp.up_proj", "ffn_up", Permute::No),
    ("mlp.down_proj", "ffn_down", Permute::No),
];

#[derive(Clone, Copy, PartialEq)]
enum Permute {
    No,
    Heads,
    KvHeads,
}

/// Why `spec` cannot run `format` linears with `float` elsewhere, quantized at load.
pub fn refuses(spec: &DecoderSpec, format: QuantFormat, float: FloatPrecision) -> Option<String> {
    let name = Precision::Quantized(format, float).name();
    if spec.architecture != "llama" {
        return Some(format!(
            "{name} quantizes the linear layers at load and runs them through candle-transformers' quantized models, of which only {CRATE_MODEL} is Clone (a decode window rewinds a clone of the model and its KV cache): architecture {} needs the runner's own decoder (\"The Llama family as deployed\")",
            spec.architecture
        ));
    }
    if float != FloatPrecision::Fp32 {
        return Some(format!(
            "{name} means {} linears with {} elsewhere, but candle-transformers' {CRATE_MODEL} computes everything outside its quantized linears (embeddings, norms, attention, KV cache, output projection) in f32: use {} ({} linears, f32 elsewhere)",
            format.name(),
            float.precision().name(),
            Precision::Quantized(format, FloatPrecision::Fp32).name(),
            format.name()
        ));
    }
    let json = spec.config_json.as_deref().unwrap_or("{}");
    let config: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    if config.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Some(format!(
            "{name}: this model's config.json scales RoPE (rope_scaling), which candle-transformers' {CRATE_MODEL} does not apply (it computes plain RoPE from rope_theta): it would run another model than this one's fp32 and bf16 cells"
        ));
    }
    let s = &spec.shapes;
    if s.heads * s.head_dim != s.hidden {
        return Some(format!(
            "{name}: heads x head_dim ({} x {}) is not hidden_size {}, which {CRATE_MODEL} assumes",
            s.heads, s.head_dim, s.hidden
        ));
    }
    let block = format.block_size();
    for (what, n) in [
        ("hidden_size", s.hidden),
        ("intermediate_size", s.intermediate),
    ] {
        if n % block != 0 {
            return Some(format!(
                "{name}: {what} {n} is not a multiple of {}'s {block}-value blocks (each linear's input is quantized in whole blocks): use a format with 32-value blocks (q8_0, q4_0, ...)",
                format.name()
            ));
        }
    }
    None
}

/// Why a quantized-at-load cell cannot run `batch` prompts.
pub fn refuses_batch(format: QuantFormat, batch: usize) -> Option<String> {
    (batch > 1).then(|| format!(
        "batch {batch} in {}: candle-transformers' {CRATE_MODEL} slices the last position of each prompt into a (batch, hidden) view that is not contiguous for two prompts or more, which candle's quantized matmul (and cuBLAS for the f32 output projection) refuse; quantized-at-load cells run at batch 1",
        format.name()
    ))
}

/// Bytes of the weights as the cell holds them: the linears in `format`, the rest in f32.
pub fn weight_bytes(spec: &DecoderSpec, format: QuantFormat) -> u64 {
    let s = &spec.shapes;
    let (h, q, kv, i) = (
        s.hidden as u64,
        (s.heads * s.head_dim) as u64,
        (s.kv_heads * s.head_dim) as u64,
        s.intermediate as u64,
    );
    let linears = s.layers as u64 * (h * q + 2 * h * kv + q * h + 3 * h * i);
    let ggml = ggml_for(format);
    let quantized = linears / ggml.block_size() as u64 * ggml.type_size() as u64;
    quantized + (s.parameters().saturating_sub(linears)) * 4
}

/// The weights as f32 tensors on the CPU, by their Hugging Face names.
fn var_builder(spec: &DecoderSpec) -> Result<VarBuilder<'static>> {
    Ok(match &spec.source {
        DecoderSource::Random { seed } => VarBuilder::from_backend(
            Box::new(RandomBackend {
                seed: *seed,
                std: spec.shapes.initializer_range as f32,
                tied: spec.shapes.tied,
            }),
            DType::F32,
            Device::Cpu,
        ),
        DecoderSource::Folder { files, .. } => {
            // SAFETY: memory-mapped read-only while the GGUF is written (as for the float path).
            unsafe { VarBuilder::from_mmaped_safetensors(files, DType::F32, &Device::Cpu) }?
        }
        DecoderSource::Gguf(_) => bail!("a GGUF file runs as stored, never re-quantized"),
    })
}

/// llama.cpp's row permutation of q and k: (heads, 2, head_dim / 2, in) with the middle axes
/// swapped, so its interleaved RoPE computes what HF's half-split RoPE does on the original.
fn permute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, 2, rows / heads / 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))?
        .contiguous()?)
}

/// The model for a `format` cell on `device` (which [`refuses`] must have accepted).
pub fn load(spec: &DecoderSpec, format: QuantFormat, device: &Device) -> Result<Box<dyn Forward>> {
    let s = &spec.shapes;
    let config: serde_json::Value =
        serde_json::from_str(spec.config_json.as_deref().context("a config.json")?)?;
    let number =
        |key: &str, default: f64| config.get(key).and_then(|v| v.as_f64()).unwrap_or(default);
    let vb = var_builder(spec)?;
    let ggml: GgmlDType = ggml_for(format);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let float = |t: Tensor| QTensor::quantize(&t, GgmlDType::F32);
    let embeddings = vb.get((s.vocab, s.hidden), "model.embed_tokens.weight")?;
    tensors.push(("token_embd.weight".into(), float(embeddings)?));
    tensors.push((
        "output_norm.weight".into(),
        float(vb.get(s.hidden, "model.norm.weight")?)?,
    ));
    if !s.tied {
        // Kept f32, so the output projection is a dense matmul (quantized_llama falls back to
        // the embeddings when the file has none: tied weights).
        tensors.push((
            "output.weight".into(),
            float(vb.get((s.vocab, s.hidden), "lm_head.weight")?)?,
        ));
    }
    let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    for layer in 0..s.layers {
        let hf = format!("model.layers.{layer}");
        let gguf = format!("blk.{layer}");
        for (name, norm) in [
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
        ] {
            let w = vb.get(s.hidden, &format!("{hf}.{name}.weight"))?;
            tensors.push((format!("{gguf}.{norm}.weight"), float(w)?));
        }
        for (name, target, how) in LINEARS {
            let shape = match name {
                "self_attn.q_proj" => (q, s.hidden),
                "self_attn.k_proj" | "self_attn.v_proj" => (kv, s.hidden),
                "self_attn.o_proj" => (s.hidden, q),
                "mlp.down_proj" => (s.hidden, s.intermediate),
                _ => (s.intermediate, s.hidden),
            };
            let mut w = vb.get(shape, &format!("{hf}.{name}.weight"))?;
            w = match how {
                Permute::Heads => permute(&w, s.heads)?,
                Permute::KvHeads => permute(&w, s.kv_heads)?,
                Permute::No => w,
            };
            let quantized = QTensor::quantize(&w, ggml)
                .with_context(|| format!("quantizing {hf}.{name}.weight to {}", format.name()))?;
            tensors.push((format!("{gguf}.{target}.weight"), quantized));
        }
    }
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.attention.head_count", Value::U32(s.heads as u32)),
        (
            "llama.attention.head_count_kv",
            Value::U32(s.kv_heads as u32),
        ),
        ("llama.block_count", Value::U32(s.layers as u32)),
        ("llama.embedding_length", Value::U32(s.hidden as u32)),
        ("llama.rope.dimension_count", Value::U32(s.head_dim as u32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(number("rms_norm_eps", 1e-6) as f32),
        ),
        (
            "llama.rope.freq_base",
            Value::F32(number("rope_theta", 10_000.0) as f32),
        ),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &metadata, &refs)?;
    drop(refs);
    drop(tensors);
    buf.set_position(0);
    let content = Content::read(&mut buf)?;
    let model = quantized_llama::ModelWeights::from_gguf(content, &mut buf, device)?;
    Ok(Box::new(Offset {
        model,
        forward: |m: &mut quantized_llama::ModelWeights, ids, offset| m.forward(ids, offset),
    }))
}
