//! A llama GGUF file as the runner's own decoder reads it: every tensor dequantized to f32 and
//! renamed to its Hugging Face name, the Q and K projections' rows put back in Hugging Face's
//! order. llama.cpp's converter permutes them so that each head's rotary pairs are adjacent
//! (GGUF row h*d + 2i + j holds Hugging Face row h*d + j*d/2 + i), for the interleaved rotary
//! embedding llama.cpp and candle-transformers' quantized_llama apply; the own decoder applies
//! Hugging Face's half-split rotary embedding, so it reads them unpermuted.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::FamilyConfig;

/// The Hugging Face name of a llama GGUF tensor, and the heads whose rows it permutes (Q, K).
fn hf_name(gguf: &str, cfg: &FamilyConfig) -> Option<(String, Option<usize>)> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = top {
        return Some((name.to_string(), None));
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (hf, heads) = match part {
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(cfg.heads)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(cfg.kv_heads)),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}"), heads))
}

/// GGUF's rotary row order back to Hugging Face's: (heads, d/2, 2, cols) -> (heads, 2, d/2, cols).
pub fn unpermute_rows(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let d = rows / heads;
    w.reshape((heads, d / 2, 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))
}

/// The file's tensors, dequantized and renamed, as the VarBuilder the own decoder loads from.
pub fn var_builder(
    path: &Path,
    cfg: &FamilyConfig,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = Content::read(&mut file)
        .with_context(|| format!("{}: reading the GGUF header", path.display()))?;
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let Some((hf, heads)) = hf_name(name, cfg) else {
            bail!(
                "{}: tensor {name:?} has no place in the runner's own llama decoder (llama 3 rope frequencies and other extras run through candle-transformers: leave implementation out)",
                path.display()
            );
        };
        let q = content
            .tensor(&mut file, name, &Device::Cpu)
            .with_context(|| format!("{}: reading {name}", path.display()))?;
        let mut w = q.dequantize(&Device::Cpu)?;
        if let Some(heads) = heads {
            w = unpermute_rows(&w, heads)?;
        }
        tensors.insert(hf, w.to_device(device)?);
    }
    Ok(VarBuilder::from_tensors(tensors, dtype, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_in_hugging_face_order() {
        // 2 heads of head_dim 4: HF rows h*4 + j*2 + i are stored at GGUF rows h*4 + 2i + j.
        let hf: Vec<f32> = (0..8).map(|r| r as f32).collect();
        let mut gguf = vec![0f32; 8];
        for h in 0..2 {
            for i in 0..2 {
                for j in 0..2 {
                    gguf[h * 4 + 2 * i + j] = hf[h * 4 + j * 2 + i];
                }
            }
        }
        let w = Tensor::from_vec(gguf, (8, 1), &Device::Cpu).unwrap();
        let back: Vec<f32> = unpermute_rows(&w, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(back, hf);
    }
}
