//! The decode step's fused kernels (src/ops/kernels/decode.cu), each beside the plain candle
//! computation it replaces (the `plain_*` twins, which the GPU checks compare against on fresh
//! random inputs: examples/decode_check.rs). CUDA only: a fused function called with CPU tensors
//! is an error naming the kernel, never a silent fallback to its twin (the decoder that asked for
//! fused kernels must say in its record which ran).
//!
//! One Llama-family layer's decode step with them: add_rms_norm, the Q|K|V GEMM, rope_kv_write,
//! decode_attention (one launch into a preallocated context), the output GEMM, add_rms_norm, the gate|up GEMM, swiglu, the
//! down GEMM: 10 launches where the plain path takes ~93.

use candle_core::{DType, Result, Tensor, D};

/// How a decode kernel is put on the stream: after its predecessor finished (`Stream`, every
/// path's default) or with Programmatic Dependent Launch (`Programmatic`, decode_kernels =
/// "gemv-pdl": its blocks start during the predecessor's tail and wait in the kernel, on
/// griddepcontrol.wait, before touching what the predecessor writes; src/ops/decode/launch.rs).
/// Only where the predecessor on the stream is one of these kernels (not an allocation node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    Stream,
    Programmatic,
}

/// Where a decode step's keys and values go and which position it is at: the static cache
/// (batch, kv_heads, capacity, head_dim) of K and V, the device-held position (u32, (1,)), and
/// the attention's preallocated scratch (None: [`decode_attention`] allocates one per call, as the
/// kernel checks do; a captured step passes its layer's, so the graph holds no allocation).
pub struct CacheAt<'a> {
    pub keys: &'a Tensor,
    pub values: &'a Tensor,
    pub position: &'a Tensor,
    pub scratch: Option<&'a AttentionScratch>,
}

/// The one-launch attention's compile-time (head_dim, query-group bound) for these shapes, or
/// None where the two-pass kernels run instead (head_dim other than 16, 32 (the tiny test
/// configs), 64 or 128, more than 8 query heads a KV head).
pub fn variant(head_dim: usize, groups: usize) -> Option<(usize, usize)> {
    let d = matches!(head_dim, 16 | 32 | 64 | 128).then_some(head_dim)?;
    let g = match groups {
        1..=4 => 4,
        5..=8 => 8,
        _ => return None,
    };
    Some((d, g))
}

/// Which decode attention kernel runs at these shapes, for the record.
pub fn attention_kernel(head_dim: usize, groups: usize) -> &'static str {
    match variant(head_dim, groups) {
        Some(_) => "decode: the runner's one-launch split-K kernel over the static cache up to the device-held position (splits picked from batch x KV heads and the SM count, grouped query heads sharing each 16-byte K/V load, online f32 softmax, the last CTA of each sequence and KV head merging the splits); prefill: causal over the prompt (plain)",
        None => "decode: the runner's two-pass split-K kernel over the static cache up to the device-held position (64-key chunks, f32 softmax, grouped query heads sharing their KV head's reads) + a reduce over the chunks (no one-launch variant for this head_dim or query group); prefill: causal over the prompt (plain)",
    }
}

/// Most splits of the one-launch attention (FA_MAX_SPLITS in decode.cu).
pub const MAX_SPLITS: usize = 64;
/// Fewest cache positions a split is sized for: below this the cross-split merge costs more than
/// the keys it spreads (one load round of a CTA covers 64 keys at U = 4).
const MIN_KEYS_PER_SPLIT: usize = 32;

/// Splits of the one-launch attention for `batch` x `kv_heads` CTAs a split on `sms`
/// multiprocessors over a cache of `capacity` positions: about 2 CTAs a multiprocessor, no split
/// sized under 32 positions of the capacity, at most [`MAX_SPLITS`]. Picked from the capacity,
/// not the position (which the device holds): the kernel divides the current length evenly over
/// these splits, so a graph captured once serves every position.
pub fn attention_splits(batch: usize, kv_heads: usize, capacity: usize, sms: usize) -> usize {
    let want = (2 * sms).div_ceil((batch * kv_heads).max(1));
    let most = capacity.div_ceil(MIN_KEYS_PER_SPLIT);
    want.min(most).clamp(1, MAX_SPLITS)
}

