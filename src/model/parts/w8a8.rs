//! W8A8 linear layers (`int8-<float>`, `fp8-<float>`). Weights are quantized once, per output
//! channel, symmetric; each input is quantized per token (row) with a scale computed from that
//! row on the fly; the 8-bit products are accumulated, then scaled back by scale_token x
//! scale_channel, and the bias (and GELU) added in f32 before rounding to the float dtype. Off the
//! tensor cores all of it is f32 arithmetic on the 8-bit values (`model::quant::w8a8`: exact for
//! int8 products; f32 accumulation, as FP8 tensor cores do), so CI tests the numerics and
//! fidelity, and the tensor-core kernels (`ops::eight_bit`) are checked against it. That path is a
//! numerics reference, not a speed figure: records say so.

use candle_core::{DType, Device, Result, Tensor};

use crate::config::{EightBit, GemmLibrary};
use crate::model::quant::w8a8::quantize_rows;
use crate::ops::cutlass;
use crate::ops::eight_bit::cutlass_linear::{self, Bias, Epilogue, Input};
use crate::ops::eight_bit::{fp8_gemm, int8_gemm, norm_quantize, Packed8, FUSED_ROW_MAX};

mod static_codes;
pub use static_codes::{ffn_step_sharing, ffn_steps, steps_from_absmax, StaticSteps};

/// A linear layer in W8A8.
pub struct EightBitLinear {
    format: EightBit,
    /// The quantized weight's values (exact int8 integers or E4M3 values) as f32, (out, in).
    weight: Tensor,
    /// One scale per output channel, f32, (1, out).
    weight_scale: Tensor,
    /// In the float dtype, as the other layers hold it.
    bias: Tensor,
    /// On CUDA (int8; FP8 in f16/bf16): the copy the tensor-core kernels read.
    tensor_cores: Option<TensorCores>,
    /// `device.gemm_library`: the runner's CUTLASS GEMMs (scales, bias and GELU in the epilogue)
    /// where they take this layer, instead of cuBLASLt.
    library: GemmLibrary,
    /// FFN-in with `device.ffn_activation_scales = "static"`: its GELU output is written as the
    /// next layer's codes with these per-column steps (static_codes.rs).
    static_output: Option<StaticSteps>,
}

/// The weight as the tensor-core GEMMs take it, output channels padded to the GEMM's multiple
/// with zero rows (a 2-label classifier), whose outputs `forward` drops.
enum TensorCores {
    /// int8 two's-complement bytes (U8, (out, in)) and (2, out) f32: channel scales, then the bias
    /// (src/ops/eight_bit/int8_gemm.rs adds it in its dequantization kernel).
    Int8 { bytes: Tensor, scale_bias: Tensor },
    /// E4M3 bits (U8, (out, in)), (1, out) f32 channel scales, and the bias in the float dtype for
    /// the GEMM's epilogue (src/ops/eight_bit/fp8_gemm.rs); `None` for a layer without one (fused Q/K/V).
    Fp8 {
        bytes: Tensor,
        scales: Tensor,
        bias: Option<Tensor>,
        /// cuBLASLt's FP8 fast accumulation (off unless `device.fp8_fast_accumulation`).
        fast_accumulation: bool,
    },
}

impl EightBitLinear {
    /// `weight` (out, in) in f32: quantized per output channel.
    pub fn quantize(weight: &Tensor, bias: Tensor, format: EightBit) -> Result<Self> {
        // On the CPU: candle's CUDA build has no f32 -> E4M3 cast kernel, and the weights are
        // quantized once, at load.
        let device = weight.device().clone();
        let (q, scale) = quantize_rows(
            &weight.to_dtype(DType::F32)?.to_device(&Device::Cpu)?,
            format,
        )?;
        let (q, scale) = (q.to_device(&device)?, scale.to_device(&device)?);
        let weight_scale = scale.t()?.contiguous()?;
        let tensor_cores = tensor_core_copy(&q, &weight_scale, bias.dtype(), Some(&bias), format)?;
        Ok(Self {
            format,
            weight: q,
            weight_scale,
            bias,
            tensor_cores,
            library: GemmLibrary::Cublaslt,
            static_output: None,
        })
    }

