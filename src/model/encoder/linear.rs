//! Linear layers, float or GGML-quantized, and the fused Q/K/V projection.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::units::Hidden;
use super::Numerics;
use crate::config::GemmLibrary;
use crate::model::parts::w8a8::EightBitLinear;

/// A linear layer, float or quantized.
pub(super) enum Linear {
    Float(candle_nn::Linear),
    /// W8A8 (`int8-*`, `fp8-*`): the numerics reference.
    EightBit(EightBitLinear),
    Quantized {
        weight: QMatMul,
        bias: Tensor,
        /// Zero columns appended to the weight and to every input (see [`MMQ_ROW_PADDING`]).
        pad: usize,
    },
}

/// candle 0.11's CUDA quantized matmul (MMQ, which pads rows to this many columns) returned NaN/inf
/// for some weights of input width 384 (all-MiniLM-L6-v2), deterministically per weight and in
/// f32, f16 and bf16 activations, on an H100 (examples/qmatmul_check.rs); widths 768, 1536 and 3072
/// (DistilBERT-base, MiniLM's FFN) never did, in 60 whole-model cells and the checks. On CUDA,
/// layers narrower than this get zero columns up to it: the same products, and the records say so.
pub const MMQ_ROW_PADDING: usize = 512;

impl Linear {
    pub(super) fn load(
        in_dim: usize,
        out_dim: usize,
        vb: VarBuilder,
        numerics: Numerics,
    ) -> Result<Self> {
        if let Some(format) = numerics.eight_bit {
            // Quantized from the f32 weights, as the GGML formats are.
            let w = vb.to_dtype(DType::F32).get((out_dim, in_dim), "weight")?;
            let bias = vb.get(out_dim, "bias")?;
            return EightBitLinear::quantize(&w, bias, format).map(Linear::EightBit);
        }
        let Some(format) = numerics.quant else {
            return candle_nn::linear(in_dim, out_dim, vb).map(Linear::Float);
        };
        // Quantize from the f32 weights, not from their float-dtype rounding.
        let w = vb.to_dtype(DType::F32).get((out_dim, in_dim), "weight")?;
        let pad = if vb.device().is_cuda() && in_dim < MMQ_ROW_PADDING {
            MMQ_ROW_PADDING - in_dim
        } else {
            0
        };
        let w = if pad > 0 {
            w.pad_with_zeros(1, 0, pad)?
        } else {
            w
        };
        let weight = QMatMul::from_qtensor(QTensor::quantize(&w, format)?)?;
        if !matches!(weight, QMatMul::QTensor(_)) {
            // CANDLE_DEQUANTIZE_ALL(_F16) would silently turn this into a float matmul.
            candle_core::bail!(
                "candle dequantized the {format:?} weights (CANDLE_DEQUANTIZE_ALL or CANDLE_DEQUANTIZE_ALL_F16 is set): unset it to measure quantized matmuls"
            );
        }
        Ok(Linear::Quantized {
            weight,
            bias: vb.get(out_dim, "bias")?,
            pad,
        })
    }

