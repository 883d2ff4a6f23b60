//! A decode step of a layer with the runner's fused decode kernels (`decode_kernels = "fused"`,
//! src/ops/decode.rs): 10 launches a layer where the plain path (block.rs) takes ~93.
//!
//!   add_rms_norm(previous layer's MLP output, residual) -> normed, residual
//!   normed x [Wq|Wk|Wv]^T                  one GEMM
//!   rope_kv_write                          Q, K rotated at the device-held position; K, V cached
//!   decode_attention                       split-K over the cache, last CTA merges (1 launch)
//!   context x Wo^T                         one GEMM
//!   add_rms_norm(attention output, residual) -> normed, residual
//!   normed x [Wgate|Wup]^T                 one GEMM
//!   swiglu                                 silu(gate) * up
//!   x Wdown^T                              one GEMM, its residual add deferred to the next norm
//!
//! The weights are the plain path's, stacked at load (the plain linears become views of the
//! stacked weights, so the prefill, which stays plain, reads the same memory).

use candle_core::{Module, Result, Tensor};

use super::block::{Attention, Block, DecodeAt, Mlp};
use crate::model::parts::kv_cache::StaticKvCache;
use crate::model::parts::linear::Linear;
use crate::model::parts::rope::Rotary;
use crate::ops::decode::{self, CacheAt, Launch, RopeArgs};

/// A float linear's weight and bias (a fused GEMM stacks them).
pub(super) fn float_parts(l: &Linear) -> Result<(Tensor, Option<Tensor>)> {
    match l {
        Linear::Float(l) => Ok((l.weight().clone(), l.bias().cloned())),
        Linear::Ggml { .. } => candle_core::bail!(
            "decode_kernels = \"fused\" stacks float linears; a GGML format runs with the plain kernels"
        ),
    }
}

/// Rows `from..from + len` of a stacked weight (and bias) as a plain linear.
fn view(weight: &Tensor, bias: Option<&Tensor>, from: usize, len: usize) -> Result<Linear> {
    let bias = bias.map(|b| b.narrow(0, from, len)).transpose()?;
    Ok(Linear::Float(candle_nn::Linear::new(
        weight.narrow(0, from, len)?,
        bias,
    )))
}

/// `x` (batch, in) times a stacked weight (out, in): (batch, out), one GEMM.
fn gemm(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.matmul(&weight.t()?)
}

impl Attention {
    /// Stacks Q, K and V into one weight (and bias); q, k, v become its views.
    pub(super) fn stack(&mut self) -> Result<()> {
        let parts = [&self.q, &self.k, &self.v]
            .into_iter()
            .map(float_parts)
            .collect::<Result<Vec<_>>>()?;
        let weights: Vec<&Tensor> = parts.iter().map(|p| &p.0).collect();
        let weight = Tensor::cat(&weights, 0)?;
        let biases: Option<Vec<&Tensor>> = parts.iter().map(|p| p.1.as_ref()).collect();
        let bias = match biases {
            Some(b) => Some(Tensor::cat(&b, 0)?),
            None => None,
        };
        let (q, kv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        self.q = view(&weight, bias.as_ref(), 0, q)?;
        self.k = view(&weight, bias.as_ref(), q, kv)?;
        self.v = view(&weight, bias.as_ref(), q + kv, kv)?;
        self.qkv = Some((weight, bias));
        Ok(())
    }

    /// `normed` (batch, hidden) at the device-held position: the attention's output (batch,
    /// hidden), its keys and values written into `cache`.
    pub(super) fn decode_fused(
        &self,
        normed: &Tensor,
        rotary: &Rotary,
        cache: &StaticKvCache,
        position: &Tensor,
    ) -> Result<Tensor> {
        let Some((weight, bias)) = &self.qkv else {
            candle_core::bail!("a fused decode step on weights loaded for the plain kernels");
        };
        let qkv = gemm(normed, weight)?;
        let (context, _) =
            self.rope_attend(&qkv, bias.as_ref(), rotary, cache, position, None, false)?;
        self.o.forward(&context)
    }

    /// The Q|K|V output `qkv` (batch, (heads + 2 kv_heads) head_dim), before its `bias`: Q and K
    /// rotated at the device-held position (qwen3's Q/K norms first), K and V written into
    /// `cache`: the attention's context (batch, heads * head_dim) (the cache scratch's) and the
    /// rotated Q (the caller decides when it is freed). `into`: Q written into this buffer of the
    /// step and both kernels launched as its [`Launch`] says (gemv-pdl); None: a fresh Q.
    /// `wide`: the attention's wide merge (gemv-bulk).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rope_attend(
        &self,
        qkv: &Tensor,
        bias: Option<&Tensor>,
        rotary: &Rotary,
        cache: &StaticKvCache,
        position: &Tensor,
        into: Option<(&Tensor, Launch)>,
        wide: bool,
    ) -> Result<(Tensor, Tensor)> {
        let rope = self.rope_args(bias, rotary);
        let (keys, values) = cache.all();
        let at = CacheAt {
            keys,
            values,
            position,
            scratch: cache.attention_scratch(),
        };
        let (q, launch) = match into {
            Some((buffer, launch)) => (
                decode::rope_kv_write_into(qkv, &rope, &at, buffer, launch)?,
                launch,
            ),
            None => (decode::rope_kv_write(qkv, &rope, &at)?, Launch::Stream),
        };
        let context = if wide {
            decode::decode_attention_wide(&q, &at, launch)?
        } else {
            decode::decode_attention_launched(&q, &at, launch)?
        };
        Ok((context, q))
    }

