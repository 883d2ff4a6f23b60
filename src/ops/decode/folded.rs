//! `decode_kernels = "gemv-fold"`'s attention and greedy pick (their launchers, attention_rope.rs
//! and argmax.rs, are CUDA only).

use candle_core::{Result, Tensor};

#[cfg(feature = "cuda")]
use super::{argmax, attention_rope, variant, AttentionScratch};
use super::{cuda_only, CacheAt, Launch, RopeArgs};

/// rope_kv_write and the one-launch decode attention in one kernel (`decode_kernels =
/// "gemv-fold"`) from the Q|K|V row `qkv` (batch, (heads + 2 kv_heads) head_dim): the context
/// (batch, heads * head_dim), the position's K and V written into the cache. Its plain twin:
/// [`super::plain_rope_kv_write`], then [`super::plain_decode_attention`]. Only for shapes with a
/// one-launch [`super::variant`].
pub fn decode_attention_rope(
    qkv: &Tensor,
    rope: &RopeArgs,
    cache: &CacheAt,
    launch: Launch,
) -> Result<Tensor> {
    cuda_only("decode_attention_rope", qkv)?;
    #[cfg(feature = "cuda")]
    {
        let (batch, _) = qkv.dims2()?;
        let (h, k, d) = (rope.heads, rope.kv_heads, rope.head_dim);
        let (_, _, capacity, _) = cache.keys.dims4()?;
        if variant(d, h / k.max(1)).is_none() {
            candle_core::bail!(
                "decode_attention_rope: no one-launch variant for {h} heads, {k} KV heads of {d}"
            );
        }
        match cache.scratch {
            Some(s) => attention_rope::run(qkv, rope, cache, s, launch),
            None => {
                let s =
                    AttentionScratch::new([batch, h, k, d, capacity], qkv.dtype(), qkv.device())?;
                attention_rope::run(qkv, rope, cache, &s, launch)
            }
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (rope, cache, launch);
        unreachable!("cuda_only refused")
    }
}

/// `tokens` (rows, 1) u32 = the argmax of `logits` (rows, vocab) f32 in place, in one launch of
/// decode.cu's argmax_rows_f32 (a grid of blocks a row, the last one writing the token): the
/// lowest index among equal maxima, NaN never picked (an all-NaN row gives 0). `scratch` (rows,
/// 4) u32 must be zero before the first call; each call leaves it zero. Its plain twin is
/// `logits.argmax_keepdim(D::Minus1)` (candle's one block a row). CUDA only.
pub fn argmax_into(tokens: &Tensor, logits: &Tensor, scratch: &Tensor) -> Result<()> {
    cuda_only("argmax_rows", logits)?;
    #[cfg(feature = "cuda")]
    {
        tokens.inplace_op3(&logits.contiguous()?, scratch, &argmax::ArgmaxInto)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (tokens, scratch);
        unreachable!("cuda_only refused")
    }
}
