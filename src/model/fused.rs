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

/// Whether [`bias_act`] and [`masked_softmax`] run the runner's kernels on this device.
pub fn fused_on(device: &candle_core::Device) -> bool {
    cfg!(feature = "cuda") && device.is_cuda()
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::ops::Range;

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaDType, WrapErr};
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));

    /// The second input of a kernel: of the first input's dtype (a bias), or always f32 (a mask).
    enum Second<'a> {
        SameDtype(&'a CudaStorage, Range<usize>),
        F32(&'a CudaStorage, Range<usize>),
    }

    /// Runs `{kernel}_{f32|f16|bf16}` (by `x`'s dtype) as `kernel(x, second, out, tail...)`, with
    /// `out` a new buffer of `out_len` elements of `x`'s dtype.
    fn launch(
        kernel: &str,
        x: (&CudaStorage, Range<usize>),
        second: Second<'_>,
        out_len: usize,
        tail: &[u32],
        cfg: LaunchConfig,
    ) -> Result<CudaStorage> {
        match x.0.dtype() {
            DType::F32 => {
                launch_typed::<f32>(&format!("{kernel}_f32"), x, second, out_len, tail, cfg)
            }
            DType::F16 => {
                launch_typed::<half::f16>(&format!("{kernel}_f16"), x, second, out_len, tail, cfg)
            }
            DType::BF16 => {
                launch_typed::<half::bf16>(&format!("{kernel}_bf16"), x, second, out_len, tail, cfg)
            }
            other => candle_core::bail!("runner kernel {kernel}: no version for {other:?}"),
        }
    }

    fn launch_typed<T: CudaDType + DeviceRepr>(
        name: &str,
        (x, x_range): (&CudaStorage, Range<usize>),
        second: Second<'_>,
        out_len: usize,
        tail: &[u32],
        cfg: LaunchConfig,
    ) -> Result<CudaStorage> {
        let dev = x.device().clone();
        let func = dev.get_or_load_custom_func(name, "runner_fused", PTX)?;
        let xs = x.as_cuda_slice::<T>()?.slice(x_range);
        let (same, f32s);
        // SAFETY: every kernel here writes every element of its output.
        let out = unsafe { dev.alloc::<T>(out_len)? };
        let mut b = func.builder();
        b.arg(&xs);
        match second {
            Second::SameDtype(s, r) => {
                same = s.as_cuda_slice::<T>()?.slice(r);
                b.arg(&same);
            }
            Second::F32(s, r) => {
                f32s = s.as_cuda_slice::<f32>()?.slice(r);
                b.arg(&f32s);
            }
        }
        b.arg(&out);
        for v in tail {
            b.arg(v);
        }
        // SAFETY: the arguments match the kernel's signature.
        unsafe { b.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev))
    }

    /// The element range of a contiguous input, or an error naming the kernel.
    fn contiguous(l: &Layout, kernel: &str) -> Result<Range<usize>> {
        match l.contiguous_offsets() {
            Some((start, end)) => Ok(start..end),
            None => candle_core::bail!("runner kernel {kernel} needs contiguous inputs"),
        }
    }

    pub struct BiasAct {
        pub gelu: bool,
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
            let cols = *xl.shape().dims().last().unwrap_or(&1);
            let rows = xl.shape().elem_count() / cols.max(1);
            if bl.shape().elem_count() != cols {
                candle_core::bail!(
                    "bias of {} values for rows of {cols}",
                    bl.shape().elem_count()
                );
            }
            let kernel = if self.gelu { "bias_gelu" } else { "bias_none" };
            // x over columns, 256 threads a block; y over rows (the kernel strides past 65535).
            let cfg = LaunchConfig {
                grid_dim: (cols.div_ceil(256) as u32, rows.clamp(1, 65535) as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let out = launch(
                kernel,
                (x, contiguous(xl, kernel)?),
                Second::SameDtype(bias, contiguous(bl, kernel)?),
                rows * cols,
                &[rows as u32, cols as u32],
                cfg,
            )?;
            Ok((out, xl.shape().clone()))
        }
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
            let kernel = "masked_softmax";
            // One warp a row, 8 rows a block.
            let cfg = LaunchConfig {
                grid_dim: (rows.div_ceil(8) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let out = launch(
                kernel,
                (x, contiguous(xl, kernel)?),
                Second::F32(mask, contiguous(ml, kernel)?),
                rows * cols,
                &[rows as u32, cols as u32, (rows / batch) as u32],
                cfg,
            )?;
            Ok((out, xl.shape().clone()))
        }
    }
}
