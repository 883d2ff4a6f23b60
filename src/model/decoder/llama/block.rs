//! One decoder layer of the Llama family, callable alone: RMSNorm, attention with grouped-query
//! heads over the static KV cache (qwen2's Q/K/V biases, qwen3's per-head Q/K norms), RMSNorm,
//! SwiGLU. Two entry points with the same weights: a prefill of a span at a host offset (one
//! shape per prompt length, its causal mask made once on the device) and a decode step at the
//! device-held position (the same kernels and arguments every step).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{RmsNorm, VarBuilder};

use super::config::FamilyConfig;
use crate::model::parts::kv_cache::StaticKvCache;
use crate::model::parts::linear::{Linear, Linears};
use crate::model::parts::rope::Rotary;

pub struct Attention {
    pub(super) q: Linear,
    pub(super) k: Linear,
    pub(super) v: Linear,
    pub(super) o: Linear,
    pub(super) q_norm: Option<RmsNorm>,
    pub(super) k_norm: Option<RmsNorm>,
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) head_dim: usize,
    /// With fused decode kernels: the Q, K and V weights (and biases) stacked, one GEMM; q, k
    /// and v above are views of it (one copy in memory), for the plain prefill.
    pub(super) qkv: Option<(Tensor, Option<Tensor>)>,
    /// `prefill_attention = "flash"` (bf16/f16 on CUDA): the prefill's attention is the runner's
    /// kernel over the cache (src/ops/prefill.rs), not the plain f32 ops.
    pub(super) flash_prefill: bool,
}

pub struct Mlp {
    pub(super) gate: Linear,
    pub(super) up: Linear,
    pub(super) down: Linear,
    /// With fused decode kernels: the gate and up weights stacked (gate and up are its views).
    pub(super) gate_up: Option<Tensor>,
}

