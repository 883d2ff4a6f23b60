//! Fused kernels of the runner's own (src/kernels/*.cu), used on CUDA where candle's generic
//! kernels were measured far from the GPU's bandwidth (docs/results/*-speed/NOTES.md). Elsewhere
//! each function is the plain candle computation it replaces, which is also what the GPU checks
//! (examples/kernel_check.rs) compare against.

use candle_core::{Result, Tensor};

/// `act(x + bias)` for a (rows, cols) `x` and a (cols) `bias`; `gelu` picks erf GELU as `act`,
/// else identity.
pub fn bias_act(x: &Tensor, bias: &Tensor, gelu: bool) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        let x = x.contiguous()?;
        return x.apply_op2_no_bwd(&bias.contiguous()?, &cuda::BiasAct { gelu });
    }
    plain_bias_act(x, bias, gelu)
}

/// What [`bias_act`] replaces: candle's broadcast add, then its GELU.
pub fn plain_bias_act(x: &Tensor, bias: &Tensor, gelu: bool) -> Result<Tensor> {
    let y = x.broadcast_add(bias)?;
    if gelu {
        y.gelu_erf()
    } else {
        Ok(y)
    }
}

/// Softmax over the last dimension of attention scores (batch, heads, queries, keys) after adding
/// the f32 additive mask (batch, 1, 1, keys), computed in f32 and returned in the scores' dtype.
pub fn masked_softmax(scores: &Tensor, additive_mask: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if scores.device().is_cuda() {
        let mask = additive_mask
            .to_dtype(candle_core::DType::F32)?
            .contiguous()?;
        return scores
            .contiguous()?
            .apply_op2_no_bwd(&mask, &cuda::MaskedSoftmax);
    }
    plain_masked_softmax(scores, additive_mask)
}

/// What [`masked_softmax`] computes, with candle's kernels: the mask added and the softmax taken
/// in f32, then rounded to the scores' dtype.
pub fn plain_masked_softmax(scores: &Tensor, additive_mask: &Tensor) -> Result<Tensor> {
    let dtype = scores.dtype();
    let s = scores
        .to_dtype(candle_core::DType::F32)?
        .broadcast_add(&additive_mask.to_dtype(candle_core::DType::F32)?)?;
    candle_nn::ops::softmax_last_dim(&s)?.to_dtype(dtype)
}

/// Whether [`bias_act`] runs the runner's kernel on this device (for the records).
pub fn fused_on(device: &candle_core::Device) -> bool {
    cfg!(feature = "cuda") && device.is_cuda()
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/bias_act.ptx"));

    pub struct BiasAct {
        pub gelu: bool,
    }

    pub struct MaskedSoftmax;

    impl candle_core::CustomOp2 for MaskedSoftmax {
        fn name(&self) -> &'static str {
            "runner-masked-softmax"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!(
                "runner-masked-softmax is a CUDA kernel (the CPU uses plain_masked_softmax)"
            )
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            mask: &CudaStorage,
            ml: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dims = xl.shape().dims();
            let (&batch, &cols) = match (dims.first(), dims.last()) {
                (Some(b), Some(c)) if dims.len() == 4 => (b, c),
                _ => candle_core::bail!("runner-masked-softmax wants (batch, heads, q, k) scores"),
            };
            if ml.shape().elem_count() != batch * cols {
                candle_core::bail!(
                    "mask of {} values for {batch} sequences of {cols} keys",
                    ml.shape().elem_count()
                );
            }
            let rows = xl.shape().elem_count() / cols;
            let rows_per_batch = (rows / batch) as u32;
            let (Some((x0, x1)), Some((m0, m1))) =
                (xl.contiguous_offsets(), ml.contiguous_offsets())
            else {
                candle_core::bail!("runner-masked-softmax needs contiguous inputs");
            };
            let dev = x.device().clone();
            // 8 warps (rows) a block.
            let cfg = LaunchConfig {
                grid_dim: (rows.div_ceil(8) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let ms = mask.as_cuda_slice::<f32>()?.slice(m0..m1);
            macro_rules! launch {
                ($t:ty, $suffix:literal) => {{
                    let func = dev.get_or_load_custom_func(
                        concat!("masked_softmax_", $suffix),
                        "runner_bias_act",
                        PTX,
                    )?;
                    let xs = x.as_cuda_slice::<$t>()?.slice(x0..x1);
                    // SAFETY: every element is written by the kernel below.
                    let out = unsafe { dev.alloc::<$t>(rows * cols)? };
                    let mut b = func.builder();
                    b.arg(&xs);
                    b.arg(&ms);
                    b.arg(&out);
                    let (r, c) = (rows as u32, cols as u32);
                    b.arg(&r);
                    b.arg(&c);
                    b.arg(&rows_per_batch);
                    // SAFETY: the arguments match the kernel's signature.
                    unsafe { b.launch(cfg) }.w()?;
                    CudaStorage::wrap_cuda_slice(out, dev.clone())
                }};
            }
            let out = match x.dtype() {
                DType::F32 => launch!(f32, "f32"),
                DType::F16 => launch!(half::f16, "f16"),
                DType::BF16 => launch!(half::bf16, "bf16"),
                other => candle_core::bail!("runner-masked-softmax: no kernel for {other:?}"),
            };
            Ok((out, xl.shape().clone()))
        }
    }

    impl candle_core::CustomOp2 for BiasAct {
        fn name(&self) -> &'static str {
            "runner-bias-act"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!("runner-bias-act is a CUDA kernel (the CPU uses plain_bias_act)")
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dims = xl.shape().dims();
            let cols = *dims.last().unwrap_or(&1);
            let rows = xl.shape().elem_count() / cols.max(1);
            if bl.shape().elem_count() != cols {
                candle_core::bail!(
                    "bias of {} values for rows of {cols}",
                    bl.shape().elem_count()
                );
            }
            let (Some((x0, x1)), Some((b0, b1))) =
                (xl.contiguous_offsets(), bl.contiguous_offsets())
            else {
                candle_core::bail!("runner-bias-act needs contiguous inputs");
            };
            let dev = x.device().clone();
            let act = if self.gelu { "gelu" } else { "none" };
            let cfg = LaunchConfig {
                grid_dim: (cols.div_ceil(256) as u32, rows.clamp(1, 65535) as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            macro_rules! launch {
                ($t:ty, $suffix:literal) => {{
                    let func = dev.get_or_load_custom_func(
                        &format!("bias_{act}_{}", $suffix),
                        "runner_bias_act",
                        PTX,
                    )?;
                    let xs = x.as_cuda_slice::<$t>()?.slice(x0..x1);
                    let bs = bias.as_cuda_slice::<$t>()?.slice(b0..b1);
                    // SAFETY: every element is written by the kernel below.
                    let out = unsafe { dev.alloc::<$t>(rows * cols)? };
                    let mut b = func.builder();
                    b.arg(&xs);
                    b.arg(&bs);
                    b.arg(&out);
                    let (r, c) = (rows as u32, cols as u32);
                    b.arg(&r);
                    b.arg(&c);
                    // SAFETY: the arguments match the kernel's signature.
                    unsafe { b.launch(cfg) }.w()?;
                    CudaStorage::wrap_cuda_slice(out, dev.clone())
                }};
            }
            let out = match x.dtype() {
                DType::F32 => launch!(f32, "f32"),
                DType::F16 => launch!(half::f16, "f16"),
                DType::BF16 => launch!(half::bf16, "bf16"),
                other => candle_core::bail!("runner-bias-act: no kernel for {other:?}"),
            };
            Ok((out, xl.shape().clone()))
        }
    }
}
