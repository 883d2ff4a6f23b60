//! The launcher of decode.cu's `decode_attention_rope_*` (`decode_kernels = "gemv-fold"`): the
//! one-launch decode attention with rope_kv_write folded in. It reads the Q|K|V GEMV's output row
//! itself (bias, per-head norms and the rotation as rope_kv_write computes them), uses the
//! position's key and value from registers and writes them into the cache, and issues its first
//! round of cache loads before it waits on the GEMV: one launch fewer a layer, and the cache's
//! latency under the GEMV's tail. Written in place into the scratch's context, as the plain
//! one-launch attention (attention.rs).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig};
use candle_core::cuda_backend::CudaDType;
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Storage, Tensor, WithDType};

use super::cuda::PTX;
use super::launch::{launch, Param};
use super::{variant, AttentionScratch, CacheAt, Launch, RopeArgs};
use crate::ops::fused::cuda::{contiguous, no_cpu};

/// Warps of a CTA (FA_WARPS in decode.cu).
const WARPS: u32 = 4;
/// Warps of a CTA and CTAs of a cluster of decode_attention_cluster (FC_WARPS, FC_SPLITS in
/// decode_cluster.cuh).
const CLUSTER_WARPS: u32 = 8;
pub const CLUSTER_SPLITS: u32 = 8;

fn on_gpu<'a>(st: &'a Storage, kernel: &str) -> Result<&'a CudaStorage> {
    match st {
        Storage::Cuda(st) => Ok(st),
        _ => candle_core::bail!("{kernel}: an input is not on the GPU"),
    }
}

/// The context (batch, heads * head_dim) is `self`; `rhs` is the Q|K|V row (batch, (H + 2K) d).
pub struct RopeAttention<'a> {
    pub rope: &'a RopeArgs<'a>,
    pub cache: &'a CacheAt<'a>,
    pub scratch: &'a AttentionScratch,
    pub launch: Launch,
    /// decode_attention_cluster (the splits merged in a thread-block cluster through distributed
    /// shared memory) instead of decode_attention_rope (partials, fence, atomic ticket).
    pub cluster: bool,
}

impl candle_core::InplaceOp2 for RopeAttention<'_> {
    fn name(&self) -> &'static str {
        "runner-decode-attention-rope"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        no_cpu(self.name())
    }

    fn cuda_fwd(
        &self,
        out: &mut CudaStorage,
        ol: &Layout,
        qkv: &CudaStorage,
        ql: &Layout,
    ) -> Result<()> {
        match qkv.dtype() {
            DType::F32 => self.launch::<f32>(out, ol, qkv, ql, "f32"),
            DType::F16 => self.launch::<half::f16>(out, ol, qkv, ql, "f16"),
            DType::BF16 => self.launch::<half::bf16>(out, ol, qkv, ql, "bf16"),
            other => candle_core::bail!("decode_attention_rope has no {other:?} version"),
        }
    }
}

/// A tensor's device address (its contiguous view's start), kept with its storage guard.
pub(super) struct Held<G>(G, Layout);

pub(super) fn held<'a>(
    t: &'a Tensor,
    dtype: DType,
    kernel: &str,
    what: &str,
) -> Result<Held<impl std::ops::Deref<Target = Storage> + 'a>> {
    if t.dtype() != dtype {
        candle_core::bail!("{kernel}: {what} is {:?}, not {dtype:?}", t.dtype());
    }
    let (g, l) = t.storage_and_layout();
    contiguous(l, kernel)?;
    let l = l.clone();
    Ok(Held(g, l))
}

impl<G: std::ops::Deref<Target = Storage>> Held<G> {
    pub(super) fn ptr<T: CudaDType + WithDType>(&self, kernel: &str) -> Result<u64> {
        let st = on_gpu(&self.0, kernel)?;
        let view = st.as_cuda_slice::<T>()?.slice(contiguous(&self.1, kernel)?);
        let stream = st.device().cuda_stream();
        let (p, _guard) = view.device_ptr(&stream);
        Ok(p)
    }
}

