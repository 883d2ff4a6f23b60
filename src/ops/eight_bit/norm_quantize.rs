//! Residual + layer norm that also quantizes its output for the W8A8 layer that reads it next
//! (issue 16: the activation quantization inside the kernel that produces the activation). In a
//! block, the attention's layer norm feeds FFN-in, and the FFN's feeds the next block's Q/K/V
//! projection: both GEMMs would otherwise run a quantization pass of their own over it. The kernel
//! (src/ops/kernels/eight_bit.cu, `add_layer_norm_quantize`) writes the norm's output in the float
//! dtype, as `fused::add_layer_norm` does (it is still the next norm's residual), and the bytes
//! and per-row scales that pass would write: the same bytes, which examples/int8_check.rs checks.

use candle_core::{DType, Device, Result, Tensor};

use super::Packed8;
use crate::config::EightBit;

/// Whether this device has the kernel for `dtype` in `format` (int8 in f32, f16 and bf16, as the
/// int8 GEMMs; E4M3 in f16 and bf16, as the FP8 GEMMs) at rows of `cols` values.
pub fn norm_quantizes(device: &Device, dtype: DType, format: EightBit, cols: usize) -> bool {
    crate::ops::fused::fused_on(device) && kernel_for(dtype, format, cols)
}

/// Whether src/ops/kernels/eight_bit.cu has the kernel for these rows, on any CUDA device.
fn kernel_for(dtype: DType, format: EightBit, cols: usize) -> bool {
    let dtype_ok = match format {
        EightBit::Int8 => matches!(dtype, DType::F32 | DType::F16 | DType::BF16),
        EightBit::Fp8E4M3 => matches!(dtype, DType::F16 | DType::BF16),
    };
    // The 8-bit GEMMs read rows in multiples of 16 bytes (FP8) and 4 (int8).
    dtype_ok && cols.is_multiple_of(16)
}