    /// rope_kv_write and the attention in one launch (`decode_kernels = "gemv-fold"`,
    /// decode::decode_attention_rope; `cluster`, "gemv-cluster": decode_attention_cluster, the
    /// splits merged in a thread-block cluster) from the Q|K|V GEMV's `qkv`: the context.
    pub(super) fn attend_folded(
        &self,
        qkv: &Tensor,
        bias: Option<&Tensor>,
        rotary: &Rotary,
        cache: &StaticKvCache,
        position: &Tensor,
        (launch, cluster): (Launch, bool),
    ) -> Result<Tensor> {
        let rope = self.rope_args(bias, rotary);
        let (keys, values) = cache.all();
        let at = CacheAt {
            keys,
            values,
            position,
            scratch: cache.attention_scratch(),
        };
        if cluster {
            decode::decode_attention_cluster(qkv, &rope, &at, launch)
        } else {
            decode::decode_attention_rope(qkv, &rope, &at, launch)
        }
    }

    fn rope_args<'a>(&'a self, bias: Option<&'a Tensor>, rotary: &'a Rotary) -> RopeArgs<'a> {
        let (cos, sin) = rotary.tables();
        let qk_norm = match (&self.q_norm, &self.k_norm) {
            (Some(q), Some(k)) => Some((q.weight(), k.weight(), q.eps())),
            _ => None,
        };
        RopeArgs {
            cos,
            sin,
            bias,
            qk_norm,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        }
    }
}

impl Mlp {
    /// Stacks gate and up into one weight; gate and up become its views.
    pub(super) fn stack(&mut self) -> Result<()> {
        let (gate, _) = float_parts(&self.gate)?;
        let (up, _) = float_parts(&self.up)?;
        let inter = gate.dim(0)?;
        let weight = Tensor::cat(&[&gate, &up], 0)?;
        self.gate = view(&weight, None, 0, inter)?;
        self.up = view(&weight, None, inter, inter)?;
        self.gate_up = Some(weight);
        Ok(())
    }

    /// down(silu(gate(x)) * up(x)) of `normed` (batch, hidden): one GEMM, swiglu, one GEMM.
    pub(super) fn forward_fused(&self, normed: &Tensor) -> Result<Tensor> {
        let Some(weight) = &self.gate_up else {
            candle_core::bail!("a fused decode step on weights loaded for the plain kernels");
        };
        self.down.forward(&decode::swiglu(&gemm(normed, weight)?)?)
    }
}

impl Block {
    /// One decode step of the residual stream `h` (batch, hidden), with `pending` the previous
    /// layer's MLP output not yet added to it (none for the first layer): (the residual stream
    /// after this layer's attention, this layer's MLP output, again pending).
    pub fn decode_fused(
        &self,
        h: &Tensor,
        pending: Option<&Tensor>,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &DecodeAt,
    ) -> Result<(Tensor, Tensor)> {
        let (normed, h) = match pending {
            Some(p) => decode::add_rms_norm(p, h, self.input_norm.weight(), self.input_norm.eps())?,
            None => (self.input_norm.forward(h)?, h.clone()),
        };
        let a = self
            .attention
            .decode_fused(&normed, rotary, cache, at.position)?;
        let (normed, h) = decode::add_rms_norm(
            &a,
            &h,
            self.post_attention_norm.weight(),
            self.post_attention_norm.eps(),
        )?;
        Ok((h, self.mlp.forward_fused(&normed)?))
    }

    /// The attention half of a fused decode step alone (the per-layer profiler's unit):
    /// `x` (batch, 1, hidden) + attention(input_norm(`x`)).
    pub fn decode_attention_fused(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &DecodeAt,
    ) -> Result<Tensor> {
        let (b, _, hidden) = x.dims3()?;
        let x = x.reshape((b, hidden))?;
        let normed = self.input_norm.forward(&x)?;
        let a = self
            .attention
            .decode_fused(&normed, rotary, cache, at.position)?;
        (x + a)?.reshape((b, 1, hidden))
    }

    /// The MLP half of a fused decode step alone: `x` (batch, 1, hidden) +
    /// mlp(post_attention_norm(`x`)).
    pub fn mlp_residual_fused(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, hidden) = x.dims3()?;
        let x = x.reshape((b, hidden))?;
        let m = self
            .mlp
            .forward_fused(&self.post_attention_norm.forward(&x)?)?;
        (x + m)?.reshape((b, 1, hidden))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::super::block::{causal_mask, Block, PrefillAt};
    use super::super::config::{FamilyConfig, OWN_ARCHITECTURES};
    use crate::config::{DecodeKernels, Implementation, Precision};
    use crate::model::decoder::DecoderSpec;
    use crate::model::parts::kv_cache::StaticKvCache;
    use crate::model::parts::linear::Linears;
    use crate::model::parts::rope::Rotary;

