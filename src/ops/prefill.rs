//! The prefill's causal attention as one kernel (src/ops/kernels/prefill.cu,
//! `prefill_attention = "flash"`), beside the plain candle computation it replaces
//! ([`plain_prefill_attention`], which the GPU check compares it against on fresh random inputs:
//! examples/decode_check/prefill.rs). Flash-style: the queries of a 64-position tile against the
//! static KV cache read in place (grouped-query heads without repeating it), QK^T and PV on the
//! tensor cores in bf16/f16 with f32 accumulation, the online softmax in f32, key tiles past the
//! causal edge skipped, the context written as the output projection's input (batch, len,
//! heads * head_dim). CUDA and bf16/f16 only: asked for elsewhere it is an error naming the
//! kernel, never a silent fallback to its twin.

use candle_core::{DType, Result, Tensor};

/// Query positions a CTA serves (PF_BM in prefill.cu).
pub const QUERY_TILE: usize = 64;

/// Why the flash kernel cannot run these shapes, or None where it can: head_dim 16, 32, 64 or
/// 128, bf16 or f16, a whole number of query heads a KV head.
pub fn unsupported(head_dim: usize, heads: usize, kv_heads: usize, dtype: DType) -> Option<String> {
    if !matches!(head_dim, 16 | 32 | 64 | 128) {
        return Some(format!(
            "the flash prefill attention has kernels for head_dim 16, 32, 64 and 128, not {head_dim}"
        ));
    }
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Some(format!(
            "{heads} query heads do not group over {kv_heads} KV heads"
        ));
    }
    if !matches!(dtype, DType::BF16 | DType::F16) {
        return Some(format!(
            "the flash prefill attention runs bf16 and f16 (tensor cores), not {dtype:?}"
        ));
    }
    None
}

/// What the record says the flash kernel is.
pub const FLASH_DESCRIPTION: &str = "prefill: the runner's flash-style causal kernel (src/ops/kernels/prefill.cu: 64-query tiles, the KV cache read in place by each query head's KV head without repeat_kv, QK^T and PV on the tensor cores (WMMA bf16/f16, f32 accumulation), online f32 softmax, key tiles past the causal edge skipped, the context written as the output projection's input)";

/// Attention of `q` (batch, heads, len, head_dim), the queries of positions start..start+len
/// (rotated), over the cache `keys`/`values` (batch, kv_heads, capacity, head_dim), positions
/// 0..start+len written, causal (query i sees keys 0..=start+i), scaled by 1/sqrt(head_dim): the
/// context (batch, len, heads * head_dim) in `q`'s dtype.
pub fn prefill_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    start: usize,
) -> Result<Tensor> {
    if !(cfg!(feature = "cuda") && q.device().is_cuda()) {
        candle_core::bail!(
            "the flash prefill attention runs on CUDA only (a CUDA build and a GPU cell); prefill_attention = \"plain\" runs everywhere"
        );
    }
    let (_, heads, _, d) = q.dims4()?;
    let (_, kv_heads, _, _) = keys.dims4()?;
    if let Some(why) = unsupported(d, heads, kv_heads, q.dtype()) {
        candle_core::bail!("{why}");
    }
    #[cfg(feature = "cuda")]
    {
        q.contiguous()?.apply_op1_no_bwd(&cuda::PrefillAttention {
            keys,
            values,
            start,
        })
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (values, start);
        unreachable!("refused above")
    }
}

