//! The launchers of src/ops/kernels/decode.cu: candle custom ops over the first input (which
//! carries the output), the other tensors read through their storages (the KV cache is written
//! in place through them, as candle's own scatter_set writes a storage it reads).

use std::ops::Range;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
use candle_core::{
    CpuStorage, CudaStorage, DType, Layout, Result, Shape, Storage, StorageRef, Tensor, WithDType,
};

use super::launch::Param;
use super::{CacheAt, Launch, RopeArgs};
use crate::ops::fused::cuda::{contiguous, no_cpu};

pub(super) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode.ptx"));

/// Keys per split of the attention (CHUNK in decode.cu).
const CHUNK: usize = 64;
/// Query heads per KV head the attention holds in registers (MAXG in decode.cu).
const MAX_GROUPS: usize = 16;

/// A kernel argument, in the kernel's order.
enum Arg<'a> {
    /// A tensor's elements (the model dtype, u32 or f32, as stored).
    Buf(&'a CudaStorage, Range<usize>),
    /// A scratch buffer of f32.
    Scratch(&'a CudaSlice<f32>),
    /// A null pointer (an optional input left out).
    Null,
    /// The fresh output buffer.
    Out,
    U32(u32),
    F32(f32),
}

fn size(v: usize) -> Arg<'static> {
    Arg::U32(v as u32)
}

enum View<'a, T> {
    T(CudaView<'a, T>),
    U32(CudaView<'a, u32>),
    F32(CudaView<'a, f32>),
}

/// Each argument's view of its buffer (None for the others).
fn views<'a, T: CudaDType + DeviceRepr + WithDType>(
    args: &'a [Arg<'a>],
) -> Result<Vec<Option<View<'a, T>>>> {
    args.iter()
        .map(|a| {
            Ok(match a {
                Arg::Buf(s, r) => Some(match s.dtype() {
                    DType::U32 => View::U32(s.as_cuda_slice::<u32>()?.slice(r.clone())),
                    DType::F32 if T::DTYPE != DType::F32 => {
                        View::F32(s.as_cuda_slice::<f32>()?.slice(r.clone()))
                    }
                    _ => View::T(s.as_cuda_slice::<T>()?.slice(r.clone())),
                }),
                _ => None,
            })
        })
        .collect::<Result<Vec<_>>>()
}

/// Runs `{kernel}_{suffix}` of element type `T` with `args`, the output a new buffer of `out_len`
/// values of `O` (T, or f32 for the attention's partial sums).
fn launch<T: CudaDType + DeviceRepr + WithDType, O: DeviceRepr>(
    dev: &CudaDevice,
    name: &str,
    args: &[Arg<'_>],
    out_len: usize,
    cfg: LaunchConfig,
) -> Result<CudaSlice<O>> {
    let func = dev.get_or_load_custom_func(name, "runner_decode", PTX)?;
    let views = views::<T>(args)?;
    // SAFETY: every kernel here writes every element of its output.
    let out = unsafe { dev.alloc::<O>(out_len.max(1))? };
    let null = 0u64;
    let mut b = func.builder();
    for (a, v) in args.iter().zip(&views) {
        match (a, v) {
            (_, Some(View::T(v))) => b.arg(v),
            (_, Some(View::U32(v))) => b.arg(v),
            (_, Some(View::F32(v))) => b.arg(v),
            (Arg::Scratch(s), None) => b.arg(*s),
            (Arg::Null, None) => b.arg(&null),
            (Arg::Out, None) => b.arg(&out),
            (Arg::U32(v), None) => b.arg(v),
            (Arg::F32(v), None) => b.arg(v),
            (Arg::Buf(..), None) => unreachable!("buffers have views"),
        };
    }
    // SAFETY: the arguments match the kernel's signature (decode.cu's DECODE_KERNELS).
    unsafe { b.launch(cfg) }.w()?;
    Ok(out)
}

/// [`launch`] of a kernel whose output is one of `args` (no allocation: a buffer of the step),
/// put on the stream as `how` says.
fn launch_into<T: CudaDType + DeviceRepr + WithDType>(
    dev: &CudaDevice,
    name: &str,
    args: &[Arg<'_>],
    cfg: LaunchConfig,
    how: Launch,
) -> Result<()> {
    let func = dev.get_or_load_custom_func(name, "runner_decode", PTX)?;
    let views = views::<T>(args)?;
    if args.iter().any(|a| matches!(a, Arg::Out)) {
        candle_core::bail!("{name}: an in-place launch has no fresh output");
    }
    let stream = dev.cuda_stream();
    let mut guards = Vec::new();
    let mut params = Vec::with_capacity(args.len());
    for (a, v) in args.iter().zip(&views) {
        let mut ptr = |(p, g)| {
            guards.push(g);
            Param::Ptr(p)
        };
        params.push(match (a, v) {
            (_, Some(View::T(v))) => ptr(v.device_ptr(&stream)),
            (_, Some(View::U32(v))) => ptr(v.device_ptr(&stream)),
            (_, Some(View::F32(v))) => ptr(v.device_ptr(&stream)),
            (Arg::Scratch(sc), None) => ptr(sc.device_ptr(&stream)),
            (Arg::Null, None) => Param::Ptr(0),
            (Arg::U32(v), None) => Param::U32(*v),
            (Arg::F32(v), None) => Param::F32(*v),
            (Arg::Out | Arg::Buf(..), None) => unreachable!("checked above; buffers have views"),
        });
    }
    // SAFETY: the arguments match the kernel's signature (decode.cu's DECODE_KERNELS), every
    // buffer one of the launch's checked inputs or outputs.
    unsafe { super::launch::launch(&func, &stream, cfg, how, &params) }
}

/// `kernel_{f32|f16|bf16}` by `dtype`, through [`launch`] with T of that dtype and output O = T
/// (`scratch`: O = f32).
macro_rules! by_dtype {
    ($dtype:expr, $kernel:expr, |$t:ident| $body:expr) => {
        match $dtype {
            DType::F32 => {
                type $t = f32;
                ($body)(format!("{}_f32", $kernel))
            }
            DType::F16 => {
                type $t = half::f16;
                ($body)(format!("{}_f16", $kernel))
            }
            DType::BF16 => {
                type $t = half::bf16;
                ($body)(format!("{}_bf16", $kernel))
            }
            other => candle_core::bail!(
                "the fused decode kernel {} has no {other:?} version",
                $kernel
            ),
        }
    };
}

/// A tensor's storage held for reading, and its contiguous element range.
struct Held<'a> {
    guard: StorageRef<'a>,
    range: Range<usize>,
}

fn hold<'a>(t: &'a Tensor, kernel: &str, what: &str) -> Result<Held<'a>> {
    let (guard, layout) = t.storage_and_layout();
    let range = contiguous(layout, kernel)
        .map_err(|e| candle_core::Error::Msg(format!("{kernel}: {what}: {e}")))?;
    Ok(Held { guard, range })
}

