//! One transformer block (post-norm attention + FFN, DistilBERT's and BERT's) and the residual
//! + layer norm that ends each of its sub-layers.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::linear::{self, fuse_qkv, FusedQkv, Linear};
use super::units::Hidden;
use super::{layer_norm, Component, Names, Numerics};
use crate::config::EightBit;
use crate::model::preset::Preset;

pub(super) struct TransformerBlock {
    pub(super) q_lin: Linear,
    pub(super) k_lin: Linear,
    pub(super) v_lin: Linear,
    /// Query, key and value in one GEMM (weights concatenated, the query's scaled by
    /// 1/sqrt(head_dim) at load): one launch and one head-splitting copy instead of three each.
    /// Float and W8A8 linears; GGML-quantized ones keep their three QMatMuls.
    pub(super) qkv: Option<FusedQkv>,
    pub(super) out_lin: Linear,
    pub(super) sa_layer_norm: ResidualNorm,
    pub(super) lin1: Linear,
    pub(super) lin2: Linear,
    pub(super) output_layer_norm: ResidualNorm,
    pub(super) n_heads: usize,
    pub(super) head_dim: usize,
    /// W8A8 on tensor cores: the FFN's GELU kernel quantizes its output for lin2, and the
    /// attention's layer norm its output for lin1 (`device.fuse_quantization`, default on); off,
    /// each 8-bit GEMM quantizes its input in a pass of its own.
    pub(super) gelu_quantizes: bool,
    /// `device.gemm_library` for the float FFN-in (bias + erf GELU in a CUTLASS epilogue); the
    /// W8A8 linears hold their own.
    pub(super) gemm_library: crate::config::GemmLibrary,
    /// `device.attention_activation_scales = "static"`: 1 / step of each context column ((width)
    /// f32 on the device) the attention kernel writes attention-out's codes with; attention-out
    /// then holds W x step (src/model/encoder/calibrate_attention.rs).
    pub(super) attention_codes: Option<Tensor>,
}

impl TransformerBlock {
    /// `attention` for the four projections, `ffn` for lin1 and lin2.
    pub(super) fn load(
        vb: VarBuilder,
        p: &Preset,
        names: &Names,
        attention: Numerics,
        ffn: Numerics,
    ) -> Result<Self> {
        let (d, h) = (p.dim, p.hidden_dim);
        let eps = p.layer_norm_eps;
        let numerics = attention;
        let q_lin = Linear::load(d, d, vb.pp(names.query), numerics)?;
        let k_lin = Linear::load(d, d, vb.pp(names.key), numerics)?;
        let v_lin = Linear::load(d, d, vb.pp(names.value), numerics)?;
        let qkv = fuse_qkv(&q_lin, &k_lin, &v_lin, 1.0 / (p.head_dim() as f64).sqrt())?;
        let out_lin = Linear::load(d, d, vb.pp(names.attention_out), numerics)?;
        let lin2 = Linear::load(h, d, vb.pp(names.ffn_out), ffn)?;
        let sa_layer_norm =
            ResidualNorm::load(d, eps, vb.pp(names.sa_layer_norm), out_lin.bias_for_norm())?;
        let output_layer_norm =
            ResidualNorm::load(d, eps, vb.pp(names.output_layer_norm), lin2.bias_for_norm())?;
        let mut block = Self {
            q_lin,
            k_lin,
            v_lin,
            qkv,
            out_lin,
            sa_layer_norm,
            lin1: Linear::load(d, h, vb.pp(names.ffn_in), ffn)?,
            lin2,
            output_layer_norm,
            n_heads: p.n_heads,
            head_dim: p.head_dim(),
            gelu_quantizes: true,
            gemm_library: crate::config::GemmLibrary::Cublaslt,
            attention_codes: None,
        };
        block.set_fused_quantization(true);
        Ok(block)
    }

    /// `device.fuse_quantization` for this block's own layers: lin2's input quantized in FFN-in's
    /// GELU kernel, lin1's in the attention's layer norm (only where the FFN runs fused: lin1 then
    /// reads the bytes). The output norm's, for the next block, is set by the encoder.
    pub(super) fn set_fused_quantization(&mut self, on: bool) {
        self.gelu_quantizes = on;
        let fused_ffn = on && linear::ffn_fuses(&self.lin1, &self.lin2);
        self.sa_layer_norm
            .set_quantizes_for(fused_ffn.then(|| self.lin1.packed_input_format()).flatten());
    }