    /// The layer, then erf GELU: fused with the bias add on CUDA, into the GEMM's epilogue for
    /// a float layer with `library` CUTLASS where it has a kernel ([`Self::float_cutlass`]).
    pub(super) fn forward_gelu(&self, x: &Tensor, library: GemmLibrary) -> Result<Tensor> {
        match self {
            Linear::Float(l) if self.float_cutlass(library).is_ok() => {
                let bias = l.bias().expect("float_cutlass checked");
                on_rows(x, |x| {
                    crate::ops::float_gemm::linear_bias_gelu(x, l.weight(), bias)
                })
            }
            Linear::Float(l) => linear_2d(l, x, true),
            Linear::EightBit(l) => l.forward(x, true),
            Linear::Quantized { weight, bias, pad } => {
                quantized_forward(weight, bias, *pad, x, true)
            }
        }
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Float(l) => linear_2d(l, x, false),
            Linear::EightBit(l) => l.forward(x, false),
            Linear::Quantized { weight, bias, pad } => {
                quantized_forward(weight, bias, *pad, x, false)
            }
        }
    }

    /// [`Self::forward`] on `x`, from its packed bytes where this layer reads them (a W8A8 layer
    /// after a layer norm that quantized its output for it).
    pub(super) fn forward_hidden(&self, x: &Hidden) -> Result<Tensor> {
        match (self, &x.packed) {
            (Linear::EightBit(l), Some(p)) if l.reads(p) => {
                let y = l.forward_packed(p)?;
                let mut dims = x.values.dims().to_vec();
                *dims.last_mut().expect("at least one dimension") = y.dim(1)?;
                y.reshape(dims)
            }
            _ => self.forward(&x.values),
        }
    }

    /// The 8-bit format a layer norm before this layer may quantize its input in; `None` for
    /// float and GGML layers, the f32 reference, or where there is no such kernel.
    pub(super) fn packed_input_format(&self) -> Option<crate::config::EightBit> {
        match self {
            Linear::EightBit(l) => l.packed_input_format(),
            _ => None,
        }
    }

    /// The bias a residual + layer norm kernel can add in this layer's place: a float linear's,
    /// on a device with the runner's kernels (elsewhere, and for 8-bit and GGML layers, the bias
    /// stays in the layer's own epilogue or kernel).
    pub(super) fn bias_for_norm(&self) -> Option<&Tensor> {
        match self {
            Linear::Float(l) if crate::ops::fused::fused_on(l.weight().device()) => l.bias(),
            _ => None,
        }
    }

    /// The layer without its bias (the GEMM alone), for the norm that adds it
    /// ([`Self::bias_for_norm`]); any other layer runs whole.
    pub(super) fn forward_without_bias(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Float(l) if self.bias_for_norm().is_some() => {
                let w = l.weight().t()?;
                on_rows(x, |x| x.matmul(&w))
            }
            _ => self.forward(x),
        }
    }

    /// Whether a float FFN-in runs bias + erf GELU in a CUTLASS epilogue, or why not.
    pub(super) fn float_cutlass(&self, library: GemmLibrary) -> std::result::Result<(), String> {
        let Linear::Float(l) = self else {
            return Err("not a float layer".into());
        };
        if library != GemmLibrary::Cutlass {
            return Err("device.gemm_library is cublaslt".into());
        }
        if !l.weight().device().is_cuda() || l.bias().is_none() {
            return Err("not a CUDA layer with a bias".into());
        }
        let (n, k) = l.weight().dims2().map_err(|e| e.to_string())?;
        let dtype = l.weight().dtype();
        let kind = crate::ops::cutlass::Kind {
            inputs: crate::ops::cutlass::Inputs::Float,
            out: dtype,
            gelu: true,
            fast_accumulation: false,
        };
        match crate::ops::cutlass::unsupported(kind, n, k) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    pub(super) fn padded(&self) -> bool {
        matches!(self, Linear::Quantized { pad, .. } if *pad > 0)
    }

    pub(super) fn quant_format(&self) -> Option<GgmlDType> {
        match self {
            Linear::Float(_) | Linear::EightBit(_) => None,
            Linear::Quantized { weight, .. } => match weight {
                QMatMul::QTensor(t) => Some(t.dtype()),
                _ => None,
            },
        }
    }

    pub(super) fn on_tensor_cores(&self) -> bool {
        matches!(self, Linear::EightBit(l) if l.on_tensor_cores())
    }

    pub(super) fn eight_bit(&self) -> Option<crate::config::EightBit> {
        match self {
            Linear::EightBit(l) => Some(l.format()),
            _ => None,
        }
    }

    pub(super) fn float_dtype(&self) -> DType {
        match self {
            Linear::Float(l) => l.weight().dtype(),
            Linear::EightBit(l) => l.float_dtype(),
            Linear::Quantized { bias, .. } => bias.dtype(),
        }
    }
}

/// A float linear layer on (batch, seq, in) as one (batch*seq, in) x (in, out) GEMM: candle's
/// `Linear` turns a 3-D input into a batched matmul against the broadcast weight, one small GEMM per
/// sequence, which keeps cuBLAS far from the tensor cores' throughput at large batches.
/// On CUDA the bias add (and the GELU after it, when `gelu`) is one kernel of the runner's
/// (`fused::bias_act`): candle's broadcast add cost three times the GEMM.
pub(super) fn linear_2d(l: &candle_nn::Linear, x: &Tensor, gelu: bool) -> Result<Tensor> {
    let run = |x: &Tensor| -> Result<Tensor> {
        match l.bias() {
            Some(bias) if crate::ops::fused::fused_on(x.device()) => {
                crate::ops::fused::bias_act(&x.matmul(&l.weight().t()?)?, bias, gelu)
            }
            _ => {
                let y = l.forward(x)?;
                if gelu {
                    y.gelu_erf()
                } else {
                    Ok(y)
                }
            }
        }
    };
    on_rows(x, run)
}

/// `f` on `x` as rows: a (batch, seq, dim) input as (batch * seq, dim), the output reshaped back.
fn on_rows(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    match x.dims() {
        &[b, s, d] => f(&x.reshape((b * s, d))?)?.reshape((b, s, ())),
        _ => f(x),
    }
}

/// A quantized linear: candle's QMatMul, then the bias add (+ GELU) as the float path does it
/// (one runner kernel on CUDA, where candle's broadcast add took twice the QMatMul itself).
pub(super) fn quantized_forward(
    weight: &QMatMul,
    bias: &Tensor,
    pad: usize,
    x: &Tensor,
    gelu: bool,
) -> Result<Tensor> {
    // QMatMul wants contiguous inputs on every backend (padding makes a contiguous copy).
    let x = if pad > 0 {
        x.pad_with_zeros(D::Minus1, 0, pad)?
    } else {
        x.contiguous()?
    };
    crate::ops::fused::bias_act(&weight.forward(&x)?, bias, gelu)
}