/// What the one-launch attention writes besides the cache: per (sequence, query head, split) its
/// softmax state (m, l, o) in f32, one arrival counter per (sequence, KV head) (zero between
/// launches: the last CTA resets it), and the context (batch, heads * head_dim) it returns.
// The buffers are read by the CUDA launcher only (decode/attention.rs).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub struct AttentionScratch {
    partials: Tensor,
    counters: Tensor,
    context: Tensor,
    splits: usize,
    shape: [usize; 5],
}

impl AttentionScratch {
    /// For a cache (batch, kv_heads, capacity, head_dim) of `dtype` and `heads` query heads, the
    /// split count from [`attention_splits`] and the device's multiprocessors.
    pub fn new(shape: [usize; 5], dtype: DType, device: &candle_core::Device) -> Result<Self> {
        let [batch, _, kv_heads, _, capacity] = shape;
        let sms = multiprocessors(device)?;
        Self::with_splits(
            shape,
            attention_splits(batch, kv_heads, capacity, sms),
            dtype,
            device,
        )
    }

    /// `shape` is [batch, heads, kv_heads, head_dim, capacity]; `splits` as given (the checks
    /// force odd ones), at most [`MAX_SPLITS`].
    pub fn with_splits(
        shape: [usize; 5],
        splits: usize,
        dtype: DType,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let [batch, heads, kv_heads, head_dim, _] = shape;
        if !(1..=MAX_SPLITS).contains(&splits) {
            candle_core::bail!("decode attention: {splits} splits (1 to {MAX_SPLITS})");
        }
        Ok(Self {
            partials: Tensor::zeros(batch * heads * splits * (2 + head_dim), DType::F32, device)?,
            counters: Tensor::zeros(batch * kv_heads, DType::U32, device)?,
            context: Tensor::zeros((batch, heads * head_dim), dtype, device)?,
            splits,
            shape,
        })
    }

    pub fn splits(&self) -> usize {
        self.splits
    }

    /// [batch, heads, kv_heads, head_dim, capacity] it was sized for.
    pub fn shape(&self) -> [usize; 5] {
        self.shape
    }

    /// Whether it serves these shapes (its partials and counters are sized by them).
    pub fn fits(
        &self,
        batch: usize,
        heads: usize,
        kv_heads: usize,
        d: usize,
        capacity: usize,
    ) -> bool {
        self.shape == [batch, heads, kv_heads, d, capacity]
    }
}

/// Multiprocessors of a CUDA device (the split count's target); 1 elsewhere (no kernel runs there).
fn multiprocessors(device: &candle_core::Device) -> Result<usize> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = device {
        return attention::sm_count(dev);
    }
    let _ = device;
    Ok(1)
}

/// The rotary tables (max_positions, head_dim / 2) and the optional per-layer extras of the Q|K|V
/// output: its bias (qwen2), per-head Q and K RMSNorm weights (qwen3) with their eps.
pub struct RopeArgs<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub qk_norm: Option<(&'a Tensor, &'a Tensor, f64)>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

fn cuda_only(kernel: &str, t: &Tensor) -> Result<()> {
    if cfg!(feature = "cuda") && t.device().is_cuda() {
        Ok(())
    } else {
        candle_core::bail!(
            "the fused decode kernel {kernel} runs on CUDA only (a CUDA build and a GPU cell); the plain path runs everywhere"
        )
    }
}

/// (rms_norm(x + residual) * weight, x + residual) of rows (..., cols): the normed input of the
/// next linear and the new residual stream, in one pass.
pub fn add_rms_norm(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    cuda_only("add_rms_norm", x)?;
    #[cfg(feature = "cuda")]
    {
        let both = x.contiguous()?.apply_op3_no_bwd(
            &residual.contiguous()?,
            &weight.contiguous()?,
            &cuda::AddRmsNorm { eps: eps as f32 },
        )?;
        Ok((both.get(0)?, both.get(1)?))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (residual, weight, eps);
        unreachable!("cuda_only refused")
    }
}

