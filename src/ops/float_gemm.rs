//! The float precisions' FFN-in through the runner's CUTLASS GEMM (`device.gemm_library =
//! "cutlass"`, src/ops/cutlass.rs): `gelu_erf(x W^T + b)` in one kernel, the bias and the erf
//! GELU in the epilogue of an f16/bf16 GEMM with f32 accumulation. cuBLASLt's GELU epilogue is the
//! tanh approximation, so with cuBLAS(Lt) the runner writes the GEMM's output and runs its own
//! bias + GELU kernel over it (`fused::bias_act`): 2 bytes a value written, read and written again.

use candle_core::{Result, Tensor};

/// `gelu_erf(x W^T + b)` for `x` (rows, K) and `weight` (N, K) in f16 or bf16, `bias` (N) in the
/// same dtype.
pub fn linear_bias_gelu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    {
        x.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &bias.contiguous()?,
            &cuda::BiasGeluGemm,
        )
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (x, weight, bias);
        candle_core::bail!("the CUTLASS GEMMs need a CUDA build")
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::DevicePtr;
    use candle_core::cuda_backend::CudaStorageSlice;
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape};

    use crate::ops::cutlass::{launch, Inputs, Kind, Operands};

    pub(super) struct BiasGeluGemm;

    impl candle_core::CustomOp3 for BiasGeluGemm {
        fn name(&self) -> &'static str {
            "runner-cutlass-bias-gelu-gemm"
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
            candle_core::bail!("runner-cutlass-bias-gelu-gemm is a CUDA kernel")
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            w: &CudaStorage,
            wl: &Layout,
            b: &CudaStorage,
            bl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (m, k) = xl.shape().dims2()?;
            let (n, wk) = wl.shape().dims2()?;
            let dtype = x.dtype();
            if wk != k
                || bl.shape().elem_count() != n
                || w.dtype() != dtype
                || b.dtype() != dtype
                || !matches!(dtype, DType::F16 | DType::BF16)
            {
                candle_core::bail!(
                    "runner-cutlass-bias-gelu-gemm: x {:?} {dtype:?}, weight {:?} {:?}, bias {:?} {:?}",
                    xl.shape(),
                    wl.shape(),
                    w.dtype(),
                    bl.shape(),
                    b.dtype()
                );
            }
            let dev = x.device().clone();
            let stream = dev.cuda_stream();
            // The guards only record events for other streams; everything here is on one.
            macro_rules! run {
                ($t:ty, $variant:ident) => {{
                    let out = unsafe { dev.alloc::<$t>((m * n).max(1))? };
                    let ptr = |s: &CudaStorage, off: usize| -> Result<u64> {
                        Ok(s.as_cuda_slice::<$t>()?.slice(off..).device_ptr(&stream).0)
                    };
                    let operands = Operands {
                        a: ptr(x, xl.start_offset())?,
                        b: ptr(w, wl.start_offset())?,
                        scale_x: 0,
                        scale_w: 0,
                        bias: ptr(b, bl.start_offset())?,
                        inv_scale: 0,
                        d: out.device_ptr(&stream).0,
                        m,
                        n,
                        k,
                    };
                    // SAFETY: the addresses are live buffers of the checked shapes, on this stream.
                    let kind = Kind {
                        inputs: Inputs::Float,
                        out: dtype,
                        gelu: true,
                        fast_accumulation: false,
                    };
                    unsafe { launch(kind, &operands, stream.cu_stream())? };
                    CudaStorageSlice::$variant(out)
                }};
            }
            let slice = match dtype {
                DType::F16 => run!(half::f16, F16),
                _ => run!(half::bf16, BF16),
            };
            Ok((
                CudaStorage {
                    slice,
                    device: dev.clone(),
                },
                Shape::from((m, n)),
            ))
        }
    }
}
