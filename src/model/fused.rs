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