/// What [`prefill_attention`] replaces, as the plain decoder computes it: K and V repeated for
/// every query head, f32 scores, the causal mask, softmax, matmul; the context (batch, len,
/// heads * head_dim) in the cache's dtype.
pub fn plain_prefill_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    start: usize,
) -> Result<Tensor> {
    let (b, heads, len, d) = q.dims4()?;
    let kv_heads = keys.dim(1)?;
    let groups = heads / kv_heads;
    let total = start + len;
    let repeat = |t: &Tensor| -> Result<Tensor> {
        let t = t.narrow(2, 0, total)?.to_dtype(DType::F32)?;
        t.unsqueeze(2)?
            .broadcast_as((b, kv_heads, groups, total, d))?
            .reshape((b, heads, total, d))
    };
    let (k, v) = (repeat(keys)?, repeat(values)?);
    let scale = 1.0 / (d as f64).sqrt();
    let scores = (q.to_dtype(DType::F32)?.contiguous()?.matmul(&k.t()?)? * scale)?;
    let positions = Tensor::arange(0u32, total as u32, q.device())?;
    let allowed = positions
        .unsqueeze(0)?
        .broadcast_le(&positions.narrow(0, start, len)?.unsqueeze(1)?)?
        .broadcast_as(scores.shape())?;
    let neg = Tensor::new(f32::NEG_INFINITY, q.device())?.broadcast_as(scores.shape())?;
    let probs = candle_nn::ops::softmax_last_dim(&allowed.where_cond(&scores, &neg)?)?;
    probs
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((b, len, heads * d))?
        .to_dtype(keys.dtype())
}

#[cfg(feature = "cuda")]
mod cuda;

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The plain twin by hand: two query heads sharing one KV head, a span of 2 at start 1, each
    /// query over keys 0..=its position only (a key past it cannot leak in).
    #[test]
    fn plain_prefill_attention_is_causal_over_the_cache() {
        let dev = Device::Cpu;
        let (capacity, d, len, start) = (4, 2, 2, 1);
        let keys: Vec<f32> = vec![0.5, -1.0, 1.5, 0.25, -0.75, 2.0, 9.0, 9.0];
        let values: Vec<f32> = vec![1.0, 2.0, -3.0, 0.5, 4.0, -1.0, 99.0, 99.0];
        // (1, 2 heads, 2 positions, 2)
        let q: Vec<f32> = vec![0.3, -0.2, -1.1, 0.7, 0.4, 0.9, -0.6, 0.1];
        let kt = Tensor::from_vec(keys.clone(), (1, 1, capacity, d), &dev).unwrap();
        let vt = Tensor::from_vec(values.clone(), (1, 1, capacity, d), &dev).unwrap();
        let qt = Tensor::from_vec(q.clone(), (1, 2, len, d), &dev).unwrap();
        let got = plain_prefill_attention(&qt, &kt, &vt, start).unwrap();
        assert_eq!(got.dims(), &[1, len, 2 * d]);
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        for h in 0..2 {
            for i in 0..len {
                let qi = &q[(h * len + i) * d..][..d];
                let seen = start + i;
                let scores: Vec<f32> = (0..=seen)
                    .map(|j| (qi[0] * keys[j * d] + qi[1] * keys[j * d + 1]) / (d as f32).sqrt())
                    .collect();
                let m = scores.iter().cloned().fold(f32::MIN, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                let sum: f32 = e.iter().sum();
                for c in 0..d {
                    let want: f32 = (0..=seen).map(|j| e[j] / sum * values[j * d + c]).sum();
                    let at = (i * 2 + h) * d + c;
                    assert!((got[at] - want).abs() < 1e-6, "head {h} query {i} dim {c}");
                }
            }
        }
    }

    /// The kernel's shapes, and on the CPU an error naming it, never the twin's result.
    #[test]
    fn flash_prefill_refuses_what_it_cannot_run() {
        assert!(unsupported(64, 32, 8, DType::BF16).is_none());
        assert!(unsupported(128, 14, 2, DType::F16).is_none());
        assert!(unsupported(80, 8, 8, DType::BF16)
            .unwrap()
            .contains("head_dim"));
        assert!(unsupported(64, 9, 2, DType::BF16)
            .unwrap()
            .contains("group"));
        assert!(unsupported(64, 8, 2, DType::F32).unwrap().contains("F32"));
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 2, 3, 64), DType::BF16, &dev).unwrap();
        let kv = Tensor::zeros((1, 1, 8, 64), DType::BF16, &dev).unwrap();
        let err = prefill_attention(&q, &kv, &kv, 0).unwrap_err().to_string();
        assert!(err.contains("CUDA only") && err.contains("plain"), "{err}");
    }
}