impl RopeAttention<'_> {
    fn launch<T: CudaDType + WithDType>(
        &self,
        out: &mut CudaStorage,
        ol: &Layout,
        qkv: &CudaStorage,
        ql: &Layout,
        suffix: &str,
    ) -> Result<()> {
        let kernel = if self.cluster {
            "decode_attention_cluster"
        } else {
            "decode_attention_rope"
        };
        let (r, c, s) = (self.rope, self.cache, self.scratch);
        let (h, k, d) = (r.heads, r.kv_heads, r.head_dim);
        let (batch, width) = ql.shape().dims2()?;
        let (cb, ck, capacity, cd) = c.keys.dims4()?;
        let groups = h / k.max(1);
        let Some((vd, vg)) = variant(d, groups) else {
            candle_core::bail!(
                "{kernel}: no variant for head_dim {d}, {groups} query heads a KV head"
            );
        };
        let dtype = qkv.dtype();
        if width != (h + 2 * k) * d
            || groups * k != h
            || (cb, ck, cd) != (batch, k, d)
            || c.values.dims() != c.keys.dims()
            || c.keys.dtype() != dtype
            || out.dtype() != dtype
            || c.position.dtype() != DType::U32
            || r.cos.dims() != r.sin.dims()
            || r.cos.dim(1)? * 2 != d
            || r.bias.is_some_and(|b| b.elem_count() != width)
            || r.qk_norm
                .is_some_and(|(q, n, _)| q.elem_count() != d || n.elem_count() != d)
            || ol.shape().elem_count() != batch * h * d
            || !s.fits(batch, h, k, d, capacity)
        {
            candle_core::bail!(
                "{kernel}: Q|K|V {:?} for {h} heads, {k} KV heads of {d}; cache {:?} {:?}; context {:?}; scratch for {:?}",
                ql.shape(),
                c.keys.dims(),
                c.keys.dtype(),
                ol.shape(),
                s.shape()
            );
        }
        let (cos, sin) = (
            held(r.cos, dtype, kernel, "cos")?,
            held(r.sin, dtype, kernel, "sin")?,
        );
        let (keys, values) = (
            held(c.keys, dtype, kernel, "keys")?,
            held(c.values, dtype, kernel, "values")?,
        );
        let position = held(c.position, DType::U32, kernel, "position")?;
        let (partials, counters) = (
            held(&s.partials, DType::F32, kernel, "partials")?,
            held(&s.counters, DType::U32, kernel, "counters")?,
        );
        let bias = r.bias.map(|b| held(b, dtype, kernel, "bias")).transpose()?;
        let norms = r
            .qk_norm
            .map(|(q, n, _)| {
                Ok::<_, candle_core::Error>((
                    held(q, dtype, kernel, "q_norm")?,
                    held(n, dtype, kernel, "k_norm")?,
                ))
            })
            .transpose()?;
        // 16-byte loads of cache rows: the rows' first elements must sit on 16 bytes.
        let align = 16 / std::mem::size_of::<T>();
        let kr = contiguous(c.keys.layout(), kernel)?;
        let vr = contiguous(c.values.layout(), kernel)?;
        if !kr.start.is_multiple_of(align) || !vr.start.is_multiple_of(align) {
            candle_core::bail!("{kernel}: the cache views do not start on 16 bytes");
        }
        // The cluster kernel reads the Q|K|V row, its bias and the norms 16 bytes at a time
        // (rows are (H + 2K) d values: a multiple of 8 from an aligned start).
        if self.cluster {
            let starts = [
                Some(ql.start_offset()),
                r.bias.map(|b| b.layout().start_offset()),
            ]
            .into_iter()
            .chain(r.qk_norm.iter().flat_map(|(q, n, _)| {
                [
                    Some(q.layout().start_offset()),
                    Some(n.layout().start_offset()),
                ]
            }));
            if starts.flatten().any(|o| !o.is_multiple_of(align)) {
                candle_core::bail!(
                    "{kernel}: the Q|K|V row, bias or norms do not start on 16 bytes"
                );
            }
        }
        let dev = qkv.device().clone();
        let stream = dev.cuda_stream();
        let qv = qkv.as_cuda_slice::<T>()?.slice(contiguous(ql, kernel)?);
        let (qp, _g0) = qv.device_ptr(&stream);
        let ov = out
            .as_cuda_slice_mut::<T>()?
            .slice_mut(contiguous(ol, kernel)?);
        let (op, _g1) = ov.device_ptr(&stream);
        let ptr_or_null = |h: Option<&Held<_>>| -> Result<u64> {
            match h {
                Some(h) => h.ptr::<T>(kernel),
                None => Ok(0),
            }
        };
        let mut params = vec![
            Param::Ptr(qp),
            Param::Ptr(ptr_or_null(bias.as_ref())?),
            Param::Ptr(ptr_or_null(norms.as_ref().map(|n| &n.0))?),
            Param::Ptr(ptr_or_null(norms.as_ref().map(|n| &n.1))?),
            Param::Ptr(cos.ptr::<T>(kernel)?),
            Param::Ptr(sin.ptr::<T>(kernel)?),
            Param::Ptr(keys.ptr::<T>(kernel)?),
            Param::Ptr(values.ptr::<T>(kernel)?),
            Param::Ptr(position.ptr::<u32>(kernel)?),
        ];
        // The cluster kernel has no partials and no counters.
        if !self.cluster {
            params.push(Param::Ptr(partials.ptr::<f32>(kernel)?));
            params.push(Param::Ptr(counters.ptr::<u32>(kernel)?));
        }
        params.extend([
            Param::Ptr(op),
            Param::U32(h as u32),
            Param::U32(k as u32),
            Param::U32(capacity as u32),
            Param::F32(1.0 / (d as f32).sqrt()),
            Param::F32(r.qk_norm.map_or(0.0, |(_, _, e)| e as f32)),
        ]);
        let name = format!("{kernel}_d{vd}_g{vg}_{suffix}");
        let func = dev.get_or_load_custom_func(&name, "runner_decode", PTX)?;
        // The cluster kernel: one cluster of CLUSTER_SPLITS CTAs a (sequence, KV head), its
        // cluster shape compiled in (__cluster_dims__).
        let (splits, warps) = if self.cluster {
            (CLUSTER_SPLITS, CLUSTER_WARPS)
        } else {
            (s.splits() as u32, WARPS)
        };
        let cfg = LaunchConfig {
            grid_dim: (splits, (batch * k) as u32, 1),
            block_dim: (warps * 32, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the parameters match decode_attention_rope's signature (decode.cu), in order;
        // the sizes were checked above (Q|K|V row, tables, cache, context, scratch), and every
        // buffer's storage guard lives until the launch returns.
        unsafe { launch(&func, &stream, cfg, self.launch, &params) }
    }
}

/// Runs the kernel (`cluster`: decode_attention_cluster) into `scratch`'s context and returns
/// it (the same storage every call).
pub fn run(
    qkv: &Tensor,
    rope: &RopeArgs,
    cache: &CacheAt,
    scratch: &AttentionScratch,
    launch: Launch,
    cluster: bool,
) -> Result<Tensor> {
    let ctx = scratch.context.clone();
    let op = RopeAttention {
        rope,
        cache,
        scratch,
        launch,
        cluster,
    };
    ctx.inplace_op2(&qkv.contiguous()?, &op)?;
    Ok(ctx)
}