impl Held<'_> {
    fn arg(&self) -> Result<Arg<'_>> {
        match &*self.guard {
            Storage::Cuda(s) => Ok(Arg::Buf(s, self.range.clone())),
            _ => candle_core::bail!("a fused decode kernel's input is not on the GPU"),
        }
    }
}

fn opt_arg<'a>(h: &'a Option<Held<'a>>) -> Result<Arg<'a>> {
    h.as_ref().map_or(Ok(Arg::Null), |h| h.arg())
}

fn wrap<O: CudaDType>(out: CudaSlice<O>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(out, dev.clone())
}

fn blocks(n: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.max(1) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

pub struct AddRmsNorm {
    pub eps: f32,
}

impl candle_core::CustomOp3 for AddRmsNorm {
    fn name(&self) -> &'static str {
        "runner-add-rms-norm"
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
        residual: &CudaStorage,
        rl: &Layout,
        weight: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let kernel = "add_rms_norm";
        let cols = *xl.shape().dims().last().unwrap_or(&1);
        let rows = xl.shape().elem_count() / cols.max(1);
        if rl.shape() != xl.shape() || wl.shape().elem_count() != cols {
            candle_core::bail!(
                "{kernel}: input {:?}, residual {:?}, weight {:?}",
                xl.shape(),
                rl.shape(),
                wl.shape()
            );
        }
        let args = [
            Arg::Buf(x, contiguous(xl, kernel)?),
            Arg::Buf(residual, contiguous(rl, kernel)?),
            Arg::Buf(weight, contiguous(wl, kernel)?),
            Arg::Out,
            size(rows),
            size(cols),
            Arg::F32(self.eps),
        ];
        let dev = x.device();
        let cfg = blocks(rows, 256);
        let out = by_dtype!(x.dtype(), kernel, |T| {
            |name: String| -> Result<CudaStorage> {
                Ok(wrap(
                    launch::<T, T>(dev, &name, &args, 2 * rows * cols, cfg)?,
                    dev,
                ))
            }
        })?;
        let mut dims = vec![2];
        dims.extend_from_slice(xl.shape().dims());
        Ok((out, Shape::from(dims)))
    }
}

pub struct RopeKvWrite<'a> {
    pub rope: &'a RopeArgs<'a>,
    pub cache: &'a CacheAt<'a>,
}