    fn spec(arch: &str) -> DecoderSpec {
        DecoderSpec::resolve(
            arch,
            Some(&format!("{arch}-tiny")),
            None,
            3,
            Implementation::Own,
        )
        .unwrap()
    }

    /// The fused kernels are CUDA kernels: asked for on the CPU, the load says so (no fallback).
    #[test]
    fn fused_decode_kernels_are_refused_on_the_cpu() {
        let mut s = spec("llama");
        s.decode_kernels = DecodeKernels::Fused;
        let err = match s.load(Precision::Fp32, &Device::Cpu) {
            Ok(_) => panic!("a fused decoder loaded on the CPU"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("decode_kernels = \"fused\""), "{err}");
        assert!(err.contains("CUDA kernels"), "{err}");
        // The decode GEMV's step too.
        s.decode_kernels = DecodeKernels::Gemv;
        let err = match s.load(Precision::Fp32, &Device::Cpu) {
            Ok(_) => panic!("a gemv decoder loaded on the CPU"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("decode_kernels = \"gemv\""), "{err}");
        assert!(err.contains("CUDA kernels"), "{err}");
        s.decode_kernels = DecodeKernels::GemvPdl;
        let err = match s.load(Precision::Fp32, &Device::Cpu) {
            Ok(_) => panic!("a gemv-pdl decoder loaded on the CPU"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("decode_kernels = \"gemv-pdl\""), "{err}");
        assert!(err.contains("CUDA kernels"), "{err}");
        s.decode_kernels = DecodeKernels::GemvBulk;
        let err = match s.load(Precision::Fp32, &Device::Cpu) {
            Ok(_) => panic!("a gemv-bulk decoder loaded on the CPU"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("decode_kernels = \"gemv-bulk\""), "{err}");
        assert!(err.contains("CUDA kernels"), "{err}");
        s.decode_kernels = DecodeKernels::GemvFold;
        let err = match s.load(Precision::Fp32, &Device::Cpu) {
            Ok(_) => panic!("a gemv-fold decoder loaded on the CPU"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("decode_kernels = \"gemv-fold\""), "{err}");
        assert!(err.contains("CUDA kernels"), "{err}");
        // And a GGML precision is refused before any load, with the reason.
        let why = s
            .refuses(Precision::parse("q8_0-bf16").unwrap())
            .expect("refused");
        assert!(why.contains("float linears"), "{why}");
    }

    /// Stacking Q|K|V and gate|up for the fused kernels turns the plain linears into views of
    /// the stacked weights: the plain path (the prefill, which stays plain) computes exactly what
    /// it computed from the separate weights, for every architecture (qwen2's biases, qwen3's
    /// norms).
    #[test]
    fn stacked_weights_leave_the_plain_path_unchanged() {
        let dev = Device::Cpu;
        for arch in OWN_ARCHITECTURES {
            let s = spec(arch);
            let cfg = FamilyConfig::from_json(arch, s.own_config_json()).unwrap();
            let (vb, _) = s.var_builder(Precision::Fp32, &dev).unwrap();
            let layer = vb.pp("model.layers.0");
            let plain = Block::load(&cfg, layer.clone(), &Linears::Float, false).unwrap();
            let fused = Block::load(&cfg, layer, &Linears::Float, true).unwrap();
            assert!(plain.attention.qkv.is_none() && plain.mlp.gate_up.is_none());
            assert!(fused.attention.qkv.is_some() && fused.mlp.gate_up.is_some());
            let (q, kv) = (cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim);
            let (w, b) = fused.attention.qkv.as_ref().unwrap();
            assert_eq!(w.dims(), &[q + 2 * kv, cfg.hidden]);
            assert_eq!(b.is_some(), cfg.qkv_bias, "{arch}: the Q|K|V bias");
            let rotary = Rotary::new(&cfg.inverse_frequencies(), 32, DType::F32, &dev).unwrap();
            let x = Tensor::randn(0f32, 1f32, (2, 5, cfg.hidden), &dev).unwrap();
            let cache = |_| {
                StaticKvCache::new(2, cfg.kv_heads, 16, cfg.head_dim, DType::F32, &dev).unwrap()
            };
            let (c1, c2) = (cache(1), cache(2));
            let positions = Tensor::arange(0u32, 16, &dev).unwrap();
            let mask = causal_mask(&positions, 5, 0).unwrap();
            let neg_inf = Tensor::new(f32::NEG_INFINITY, &dev).unwrap();
            let at = PrefillAt {
                start: 0,
                mask: &mask,
                neg_inf: &neg_inf,
            };
            let a = plain.prefill(&x, &rotary, &c1, &at).unwrap();
            let b = fused.prefill(&x, &rotary, &c2, &at).unwrap();
            let d = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(d, 0.0, "{arch}: the stacked block's plain prefill differs");
        }
    }
}
