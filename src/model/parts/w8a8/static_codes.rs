//! `device.ffn_activation_scales = "static"`: FFN-out's input quantized with one calibrated step
//! per input channel (a column of FFN-in's GELU output) instead of a per-token scale found at run
//! time. A per-token scale needs a row's largest |value| over all 3072 columns, which no CTA of
//! FFN-in's GEMM sees (a tile holds 128), so the dynamic path stores the GELU output in the float
//! dtype and a row pass quantizes it. Static steps are known before the GEMM runs: its epilogue
//! multiplies column c by 1 / step[c] and stores the codes (gemm_codes.cuh).
//!
//! The reparametrization is exact (SmoothQuant's): x[m, c] = code[m, c] * step[c] up to rounding,
//! so FFN-out's sum_c x[m, c] W[n, c] = sum_c code[m, c] (W[n, c] step[c]): FFN-out holds
//! W'[n, c] = W[n, c] * step[c], quantized per output channel as every weight is, and reads the
//! codes with a row scale of 1 (NaN where FFN-in's input row was NaN: int8 codes hold none).
//! Steps ([`ffn_steps`]): int8, margin x max |GELU output| of the column over calibration
//! sentences / 127; E4M3, one step for the whole tensor (the largest column's max / 448). Values
//! beyond saturate (src/model/encoder/calibrate.rs measures how many).

use candle_core::{DType, Result, Tensor};

use super::{EightBitLinear, TensorCores};
use crate::config::{EightBit, GemmLibrary};
use crate::model::quant::w8a8::{quantize_columns, quantize_rows};
use crate::ops::cutlass;
use crate::ops::eight_bit::cutlass_linear::{self, Bias, Epilogue, Input};
use crate::ops::eight_bit::Packed8;

/// One FFN-in's static output steps: (1, n) f32 on the CPU (the reference and the record) and
/// their reciprocals, (n) f32 on the layer's device (the epilogue's operand).
#[derive(Clone)]
pub struct StaticSteps {
    pub(super) steps: Tensor,
    pub(super) inverse: Tensor,
}

/// FFN-out's input steps (1, n) from the calibration's per-column max |GELU output| (1, n).
///
/// int8 codes are a uniform grid, so a column's own range is its precision: a step per column.
/// E4M3 keeps its 3 mantissa bits at every magnitude, so a step per column buys its codes
/// nothing, while folding 3072 different steps into FFN-out's weights (W'[n, c] = W[n, c] x
/// step[c], quantized per output channel) costs them: on an H100, fp8-fp16 b16's cosine against
/// fp32 was 0.99785 with per-column steps (0.99796 / 0.99789 with margins 2 / 4: not
/// saturation), 0.99921 with one step per tensor, 0.99912 with dynamic per-token scales
/// (docs/results/2026-12-07-nvidia-h100-cutlass-rows, session 12). So E4M3 gets one step, the
/// largest column's, in every column: the same kernels, W' = W x step exactly as W quantizes.
pub fn ffn_steps(absmax: &Tensor, format: EightBit, margin: f64) -> Result<Tensor> {
    match format {
        EightBit::Int8 => steps_from_absmax(absmax, format, margin),
        EightBit::Fp8E4M3 => {
            let largest = absmax.to_dtype(DType::F32)?.max_keepdim(1)?;
            let shared = largest.broadcast_as(absmax.dims())?.contiguous()?;
            steps_from_absmax(&shared, format, margin)
        }
    }
}

/// How [`ffn_steps`] shares its steps, for the record.
pub fn ffn_step_sharing(format: EightBit) -> &'static str {
    match format {
        EightBit::Int8 => "static per-column steps",
        EightBit::Fp8E4M3 => {
            "one static step for the whole tensor (E4M3: the largest column's, in every column)"
        }
    }
}

/// The steps of a format from per-column max |value| (1, n) f32: `margin` x max / the format's
/// largest code; a column that was 0 on every calibration sentence gets max 1 (any step holds 0).
pub fn steps_from_absmax(absmax: &Tensor, format: EightBit, margin: f64) -> Result<Tensor> {
    let absmax = absmax.to_dtype(DType::F32)?;
    let zero = absmax.eq(0f64)?;
    let max = zero.where_cond(&absmax.ones_like()?, &absmax)?;
    max.affine(margin / f64::from(format.max_value()), 0.0)
}

