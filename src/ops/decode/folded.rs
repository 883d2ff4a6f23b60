//! `decode_kernels = "gemv-fold"`'s and `"gemv-cluster"`'s attention kernels and the greedy pick
//! (their launchers, attention_rope.rs and argmax.rs, are CUDA only).

use candle_core::{Result, Tensor};

#[cfg(feature = "cuda")]
use super::{argmax, attention_rope, pick, variant, AttentionScratch};
use super::{cuda_only, CacheAt, Launch, RopeArgs};

/// rope_kv_write and the one-launch decode attention in one kernel (gemv-fold until session 8)
/// from the Q|K|V row `qkv` (batch, (heads + 2 kv_heads) head_dim): the context (batch, heads *
/// head_dim), the position's K and V written into the cache. Its plain twin:
/// [`super::plain_rope_kv_write`], then [`super::plain_decode_attention`]. Only for shapes with a
/// one-launch [`super::variant`].
pub fn decode_attention_rope(
    qkv: &Tensor,
    rope: &RopeArgs,
    cache: &CacheAt,
    launch: Launch,
) -> Result<Tensor> {
    rope_attention(qkv, rope, cache, launch, false)
}

/// The record's `implementation.attention` of `decode_kernels = "gemv-cluster"`.
pub const CLUSTER_ATTENTION: &str = "decode: the runner's one-launch kernel with rotary + KV write folded in (decode.cu's decode_attention_cluster: 8 CTAs of 8 warps a sequence and KV head as one thread-block cluster, each a contiguous eighth of the cache up to the device-held position, grouped query heads sharing each 16-byte K/V load, online f32 softmax, the CTAs' states merged through distributed shared memory); prefill as prefill_attention says";

/// [`decode_attention_rope`]'s work with its splits merged inside one thread-block cluster a
/// (sequence, KV head) through distributed shared memory (decode.cu's decode_attention_cluster,
/// `decode_kernels = "gemv-cluster"`, session 9): no partials in global memory, no fence, no
/// atomic ticket. The same plain twin; the same shapes; `cache.scratch` only lends its context.
pub fn decode_attention_cluster(
    qkv: &Tensor,
    rope: &RopeArgs,
    cache: &CacheAt,
    launch: Launch,
) -> Result<Tensor> {
    rope_attention(qkv, rope, cache, launch, true)
}

fn rope_attention(
    qkv: &Tensor,
    rope: &RopeArgs,
    cache: &CacheAt,
    launch: Launch,
    cluster: bool,
) -> Result<Tensor> {
    let kernel = if cluster {
        "decode_attention_cluster"
    } else {
        "decode_attention_rope"
    };
    cuda_only(kernel, qkv)?;
    #[cfg(feature = "cuda")]
    {
        let (batch, _) = qkv.dims2()?;
        let (h, k, d) = (rope.heads, rope.kv_heads, rope.head_dim);
        let (_, _, capacity, _) = cache.keys.dims4()?;
        if variant(d, h / k.max(1)).is_none() {
            candle_core::bail!(
                "{kernel}: no one-launch variant for {h} heads, {k} KV heads of {d}"
            );
        }
        match cache.scratch {
            Some(s) => attention_rope::run(qkv, rope, cache, s, launch, cluster),
            None => {
                let s =
                    AttentionScratch::new([batch, h, k, d, capacity], qkv.dtype(), qkv.device())?;
                attention_rope::run(qkv, rope, cache, &s, launch, cluster)
            }
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (rope, cache, launch, cluster);
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

/// What follows the lm_head in a `decode_kernels = "gemv-lean"` step, in one launch of decode.cu's
/// logits_pick: `out` (rows, vocab) f32 = `logits` (rows, vocab) in the model's dtype; with `pick`
/// (tokens (rows, 1) u32, scratch (rows, 4) u32 zero between calls and left zero) each row's
/// greedy token as [`argmax_into`] picks it (the lowest index of the maximum, NaN never picked, 0
/// for an all-NaN row); with `advance` (from, to), u32 (1,) each and possibly the same tensor,
/// `to` = `from` + 1. Its plain twins: `logits.to_dtype(F32)`, candle's argmax, `from + 1`. CUDA
/// only.
pub fn logits_pick(
    logits: &Tensor,
    out: &Tensor,
    pick: Option<(&Tensor, &Tensor)>,
    advance: Option<(&Tensor, &Tensor)>,
) -> Result<()> {
    cuda_only("logits_pick", logits)?;
    #[cfg(feature = "cuda")]
    {
        pick::run(logits, out, pick, advance)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (out, pick, advance);
        unreachable!("cuda_only refused")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Asked for on the CPU, gemv-fold's kernels are an error naming the kernel, never a result.
    #[test]
    fn folded_kernels_refuse_cpu_tensors() {
        let dev = Device::Cpu;
        let (heads, kv_heads, d) = (4, 2, 16);
        let qkv = Tensor::ones((1, (heads + 2 * kv_heads) * d), DType::F32, &dev).unwrap();
        let table = Tensor::ones((8, d / 2), DType::F32, &dev).unwrap();
        let cache = Tensor::zeros((1, kv_heads, 8, d), DType::F32, &dev).unwrap();
        let position = Tensor::zeros(1, DType::U32, &dev).unwrap();
        let rope = RopeArgs {
            cos: &table,
            sin: &table,
            bias: None,
            qk_norm: None,
            heads,
            kv_heads,
            head_dim: d,
        };
        let at = CacheAt {
            keys: &cache,
            values: &cache,
            position: &position,
            scratch: None,
        };
        for (kernel, r) in [
            (
                "decode_attention_cluster",
                decode_attention_cluster(&qkv, &rope, &at, Launch::Stream),
            ),
            (
                "decode_attention_rope",
                decode_attention_rope(&qkv, &rope, &at, Launch::Stream),
            ),
        ] {
            let err = r.unwrap_err().to_string();
            assert!(err.contains(kernel) && err.contains("CUDA only"), "{err}");
        }
        let tokens = Tensor::zeros((1, 1), DType::U32, &dev).unwrap();
        let scratch = Tensor::zeros((1, 4), DType::U32, &dev).unwrap();
        let logits = Tensor::ones((1, 10), DType::F32, &dev).unwrap();
        let err = argmax_into(&tokens, &logits, &scratch)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("argmax_rows") && err.contains("CUDA only"),
            "{err}"
        );
        let out = Tensor::zeros((1, 10), DType::F32, &dev).unwrap();
        let err = logits_pick(&logits, &out, Some((&tokens, &scratch)), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("logits_pick") && err.contains("CUDA only"),
            "{err}"
        );
    }
}