    /// Several layers reading the same input as one (their outputs concatenated): the fused Q/K/V
    /// projection. Each part's channel scales are multiplied by its factor (the query's
    /// 1/sqrt(head_dim)): per-channel symmetric quantization of `factor * W` gives the same 8-bit
    /// values with the scale times `factor` (exactly so for a power of two). The fused layer adds
    /// no bias; the concatenated biases are returned for the kernel that consumes its output.
    pub fn fuse_outputs(parts: &[(&EightBitLinear, f64)]) -> Result<(Self, Tensor)> {
        let Some((first, _)) = parts.first() else {
            candle_core::bail!("fuse_outputs needs at least one layer");
        };
        let format = first.format;
        if parts.iter().any(|(l, _)| l.format != format) {
            candle_core::bail!("fuse_outputs: layers in different 8-bit formats");
        }
        let weight = Tensor::cat(&parts.iter().map(|(l, _)| &l.weight).collect::<Vec<_>>(), 0)?;
        let scales = parts
            .iter()
            .map(|(l, f)| l.weight_scale.affine(*f, 0.0))
            .collect::<Result<Vec<_>>>()?;
        let weight_scale = Tensor::cat(&scales, 1)?;
        let biases = parts
            .iter()
            .map(|(l, f)| l.bias.to_dtype(DType::F32)?.affine(*f, 0.0))
            .collect::<Result<Vec<_>>>()?;
        let dtype = first.bias.dtype();
        let bias = Tensor::cat(&biases, 0)?.to_dtype(dtype)?;
        let no_bias = bias.zeros_like()?;
        let tensor_cores = tensor_core_copy(&weight, &weight_scale, dtype, None, format)?;
        let fused = Self {
            format,
            weight,
            weight_scale,
            bias: no_bias,
            tensor_cores,
            library: first.library,
            static_output: None,
        };
        Ok((fused, bias))
    }

    pub fn format(&self) -> EightBit {
        self.format
    }

    pub fn float_dtype(&self) -> DType {
        self.bias.dtype()
    }

    /// Whether this layer runs on int8 or FP8 tensor cores (CUDA) rather than the f32 reference.
    pub fn on_tensor_cores(&self) -> bool {
        self.tensor_cores.is_some()
    }

    /// FP8 on tensor cores: lets cuBLASLt accumulate in the tensor cores' own precision, without
    /// the periodic promotion to f32 (faster on some GPUs, less exact). Returns whether the layer
    /// has such a GEMM: int8 accumulates exactly in int32, and the f32 reference has none.
    pub fn set_fp8_fast_accumulation(&mut self, on: bool) -> bool {
        match &mut self.tensor_cores {
            Some(TensorCores::Fp8 {
                fast_accumulation, ..
            }) => {
                *fast_accumulation = on;
                true
            }
            _ => false,
        }
    }

    /// Whether [`Self::set_fp8_fast_accumulation`] is on.
    pub fn fp8_fast_accumulation(&self) -> bool {
        matches!(
            self.tensor_cores,
            Some(TensorCores::Fp8 {
                fast_accumulation: true,
                ..
            })
        )
    }