/// What [`add_rms_norm`] replaces: candle's add, then candle-nn's RMSNorm kernel.
pub fn plain_add_rms_norm(
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let sum = (x + residual)?;
    Ok((candle_nn::ops::rms_norm(&sum, weight, eps as f32)?, sum))
}

/// The Q|K|V GEMM's output `qkv` (batch, (heads + 2 kv_heads) head_dim) -> Q (batch, heads,
/// head_dim) rotated at the device-held position; K rotated and V written into the cache there.
pub fn rope_kv_write(qkv: &Tensor, rope: &RopeArgs, cache: &CacheAt) -> Result<Tensor> {
    cuda_only("rope_kv_write", qkv)?;
    #[cfg(feature = "cuda")]
    {
        let b = qkv.dim(0)?;
        let q = qkv
            .contiguous()?
            .apply_op1_no_bwd(&cuda::RopeKvWrite { rope, cache })?;
        q.reshape((b, rope.heads, rope.head_dim))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (rope, cache);
        unreachable!("cuda_only refused")
    }
}

/// [`rope_kv_write`] into `q` (batch, heads * head_dim), a buffer of the step (no allocation),
/// launched as `launch` says; returns Q as (batch, heads, head_dim), a view of `q`.
pub fn rope_kv_write_into(
    qkv: &Tensor,
    rope: &RopeArgs,
    cache: &CacheAt,
    q: &Tensor,
    launch: Launch,
) -> Result<Tensor> {
    cuda_only("rope_kv_write", qkv)?;
    #[cfg(feature = "cuda")]
    {
        let b = qkv.dim(0)?;
        let op = cuda::RopeKvWriteInto {
            op: cuda::RopeKvWrite { rope, cache },
            launch,
        };
        q.inplace_op2(&qkv.contiguous()?, &op)?;
        q.reshape((b, rope.heads, rope.head_dim))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (rope, cache, q, launch);
        unreachable!("cuda_only refused")
    }
}

/// What [`rope_kv_write`] replaces, as the plain decoder computes it: bias add, split into heads,
/// per-head RMSNorm, candle-nn's rope on the position's rows of the tables, and the cache's
/// scatter at the position.
pub fn plain_rope_kv_write(qkv: &Tensor, rope: &RopeArgs, cache: &CacheAt) -> Result<Tensor> {
    let (b, _) = qkv.dims2()?;
    let (h, k, d) = (rope.heads, rope.kv_heads, rope.head_dim);
    let qkv = match rope.bias {
        Some(bias) => qkv.broadcast_add(bias)?,
        None => qkv.clone(),
    };
    let split = |from: usize, heads: usize| {
        qkv.narrow(1, from * d, heads * d)?
            .reshape((b, heads, 1, d))?
            .contiguous()
    };
    let (mut q, mut key) = (split(0, h)?, split(h, k)?);
    let value = split(h + k, k)?;
    if let Some((qn, kn, eps)) = rope.qk_norm {
        q = candle_nn::ops::rms_norm(&q, qn, eps as f32)?;
        key = candle_nn::ops::rms_norm(&key, kn, eps as f32)?;
    }
    let cos = rope.cos.index_select(cache.position, 0)?;
    let sin = rope.sin.index_select(cache.position, 0)?;
    let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
    let key = candle_nn::rotary_emb::rope(&key, &cos, &sin)?;
    let index = cache
        .position
        .reshape((1, 1, 1, 1))?
        .broadcast_as(key.shape())?
        .contiguous()?;
    cache.keys.scatter_set(&index, &key, 2)?;
    cache.values.scatter_set(&index, &value, 2)?;
    q.reshape((b, h, d))
}

/// Attention of one query per sequence and head, `q` (batch, heads, head_dim), over the cache's
/// positions 0..=position (grouped-query heads share their KV head), scaled by 1/sqrt(head_dim),
/// in f32: the context (batch, heads * head_dim) in `q`'s dtype. One launch (decode.cu's
/// decode_attention_fused: split-K over the current length, the last CTA merging) for head_dim
/// 16, 32, 64 or 128 and at most 8 query heads a KV head, the two-pass kernels otherwise
/// ([`decode_attention_two_pass`]). With the cache's scratch the result IS its context buffer:
/// the next call overwrites it (copy it to keep it).
pub fn decode_attention(q: &Tensor, cache: &CacheAt) -> Result<Tensor> {
    decode_attention_launched(q, cache, Launch::Stream)
}