/// The FFN `lin2(gelu(lin1(x)))` with the quantization of lin2's input fused into the kernel that
/// computes lin1's GELU (both W8A8 on tensor cores, one format); lin1 reads `x`'s packed bytes when
/// the layer norm before it wrote them. `None` where that does not apply, and the caller runs the
/// two layers in turn, lin2 quantizing its input in a pass of its own.
pub(super) fn ffn_quantized_in_gelu(
    lin1: &Linear,
    lin2: &Linear,
    x: &Hidden,
) -> Result<Option<Tensor>> {
    let (Linear::EightBit(a), Linear::EightBit(b)) = (lin1, lin2) else {
        return Ok(None);
    };
    let dims = x.values.dims().to_vec();
    let in_dim = *dims.last().unwrap_or(&1);
    let rows = x.values.elem_count() / in_dim.max(1);
    let flat = x.values.reshape((rows, in_dim))?;
    let Some(packed) = a.forward_gelu_packed(&flat, x.packed.as_ref(), b)? else {
        return Ok(None);
    };
    let mut out_dims = dims;
    let y = b.forward_packed(&packed)?;
    *out_dims.last_mut().expect("at least one dimension") = y.dim(1)?;
    Ok(Some(y.reshape(out_dims)?))
}

/// The FFN with static activation steps (`device.ffn_activation_scales = "static"`): on tensor
/// cores FFN-in's CUTLASS epilogue writes lin2's codes and lin2 reads them; on the CPU the f32
/// numerics reference. `None` where lin1 has no static steps.
pub(super) fn ffn_static(lin1: &Linear, lin2: &Linear, x: &Hidden) -> Result<Option<Tensor>> {
    let (Linear::EightBit(a), Linear::EightBit(b)) = (lin1, lin2) else {
        return Ok(None);
    };
    if a.static_steps().is_none() {
        return Ok(None);
    }
    let dims = x.values.dims().to_vec();
    let in_dim = *dims.last().unwrap_or(&1);
    let rows = x.values.elem_count() / in_dim.max(1);
    let flat = x.values.reshape((rows, in_dim))?;
    let y = match a.forward_gelu_codes(&flat, x.packed.as_ref(), b)? {
        Some(codes) => b.forward_packed(&codes)?,
        None if !a.on_tensor_cores() => a.static_ffn_reference(&flat, b)?.1,
        None => candle_core::bail!(
            "static activation scales: no kernel writes FFN-out's codes here ({})",
            a.static_codes_kernel().err().unwrap_or_default()
        ),
    };
    let mut out_dims = dims;
    *out_dims.last_mut().expect("at least one dimension") = y.dim(1)?;
    y.reshape(out_dims).map(Some)
}

/// Whether [`ffn_quantized_in_gelu`] runs fused for these two layers.
pub(super) fn ffn_fuses(lin1: &Linear, lin2: &Linear) -> bool {
    match (lin1, lin2) {
        (Linear::EightBit(a), Linear::EightBit(b)) => a.gelu_packs_for(b),
        _ => false,
    }
}

/// The fused query/key/value projection (see `TransformerBlock::qkv`): one GEMM without bias, its
/// bias kept apart for the attention that consumes the output (the one-kernel attention adds it).
pub(super) struct FusedQkv {
    pub(super) projection: Linear,
    pub(super) bias: Tensor,
}

impl FusedQkv {
    /// `x` (batch, seq, dim) -> (batch * seq, 3 * dim), before the bias; from `x`'s packed bytes
    /// where the layer norm before it quantized them for this projection.
    pub(super) fn project(&self, x: &Hidden) -> Result<Tensor> {
        let (b, s, dim) = x.values.dims3()?;
        let rows = Hidden {
            values: x.values.reshape((b * s, dim))?,
            packed: x.packed.clone(),
        };
        self.projection.forward_hidden(&rows)
    }
}

/// `None` unless all three are float linears with biases or all three W8A8 layers of one format
/// (GGML formats keep their three QMatMuls).
pub(super) fn fuse_qkv(
    q: &Linear,
    k: &Linear,
    v: &Linear,
    query_scale: f64,
) -> Result<Option<FusedQkv>> {
    if let (Linear::EightBit(q), Linear::EightBit(k), Linear::EightBit(v)) = (q, k, v) {
        let (projection, bias) =
            EightBitLinear::fuse_outputs(&[(q, query_scale), (k, 1.0), (v, 1.0)])?;
        return Ok(Some(FusedQkv {
            projection: Linear::EightBit(projection),
            bias,
        }));
    }
    let (Linear::Float(q), Linear::Float(k), Linear::Float(v)) = (q, k, v) else {
        return Ok(None);
    };
    let (Some(qb), Some(kb), Some(vb)) = (q.bias(), k.bias(), v.bias()) else {
        return Ok(None);
    };
    let dtype = q.weight().dtype();
    // Scaled in f32, rounded once to the model's dtype (exact for head_dim 64: 1/8).
    let scaled = |t: &Tensor| (t.to_dtype(DType::F32)? * query_scale)?.to_dtype(dtype);
    let weight = Tensor::cat(&[&scaled(q.weight())?, k.weight(), v.weight()], 0)?;
    let bias = Tensor::cat(&[&scaled(qb)?, kb, vb], 0)?;
    Ok(Some(FusedQkv {
        projection: Linear::Float(candle_nn::Linear::new(weight, None)),
        bias,
    }))
}
