//! The launcher of decode.cu's argmax_rows_f32 (`decode_kernels = "gemv-fold"`'s greedy pick):
//! an in-place op on the step's tokens (candle's InplaceOp3: tokens, logits, scratch).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result};

use super::cuda::PTX;
use crate::ops::fused::cuda::{contiguous, no_cpu};

/// Logits a block reduces (256 threads, 8 each): 63 blocks a row at a vocabulary of 128256.
const PER_BLOCK: usize = 2048;

pub struct ArgmaxInto;

impl candle_core::InplaceOp3 for ArgmaxInto {
    fn name(&self) -> &'static str {
        "runner-decode-argmax"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        no_cpu(self.name())
    }

    fn cuda_fwd(
        &self,
        tokens: &mut CudaStorage,
        tl: &Layout,
        logits: &CudaStorage,
        ll: &Layout,
        scratch: &CudaStorage,
        sl: &Layout,
    ) -> Result<()> {
        let kernel = "argmax_rows";
        let (rows, vocab) = ll.shape().dims2()?;
        if logits.dtype() != DType::F32
            || tokens.dtype() != DType::U32
            || scratch.dtype() != DType::U32
            || tl.shape().elem_count() != rows
            || sl.shape().dims2()? != (rows, 4)
            || vocab == 0
            || vocab > u32::MAX as usize / 2
        {
            candle_core::bail!(
                "{kernel}: logits {:?} {:?}, tokens {:?} {:?}, scratch {:?} {:?}: needs f32 (rows, vocab), u32 rows, u32 (rows, 4)",
                ll.shape(),
                logits.dtype(),
                tl.shape(),
                tokens.dtype(),
                sl.shape(),
                scratch.dtype()
            );
        }
        let lv = logits
            .as_cuda_slice::<f32>()?
            .slice(contiguous(ll, kernel)?);
        let sr = contiguous(sl, kernel)?;
        if !sr.start.is_multiple_of(2) {
            candle_core::bail!("{kernel}: the scratch view does not start on 8 bytes");
        }
        let sv = scratch.as_cuda_slice::<u32>()?.slice(sr);
        let dev = logits.device().clone();
        let mut tv = tokens
            .as_cuda_slice_mut::<u32>()?
            .slice_mut(contiguous(tl, kernel)?);
        let func = dev.get_or_load_custom_func("argmax_rows_f32", "runner_decode", PTX)?;
        let (v32, per) = (vocab as u32, PER_BLOCK as u32);
        let cfg = LaunchConfig {
            grid_dim: (vocab.div_ceil(PER_BLOCK) as u32, rows as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = func.builder();
        b.arg(&lv).arg(&mut tv).arg(&sv).arg(&v32).arg(&per);
        // SAFETY: the arguments match argmax_rows_f32's signature (decode.cu); the sizes were
        // checked above (logits rows x vocab, a token a row, 4 u32 of scratch a row).
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }
}
