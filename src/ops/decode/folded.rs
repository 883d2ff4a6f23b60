//! `decode_kernels = "gemv-fold"`'s attention entry point (its launcher, attention_rope.rs, is
//! CUDA only).

use candle_core::{Result, Tensor};

#[cfg(feature = "cuda")]
use super::{attention_rope, variant, AttentionScratch};
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
