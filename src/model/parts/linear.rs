//! A decoder's linear layer in the precision a cell asks for: the float weights as loaded, a
//! GGML block format quantized at load from the f32 weights (`q8_0-bf16`: q8_0 linears, bf16
//! everywhere else), or the blocks a GGUF file stores, kept as stored; the GGML ones run by
//! candle's QMatMul (MMVQ for up to 8 rows on CUDA, MMQ above, the vec-dot kernels on the CPU).

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// Where a model's linear layers come from.
#[derive(Clone)]
pub enum Linears {
    /// The float weights as loaded.
    Float,
    /// Quantized at load to this GGML format, from the f32 weights.
    Quantize(GgmlDType),
    /// A GGUF file's quantized tensors as stored (by their Hugging Face weight name, e.g.
    /// `model.layers.0.self_attn.q_proj.weight`, already on the device); a linear the file
    /// stores in a float type is not here and loads as a float linear.
    Stored(Arc<HashMap<String, Arc<QTensor>>>),
}

impl Linears {
    pub fn is_float(&self) -> bool {
        matches!(self, Self::Float)
    }
}

pub enum Linear {
    Float(candle_nn::Linear),
    Ggml {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl Linear {
    /// `prefix.weight` (out, in) and, with `bias`, `prefix.bias`, as `linears` says.
    pub fn load(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        linears: &Linears,
    ) -> Result<Self> {
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        match linears {
            Linears::Float => Ok(Self::Float(candle_nn::Linear::new(
                vb.get((out_dim, in_dim), "weight")?,
                bias,
            ))),
            Linears::Quantize(format) => {
                // From the f32 weights, not from their float-dtype rounding.
                let w = vb.to_dtype(DType::F32).get((out_dim, in_dim), "weight")?;
                Self::quantized(&w, bias, *format)
            }
            Linears::Stored(stored) => {
                let name = format!("{}.weight", vb.prefix());
                match stored.get(&name) {
                    Some(q) => Self::stored(q, &name, (out_dim, in_dim), bias),
                    None => Ok(Self::Float(candle_nn::Linear::new(
                        vb.get((out_dim, in_dim), "weight")?,
                        bias,
                    ))),
                }
            }
        }
    }

    /// A layer over a weight already loaded (the tied output projection: `name` is the
    /// embedding's, which a GGUF file may store quantized).
    pub fn from_weight(weight: Tensor, name: &str, linears: &Linears) -> Result<Self> {
        match linears {
            Linears::Float => Ok(Self::Float(candle_nn::Linear::new(weight, None))),
            Linears::Quantize(format) => {
                Self::quantized(&weight.to_dtype(DType::F32)?, None, *format)
            }
            Linears::Stored(stored) => match stored.get(name) {
                Some(q) => Self::stored(q, name, weight.dims2()?, None),
                None => Ok(Self::Float(candle_nn::Linear::new(weight, None))),
            },
        }
    }

    fn stored(
        q: &Arc<QTensor>,
        name: &str,
        shape: (usize, usize),
        bias: Option<Tensor>,
    ) -> Result<Self> {
        if q.shape().dims2()? != shape {
            candle_core::bail!(
                "{name}: stored as {:?}, the config says {shape:?}",
                q.shape().dims()
            );
        }
        let weight = QMatMul::from_arc(q.clone())?;
        if !matches!(weight, QMatMul::QTensor(_)) {
            candle_core::bail!(
                "candle dequantized the stored {:?} weights (CANDLE_DEQUANTIZE_ALL or CANDLE_DEQUANTIZE_ALL_F16 is set): unset it to measure quantized matmuls",
                q.dtype()
            );
        }
        Ok(Self::Ggml { weight, bias })
    }

    fn quantized(w: &Tensor, bias: Option<Tensor>, format: GgmlDType) -> Result<Self> {
        let (_, in_dim) = w.dims2()?;
        if !in_dim.is_multiple_of(format.block_size()) {
            candle_core::bail!(
                "{format:?} packs rows in blocks of {} values and this layer's rows hold {in_dim}: choose another format (q8_0 and q4_0 take multiples of 32)",
                format.block_size()
            );
        }
        let weight = QMatMul::from_qtensor(quantize_rows(w, format)?)?;
        if !matches!(weight, QMatMul::QTensor(_)) {
            candle_core::bail!(
                "candle dequantized the {format:?} weights (CANDLE_DEQUANTIZE_ALL or CANDLE_DEQUANTIZE_ALL_F16 is set): unset it to measure quantized matmuls"
            );
        }
        Ok(Self::Ggml { weight, bias })
    }

    /// `x` (..., in) -> (..., out), in `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Float(l) => l.forward(x),
            Self::Ggml { weight, bias } => {
                let y = if x.device().is_cuda() {
                    // candle 0.11's fast MMVQ (<= 8 rows) and MMQ paths take bf16/f16/f32
                    // activations and give them back: no f32 casts around each linear (two more
                    // kernels, and graph nodes, per linear). Both need contiguous rows.
                    weight.forward(&x.contiguous()?)?
                } else {
                    // The CPU's vec-dot kernels in f32, as quantized_llama runs them.
                    weight
                        .forward(&x.to_dtype(DType::F32)?)?
                        .to_dtype(x.dtype())?
                };
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }

    /// "bf16 matmul", "q8_0 (QMatMul)": for the record.
    pub fn describe(&self) -> String {
        match self {
            Self::Float(l) => format!("{:?} matmul", l.weight().dtype()).to_lowercase(),
            Self::Ggml { weight, .. } => match weight {
                QMatMul::QTensor(t) => {
                    let format = format!("{:?}", t.dtype()).to_lowercase();
                    if t.device().is_cuda() {
                        format!("{format} (candle QMatMul on CUDA: MMVQ for <= 8 rows, a decode step's; MMQ above, a prefill's; activations in the float dtype, quantized to q8_1 per call)")
                    } else {
                        format!("{format} (candle QMatMul: CPU vec-dot kernels, f32 activations)")
                    }
                }
                _ => "dequantized matmul".into(),
            },
        }
    }
}

/// candle's `QTensor::quantize` of `w` (out, in), run on row chunks in parallel on the host
/// (each row is whole blocks, quantized alone: the bytes are candle's), then moved to `w`'s
/// device once. candle quantizes on one host thread even for a CUDA tensor, and its k-quants
/// search each block's scales: Llama-3.2-1B's 1.2 G weights to q4_K took minutes that way.
fn quantize_rows(w: &Tensor, format: GgmlDType) -> Result<QTensor> {
    let (rows, cols) = w.dims2()?;
    let host = w
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let chunk = rows.div_ceil(4 * rayon::current_num_threads()).max(1);
    let starts: Vec<usize> = (0..rows).step_by(chunk).collect();
    let parts = starts
        .into_par_iter()
        .map(|start| {
            let n = chunk.min(rows - start);
            // A tensor of its own: candle's quantize reads a storage from its start.
            let slice = &host[start * cols..(start + n) * cols];
            let rows = Tensor::from_slice(slice, (n, cols), &Device::Cpu)?;
            Ok(QTensor::quantize(&rows, format)?.data()?.into_owned())
        })
        .collect::<Result<Vec<Vec<u8>>>>()?;
    qtensor_from_ggml(format, &parts.concat(), vec![rows, cols], w.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunked in parallel, the blocks are the ones candle writes for the whole tensor.
    #[test]
    fn rows_quantized_in_parallel_are_candles_bytes() {
        let w = Tensor::randn(0f32, 1.0, (37, 512), &Device::Cpu).unwrap();
        for format in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q4_1] {
            let whole = QTensor::quantize(&w, format).unwrap();
            let rows = quantize_rows(&w, format).unwrap();
            assert_eq!(rows.shape().dims(), &[37, 512]);
            assert_eq!(whole.data().unwrap(), rows.data().unwrap(), "{format:?}");
        }
    }
}
