//! The launcher of decode.cu's one-launch decode attention (`decode_attention_fused_*`): written
//! in place into the preallocated context of an [`AttentionScratch`], its split partials and
//! counters read and written through their storages (as the cache is by the other launchers), so
//! a captured step holds one kernel node for the attention and no allocation.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Storage, Tensor, WithDType};

use super::cuda::PTX;
use super::launch::{launch, Param};
use super::{variant, AttentionScratch, CacheAt, Launch};
use crate::ops::fused::cuda::{contiguous, no_cpu};

/// Warps of a CTA (FA_WARPS in decode.cu).
const WARPS: u32 = 4;

/// The device's streaming multiprocessors (the split count aims at ~2 CTAs each).
pub fn sm_count(dev: &CudaDevice) -> Result<usize> {
    let n = dev
        .cuda_stream()
        .context()
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .w()?;
    Ok(n.max(1) as usize)
}

fn on_gpu<'a>(st: &'a Storage, kernel: &str) -> Result<&'a CudaStorage> {
    match st {
        Storage::Cuda(st) => Ok(st),
        _ => candle_core::bail!("{kernel}: an input is not on the GPU"),
    }
}

/// The context (batch, heads * head_dim) is `self`; `rhs` is Q (batch, heads, head_dim).
pub struct FusedAttention<'a> {
    pub cache: &'a CacheAt<'a>,
    pub scratch: &'a AttentionScratch,
    pub launch: Launch,
    /// The last CTA's merge loading every split's partial of a value before using any
    /// (decode.cu's `wide`; gemv-bulk): the same sums, fewer L2 round trips.
    pub wide: bool,
}

impl candle_core::InplaceOp2 for FusedAttention<'_> {
    fn name(&self) -> &'static str {
        "runner-decode-attention-fused"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        no_cpu(self.name())
    }

    fn cuda_fwd(
        &self,
        out: &mut CudaStorage,
        ol: &Layout,
        q: &CudaStorage,
        ql: &Layout,
    ) -> Result<()> {
        match q.dtype() {
            DType::F32 => self.launch::<f32>(out, ol, q, ql, "f32"),
            DType::F16 => self.launch::<half::f16>(out, ol, q, ql, "f16"),
            DType::BF16 => self.launch::<half::bf16>(out, ol, q, ql, "bf16"),
            other => candle_core::bail!("decode_attention_fused has no {other:?} version"),
        }
    }
}

