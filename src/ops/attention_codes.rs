//! The one-kernel attention (src/ops/attention.rs) writing attention-out's 8-bit input as codes
//! with static per-column steps (`device.attention_activation_scales = "static"`): the context,
//! rounded to the float dtype as the plain kernel stores it, times 1 / step of its column, rounded
//! to int8 or E4M3, in [`Packed8`]'s layout with every row scale 1 (NaN where the row's context
//! has a NaN). The steps are calibrated at load and folded into attention-out's weights
//! (src/model/encoder/calibrate_attention.rs), as the static FFN's are into FFN-out's.
//!
//! Why static: a per-token scale needs the row's largest |value| over all heads, and one block
//! computes one head; sharing it through a thread-block cluster (src/ops/attention_packed.rs) cost
//! more than the quantization pass it removed. With a step per column no block needs another's
//! values: the pass goes (it read the f16 context, 12.6 MB at batch 64 x 128, and wrote the
//! codes), and the kernel stores 6.3 MB of codes instead of 12.6 MB of f16. The row scales take
//! one memset node (32 KB at 8192 rows) before the launch: head 0 ORs 1.0's bits into them, a
//! head that saw a NaN a NaN's (src/ops/kernels/attention.cuh, `store_static`).
//!
//! Measured on an H100 (docs/results/2026-12-06-nvidia-h100-cutlass-attention/): every code
//! equal to the CPU's, but codes + attention-out 54.6 us against attention + pass + attention-out
//! 55.6 at batch 64 x 128 with the padding skipped: the kernel is slower than the f16 one by about
//! the pass. The memset node and the 2-byte code stores are the suspects; not yet profiled.

use candle_core::{DType, Result, Tensor};

use super::attention::one_kernel_on;
use super::eight_bit::Packed8;
use crate::config::EightBit;