    /// `act(x W^T + b)` for `x` (..., in) in the float dtype, `act` erf GELU when `gelu`.
    pub fn forward(&self, x: &Tensor, gelu: bool) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (in_dim, dtype) = (*dims.last().unwrap_or(&1), x.dtype());
        let rows = x.elem_count() / in_dim.max(1);
        let mut out_dims = dims.clone();
        *out_dims.last_mut().expect("at least one dimension") = self.weight.dim(0)?;
        let out = self.weight.dim(0)?;
        let cutlass = self.cutlass(gelu).is_ok();
        let gpu = match &self.tensor_cores {
            Some(tc) if cutlass => {
                let x = x.reshape((rows, in_dim))?;
                Some(self.through_cutlass(tc, Input::Float(&x), gelu, false)?)
            }
            Some(TensorCores::Int8 { bytes, scale_bias }) => {
                let x = x.reshape((rows, in_dim))?;
                Some(int8_gemm::int8_linear(&x, bytes, scale_bias, gelu)?)
            }
            Some(TensorCores::Fp8 {
                bytes,
                scales,
                bias,
                fast_accumulation: fast,
            }) => {
                let x = x.reshape((rows, in_dim))?;
                // The epilogue adds the bias; GELU layers take bias + erf GELU from the runner's
                // kernel after it (cuBLASLt's GELU epilogue is the tanh approximation).
                match (gelu, bias) {
                    (false, bias) => Some(fp8_gemm::fp8_linear(
                        &x,
                        bytes,
                        scales,
                        bias.as_ref(),
                        *fast,
                    )?),
                    (true, Some(bias)) => Some(crate::ops::fused::bias_act(
                        &fp8_gemm::fp8_linear(&x, bytes, scales, None, *fast)?,
                        bias,
                        true,
                    )?),
                    (true, None) => {
                        Some(fp8_gemm::fp8_linear(&x, bytes, scales, None, *fast)?.gelu_erf()?)
                    }
                }
            }
            None => None,
        };
        if let Some(y) = gpu {
            return y.narrow(1, 0, out)?.contiguous()?.reshape(out_dims);
        }
        let x = x.reshape((rows, in_dim))?.to_dtype(DType::F32)?;
        let (xq, x_scale) = quantize_rows(&x, self.format)?;
        let acc = xq.matmul(&self.weight.t()?)?;
        let y = acc
            .broadcast_mul(&x_scale)?
            .broadcast_mul(&self.weight_scale)?
            .broadcast_add(&self.bias.to_dtype(DType::F32)?)?;
        let y = if gelu { y.gelu_erf()? } else { y };
        y.to_dtype(dtype)?.reshape(out_dims)
    }
}

impl EightBitLinear {
    /// `gelu(x W^T + b)` quantized per row in `next`'s format by the kernel that computes it, for
    /// `next` to read: the GELU output is never stored in the float dtype (issue 16's fusion).
    /// `packed`: the same `x` already quantized for this layer (by the layer norm that wrote it,
    /// src/ops/eight_bit/norm_quantize.rs), read instead of quantizing `x` again.
    /// `None` where there is no such kernel (the f32 reference, FP8 in f32, output channels
    /// padded for the GEMM, formats that differ): the caller runs the two layers in turn.
    pub fn forward_gelu_packed(
        &self,
        x: &Tensor,
        packed: Option<&Packed8>,
        next: &EightBitLinear,
    ) -> Result<Option<Packed8>> {
        if !self.gelu_packs_for(next) {
            return Ok(None);
        }
        let (rows, _) = x.dims2()?;
        let packed = packed.filter(|p| self.reads(p));
        let out = self.weight.dim(0)?;
        let bytes = match (&self.tensor_cores, packed) {
            (Some(tc), p) if self.cutlass(true).is_ok() => {
                let input = match p {
                    Some(p) => Input::Packed {
                        bytes: p.bytes(),
                        rows: p.rows(),
                    },
                    None => Input::Float(x),
                };
                self.through_cutlass(tc, input, true, true)?
            }
            (Some(TensorCores::Int8 { bytes, scale_bias }), None) => {
                int8_gemm::int8_gelu_to_packed(x, bytes, scale_bias)?
            }
            (Some(TensorCores::Int8 { bytes, scale_bias }), Some(p)) => {
                int8_gemm::int8_gelu_packed_to_packed(
                    p.bytes(),
                    p.rows(),
                    bytes,
                    scale_bias,
                    self.float_dtype(),
                )?
            }
            (
                Some(TensorCores::Fp8 {
                    bytes,
                    scales,
                    bias: Some(bias),
                    fast_accumulation,
                }),
                p,
            ) => {
                let y = match p {
                    None => fp8_gemm::fp8_linear(x, bytes, scales, None, *fast_accumulation)?,
                    Some(p) => fp8_gemm::fp8_linear_packed(
                        p.bytes(),
                        p.rows(),
                        bytes,
                        scales,
                        None,
                        self.float_dtype(),
                        *fast_accumulation,
                    )?,
                };
                fp8_gemm::bias_gelu_to_e4m3(&y, bias)?
            }
            _ => return Ok(None),
        };
        Ok(Some(Packed8::new(bytes, rows, out, self.format)))
    }