/// [`decode_attention`], its one-launch kernel put on the stream as `launch` says (the two-pass
/// fallback always plainly).
pub fn decode_attention_launched(q: &Tensor, cache: &CacheAt, launch: Launch) -> Result<Tensor> {
    decode_attention_way(q, cache, (launch, false))
}

/// [`decode_attention_launched`] with the wide merge (gemv-bulk): the last CTA of each sequence
/// and KV head loads every split's partial of a context value before it uses any (one L2 round
/// trip instead of one per 8 splits); the same sums in the same order.
pub fn decode_attention_wide(q: &Tensor, cache: &CacheAt, launch: Launch) -> Result<Tensor> {
    decode_attention_way(q, cache, (launch, true))
}

fn decode_attention_way(q: &Tensor, cache: &CacheAt, way: (Launch, bool)) -> Result<Tensor> {
    cuda_only("decode_attention", q)?;
    #[cfg(feature = "cuda")]
    {
        let (batch, heads, d) = q.dims3()?;
        let (_, kv_heads, capacity, _) = cache.keys.dims4()?;
        if variant(d, heads / kv_heads.max(1)).is_none() {
            return decode_attention_two_pass(q, cache);
        }
        let shape = [batch, heads, kv_heads, d, capacity];
        match cache.scratch {
            Some(s) => attention::run(q, cache, s, way),
            None => {
                let s = AttentionScratch::new(shape, q.dtype(), q.device())?;
                attention::run(q, cache, &s, way)
            }
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (cache, way);
        unreachable!("cuda_only refused")
    }
}

/// The first fused attention (two launches: 64-key splits, then a reduce, scratch and output
/// allocated per call): the fallback for shapes the one-launch kernel has no variant for, and
/// the before of the profile's before/after.
pub fn decode_attention_two_pass(q: &Tensor, cache: &CacheAt) -> Result<Tensor> {
    cuda_only("decode_attention", q)?;
    #[cfg(feature = "cuda")]
    {
        q.contiguous()?
            .apply_op1_no_bwd(&cuda::DecodeAttention { cache })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = cache;
        unreachable!("cuda_only refused")
    }
}

/// What [`decode_attention`] replaces: the plain decoder's f32 matmul of each KV head's query
/// group against the whole cache, positions past the position masked, softmax, matmul.
pub fn plain_decode_attention(q: &Tensor, cache: &CacheAt) -> Result<Tensor> {
    let (b, heads, d) = q.dims3()?;
    let (_, kv_heads, capacity, _) = cache.keys.dims4()?;
    let groups = heads / kv_heads;
    let q = q.reshape((b, kv_heads, groups, d))?.to_dtype(DType::F32)?;
    let scale = 1.0 / (d as f64).sqrt();
    let scores = (q.matmul(&cache.keys.to_dtype(DType::F32)?.t()?)? * scale)?;
    let positions = Tensor::arange(0u32, capacity as u32, q.device())?;
    let allowed = positions
        .broadcast_le(cache.position)?
        .broadcast_as(scores.shape())?;
    let neg = Tensor::new(f32::NEG_INFINITY, q.device())?.broadcast_as(scores.shape())?;
    let probs = candle_nn::ops::softmax_last_dim(&allowed.where_cond(&scores, &neg)?)?;
    let y = probs.matmul(&cache.values.to_dtype(DType::F32)?)?;
    y.reshape((b, heads * d))?.to_dtype(cache.keys.dtype())
}

/// silu(gate) * up of the gate|up GEMM's output (rows, 2 I) -> (rows, I).
pub fn swiglu(gate_up: &Tensor) -> Result<Tensor> {
    cuda_only("swiglu", gate_up)?;
    #[cfg(feature = "cuda")]
    {
        gate_up.contiguous()?.apply_op1_no_bwd(&cuda::SwiGlu)
    }
    #[cfg(not(feature = "cuda"))]
    unreachable!("cuda_only refused")
}

/// What [`swiglu`] replaces: candle's silu of the gate half times the up half.
pub fn plain_swiglu(gate_up: &Tensor) -> Result<Tensor> {
    let inter = gate_up.dim(D::Minus1)? / 2;
    let gate = gate_up.narrow(D::Minus1, 0, inter)?;
    let up = gate_up.narrow(D::Minus1, inter, inter)?;
    candle_nn::ops::silu(&gate)? * up
}

#[cfg(feature = "cuda")]
mod argmax;
#[cfg(feature = "cuda")]
mod attention;
#[cfg(feature = "cuda")]
mod attention_rope;
mod folded;
pub use folded::{
    argmax_into, decode_attention_cluster, decode_attention_rope, logits_pick, CLUSTER_ATTENTION,
};
#[cfg(feature = "cuda")]
mod cuda;
pub mod gemv;
#[cfg(feature = "cuda")]
mod gemv_cuda;
#[cfg(feature = "cuda")]
mod launch;
#[cfg(feature = "cuda")]
mod pick;

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The plain attention twin is the softmax over positions 0..=position only (what is past it
    /// in the cache cannot leak in), computed here by hand for two query heads sharing one KV head.
    #[test]
    fn plain_attention_is_the_masked_softmax_over_the_cache() {
        let dev = Device::Cpu;
        let (capacity, d) = (4, 2);
        let keys: Vec<f32> = vec![0.5, -1.0, 1.5, 0.25, -0.75, 2.0, 9.0, 9.0];
        let values: Vec<f32> = vec![1.0, 2.0, -3.0, 0.5, 4.0, -1.0, 99.0, 99.0];
        let q: Vec<f32> = vec![0.3, -0.2, -1.1, 0.7];
        let position = 2usize;
        let keys_t = Tensor::from_vec(keys.clone(), (1, 1, capacity, d), &dev).unwrap();
        let values_t = Tensor::from_vec(values.clone(), (1, 1, capacity, d), &dev).unwrap();
        let pos = Tensor::new(&[position as u32], &dev).unwrap();
        let at = CacheAt {
            keys: &keys_t,
            values: &values_t,
            position: &pos,
            scratch: None,
        };
        let q_t = Tensor::from_vec(q.clone(), (1, 2, d), &dev).unwrap();
        let got: Vec<f32> = plain_decode_attention(&q_t, &at)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for g in 0..2 {
            let scores: Vec<f32> = (0..=position)
                .map(|j| {
                    (q[g * d] * keys[j * d] + q[g * d + 1] * keys[j * d + 1]) / (d as f32).sqrt()
                })
                .collect();
            let m = scores.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f32 = e.iter().sum();
            for c in 0..d {
                let want: f32 = (0..=position).map(|j| e[j] / sum * values[j * d + c]).sum();
                assert!(
                    (got[g * d + c] - want).abs() < 1e-6,
                    "head {g} dim {c}: {} vs {want}",
                    got[g * d + c]
                );
            }
        }
    }

    /// The split count: ~2 CTAs a multiprocessor (132 on the H100), never a split sized under 32
    /// positions of the capacity, never past MAX_SPLITS, at least 1.
    #[test]
    fn attention_splits_fill_the_gpu_within_bounds() {
        // Llama-3.2-1B b1: 264 / 8 = 33 wanted, 640 / 32 = 20 allowed.
        assert_eq!(attention_splits(1, 8, 640, 132), 20);
        // SmolLM2 b8: 264 / 24 = 11.
        assert_eq!(attention_splits(8, 3, 640, 132), 11);
        // Llama b8: 264 / 64 -> 5.
        assert_eq!(attention_splits(8, 8, 640, 132), 5);
        assert_eq!(attention_splits(64, 8, 640, 132), 1);
        assert_eq!(attention_splits(1, 1, 1 << 20, 1000), MAX_SPLITS);
        assert_eq!(attention_splits(1, 1, 1, 132), 1);
        assert_eq!(attention_splits(0, 0, 0, 0), 1);
    }

    /// The one-launch kernel's variants: head_dim 16, 32, 64 or 128, up to 8 query heads a KV head; the
    /// record names the two-pass kernel elsewhere.
    #[test]
    fn attention_variants_and_their_record() {
        assert_eq!(variant(64, 3), Some((64, 4)));
        assert_eq!(variant(64, 7), Some((64, 8)));
        assert_eq!(variant(128, 2), Some((128, 4)));
        assert_eq!(variant(64, 9), None);
        assert_eq!(variant(96, 4), None);
        assert_eq!(variant(16, 2), Some((16, 4)));
        assert!(attention_kernel(64, 4).contains("one-launch"));
        assert!(attention_kernel(80, 4).contains("two-pass"));
    }

    /// On the CPU a cache keeps no scratch; a scratch is sized by its shapes and refuses
    /// out-of-range split counts.
    #[test]
    fn attention_scratch_sizes() {
        let dev = Device::Cpu;
        let s = AttentionScratch::with_splits([2, 8, 2, 64, 640], 7, DType::F32, &dev).unwrap();
        assert_eq!(s.partials.elem_count(), 2 * 8 * 7 * 66);
        assert_eq!(s.counters.elem_count(), 4);
        assert_eq!(s.context.dims(), &[2, 8 * 64]);
        assert!(s.fits(2, 8, 2, 64, 640) && !s.fits(1, 8, 2, 64, 640));
        assert!(AttentionScratch::with_splits([1, 1, 1, 64, 8], 0, DType::F32, &dev).is_err());
        assert!(AttentionScratch::with_splits([1, 1, 1, 64, 8], 65, DType::F32, &dev).is_err());
        assert_eq!(
            AttentionScratch::new([1, 8, 2, 64, 640], DType::F32, &dev)
                .unwrap()
                .splits(),
            1
        );
    }

    /// The plain rotary twin writes K and V at the position, and only there.
    #[test]
    fn plain_rope_kv_write_writes_only_the_position() {
        let dev = Device::Cpu;
        let (heads, kv_heads, d, capacity) = (2, 1, 4, 3);
        let qkv = Tensor::arange(1f32, 1.0 + ((heads + 2 * kv_heads) * d) as f32, &dev)
            .unwrap()
            .reshape((1, (heads + 2 * kv_heads) * d))
            .unwrap();
        let zeros =
            || Tensor::zeros((1, kv_heads, capacity, d), candle_core::DType::F32, &dev).unwrap();
        let (keys, values) = (zeros(), zeros());
        let pos = Tensor::new(&[1u32], &dev).unwrap();
        // Position 0 of the tables: cos 1, sin 0 (no rotation) in every row, so K and V are
        // written as given.
        let cos = Tensor::ones((capacity, d / 2), candle_core::DType::F32, &dev).unwrap();
        let sin = Tensor::zeros((capacity, d / 2), candle_core::DType::F32, &dev).unwrap();
        let rope = RopeArgs {
            cos: &cos,
            sin: &sin,
            bias: None,
            qk_norm: None,
            heads,
            kv_heads,
            head_dim: d,
        };
        let at = CacheAt {
            keys: &keys,
            values: &values,
            position: &pos,
            scratch: None,
        };
        let q = plain_rope_kv_write(&qkv, &rope, &at).unwrap();
        assert_eq!(q.dims(), &[1, heads, d]);
        let k: Vec<f32> = keys.flatten_all().unwrap().to_vec1().unwrap();
        let v: Vec<f32> = values.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(k, [0., 0., 0., 0., 9., 10., 11., 12., 0., 0., 0., 0.]);
        assert_eq!(v, [0., 0., 0., 0., 13., 14., 15., 16., 0., 0., 0., 0.]);
    }

    /// Asked for on the CPU, a fused kernel is an error naming it, never its twin's result.
    #[test]
    fn fused_kernels_refuse_cpu_tensors() {
        let x = Tensor::ones((1, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = swiglu(&x).unwrap_err().to_string();
        assert!(err.contains("swiglu") && err.contains("CUDA only"), "{err}");
        let w = Tensor::ones(8, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(add_rms_norm(&x, &x, &w, 1e-6).is_err());
        let want = (candle_nn::ops::silu(&x.narrow(1, 0, 4).unwrap()).unwrap()
            * x.narrow(1, 4, 4).unwrap())
        .unwrap();
        let got = plain_swiglu(&x).unwrap();
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