/// softmax(Q K^T + mask) V as [`super::attention::attention`] computes it, quantized with
/// `inv_steps` ((heads * head_dim) f32 on the same device: 1 / step of each column) into codes in
/// `format` with row scales 1, for attention-out holding W[n, c] x step[c]. With `skip_padding`
/// the key chunks past each sequence's last unmasked key are left out (as
/// `device.attention_padding = "skip"`). CUDA, f16/bf16, heads of 32 or 64 only.
pub fn attention_codes(
    x: &Tensor,
    bias: &Tensor,
    additive_mask: &Tensor,
    (seq, heads): (usize, usize),
    inv_steps: &Tensor,
    format: EightBit,
    skip_padding: bool,
) -> Result<Packed8> {
    let (rows, cols) = x.dims2()?;
    let head_dim = cols / 3 / heads.max(1);
    if !one_kernel_on(x.device(), x.dtype(), head_dim) {
        candle_core::bail!(
            "static attention codes: no one-kernel attention for {:?} heads of {head_dim} on this device",
            x.dtype()
        );
    }
    if seq == 0 || rows % seq != 0 || rows / seq > 65_535 {
        candle_core::bail!(
            "static attention codes: {rows} rows are not a batch of sequences of {seq}"
        );
    }
    if inv_steps.dims() != [heads * head_dim] || inv_steps.dtype() != DType::F32 {
        candle_core::bail!(
            "static attention codes: steps {:?} {:?} for a context of {}",
            inv_steps.dims(),
            inv_steps.dtype(),
            heads * head_dim
        );
    }
    #[cfg(feature = "cuda")]
    {
        let op = cuda::AttentionCodes {
            seq,
            heads,
            head_dim,
            format,
            skip_padding,
            inv_steps: inv_steps.contiguous()?,
        };
        let bytes = x.contiguous()?.apply_op3_no_bwd(
            &bias.contiguous()?,
            &additive_mask.to_dtype(DType::F32)?.contiguous()?,
            &op,
        )?;
        Ok(Packed8::new(bytes, rows, heads * head_dim, format))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (bias, additive_mask, format, skip_padding);
        unreachable!("one_kernel_on is false without CUDA")
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape, Storage, Tensor};

    use crate::config::EightBit;
    use crate::ops::eight_bit::Packed8;
    use crate::ops::fused::cuda::{contiguous, no_cpu, PTX};

    /// Query rows per block, as the kernel's `attn::ROWS`.
    const ROWS: usize = 64;
    const MODULE: &str = "runner_fused";

    pub(super) struct AttentionCodes {
        pub(super) seq: usize,
        pub(super) heads: usize,
        pub(super) head_dim: usize,
        pub(super) format: EightBit,
        pub(super) skip_padding: bool,
        /// (heads * head_dim) f32, contiguous: the fourth input (a candle op takes three).
        pub(super) inv_steps: Tensor,
    }

    fn kernel_name(dtype: DType, head_dim: usize, format: EightBit, skip: bool) -> Result<String> {
        let t = match dtype {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            other => candle_core::bail!("no static attention codes for {other:?}"),
        };
        let f = match format {
            EightBit::Int8 => "i8",
            EightBit::Fp8E4M3 => "e4m3",
        };
        let skip = if skip { "skip_" } else { "" };
        Ok(format!("attention_codes_{skip}d{head_dim}_{f}_{t}"))
    }

    impl candle_core::CustomOp3 for AttentionCodes {
        fn name(&self) -> &'static str {
            "runner-attention-codes"
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
            no_cpu(self.name())
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
            mask: &CudaStorage,
            ml: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (seq, heads, head_dim) = (self.seq, self.heads, self.head_dim);
            let kernel = kernel_name(x.dtype(), head_dim, self.format, self.skip_padding)?;
            let width = heads * head_dim;
            let rows = xl.shape().elem_count() / (3 * width).max(1);
            let batch = rows / seq.max(1);
            let (xr, br, mr) = (
                contiguous(xl, &kernel)?,
                contiguous(bl, &kernel)?,
                contiguous(ml, &kernel)?,
            );
            if xl.shape().elem_count() != rows * 3 * width
                || bl.shape().elem_count() != 3 * width
                || ml.shape().elem_count() != batch * seq
                || batch * seq != rows
                || bias.dtype() != x.dtype()
                || mask.dtype() != DType::F32
                || !xr.start.is_multiple_of(8)
                || !br.start.is_multiple_of(8)
            {
                candle_core::bail!(
                    "{kernel}: qkv {:?}, bias {:?}, mask {:?} for seq {seq}, {heads} heads of {head_dim} (16-byte aligned starts)",
                    xl.shape(),
                    bl.shape(),
                    ml.shape()
                );
            }
            let (steps_storage, steps_layout) = self.inv_steps.storage_and_layout();
            let Storage::Cuda(steps) = &*steps_storage else {
                candle_core::bail!("{kernel}: the steps are not on the GPU");
            };
            let sr = contiguous(steps_layout, &kernel)?;
            let dev = x.device().clone();
            let func = dev.get_or_load_custom_func(&kernel, MODULE, PTX)?;
            let mut packed = unsafe { dev.alloc::<u8>(Packed8::len(rows, width))? };
            let cfg = LaunchConfig {
                grid_dim: (seq.div_ceil(ROWS) as u32, heads as u32, batch as u32),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            let (s32, h32) = (seq as u32, heads as u32);
            {
                let (mut q, mut rest) = packed.split_at_mut(Packed8::scales_at(rows, width));
                // SAFETY: `rows` f32 scales fit after the values, from a 16-byte boundary on.
                let mut scales = unsafe { rest.transmute_mut::<u32>(rows) }
                    .ok_or_else(|| candle_core::Error::msg("codes output: no room"))?;
                // The kernel ORs each row's scale bits into zeros (1.0, or a NaN).
                dev.cuda_stream().memset_zeros(&mut scales).w()?;
                let ms = mask.as_cuda_slice::<f32>()?.slice(mr);
                let ss = steps.as_cuda_slice::<f32>()?.slice(sr);
                macro_rules! launch {
                    ($t:ty) => {{
                        let xs = x.as_cuda_slice::<$t>()?.slice(xr);
                        let bs = bias.as_cuda_slice::<$t>()?.slice(br);
                        let mut b = func.builder();
                        b.arg(&xs)
                            .arg(&bs)
                            .arg(&ms)
                            .arg(&ss)
                            .arg(&mut q)
                            .arg(&mut scales)
                            .arg(&s32)
                            .arg(&h32);
                        // SAFETY: the arguments match the kernel's signature; every row's codes
                        // are written, and its scale from the zeros set above.
                        unsafe { b.launch(cfg) }.w()?;
                    }};
                }
                match x.dtype() {
                    DType::F16 => launch!(half::f16),
                    _ => launch!(half::bf16),
                }
            }
            let len = packed.len();
            Ok((
                CudaStorage {
                    slice: CudaStorageSlice::U8(packed),
                    device: dev,
                },
                Shape::from(len),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn off_cuda_there_is_no_codes_attention_and_a_call_says_why() {
        let cpu = Device::Cpu;
        let x = Tensor::zeros((128, 3 * 768), DType::F16, &cpu).unwrap();
        let bias = Tensor::zeros(3 * 768, DType::F16, &cpu).unwrap();
        let mask = Tensor::zeros((1, 1, 1, 128), DType::F32, &cpu).unwrap();
        let steps = Tensor::ones(768, DType::F32, &cpu).unwrap();
        let err = attention_codes(&x, &bias, &mask, (128, 12), &steps, EightBit::Int8, false)
            .err()
            .expect("no kernel on the CPU")
            .to_string();
        assert!(err.starts_with("static attention codes: "), "{err}");
    }
}