    /// Whether this layer can read `x` as packed (its format and width, on tensor cores).
    pub fn reads(&self, x: &Packed8) -> bool {
        self.tensor_cores.is_some()
            && x.format() == self.format
            && self.weight.dims2().is_ok_and(|d| d.1 == x.cols())
    }

    /// The format a layer norm before this layer may quantize its input in
    /// (src/ops/eight_bit/norm_quantize.rs); `None` off the tensor cores or without such a kernel.
    pub fn packed_input_format(&self) -> Option<EightBit> {
        let cols = self.weight.dims2().ok()?.1;
        let device = self.weight.device();
        (self.tensor_cores.is_some()
            && norm_quantize::norm_quantizes(device, self.float_dtype(), self.format, cols))
        .then_some(self.format)
    }

    /// Whether [`Self::forward_gelu_packed`] has a fused kernel for this layer feeding `next`.
    pub fn gelu_packs_for(&self, next: &EightBitLinear) -> bool {
        let out = self.weight.dims2().map(|d| d.0).unwrap_or(0);
        let unpadded = |b: &Tensor| b.dims2().is_ok_and(|d| d.0 == out);
        let mine = match &self.tensor_cores {
            Some(TensorCores::Int8 { bytes, .. }) => unpadded(bytes),
            Some(TensorCores::Fp8 {
                bytes,
                bias: Some(_),
                ..
            }) => unpadded(bytes),
            _ => false,
        };
        mine && out <= FUSED_ROW_MAX
            && next.format == self.format
            && next.tensor_cores.is_some()
            && next.weight.dims2().is_ok_and(|d| d.1 == out)
    }

    /// `x W^T + b` from an input [`Self::forward_gelu_packed`] quantized: (rows, out) in the float
    /// dtype.
    pub fn forward_packed(&self, x: &Packed8) -> Result<Tensor> {
        if x.format() != self.format || x.cols() != self.weight.dim(1)? {
            candle_core::bail!(
                "a packed {} input of width {} for a {} layer of width {}",
                x.format().name(),
                x.cols(),
                self.format.name(),
                self.weight.dim(1)?
            );
        }
        let out = self.weight.dim(0)?;
        let y = match &self.tensor_cores {
            Some(tc) if self.cutlass(false).is_ok() => {
                let input = Input::Packed {
                    bytes: x.bytes(),
                    rows: x.rows(),
                };
                self.through_cutlass(tc, input, false, false)?
            }
            Some(TensorCores::Int8 { bytes, scale_bias }) => int8_gemm::int8_linear_packed(
                x.bytes(),
                x.rows(),
                bytes,
                scale_bias,
                self.float_dtype(),
            )?,
            Some(TensorCores::Fp8 {
                bytes,
                scales,
                bias,
                fast_accumulation,
            }) => fp8_gemm::fp8_linear_packed(
                x.bytes(),
                x.rows(),
                bytes,
                scales,
                bias.as_ref(),
                self.float_dtype(),
                *fast_accumulation,
            )?,
            None => candle_core::bail!("a packed input needs the tensor-core path"),
        };
        y.narrow(1, 0, out)?.contiguous()
    }
}

impl EightBitLinear {
    /// `device.gemm_library` for this layer (the tensor-core path only; the f32 reference has no
    /// GEMM library). Whether a CUTLASS kernel takes it is [`Self::cutlass`].
    pub fn set_gemm_library(&mut self, library: GemmLibrary) {
        self.library = library;
    }

