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