/// `layer_norm(x + residual)` (`gamma_beta` = (2, cols)) in `x`'s dtype, and the same values
/// quantized per row in `format`: what `fused::add_layer_norm`, then an 8-bit GEMM's quantization
/// pass, would give. CUDA only (see [`norm_quantizes`]).
pub fn add_layer_norm_packed(
    x: &Tensor,
    residual: &Tensor,
    gamma_beta: &Tensor,
    eps: f64,
    format: EightBit,
) -> Result<(Tensor, Packed8)> {
    let cols = *x.dims().last().unwrap_or(&1);
    let rows = x.elem_count() / cols.max(1);
    if !norm_quantizes(x.device(), x.dtype(), format, cols) {
        candle_core::bail!(
            "no layer norm + {} quantization kernel for {:?} rows of {cols} on {:?}",
            format.name(),
            x.dtype(),
            x.device()
        );
    }
    #[cfg(feature = "cuda")]
    {
        let op = cuda::NormQuantize {
            eps: eps as f32,
            format,
            packed: cuda::SecondOutput::default(),
        };
        let y = x.contiguous()?.apply_op3_no_bwd(
            &residual.contiguous()?,
            &gamma_beta.contiguous()?,
            &op,
        )?;
        let bytes = y.apply_op1_no_bwd(&op.packed)?;
        Ok((y, Packed8::new(bytes, rows, cols, format)))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (residual, gamma_beta, eps, rows);
        unreachable!("norm_quantizes is false without CUDA")
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::Mutex;

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape};

    use crate::config::EightBit;
    use crate::ops::eight_bit::int8_gemm::cuda::{MODULE, PTX};
    use crate::ops::eight_bit::Packed8;

    /// A candle op has one output; the norm's kernel writes two. The float output is the op's,
    /// the packed bytes wait here until [`SecondOutput`] (applied to the float output, whose
    /// values it ignores) hands them out as a tensor of their own.
    #[derive(Default)]
    pub struct SecondOutput(Mutex<Option<CudaStorage>>);

    impl candle_core::CustomOp1 for SecondOutput {
        fn name(&self) -> &'static str {
            "runner-norm-quantize-bytes"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!("runner-norm-quantize-bytes is a CUDA kernel's second output")
        }

        fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
            let taken = self
                .0
                .lock()
                .map_err(|_| candle_core::Error::msg("poisoned"))?
                .take();
            let Some(bytes) = taken else {
                candle_core::bail!("runner-norm-quantize-bytes: the norm kernel has not run");
            };
            let len = match &bytes.slice {
                CudaStorageSlice::U8(s) => s.len(),
                _ => candle_core::bail!("runner-norm-quantize-bytes: not a byte buffer"),
            };
            Ok((bytes, Shape::from(len)))
        }
    }

    pub struct NormQuantize {
        pub eps: f32,
        pub format: EightBit,
        pub packed: SecondOutput,
    }

    impl candle_core::CustomOp3 for NormQuantize {
        fn name(&self) -> &'static str {
            "runner-add-layer-norm-quantize"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!("runner-add-layer-norm-quantize is a CUDA kernel")
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            residual: &CudaStorage,
            rl: &Layout,
            gamma_beta: &CudaStorage,
            gl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let cols = *xl.shape().dims().last().unwrap_or(&1);
            let rows = xl.shape().elem_count() / cols.max(1);
            let offsets = [xl, rl, gl].map(|l| l.contiguous_offsets().map(|(s, _)| s));
            if rl.shape() != xl.shape()
                || gl.shape().elem_count() != 2 * cols
                || residual.dtype() != x.dtype()
                || gamma_beta.dtype() != x.dtype()
                || offsets.iter().any(Option::is_none)
            {
                candle_core::bail!(
                    "runner-add-layer-norm-quantize: contiguous input {:?}, residual {:?}, gamma_beta {:?} (want (2, {cols})) of one dtype",
                    xl.shape(),
                    rl.shape(),
                    gl.shape()
                );
            }
            let [xo, ro, go] = offsets.map(|o| o.unwrap_or(0));
            let n = 16 / x.dtype().size_in_bytes();
            // 16-byte loads where every row and every input's start allow them.
            let vec = [cols, xo, ro, go].iter().all(|v| v.is_multiple_of(n));
            let dtype = match x.dtype() {
                DType::F32 => "f32",
                DType::F16 => "f16",
                DType::BF16 => "bf16",
                other => candle_core::bail!("runner-add-layer-norm-quantize: no {other:?} version"),
            };
            let format = match self.format {
                EightBit::Int8 => "i8",
                EightBit::Fp8E4M3 => "e4m3",
            };
            let name = format!(
                "add_layer_norm_quantize_{format}{}_{dtype}",
                crate::ops::fused::norm_variant(x.dtype(), cols, vec)
            );
            let dev = x.device().clone();
            let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
            let mut packed = unsafe { dev.alloc::<u8>(Packed8::len(rows, cols))? };
            let (r32, c32) = (rows as u32, cols as u32);
            // One warp a row, 8 rows a block (as fused::add_layer_norm).
            let cfg = LaunchConfig {
                grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            macro_rules! launch {
                ($t:ty, $variant:ident) => {{
                    let out = unsafe { dev.alloc::<$t>(rows * cols)? };
                    {
                        let (mut q, mut rest) = packed.split_at_mut(Packed8::scales_at(rows, cols));
                        // SAFETY: `rows` f32 scales fit after the values, from a 16-byte boundary.
                        let mut scales = unsafe { rest.transmute_mut::<f32>(rows) }
                            .ok_or_else(|| candle_core::Error::msg("packed output: no room"))?;
                        let xs = x.as_cuda_slice::<$t>()?.slice(xo..);
                        let rs = residual.as_cuda_slice::<$t>()?.slice(ro..);
                        let gs = gamma_beta.as_cuda_slice::<$t>()?.slice(go..);
                        let mut b = func.builder();
                        b.arg(&xs)
                            .arg(&rs)
                            .arg(&gs)
                            .arg(&out)
                            .arg(&mut q)
                            .arg(&mut scales)
                            .arg(&r32)
                            .arg(&c32)
                            .arg(&self.eps);
                        // SAFETY: the arguments match the kernel's signature.
                        unsafe { b.launch(cfg) }.w()?;
                    }
                    CudaStorageSlice::$variant(out)
                }};
            }
            let slice = match x.dtype() {
                DType::F32 => launch!(f32, F32),
                DType::F16 => launch!(half::f16, F16),
                _ => launch!(half::bf16, BF16),
            };
            *self
                .packed
                .0
                .lock()
                .map_err(|_| candle_core::Error::msg("poisoned"))? = Some(CudaStorage {
                slice: CudaStorageSlice::U8(packed),
                device: dev.clone(),
            });
            Ok((CudaStorage { slice, device: dev }, xl.shape().clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_take_the_dtypes_and_widths_of_the_gemms_that_read_them() {
        assert!(kernel_for(DType::F16, EightBit::Fp8E4M3, 768));
        assert!(kernel_for(DType::BF16, EightBit::Fp8E4M3, 384));
        assert!(kernel_for(DType::F32, EightBit::Int8, 48));
        // No FP8 GEMM writes f32; rows the GEMMs cannot read keep the quantization pass.
        assert!(!kernel_for(DType::F32, EightBit::Fp8E4M3, 768));
        assert!(!kernel_for(DType::F16, EightBit::Int8, 40));
        assert!(!kernel_for(DType::U8, EightBit::Int8, 768));
    }

    #[test]
    fn off_cuda_there_is_no_kernel_and_a_call_says_so() {
        let x = Tensor::zeros((2, 16), DType::F32, &Device::Cpu).unwrap();
        let gamma_beta = Tensor::ones((2, 16), DType::F32, &Device::Cpu).unwrap();
        assert!(!norm_quantizes(
            &Device::Cpu,
            DType::F32,
            EightBit::Int8,
            16
        ));
        let err = add_layer_norm_packed(&x, &x, &gamma_beta, 1e-5, EightBit::Int8)
            .err()
            .expect("no kernel on the CPU")
            .to_string();
        assert!(
            err.contains("no layer norm + int8 quantization kernel for F32 rows of 16"),
            "{err}"
        );
    }
}
