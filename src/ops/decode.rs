//! The decode step's fused kernels (src/ops/kernels/decode.cu), each beside the plain candle
//! computation it replaces (the `plain_*` twins, which the GPU checks compare against on fresh
//! random inputs: examples/decode_check.rs). CUDA only: a fused function called with CPU tensors
//! is an error naming the kernel, never a silent fallback to its twin (the decoder that asked for
//! fused kernels must say in its record which ran).
//!
//! One Llama-family layer's decode step with them: add_rms_norm, the Q|K|V GEMM, rope_kv_write,
//! decode_attention (two launches), the output GEMM, add_rms_norm, the gate|up GEMM, swiglu, the
//! down GEMM: 10 launches where the plain path takes ~93.

use candle_core::{DType, Result, Tensor, D};

/// Where a decode step's keys and values go and which position it is at: the static cache
/// (batch, kv_heads, capacity, head_dim) of K and V, and the device-held position (u32, (1,)).
pub struct CacheAt<'a> {
    pub keys: &'a Tensor,
    pub values: &'a Tensor,
    pub position: &'a Tensor,
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
/// in f32: the context (batch, heads * head_dim) in `q`'s dtype. FlashDecoding: the context is
/// split into 64-key chunks, one block a chunk and KV head, then one reduce.
pub fn decode_attention(q: &Tensor, cache: &CacheAt) -> Result<Tensor> {
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
mod cuda;