pub struct Block {
    pub(super) input_norm: RmsNorm,
    pub attention: Attention,
    pub(super) post_attention_norm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    /// `fused`: stack Q|K|V and gate|up for the fused decode kernels (float linears only).
    pub fn load(cfg: &FamilyConfig, vb: VarBuilder, format: &Linears, fused: bool) -> Result<Self> {
        let (h, d) = (cfg.hidden, cfg.head_dim);
        let a = vb.pp("self_attn");
        let norm = |name: &str| candle_nn::rms_norm(d, cfg.rms_norm_eps, a.pp(name));
        let attention = Attention {
            q: Linear::load(a.pp("q_proj"), h, cfg.heads * d, cfg.qkv_bias, format)?,
            k: Linear::load(a.pp("k_proj"), h, cfg.kv_heads * d, cfg.qkv_bias, format)?,
            v: Linear::load(a.pp("v_proj"), h, cfg.kv_heads * d, cfg.qkv_bias, format)?,
            o: Linear::load(a.pp("o_proj"), cfg.heads * d, h, false, format)?,
            q_norm: cfg.qk_norm.then(|| norm("q_norm")).transpose()?,
            k_norm: cfg.qk_norm.then(|| norm("k_norm")).transpose()?,
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: d,
            qkv: None,
            flash_prefill: false,
        };
        let m = vb.pp("mlp");
        let i = cfg.intermediate;
        let mut mlp = Mlp {
            gate: Linear::load(m.pp("gate_proj"), h, i, false, format)?,
            up: Linear::load(m.pp("up_proj"), h, i, false, format)?,
            down: Linear::load(m.pp("down_proj"), i, h, false, format)?,
            gate_up: None,
        };
        let mut attention = attention;
        if fused {
            attention.stack()?;
            mlp.stack()?;
        }
        Ok(Self {
            input_norm: candle_nn::rms_norm(h, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            attention,
            post_attention_norm: candle_nn::rms_norm(
                h,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp,
        })
    }

    /// `x` (batch, len, hidden) at positions `at.start`..`at.start`+len; its keys and values
    /// written into `cache`.
    pub fn prefill(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &PrefillAt,
    ) -> Result<Tensor> {
        self.mlp_residual(&self.prefill_attention(x, rotary, cache, at)?)
    }

    /// `x` (batch, 1, hidden) at the device-held `at.position`.
    pub fn decode(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &DecodeAt,
    ) -> Result<Tensor> {
        self.mlp_residual(&self.decode_attention(x, rotary, cache, at)?)
    }

    /// The attention half of a prefill: `x` + attention(input_norm(`x`)).
    pub fn prefill_attention(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &PrefillAt,
    ) -> Result<Tensor> {
        let a = self
            .attention
            .prefill(&self.input_norm.forward(x)?, rotary, cache, at)?;
        x + a
    }

    /// The attention half of a decode step: `x` + attention(input_norm(`x`)).
    pub fn decode_attention(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &DecodeAt,
    ) -> Result<Tensor> {
        let a = self
            .attention
            .decode(&self.input_norm.forward(x)?, rotary, cache, at)?;
        x + a
    }

    /// The MLP half, the same in both phases: `x` + mlp(post_attention_norm(`x`)).
    pub fn mlp_residual(&self, x: &Tensor) -> Result<Tensor> {
        x + self.mlp.forward(&self.post_attention_norm.forward(x)?)?
    }
}

/// Where a prefill runs: the span's first position (a host offset: one shape per prompt), the
/// causal mask of its queries against every position up to its end, u8 (len, start + len),
/// made once on the device per (len, start) by [`causal_mask`], and the f32 -inf a masked score
/// becomes (the decode step's). Nothing is uploaded inside a prefill: no host sync per layer.
pub struct PrefillAt<'a> {
    pub start: usize,
    pub mask: &'a Tensor,
    pub neg_inf: &'a Tensor,
}

/// Query i (position start + i) sees keys 0..=start + i: u8 (len, start + len), 1 where allowed,
/// compared on the device from `positions` (u32 0..n with n >= start + len, already there).
pub fn causal_mask(positions: &Tensor, len: usize, start: usize) -> Result<Tensor> {
    let keys = positions.narrow(0, 0, start + len)?.unsqueeze(0)?;
    let queries = positions.narrow(0, start, len)?.unsqueeze(1)?;
    keys.broadcast_le(&queries)
}

/// Where a decode step runs, all on the device: the position (u32 (1,)), 0..capacity (u32) to
/// mask the positions not yet written against, and the f32 -inf a masked score becomes.
pub struct DecodeAt<'a> {
    pub position: &'a Tensor,
    pub positions: &'a Tensor,
    pub neg_inf: &'a Tensor,
}

impl Mlp {
    /// SwiGLU: down(silu(gate(x)) * up(x)).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = candle_nn::ops::silu(&self.gate.forward(x)?)?;
        self.down.forward(&(g * self.up.forward(x)?)?)
    }

    pub fn describe(&self) -> String {
        self.gate.describe()
    }
}