    /// The format the output layer norm of the block before this one may quantize for this
    /// block's Q/K/V projection; `None` where the projection does not read packed inputs.
    pub(super) fn qkv_input_format(&self) -> Option<EightBit> {
        self.qkv
            .as_ref()
            .and_then(|q| q.projection.packed_input_format())
    }

    /// (batch, seq, dim) -> (batch, heads, seq, head_dim), contiguous: CUDA matmul needs it.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        x.reshape((b, s, self.n_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn attention(&self, hidden: &Hidden, additive_mask: &Tensor) -> Result<Tensor> {
        let x = &hidden.values;
        let (_, s, _) = x.dims3()?;
        if let Some(qkv) = &self.qkv {
            // One GEMM over batch x seq rows (from the packed bytes the norm before it wrote, where
            // it did); then, from its output in place, one attention kernel on CUDA (f16/bf16),
            // else bias add + head split, the batched GEMMs and the softmax.
            let projected = qkv.project(hidden)?;
            if let (Some(inv_steps), Linear::EightBit(out)) = (&self.attention_codes, &self.out_lin)
            {
                // The context as attention-out's codes, written by the attention kernel itself.
                let (b, _, d) = x.dims3()?;
                let codes = crate::ops::attention_codes::attention_codes(
                    &projected,
                    &qkv.bias,
                    additive_mask,
                    (s, self.n_heads),
                    inv_steps,
                    out.format(),
                    crate::ops::attention::padding().is_skip(),
                )?;
                return out.forward_packed(&codes)?.reshape((b, s, d));
            }
            let context = crate::ops::attention::attention(
                &projected,
                &qkv.bias,
                additive_mask,
                s,
                self.n_heads,
            )?;
            return self.sa_layer_norm.project(&self.out_lin, &context);
        }
        let q = self.split_heads(&self.q_lin.forward(x)?)?;
        let q = (q * (1.0 / (self.head_dim as f64).sqrt()))?;
        let k = self.split_heads(&self.k_lin.forward(x)?)?;
        let v = self.split_heads(&self.v_lin.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?;
        let dtype = scores.dtype();
        let probs = if crate::ops::fused::fused_on(x.device()) {
            // One kernel of the runner's: mask add and softmax in f32, read and written in the
            // model's dtype (candle's broadcast add and softmax were two slow passes).
            crate::ops::fused::masked_softmax(&scores, additive_mask)?
        } else {
            // The CPU softmax would sum f16 exponentials in f16: compute it in f32.
            let scores = scores.to_dtype(DType::F32)?.broadcast_add(additive_mask)?;
            candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?
        };
        self.sa_layer_norm.project(
            &self.out_lin,
            &crate::ops::fused::merge_heads(&probs.matmul(&v)?)?,
        )
    }

    /// The attention's context (batch, seq, dim) before attention-out, in the float dtype, as the
    /// float path computes it: what static attention steps are calibrated on.
    pub(super) fn context(&self, hidden: &Hidden, additive_mask: &Tensor) -> Result<Tensor> {
        let (_, s, _) = hidden.values.dims3()?;
        let Some(qkv) = &self.qkv else {
            candle_core::bail!("the context of an attention without the fused Q/K/V projection");
        };
        crate::ops::attention::attention(
            &qkv.project(hidden)?,
            &qkv.bias,
            additive_mask,
            s,
            self.n_heads,
        )
    }

    /// One component alone. `other` is the additive mask for attention, the residual (the
    /// block's input, or the attention sub-layer's output) for the layer norms, unused for the FFN.
    pub(super) fn component(&self, c: Component, input: &Hidden, other: &Tensor) -> Result<Hidden> {
        let values = match c {
            Component::Attention => self.attention(input, other)?,
            Component::SaLayerNorm => return self.sa_layer_norm.forward(&input.values, other),
            Component::Ffn => {
                let fused = if let Some(y) = linear::ffn_static(&self.lin1, &self.lin2, input)? {
                    Some(y)
                } else if self.gelu_quantizes {
                    linear::ffn_quantized_in_gelu(&self.lin1, &self.lin2, input)?
                } else {
                    None
                };
                match fused {
                    Some(y) => y,
                    None => self.output_layer_norm.project(
                        &self.lin2,
                        &self.lin1.forward_gelu(&input.values, self.gemm_library)?,
                    )?,
                }
            }
            Component::OutputLayerNorm => {
                return self.output_layer_norm.forward(&input.values, other)
            }
        };
        Ok(values.into())
    }