impl candle_core::CustomOp1 for RopeKvWrite<'_> {
    fn name(&self) -> &'static str {
        "runner-rope-kv-write"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        no_cpu(self.name())
    }

    fn cuda_fwd(&self, qkv: &CudaStorage, ql: &Layout) -> Result<(CudaStorage, Shape)> {
        let (batch, _) = ql.shape().dims2()?;
        let q = self.run(qkv, ql, None, Launch::Stream)?;
        let q = q.ok_or_else(|| candle_core::Error::msg("rope_kv_write: no Q output"))?;
        Ok((
            q,
            Shape::from((batch, self.rope.heads * self.rope.head_dim)),
        ))
    }
}

/// [`RopeKvWrite`] into a preallocated Q (batch, heads * head_dim) (`self`; `rhs` is Q|K|V), so
/// the launch follows the Q|K|V GEMV directly (no allocation node: gemv-pdl launches it
/// programmatically).
pub struct RopeKvWriteInto<'a> {
    pub op: RopeKvWrite<'a>,
    pub launch: Launch,
}

impl candle_core::InplaceOp2 for RopeKvWriteInto<'_> {
    fn name(&self) -> &'static str {
        "runner-rope-kv-write-into"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        no_cpu(self.name())
    }

    fn cuda_fwd(
        &self,
        q: &mut CudaStorage,
        qo: &Layout,
        qkv: &CudaStorage,
        ql: &Layout,
    ) -> Result<()> {
        let (batch, _) = ql.shape().dims2()?;
        let (h, d) = (self.op.rope.heads, self.op.rope.head_dim);
        if qo.shape().elem_count() != batch * h * d || q.dtype() != qkv.dtype() {
            candle_core::bail!(
                "rope_kv_write: a Q buffer {:?} {:?} for {batch} rows of {h} heads of {d}",
                qo.shape(),
                q.dtype()
            );
        }
        let range = contiguous(qo, "rope_kv_write")?;
        self.op.run(qkv, ql, Some((q, range)), self.launch)?;
        Ok(())
    }
}

impl RopeKvWrite<'_> {
    /// The launch: into a fresh Q (returned) or into `into`'s buffer (None returned).
    fn run(
        &self,
        qkv: &CudaStorage,
        ql: &Layout,
        into: Option<(&CudaStorage, Range<usize>)>,
        how: Launch,
    ) -> Result<Option<CudaStorage>> {
        let kernel = "rope_kv_write";
        let (r, c) = (self.rope, self.cache);
        let (h, k, d) = (r.heads, r.kv_heads, r.head_dim);
        let (batch, width) = ql.shape().dims2()?;
        let (cb, ck, capacity, cd) = c.keys.dims4()?;
        let (half, positions) = (r.cos.dim(1)?, r.cos.dim(0)?);
        if width != (h + 2 * k) * d
            || (cb, ck, cd) != (batch, k, d)
            || c.values.dims() != c.keys.dims()
            || half * 2 != d
            || d > 256
            || r.bias.is_some_and(|b| b.elem_count() != width)
            || r.qk_norm
                .is_some_and(|(q, n, _)| q.elem_count() != d || n.elem_count() != d)
            || c.keys.dtype() != qkv.dtype()
            || c.position.dtype() != DType::U32
        {
            candle_core::bail!(
                "{kernel}: Q|K|V {:?} for {h} heads, {k} KV heads of {d} (at most 256); cache {:?} {:?}; tables ({positions}, {half})",
                ql.shape(),
                c.keys.dims(),
                c.keys.dtype()
            );
        }
        let held = [
            hold(r.cos, kernel, "cos")?,
            hold(r.sin, kernel, "sin")?,
            hold(c.position, kernel, "position")?,
            hold(c.keys, kernel, "keys")?,
            hold(c.values, kernel, "values")?,
        ];
        let bias = r.bias.map(|b| hold(b, kernel, "bias")).transpose()?;
        let qn = r
            .qk_norm
            .map(|(q, _, _)| hold(q, kernel, "q_norm"))
            .transpose()?;
        let kn = r
            .qk_norm
            .map(|(_, n, _)| hold(n, kernel, "k_norm"))
            .transpose()?;
        let eps = r.qk_norm.map_or(0.0, |(_, _, e)| e as f32);
        let arg = |i: usize| held[i].arg();
        let args = [
            Arg::Buf(qkv, contiguous(ql, kernel)?),
            opt_arg(&bias)?,
            opt_arg(&qn)?,
            opt_arg(&kn)?,
            arg(0)?,
            arg(1)?,
            arg(2)?,
            match &into {
                Some((q, range)) => Arg::Buf(q, range.clone()),
                None => Arg::Out,
            },
            arg(3)?,
            arg(4)?,
            size(batch),
            size(h),
            size(k),
            size(d),
            size(capacity),
            Arg::F32(eps),
        ];
        let dev = qkv.device();
        // One warp a head, 4 warps a block.
        let cfg = blocks((batch * (h + k)).div_ceil(4), 128);
        by_dtype!(qkv.dtype(), kernel, |T| {
            |name: String| -> Result<Option<CudaStorage>> {
                if into.is_some() {
                    launch_into::<T>(dev, &name, &args, cfg, how)?;
                    return Ok(None);
                }
                Ok(Some(wrap(
                    launch::<T, T>(dev, &name, &args, batch * h * d, cfg)?,
                    dev,
                )))
            }
        })
    }
}