impl Attention {
    /// Q, K, V of `x` (batch, len, hidden) as (batch, heads, len, head_dim), normed per head
    /// where the architecture does (qwen3), before the rotary embedding.
    fn qkv(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, len, _) = x.dims3()?;
        let split = |t: Tensor, heads: usize| {
            t.reshape((b, len, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let mut q = split(self.q.forward(x)?, self.heads)?;
        let mut k = split(self.k.forward(x)?, self.kv_heads)?;
        let v = split(self.v.forward(x)?, self.kv_heads)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        Ok((q, k, v))
    }

    fn merge(&self, y: Tensor, b: usize, len: usize, dtype: DType) -> Result<Tensor> {
        let y =
            y.to_dtype(dtype)?
                .transpose(1, 2)?
                .reshape((b, len, self.heads * self.head_dim))?;
        self.o.forward(&y)
    }

    fn prefill(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &PrefillAt,
    ) -> Result<Tensor> {
        let start = at.start;
        let (b, len, _) = x.dims3()?;
        let (q, k, v) = self.qkv(x)?;
        let q = rotary.apply_span(&q, start)?;
        let k = rotary.apply_span(&k, start)?;
        cache.write_span(&k, &v, start)?;
        if self.flash_prefill {
            let (keys, values) = cache.all();
            let y = crate::ops::prefill::prefill_attention(&q, keys, values, start)?;
            return self.o.forward(&y);
        }
        let total = start + len;
        let (k, v) = cache.prefix(total)?;
        let groups = self.heads / self.kv_heads;
        let k = candle_transformers::utils::repeat_kv(k.contiguous()?, groups)?;
        let v = candle_transformers::utils::repeat_kv(v.contiguous()?, groups)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q
            .to_dtype(DType::F32)?
            .matmul(&k.to_dtype(DType::F32)?.t()?)?
            * scale)?;
        if at.mask.dims() != [len, total] {
            candle_core::bail!(
                "a causal mask of {:?} for a prefill of {len} positions at {start}",
                at.mask.dims()
            );
        }
        let probs = candle_nn::ops::softmax_last_dim(&masked(&scores, at.mask, at.neg_inf)?)?;
        let y = probs.matmul(&v.to_dtype(DType::F32)?)?;
        self.merge(y, b, len, x.dtype())
    }

    fn decode(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &DecodeAt,
    ) -> Result<Tensor> {
        let DecodeAt {
            position,
            positions,
            neg_inf,
        } = *at;
        let b = x.dim(0)?;
        let (q, k, v) = self.qkv(x)?;
        let q = rotary.apply_at(&q, position)?;
        let k = rotary.apply_at(&k, position)?;
        cache.write_at(&k, &v, position)?;
        let (keys, values) = cache.all();
        // Grouped-query heads without repeating the cache: the `groups` query heads of one KV
        // head are the rows of one matmul against that head's keys.
        let groups = self.heads / self.kv_heads;
        let q = q.reshape((b, self.kv_heads, groups, self.head_dim))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q
            .to_dtype(DType::F32)?
            .matmul(&keys.to_dtype(DType::F32)?.t()?)?
            * scale)?;
        let mask = positions.broadcast_le(position)?;
        let probs = candle_nn::ops::softmax_last_dim(&masked(&scores, &mask, neg_inf)?)?;
        let y = probs.matmul(&values.to_dtype(DType::F32)?)?;
        let y = y.reshape((b, self.heads, 1, self.head_dim))?;
        self.merge(y, b, 1, x.dtype())
    }
}

/// `scores` where `allowed` (broadcast over the leading dimensions) is set, -inf elsewhere.
fn masked(scores: &Tensor, allowed: &Tensor, neg_inf: &Tensor) -> Result<Tensor> {
    let shape = scores.shape();
    let neg = neg_inf.broadcast_as(shape)?;
    allowed.broadcast_as(shape)?.where_cond(scores, &neg)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::causal_mask;

    /// The mask the prefill built on the host, per layer, before it was made on the device.
    fn host_mask(len: usize, start: usize) -> Vec<Vec<u8>> {
        (0..len)
            .map(|i| (0..start + len).map(|j| u8::from(j <= start + i)).collect())
            .collect()
    }

    #[test]
    fn the_device_causal_mask_is_the_host_built_one_at_every_start() {
        let positions = Tensor::arange(0u32, 64, &Device::Cpu).unwrap();
        for (len, start) in [
            (1, 0),
            (5, 0),
            (7, 3),
            (1, 40),
            (16, 16),
            (32, 32),
            (13, 51),
        ] {
            let mask = causal_mask(&positions, len, start).unwrap();
            assert_eq!(mask.dtype(), candle_core::DType::U8);
            assert_eq!(
                mask.to_vec2::<u8>().unwrap(),
                host_mask(len, start),
                "len {len} start {start}"
            );
        }
    }
}