    /// The block is exactly its four components in sequence (the same calls the per-component
    /// profiler makes).
    pub(super) fn forward(&self, x: &Hidden, additive_mask: &Tensor) -> Result<Hidden> {
        let attended = self.component(Component::Attention, x, additive_mask)?;
        let h = self.component(Component::SaLayerNorm, &attended, &x.values)?;
        let ffn = self.component(Component::Ffn, &h, &h.values)?;
        self.component(Component::OutputLayerNorm, &ffn, &h.values)
    }
}

/// Residual add + layer norm, as a transformer block ends each sub-layer: one runner kernel on
/// CUDA (candle's add and layer norm were two passes), candle's two elsewhere. After a float
/// linear on CUDA the kernel also adds that linear's bias, whose GEMM then runs without it
/// ([`Self::project`]): one pass over the sub-layer's output fewer.
pub(super) struct ResidualNorm {
    pub(super) norm: LayerNorm,
    /// Weight and bias stacked (2, dim), the fused kernel's third input; (3, dim) with the
    /// preceding linear's bias as the third row when the kernel adds it.
    pub(super) gamma_beta: Tensor,
    pub(super) adds_linear_bias: bool,
    /// The kernel also quantizes its output in this format, for the W8A8 layer that reads it next
    /// (src/ops/eight_bit/norm_quantize.rs): that layer's quantization pass goes.
    pub(super) quantizes_for: Option<EightBit>,
}

impl ResidualNorm {
    /// `linear_bias`: the bias of the linear before the norm, when the kernel is to add it
    /// ([`Linear::bias_for_norm`]).
    fn load(dim: usize, eps: f64, vb: VarBuilder, linear_bias: Option<&Tensor>) -> Result<Self> {
        let norm = layer_norm(dim, eps, vb)?;
        let bias = norm.bias().expect("layer_norm loads a bias");
        let mut rows = vec![norm.weight().clone(), bias.clone()];
        rows.extend(linear_bias.cloned());
        let gamma_beta = Tensor::stack(&rows, 0)?;
        Ok(Self {
            norm,
            gamma_beta,
            adds_linear_bias: linear_bias.is_some(),
            quantizes_for: None,
        })
    }

    /// Quantize the output for the next W8A8 layer in `format`; never for a norm that adds a float
    /// linear's bias (a mixed block: there is no kernel doing both, and that layer's input is
    /// quantized in a pass of its own).
    pub(super) fn set_quantizes_for(&mut self, format: Option<EightBit>) {
        self.quantizes_for = format.filter(|_| !self.adds_linear_bias);
    }

    /// The sub-layer's last linear on `x`, without its bias when this norm adds it.
    fn project(&self, linear: &Linear, x: &Tensor) -> Result<Tensor> {
        if self.adds_linear_bias {
            linear.forward_without_bias(x)
        } else {
            linear.forward(x)
        }
    }

    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Hidden> {
        if let Some(format) = self.quantizes_for {
            // After an 8-bit linear (which adds its own bias): the plain residual + norm, quantized.
            let (values, packed) = crate::ops::eight_bit::norm_quantize::add_layer_norm_packed(
                x,
                residual,
                &self.gamma_beta,
                self.norm.eps(),
                format,
            )?;
            return Ok(Hidden {
                values,
                packed: Some(packed),
            });
        }
        self.forward_values(x, residual).map(Hidden::from)
    }

    fn forward_values(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        if self.adds_linear_bias {
            crate::ops::fused::bias_add_layer_norm(x, residual, &self.gamma_beta, self.norm.eps())
        } else if crate::ops::fused::fused_on(x.device()) {
            crate::ops::fused::add_layer_norm(x, residual, &self.gamma_beta, self.norm.eps())
        } else {
            self.norm.forward(&(x + residual)?)
        }
    }
}
