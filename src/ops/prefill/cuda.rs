//! The launcher of prefill.cu's `prefill_attention_d{D}_{f16|bf16}`: a candle custom op over the
//! queries, the KV cache read through its storages in place.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{
    CpuStorage, CudaStorage, DType, Layout, Result, Shape, Storage, Tensor, WithDType,
};

use super::QUERY_TILE;
use crate::ops::fused::cuda::{contiguous, no_cpu};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/prefill.ptx"));

/// Warps of a CTA (PF_WARPS in prefill.cu), keys a tile (PF_BN).
const WARPS: usize = 4;
const KEY_TILE: usize = 64;

/// Dynamic shared bytes of a CTA: prefill.cu's `prefill_shared_bytes` (Q, K, V tiles with rows
/// padded by 8 elements; per warp 16 rows of f32 scores, T probabilities and f32 output).
pub fn shared_bytes(head_dim: usize, elem: usize) -> usize {
    let ldk = head_dim + 8;
    (QUERY_TILE + 2 * KEY_TILE) * ldk * elem
        + WARPS * 16 * (KEY_TILE + 4) * 4
        + WARPS * 16 * (KEY_TILE + 8) * elem
        + WARPS * 16 * (head_dim + 4) * 4
}

pub struct PrefillAttention<'a> {
    pub keys: &'a Tensor,
    pub values: &'a Tensor,
    pub start: usize,
}

fn on_gpu<'a>(st: &'a Storage, kernel: &str) -> Result<&'a CudaStorage> {
    match st {
        Storage::Cuda(st) => Ok(st),
        _ => candle_core::bail!("{kernel}: the KV cache is not on the GPU"),
    }
}

impl candle_core::CustomOp1 for PrefillAttention<'_> {
    fn name(&self) -> &'static str {
        "runner-prefill-attention"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        no_cpu(self.name())
    }

    fn cuda_fwd(&self, q: &CudaStorage, ql: &Layout) -> Result<(CudaStorage, Shape)> {
        match q.dtype() {
            DType::F16 => self.launch::<half::f16>(q, ql, "f16"),
            DType::BF16 => self.launch::<half::bf16>(q, ql, "bf16"),
            other => candle_core::bail!("prefill_attention has no {other:?} version"),
        }
    }
}

impl PrefillAttention<'_> {
    fn launch<T: CudaDType + DeviceRepr + WithDType>(
        &self,
        q: &CudaStorage,
        ql: &Layout,
        suffix: &str,
    ) -> Result<(CudaStorage, Shape)> {
        let kernel = "prefill_attention";
        let (batch, heads, len, d) = ql.shape().dims4()?;
        let (cb, kv_heads, capacity, cd) = self.keys.dims4()?;
        let total = self.start + len;
        if (cb, cd) != (batch, d)
            || kv_heads == 0
            || heads % kv_heads != 0
            || self.values.dims() != self.keys.dims()
            || self.keys.dtype() != q.dtype()
            || self.values.dtype() != q.dtype()
            || total > capacity
            || len == 0
        {
            candle_core::bail!(
                "{kernel}: queries {:?} {:?} at {} against a cache {:?} {:?}",
                ql.shape(),
                q.dtype(),
                self.start,
                self.keys.dims(),
                self.keys.dtype()
            );
        }
        let (kg, kl) = self.keys.storage_and_layout();
        let (vg, vl) = self.values.storage_and_layout();
        let (ks, vs) = (on_gpu(&kg, kernel)?, on_gpu(&vg, kernel)?);
        let (kr, vr, qr) = (
            contiguous(kl, kernel)?,
            contiguous(vl, kernel)?,
            contiguous(ql, kernel)?,
        );
        // 16-byte loads of rows: every row must start on 16 bytes.
        let align = 16 / std::mem::size_of::<T>();
        if !kr.start.is_multiple_of(align)
            || !vr.start.is_multiple_of(align)
            || !qr.start.is_multiple_of(align)
            || !d.is_multiple_of(align)
        {
            candle_core::bail!("{kernel}: the queries or the cache do not start on 16 bytes");
        }
        let keys = ks.as_cuda_slice::<T>()?.slice(kr);
        let values = vs.as_cuda_slice::<T>()?.slice(vr);
        let qv = q.as_cuda_slice::<T>()?.slice(qr);
        let dev = q.device().clone();
        let n = batch * len * heads * d;
        // SAFETY: every valid query row of every head is written (rows past `len` are not rows).
        let out = unsafe { dev.alloc::<T>(n.max(1))? };
        let func =
            dev.get_or_load_custom_func(&format!("{kernel}_d{d}_{suffix}"), "runner_prefill", PTX)?;
        let shared = shared_bytes(d, std::mem::size_of::<T>());
        func.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            shared as i32,
        )
        .w()?;
        let cfg = LaunchConfig {
            grid_dim: (len.div_ceil(QUERY_TILE) as u32, (batch * heads) as u32, 1),
            block_dim: ((WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        let (l, s, h, k, cap) = (
            len as u32,
            self.start as u32,
            heads as u32,
            kv_heads as u32,
            capacity as u32,
        );
        let scale = 1.0f32 / (d as f32).sqrt();
        let mut b = func.builder();
        b.arg(&qv)
            .arg(&keys)
            .arg(&values)
            .arg(&out)
            .arg(&l)
            .arg(&s)
            .arg(&h)
            .arg(&k)
            .arg(&cap)
            .arg(&scale);
        // SAFETY: the arguments match prefill_attention's signature (prefill.cu); the sizes were
        // checked above.
        unsafe { b.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from((batch, len, heads * d)),
        ))
    }
}

#[cfg(test)]
mod tests {
    /// The launcher's shared size is the kernel's (prefill.cu's static_assert for d64 f16).
    #[test]
    fn shared_bytes_match_the_kernel() {
        assert_eq!(
            super::shared_bytes(64, 2),
            (64 + 128) * 72 * 2 + 4 * 16 * 68 * 4 + 4 * 16 * 72 * 2 + 4 * 16 * 68 * 4
        );
    }
}