pub struct DecodeAttention<'a> {
    pub cache: &'a CacheAt<'a>,
}

/// Threads of an attention split block.
const SPLIT_THREADS: usize = 128;

impl candle_core::CustomOp1 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "runner-decode-attention"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        no_cpu(self.name())
    }

    fn cuda_fwd(&self, q: &CudaStorage, ql: &Layout) -> Result<(CudaStorage, Shape)> {
        let kernel = "decode_attention";
        let c = self.cache;
        let (batch, heads, d) = ql.shape().dims3()?;
        let (cb, kv_heads, capacity, cd) = c.keys.dims4()?;
        let pairs = d / 2;
        if (cb, cd) != (batch, d)
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || heads / kv_heads > MAX_GROUPS
            || !d.is_multiple_of(2)
            || pairs == 0
            || pairs > SPLIT_THREADS
            || c.values.dims() != c.keys.dims()
            || c.keys.dtype() != q.dtype()
            || c.position.dtype() != DType::U32
        {
            candle_core::bail!(
                "{kernel}: queries {:?} against a cache {:?} {:?}: needs heads a multiple of KV heads, at most {MAX_GROUPS} query heads a KV head, an even head_dim of at most {}",
                ql.shape(),
                c.keys.dims(),
                c.keys.dtype(),
                2 * SPLIT_THREADS
            );
        }
        let groups = heads / kv_heads;
        let splits = capacity.div_ceil(CHUNK);
        let slices = SPLIT_THREADS / pairs;
        let shared = 4 * (groups * d + groups * CHUNK + slices * groups * d.max(2));
        let held = [
            hold(c.keys, kernel, "keys")?,
            hold(c.values, kernel, "values")?,
            hold(c.position, kernel, "position")?,
        ];
        let split_args = [
            Arg::Buf(q, contiguous(ql, kernel)?),
            held[0].arg()?,
            held[1].arg()?,
            held[2].arg()?,
            Arg::Out,
            size(heads),
            size(kv_heads),
            size(d),
            size(capacity),
            size(splits),
            Arg::F32(1.0 / (d as f32).sqrt()),
        ];
        let split_cfg = LaunchConfig {
            grid_dim: (splits as u32, (batch * kv_heads) as u32, 1),
            block_dim: (SPLIT_THREADS as u32, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        let rows = batch * heads;
        let reduce_cfg = blocks(rows, d.div_ceil(32).clamp(1, 8) as u32 * 32);
        let dev = q.device();
        let out = by_dtype!(q.dtype(), kernel, |T| {
            |name: String| -> Result<CudaStorage> {
                let split_name = name.replace(kernel, "decode_attention_split");
                let part = launch::<T, f32>(
                    dev,
                    &split_name,
                    &split_args,
                    rows * splits * (2 + d),
                    split_cfg,
                )?;
                let reduce_args = [
                    Arg::Scratch(&part),
                    Arg::Out,
                    size(rows),
                    size(d),
                    size(splits),
                ];
                let reduce_name = name.replace(kernel, "decode_attention_reduce");
                Ok(wrap(
                    launch::<T, T>(dev, &reduce_name, &reduce_args, rows * d, reduce_cfg)?,
                    dev,
                ))
            }
        })?;
        Ok((out, Shape::from((batch, heads * d))))
    }
}

pub struct SwiGlu;

impl candle_core::CustomOp1 for SwiGlu {
    fn name(&self) -> &'static str {
        "runner-swiglu"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        no_cpu(self.name())
    }

    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
        let kernel = "swiglu";
        let cols = *xl.shape().dims().last().unwrap_or(&0);
        if cols == 0 || !cols.is_multiple_of(2) {
            candle_core::bail!("{kernel}: rows of {cols} are no gate|up pair");
        }
        let (inter, rows) = (cols / 2, xl.shape().elem_count() / cols);
        let args = [
            Arg::Buf(x, contiguous(xl, kernel)?),
            Arg::Out,
            size(rows),
            size(inter),
        ];
        let dev = x.device();
        let cfg = blocks((rows * inter).div_ceil(256).min(1 << 16), 256);
        let out = by_dtype!(x.dtype(), kernel, |T| {
            |name: String| -> Result<CudaStorage> {
                Ok(wrap(
                    launch::<T, T>(dev, &name, &args, rows * inter, cfg)?,
                    dev,
                ))
            }
        })?;
        let mut dims = xl.shape().dims().to_vec();
        *dims.last_mut().expect("a last dimension") = inter;
        Ok((out, Shape::from(dims)))
    }
}