    /// Whether this layer's GEMM (with GELU or not) runs through CUTLASS, or why not: cuBLASLt
    /// was asked for, the f32 output, the shape or FP8 fast accumulation with this output dtype
    /// has no instantiation, or the binary has no CUTLASS.
    pub fn cutlass(&self, gelu: bool) -> std::result::Result<(), String> {
        if self.library != GemmLibrary::Cutlass {
            return Err("device.gemm_library is cublaslt".into());
        }
        if self.tensor_cores.is_none() {
            return Err("not on tensor cores (the f32 numerics reference)".into());
        }
        let (n, k) = self.gemm_shape();
        match cutlass::unsupported(self.cutlass_kind(gelu), n, k) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// What this layer's CUTLASS GEMM computes (with GELU or not).
    pub(crate) fn cutlass_kind(&self, gelu: bool) -> cutlass::Kind {
        cutlass::Kind {
            inputs: match self.format {
                EightBit::Int8 => cutlass::Inputs::Int8,
                EightBit::Fp8E4M3 => cutlass::Inputs::E4m3,
            },
            out: self.float_dtype(),
            gelu,
            fast_accumulation: self.fp8_fast_accumulation(),
        }
    }

    /// (N, K) of the tensor-core GEMM: output channels as padded for it.
    fn gemm_shape(&self) -> (usize, usize) {
        let padded = match &self.tensor_cores {
            Some(TensorCores::Int8 { bytes, .. }) | Some(TensorCores::Fp8 { bytes, .. }) => {
                bytes.dims2().ok()
            }
            None => None,
        };
        padded
            .or_else(|| self.weight.dims2().ok())
            .unwrap_or((0, 0))
    }

    /// Which GEMM runs this layer, for the record (`gelu`: as FFN-in).
    pub fn gemm_description(&self, gelu: bool) -> String {
        let format = match self.format {
            EightBit::Int8 => "int8",
            EightBit::Fp8E4M3 => "E4M3",
        };
        let codes = gelu && self.static_output.is_some() && self.static_codes_kernel().is_ok();
        let kind = match self.codes_kind() {
            Ok(k) if codes => k,
            _ => self.cutlass_kind(gelu),
        };
        let act = match (gelu, codes) {
            (true, true) => format!(" + erf GELU, x 1 / step per column and rounded to {format} codes for FFN-out (static steps)"),
            (true, false) => " + erf GELU".to_string(),
            _ => String::new(),
        };
        match (&self.tensor_cores, self.cutlass(gelu)) {
            (None, _) => format!("{format} numerics reference (f32 arithmetic)"),
            (Some(_), Ok(())) => format!(
                "CUTLASS {format} GEMM{}, epilogue: token x channel scales + bias{act} ({})",
                if self.fp8_fast_accumulation() { " with FP8 fast accumulation" } else { "" },
                cutlass::describe(kind)
            ),
            (Some(TensorCores::Int8 { .. }), Err(why)) => format!(
                "cuBLASLt int8 -> int32 GEMM, then a runner kernel: scales + bias{act} (CUTLASS not used: {why})"
            ),
            (Some(TensorCores::Fp8 { .. }), Err(why)) => format!(
                "cuBLASLt E4M3 GEMM, epilogue: scales + bias{}{} (CUTLASS not used: {why})",
                if gelu { "; erf GELU in a runner kernel" } else { "" },
                if self.fp8_fast_accumulation() { ", fast accumulation" } else { "" }
            ),
        }
    }

    /// The CUTLASS GEMM of this layer on `input`, in the float dtype or (FFN-in feeding an 8-bit
    /// FFN-out) packed for the next layer.
    fn through_cutlass(
        &self,
        tc: &TensorCores,
        input: Input<'_>,
        gelu: bool,
        packed_output: bool,
    ) -> Result<Tensor> {
        let epilogue = Epilogue {
            format: self.format,
            float: self.float_dtype(),
            gelu,
            packed_output,
            fast_accumulation: self.fp8_fast_accumulation(),
        };
        match tc {
            TensorCores::Int8 { bytes, scale_bias } => {
                cutlass_linear::linear(input, bytes, scale_bias, Bias::SecondScaleRow, epilogue)
            }
            TensorCores::Fp8 {
                bytes,
                scales,
                bias,
                ..
            } => {
                let bias = bias.as_ref().map(Bias::Float).unwrap_or(Bias::None);
                cutlass_linear::linear(input, bytes, scales, bias, epilogue)
            }
        }
    }
}

/// The tensor-core copy of a quantized weight `q` (out, in) on CUDA: int8 in any float dtype, FP8
/// with f16/bf16 (cuBLASLt's FP8 GEMMs write those); `None` elsewhere (the f32 reference runs).
/// `float` is the layer's float dtype; `bias` is `None` for a layer that adds none (fused Q/K/V).
fn tensor_core_copy(
    q: &Tensor,
    weight_scale: &Tensor,
    float: DType,
    bias: Option<&Tensor>,
    format: EightBit,
) -> Result<Option<TensorCores>> {
    if !q.device().is_cuda() {
        return Ok(None);
    }
    let (out, _) = q.dims2()?;
    match format {
        EightBit::Int8 => {
            // Exact integers in [-127, 127]: their two's-complement bytes. cuBLASLt's int8 GEMMs
            // need output widths in multiples of 4, the CUTLASS ones 16-byte rows of f16/bf16.
            let pad = out.next_multiple_of(8) - out;
            let values: Vec<f32> = q.pad_with_zeros(0, 0, pad)?.flatten_all()?.to_vec1()?;
            let bytes: Vec<u8> = values.iter().map(|&v| (v as i8) as u8).collect();
            let bytes = Tensor::from_vec(bytes, (out + pad, q.dim(1)?), q.device())?;
            let bias = match bias {
                Some(b) => b.to_dtype(DType::F32)?,
                None => Tensor::zeros(out, DType::F32, q.device())?,
            };
            let scale_bias = Tensor::cat(&[weight_scale, &bias.unsqueeze(0)?], 0)?
                .pad_with_zeros(1, 0, pad)?
                .contiguous()?;
            Ok(Some(TensorCores::Int8 { bytes, scale_bias }))
        }
        EightBit::Fp8E4M3 => {
            if !matches!(float, DType::F16 | DType::BF16) {
                return Ok(None);
            }
            let pad = out.next_multiple_of(fp8_gemm::FP8_WIDTH_MULTIPLE) - out;
            let values: Vec<f32> = q.pad_with_zeros(0, 0, pad)?.flatten_all()?.to_vec1()?;
            // The values are exact E4M3 numbers: their bits, as the hardware reads them.
            let bytes: Vec<u8> = values
                .iter()
                .map(|&v| float8::F8E4M3::from_f32(v).to_bits())
                .collect();
            let bytes = Tensor::from_vec(bytes, (out + pad, q.dim(1)?), q.device())?;
            let scales = weight_scale.pad_with_zeros(1, 0, pad)?.contiguous()?;
            let bias = bias
                .map(|b| b.pad_with_zeros(0, 0, pad)?.contiguous())
                .transpose()?;
            Ok(Some(TensorCores::Fp8 {
                bytes,
                scales,
                bias,
                fast_accumulation: false,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn a_linear_layer_in_w8a8_stays_close_to_its_f32_product() {
        let device = Device::Cpu;
        let w = Tensor::randn(0f32, 0.05, (48, 64), &device).unwrap();
        let b = Tensor::randn(0f32, 0.1, 48, &device).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 64), &device).unwrap();
        let exact = x
            .broadcast_matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        for (format, bound) in [(EightBit::Int8, 0.02f32), (EightBit::Fp8E4M3, 0.06)] {
            let layer = EightBitLinear::quantize(&w, b.clone(), format).unwrap();
            let y = layer.forward(&x, false).unwrap();
            assert_eq!(y.dims(), &[2, 5, 48]);
            let scale = values(&exact).iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = values(&y)
                .iter()
                .zip(values(&exact))
                .map(|(a, e)| (a - e).abs())
                .fold(0f32, f32::max);
            assert!(
                worst / scale < bound,
                "{format:?}: max error {worst} of {scale}"
            );
            assert!(worst > 0.0, "{format:?} must actually quantize");
        }
    }
}