impl FusedAttention<'_> {
    fn launch<T: CudaDType + WithDType>(
        &self,
        out: &mut CudaStorage,
        ol: &Layout,
        q: &CudaStorage,
        ql: &Layout,
        suffix: &str,
    ) -> Result<()> {
        let kernel = "decode_attention_fused";
        let (c, s) = (self.cache, self.scratch);
        let (batch, heads, d) = ql.shape().dims3()?;
        let (cb, kv_heads, capacity, cd) = c.keys.dims4()?;
        let groups = heads / kv_heads.max(1);
        let Some((vd, vg)) = variant(d, groups) else {
            candle_core::bail!(
                "{kernel}: no variant for head_dim {d}, {groups} query heads a KV head"
            );
        };
        if (cb, cd) != (batch, d)
            || groups * kv_heads != heads
            || c.values.dims() != c.keys.dims()
            || c.keys.dtype() != q.dtype()
            || out.dtype() != q.dtype()
            || c.position.dtype() != DType::U32
            || ol.shape().elem_count() != batch * heads * d
            || !s.fits(batch, heads, kv_heads, d, capacity)
        {
            candle_core::bail!(
                "{kernel}: queries {:?}, cache {:?} {:?}, context {:?}, scratch for {:?}",
                ql.shape(),
                c.keys.dims(),
                c.keys.dtype(),
                ol.shape(),
                s.shape()
            );
        }
        let (kg, kl) = c.keys.storage_and_layout();
        let (vg_, vl) = c.values.storage_and_layout();
        let (pg, pl) = c.position.storage_and_layout();
        let (partg, partl) = s.partials.storage_and_layout();
        let (cg, cl) = s.counters.storage_and_layout();
        let (ks, vs, ps) = (
            on_gpu(&kg, kernel)?,
            on_gpu(&vg_, kernel)?,
            on_gpu(&pg, kernel)?,
        );
        let (parts, counts) = (on_gpu(&partg, kernel)?, on_gpu(&cg, kernel)?);
        let (kr, vr) = (contiguous(kl, kernel)?, contiguous(vl, kernel)?);
        // 16-byte loads of cache rows: the rows' first elements must sit on 16 bytes.
        let align = 16 / std::mem::size_of::<T>();
        if !kr.start.is_multiple_of(align) || !vr.start.is_multiple_of(align) {
            candle_core::bail!("{kernel}: the cache views do not start on 16 bytes");
        }
        let keys = ks.as_cuda_slice::<T>()?.slice(kr);
        let values = vs.as_cuda_slice::<T>()?.slice(vr);
        let position = ps.as_cuda_slice::<u32>()?.slice(contiguous(pl, kernel)?);
        let partials = parts
            .as_cuda_slice::<f32>()?
            .slice(contiguous(partl, kernel)?);
        let counters = counts
            .as_cuda_slice::<u32>()?
            .slice(contiguous(cl, kernel)?);
        let qv = q.as_cuda_slice::<T>()?.slice(contiguous(ql, kernel)?);
        let or = contiguous(ol, kernel)?;
        let dev = q.device().clone();
        let mut ov = out.as_cuda_slice_mut::<T>()?.slice_mut(or);
        let name = format!("{kernel}_d{vd}_g{vg}_{suffix}");
        let func = dev.get_or_load_custom_func(&name, "runner_decode", PTX)?;
        let (h, k, cap) = (heads as u32, kv_heads as u32, capacity as u32);
        let scale = 1.0f32 / (d as f32).sqrt();
        let wide = u32::from(self.wide);
        let cfg = LaunchConfig {
            grid_dim: (s.splits() as u32, (batch * kv_heads) as u32, 1),
            block_dim: (WARPS * 32, 1, 1),
            shared_mem_bytes: 0,
        };
        if self.launch == Launch::Programmatic {
            let stream = dev.cuda_stream();
            let (qp, _g0) = qv.device_ptr(&stream);
            let (kp, _g1) = keys.device_ptr(&stream);
            let (vp, _g2) = values.device_ptr(&stream);
            let (pp, _g3) = position.device_ptr(&stream);
            let (partp, _g4) = partials.device_ptr(&stream);
            let (cp, _g5) = counters.device_ptr(&stream);
            let (op, _g6) = ov.device_ptr(&stream);
            let params = [
                Param::Ptr(qp),
                Param::Ptr(kp),
                Param::Ptr(vp),
                Param::Ptr(pp),
                Param::Ptr(partp),
                Param::Ptr(cp),
                Param::Ptr(op),
                Param::U32(h),
                Param::U32(k),
                Param::U32(cap),
                Param::F32(scale),
                Param::U32(wide),
            ];
            // SAFETY: the same parameters, in the same order, as the builder's launch below.
            return unsafe { launch(&func, &stream, cfg, self.launch, &params) };
        }
        let mut b = func.builder();
        b.arg(&qv)
            .arg(&keys)
            .arg(&values)
            .arg(&position)
            .arg(&partials)
            .arg(&counters)
            .arg(&mut ov)
            .arg(&h)
            .arg(&k)
            .arg(&cap)
            .arg(&scale)
            .arg(&wide);
        // SAFETY: the arguments match decode_attention_fused's signature (decode.cu); the sizes
        // were checked above (cache, context, scratch for these shapes).
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }
}

/// Runs the kernel into `scratch`'s context and returns it (the same storage every call).
pub fn run(
    q: &Tensor,
    cache: &CacheAt,
    scratch: &AttentionScratch,
    (launch, wide): (Launch, bool),
) -> Result<Tensor> {
    let ctx = scratch.context.clone();
    let op = FusedAttention {
        cache,
        scratch,
        launch,
        wide,
    };
    ctx.inplace_op2(&q.contiguous()?, &op)?;
    Ok(ctx)
}
