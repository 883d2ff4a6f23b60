//! Self-attention from the fused Q/K/V projection's output to the merged context. On CUDA in
//! f16/bf16 with 32- or 64-wide heads: one runner kernel (src/ops/kernels/fused.cu `attention`: Q K^T,
//! mask, online softmax and P V per 64-query tile on tensor cores, no score tensor in memory).
//! Elsewhere, and as the reference the kernel is checked against: [`unfused_attention`], the
//! batched-GEMM path (bias add + head split, Q K^T, mask + softmax, P V, head merge).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, IndexOp, Result, Tensor};

use super::fused;
use crate::config::AttentionPadding;

static SKIP_PADDING: AtomicBool = AtomicBool::new(false);

/// `device.attention_padding` for the attention kernels launched from now on (each cell sets it
/// before it loads its model, and cells run one at a time in a process): with `Skip` the one
/// kernel leaves out the key chunks past each sequence's last unmasked key
/// (src/ops/kernels/fused.cu, `SKIP`). The batched-GEMM path always computes them.
pub fn set_padding(p: AttentionPadding) {
    SKIP_PADDING.store(p == AttentionPadding::Skip, Ordering::Relaxed);
}

/// What [`set_padding`] last set (compute until then).
pub fn padding() -> AttentionPadding {
    if SKIP_PADDING.load(Ordering::Relaxed) {
        AttentionPadding::Skip
    } else {
        AttentionPadding::Compute
    }
}

/// What the record adds to the one kernel's description for [`padding`].
pub fn padding_description(p: AttentionPadding) -> &'static str {
    match p {
        AttentionPadding::Compute => "",
        AttentionPadding::Skip => "; key chunks past each sequence's last unmasked key skipped (device.attention_padding = \"skip\": read from the mask in the kernel; their probabilities are exactly 0, the same context)",
    }
}

/// Whether [`attention`] runs the one-kernel version for this device, dtype and head width.
pub fn one_kernel_on(device: &Device, dtype: DType, head_dim: usize) -> bool {
    cfg!(feature = "cuda")
        && device.is_cuda()
        && matches!(dtype, DType::F16 | DType::BF16)
        && matches!(head_dim, 32 | 64)
}

/// `x` is the fused projection's output (batch * seq, 3 * heads * head_dim) before its `bias`, the
/// query part pre-scaled by 1/sqrt(head_dim); `additive_mask` is (batch, 1, 1, seq) f32. Returns
/// the context (batch, seq, heads * head_dim).
pub fn attention(
    x: &Tensor,
    bias: &Tensor,
    additive_mask: &Tensor,
    seq: usize,
    heads: usize,
) -> Result<Tensor> {
    let (rows, cols) = x.dims2()?;
    let head_dim = cols / 3 / heads.max(1);
    #[cfg(feature = "cuda")]
    if one_kernel_on(x.device(), x.dtype(), head_dim)
        && seq > 0
        && rows % seq == 0
        && rows / seq <= 65_535
    {
        let x = x.contiguous()?;
        let mask = additive_mask.to_dtype(DType::F32)?.contiguous()?;
        let out = x.apply_op3_no_bwd(
            &bias.contiguous()?,
            &mask,
            &cuda::Attention {
                seq,
                heads,
                head_dim,
                skip_padding: padding() == AttentionPadding::Skip,
            },
        )?;
        return out.reshape((rows / seq, seq, heads * head_dim));
    }
    let _ = (rows, head_dim);
    unfused_attention(x, bias, additive_mask, seq, heads)
}

/// The batched-GEMM attention the one kernel replaces (the runner's bias + head split, softmax and
/// head merge kernels on CUDA; candle's ops elsewhere).
pub fn unfused_attention(
    x: &Tensor,
    bias: &Tensor,
    additive_mask: &Tensor,
    seq: usize,
    heads: usize,
) -> Result<Tensor> {
    let heads_qkv = fused::qkv_heads(x, bias, seq, heads)?;
    let (q, k, v) = (heads_qkv.i(0)?, heads_qkv.i(1)?, heads_qkv.i(2)?);
    let scores = q.matmul(&k.t()?)?;
    let dtype = scores.dtype();
    let probs = if fused::fused_on(x.device()) {
        fused::masked_softmax(&scores, additive_mask)?
    } else {
        // The CPU softmax would sum f16 exponentials in f16: compute it in f32.
        let scores = scores.to_dtype(DType::F32)?.broadcast_add(additive_mask)?;
        candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?
    };
    fused::merge_heads(&probs.matmul(&v)?)
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
    use candle_core::{CpuStorage, CudaStorage, Layout, Result, Shape};

    use crate::ops::fused::cuda::{contiguous, launch, no_cpu, size, Input};

    /// Query rows per block (four warps of 16), as the kernel's `attn::ROWS`.
    const ROWS: usize = 64;

    pub struct Attention {
        pub seq: usize,
        pub heads: usize,
        pub head_dim: usize,
        /// The kernel that skips the padding's key chunks (`attention_skip_*`).
        pub skip_padding: bool,
    }

    impl candle_core::CustomOp3 for Attention {
        fn name(&self) -> &'static str {
            "runner-attention"
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
            let Self {
                seq,
                heads,
                head_dim,
                skip_padding,
            } = *self;
            let kernel = if skip_padding {
                format!("attention_skip_d{head_dim}")
            } else {
                format!("attention_d{head_dim}")
            };
            let width = heads * head_dim;
            let rows = xl.shape().elem_count() / (3 * width).max(1);
            let batch = rows / seq.max(1);
            if xl.shape().elem_count() != rows * 3 * width
                || bl.shape().elem_count() != 3 * width
                || ml.shape().elem_count() != batch * seq
                || batch * seq != rows
            {
                candle_core::bail!(
                    "{kernel}: qkv {:?}, bias {:?}, mask {:?} for seq {seq}, {heads} heads of {head_dim}",
                    xl.shape(),
                    bl.shape(),
                    ml.shape()
                );
            }
            let inputs = [
                Input::Same(x, contiguous(xl, &kernel)?),
                Input::Same(bias, contiguous(bl, &kernel)?),
                Input::F32(mask, contiguous(ml, &kernel)?),
            ];
            // The kernel reads 8 values at a time (16 bytes) from x and the bias.
            for input in &inputs[..2] {
                if let Input::Same(_, r) = input {
                    if !r.start.is_multiple_of(8) {
                        candle_core::bail!("{kernel}: inputs must start on a 16-byte boundary");
                    }
                }
            }
            if batch > 65_535 {
                candle_core::bail!("{kernel}: batch {batch} exceeds the grid's 65,535");
            }
            let cfg = LaunchConfig {
                grid_dim: (seq.div_ceil(ROWS) as u32, heads as u32, batch as u32),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            let scalars = [size(seq), size(heads)];
            let out = launch(&kernel, &inputs, rows * width, &scalars, cfg)?;
            Ok((out, Shape::from((rows, width))))
        }
    }
}