impl EightBitLinear {
    /// Makes this layer (an FFN-in) write its GELU output as codes with these steps ((1, n) f32);
    /// the FFN-out after it must be rebuilt with [`Self::with_folded_steps`].
    pub fn set_static_output(&mut self, steps: &Tensor) -> Result<()> {
        let steps = steps
            .to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?;
        let n = self.weight.dim(0)?;
        if steps.dims() != [1, n] {
            candle_core::bail!("static steps {:?} for a layer of {n} outputs", steps.dims());
        }
        let inverse = steps
            .recip()?
            .flatten_all()?
            .to_device(self.weight.device())?;
        self.static_output = Some(StaticSteps { steps, inverse });
        Ok(())
    }

    /// The static steps this layer's output is quantized with, if any ((1, n) f32).
    pub fn static_steps(&self) -> Option<&Tensor> {
        self.static_output.as_ref().map(|s| &s.steps)
    }

    /// FFN-out from its f32 weight `w` (out, in) with the steps of FFN-in's output folded in:
    /// W'[n, c] = W[n, c] * step[c], quantized per output channel.
    pub fn with_folded_steps(
        w: &Tensor,
        bias: Tensor,
        steps: &Tensor,
        format: EightBit,
    ) -> Result<Self> {
        let steps = steps.to_dtype(DType::F32)?.to_device(w.device())?;
        Self::quantize(
            &w.to_dtype(DType::F32)?.broadcast_mul(&steps)?,
            bias,
            format,
        )
    }

    /// The bias, in the float dtype.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Gives `other` (a rebuilt copy of this layer) this layer's GEMM library and FP8 fast
    /// accumulation.
    pub fn carry_settings_to(&self, other: &mut EightBitLinear) {
        other.set_gemm_library(self.library);
        other.set_fp8_fast_accumulation(self.fp8_fast_accumulation());
    }

    /// Whether the CUTLASS kernel that writes codes takes this layer, or why not.
    pub fn static_codes_kernel(&self) -> std::result::Result<(), String> {
        if self.library != GemmLibrary::Cutlass {
            return Err("static activation scales need device.gemm_library = \"cutlass\" on CUDA (FFN-in's epilogue writes the codes)".into());
        }
        if self.tensor_cores.is_none() {
            return Err("not on tensor cores".into());
        }
        let kind = self.codes_kind()?;
        let (n, k) = self.gemm_shape();
        cutlass::unsupported(kind, n, k).map_or(Ok(()), |why| {
            Err(if kind.fast_accumulation {
                format!("{why}; set device.fp8_fast_accumulation = false or device.ffn_activation_scales = \"dynamic\"")
            } else {
                why
            })
        })
    }

    /// What FFN-in's codes kernel computes: the GEMM writing int8 or E4M3 codes (E4M3 from an
    /// f16 model only).
    pub(crate) fn codes_kind(&self) -> std::result::Result<cutlass::Kind, String> {
        let out = match (self.format, self.float_dtype()) {
            (EightBit::Int8, _) => DType::U8,
            (EightBit::Fp8E4M3, DType::F16) => DType::F8E4M3,
            (EightBit::Fp8E4M3, d) => {
                return Err(format!("no E4M3 codes kernel for a {d:?} model (f16 only)"))
            }
        };
        Ok(cutlass::Kind {
            inputs: match self.format {
                EightBit::Int8 => cutlass::Inputs::Int8,
                EightBit::Fp8E4M3 => cutlass::Inputs::E4m3,
            },
            out,
            gelu: true,
            fast_accumulation: self.fp8_fast_accumulation(),
        })
    }

    /// FFN-in's GELU output as `next`'s codes in one CUTLASS GEMM (static steps): `None` where
    /// this layer has no static steps or the kernel does not take it.
    pub fn forward_gelu_codes(
        &self,
        x: &Tensor,
        packed: Option<&Packed8>,
        next: &EightBitLinear,
    ) -> Result<Option<Packed8>> {
        let (Some(st), Some(tc)) = (&self.static_output, &self.tensor_cores) else {
            return Ok(None);
        };
        if !self.gelu_packs_for(next) || self.static_codes_kernel().is_err() {
            return Ok(None);
        }
        let (rows, _) = x.dims2()?;
        let input = match packed.filter(|p| self.reads(p)) {
            Some(p) => Input::Packed {
                bytes: p.bytes(),
                rows: p.rows(),
            },
            None => Input::Float(x),
        };
        let epilogue = Epilogue {
            format: self.format,
            float: self.float_dtype(),
            gelu: true,
            packed_output: true,
            fast_accumulation: self.fp8_fast_accumulation(),
        };
        let bytes = match tc {
            TensorCores::Int8 { bytes, scale_bias } => cutlass_linear::linear_to_codes(
                input,
                bytes,
                scale_bias,
                Bias::SecondScaleRow,
                epilogue,
                &st.inverse,
            )?,
            TensorCores::Fp8 {
                bytes,
                scales,
                bias,
                ..
            } => {
                let bias = bias.as_ref().map(Bias::Float).unwrap_or(Bias::None);
                cutlass_linear::linear_to_codes(input, bytes, scales, bias, epilogue, &st.inverse)?
            }
        };
        Ok(Some(Packed8::new(
            bytes,
            rows,
            self.weight.dim(0)?,
            self.format,
        )))
    }

