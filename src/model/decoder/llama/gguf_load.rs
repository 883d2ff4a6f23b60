//! A llama GGUF file as the runner's own decoder reads it: every tensor renamed to its Hugging
//! Face name, dequantized to f32 (`var_builder`) or, for the quantized linears, kept as stored
//! (`stored_linears`: candle's QMatMul runs the blocks the file holds), the Q and K projections'
//! rows put back in Hugging Face's order. llama.cpp's converter permutes them so that each head's rotary pairs are adjacent
//! (GGUF row h*d + 2i + j holds Hugging Face row h*d + j*d/2 + i), for the interleaved rotary
//! embedding llama.cpp and candle-transformers' quantized_llama apply; the own decoder applies
//! Hugging Face's half-split rotary embedding, so it reads them unpermuted.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::FamilyConfig;
use crate::model::parts::linear::Linears;

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
    Ok(read(path, cfg, dtype, device, false)?.0)
}

/// The file's quantized linears kept as stored (on `device`, Q/K rows unpermuted block row by
/// block row), and everything else dequantized as [`var_builder`] gives it; the embedding is
/// in both when the file stores it quantized (the tied output projection runs its blocks).
pub fn stored_linears(
    path: &Path,
    cfg: &FamilyConfig,
    dtype: DType,
    device: &Device,
) -> Result<(VarBuilder<'static>, Linears)> {
    read(path, cfg, dtype, device, true)
}

fn read(
    path: &Path,
    cfg: &FamilyConfig,
    dtype: DType,
    device: &Device,
    keep_quantized: bool,
) -> Result<(VarBuilder<'static>, Linears)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let content = Content::read(&mut file)
        .with_context(|| format!("{}: reading the GGUF header", path.display()))?;
    let mut tensors = HashMap::new();
    let mut stored = HashMap::new();
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
        let quantized = !matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let linear = !hf.ends_with("norm.weight");
        if keep_quantized && quantized && linear {
            let q = match heads {
                Some(heads) => unpermute_blocks(&q, heads, device)?,
                None => {
                    qtensor_from_ggml(q.dtype(), &q.data()?, q.shape().dims().to_vec(), device)?
                }
            };
            if hf != "model.embed_tokens.weight" {
                stored.insert(hf, Arc::new(q));
                continue;
            }
            tensors.insert(hf.clone(), q.dequantize(device)?);
            stored.insert(hf, Arc::new(q));
            continue;
        }
        let mut w = q.dequantize(&Device::Cpu)?;
        if let Some(heads) = heads {
            w = unpermute_rows(&w, heads)?;
        }
        tensors.insert(hf, w.to_device(device)?);
    }
    let linears = if keep_quantized {
        Linears::Stored(Arc::new(stored))
    } else {
        Linears::Float
    };
    Ok((VarBuilder::from_tensors(tensors, dtype, device), linears))
}

/// [`unpermute_rows`] on a quantized tensor: each row is whole blocks, so the rows move as bytes.
pub fn unpermute_blocks(
    q: &QTensor,
    heads: usize,
    device: &Device,
) -> candle_core::Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let format = q.dtype();
    let row_bytes = cols / format.block_size() * format.type_size();
    let data = q.data()?;
    if data.len() != rows * row_bytes
        || !rows.is_multiple_of(heads)
        || !(rows / heads).is_multiple_of(2)
    {
        candle_core::bail!(
            "a {format:?} tensor of {rows} x {cols} ({} bytes) is not {heads} heads of whole rows",
            data.len()
        );
    }
    let d = rows / heads;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for j in 0..2 {
                let (from, to) = (h * d + 2 * i + j, h * d + j * d / 2 + i);
                out[to * row_bytes..(to + 1) * row_bytes]
                    .copy_from_slice(&data[from * row_bytes..(from + 1) * row_bytes]);
            }
        }
    }
    qtensor_from_ggml(format, &out, vec![rows, cols], device)
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

    /// Moving a quantized tensor's rows as bytes is the float unpermute of its values, exactly.
    #[test]
    fn quantized_rows_move_as_their_values_do() {
        let w = Tensor::arange(0f32, 8.0 * 64.0, &Device::Cpu)
            .unwrap()
            .reshape((8, 64))
            .unwrap();
        for format in [GgmlDType::Q8_0, GgmlDType::Q4_1] {
            let q = QTensor::quantize(&w, format).unwrap();
            let moved = unpermute_blocks(&q, 2, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            let expected = unpermute_rows(&q.dequantize(&Device::Cpu).unwrap(), 2).unwrap();
            let d: f32 = (moved - expected)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert_eq!(d, 0.0, "{format:?}");
        }
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(unpermute_blocks(&q, 3, &Device::Cpu).is_err());
    }
}