    /// The numerics reference of the static FFN, in f32 on the CPU's arithmetic: FFN-in's GELU
    /// output (f32, never rounded to the float dtype, as in the epilogue) times 1 / step per
    /// column, rounded to codes; FFN-out (`next`, steps folded in) on the codes with row scale 1
    /// (NaN for a NaN input row). Returns (codes (rows, n) f32, FFN-out's output in the dtype).
    pub fn static_ffn_reference(
        &self,
        x: &Tensor,
        next: &EightBitLinear,
    ) -> Result<(Tensor, Tensor)> {
        let Some(st) = &self.static_output else {
            candle_core::bail!("static_ffn_reference: this layer has no static steps");
        };
        let dtype = x.dtype();
        let device = self.weight.device();
        let x = x.to_dtype(DType::F32)?;
        let (xq, sx) = quantize_rows(&x, self.format)?;
        let y = xq
            .matmul(&self.weight.t()?)?
            .broadcast_mul(&sx)?
            .broadcast_mul(&self.weight_scale)?
            .broadcast_add(&self.bias.to_dtype(DType::F32)?)?
            .gelu_erf()?;
        let inverse = st.steps.to_device(device)?.recip()?;
        let codes = quantize_columns(&y, &inverse, self.format)?;
        let rows = sx.ne(&sx)?.where_cond(&sx, &sx.ones_like()?)?;
        let out = next.forward_codes_reference(&codes, &rows, dtype)?;
        Ok((codes, out))
    }

    /// This layer (an FFN-out with the steps folded in) on codes (rows, in) f32 with per-row
    /// scales (rows, 1) (1, or NaN), in f32 on the CPU's arithmetic, rounded to `dtype`.
    pub fn forward_codes_reference(
        &self,
        codes: &Tensor,
        row_scales: &Tensor,
        dtype: DType,
    ) -> Result<Tensor> {
        codes
            .matmul(&self.weight.t()?)?
            .broadcast_mul(row_scales)?
            .broadcast_mul(&self.weight_scale)?
            .broadcast_add(&self.bias.to_dtype(DType::F32)?)?
            .to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn steps(absmax: &[f32], format: EightBit) -> Vec<f32> {
        let t = Tensor::new(absmax, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let s = ffn_steps(&t, format, 1.0).unwrap();
        assert_eq!(s.dims(), [1, absmax.len()]);
        s.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn int8_ffn_steps_follow_each_column_and_e4m3_shares_the_largest() {
        let absmax = [127.0f32, 12.7, 0.0, 254.0];
        // int8: each column's own max over 127 (a column never seen nonzero gets max 1).
        assert_eq!(
            steps(&absmax, EightBit::Int8),
            vec![1.0, 0.1, 1.0 / 127.0, 2.0]
        );
        // E4M3: every column the largest column's max over 448 (to f32 rounding).
        let close = |got: Vec<f32>, want: f32, n: usize| {
            assert_eq!(got.len(), n);
            assert!(
                got.iter().all(|&g| (g - want).abs() <= want * 1e-6),
                "{got:?} vs {want}"
            );
        };
        close(
            steps(&absmax, EightBit::Fp8E4M3),
            254.0 / 448.0,
            absmax.len(),
        );
        // A tensor that was zero everywhere still gets a usable step.
        close(steps(&[0.0, 0.0], EightBit::Fp8E4M3), 1.0 / 448.0, 2);
        assert!(ffn_step_sharing(EightBit::Int8).contains("per-column"));
        assert!(ffn_step_sharing(EightBit::Fp8E4M3).contains("whole tensor"));
    }
}
