//! A decode step of a layer with the runner's own decode GEMV (`decode_kernels = "gemv"`,
//! src/ops/kernels/gemv.cu): 7 launches a layer, every activation but Q written in place into
//! buffers allocated with the KV cache, so a captured step holds (almost) only kernel nodes.
//!
//!   qkv      = rms_norm(h) . [Wq|Wk|Wv]^T      GEMV, the input norm in its prologue
//!   rope_kv_write, decode_attention            as with `fused` (Q|K|V bias added by the rope)
//!   h       += context . Wo^T                  GEMV, the residual add in its epilogue
//!   gate_up  = rms_norm(h) . [Wgate|Wup]^T     GEMV, the post-attention norm in its prologue
//!   act      = swiglu(gate_up)                 once (as the down GEMV's prologue it was recomputed
//!                                              for every output row: compute-bound)
//!   h       += act . Wdown^T                   GEMV, the residual add in its epilogue
//!
//! The weights are the fused path's stacked ones (Block::load with `fused`).

use candle_core::{DType, Device, Result, Tensor};

use super::block::{Block, DecodeAt};
use super::config::FamilyConfig;
use super::fused::float_parts;
use crate::model::parts::kv_cache::StaticKvCache;
use crate::model::parts::rope::Rotary;
use crate::ops::decode::gemv::{gemv_into, swiglu_into, Prologue, MAX_BATCH};

/// A decode step's activations, allocated once per (batch) with the cache and overwritten by
/// every step: the residual stream, the Q|K|V output and the gate|up output.
pub struct StepBuffers {
    /// (batch, hidden): the embedding copied in, then each layer's residual adds in place.
    pub h: Tensor,
    /// (batch, (heads + 2 kv_heads) head_dim).
    qkv: Tensor,
    /// (batch, 2 intermediate).
    gate_up: Tensor,
    /// (batch, intermediate): silu(gate) * up, the down projection's input.
    act: Tensor,
}

impl StepBuffers {
    pub fn new(cfg: &FamilyConfig, batch: usize, dtype: DType, device: &Device) -> Result<Self> {
        if batch == 0 || batch > MAX_BATCH {
            candle_core::bail!(
                "decode_kernels = \"gemv\" serves decode batches of 1..={MAX_BATCH}, not {batch}: use decode_kernels = \"fused\" for larger batches"
            );
        }
        let width = (cfg.heads + 2 * cfg.kv_heads) * cfg.head_dim;
        Ok(Self {
            h: Tensor::zeros((batch, cfg.hidden), dtype, device)?,
            qkv: Tensor::zeros((batch, width), dtype, device)?,
            gate_up: Tensor::zeros((batch, 2 * cfg.intermediate), dtype, device)?,
            act: Tensor::zeros((batch, cfg.intermediate), dtype, device)?,
        })
    }
}

/// The RMSNorm prologue of `n`.
fn norm(n: &candle_nn::RmsNorm) -> Prologue<'_> {
    Prologue::RmsNorm {
        weight: n.weight(),
        eps: n.eps(),
    }
}

impl Block {
    /// One decode step of the residual stream in `bufs.h`, in place.
    pub fn decode_gemv(
        &self,
        bufs: &StepBuffers,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &DecodeAt,
    ) -> Result<()> {
        let (Some((qkv_w, qkv_b)), Some(gate_up_w)) = (&self.attention.qkv, &self.mlp.gate_up)
        else {
            candle_core::bail!("a gemv decode step on weights loaded for the plain kernels");
        };
        gemv_into(
            &bufs.qkv,
            &bufs.h,
            qkv_w,
            norm(&self.input_norm),
            None,
            false,
        )?;
        let context =
            self.attention
                .rope_attend(&bufs.qkv, qkv_b.as_ref(), rotary, cache, at.position)?;
        let (o_w, o_b) = float_parts(&self.attention.o)?;
        gemv_into(&bufs.h, &context, &o_w, Prologue::None, o_b.as_ref(), true)?;
        gemv_into(
            &bufs.gate_up,
            &bufs.h,
            gate_up_w,
            norm(&self.post_attention_norm),
            None,
            false,
        )?;
        // SwiGLU once, not in the down GEMV's prologue (which recomputes it for every output row).
        swiglu_into(&bufs.act, &bufs.gate_up)?;
        let (down_w, down_b) = float_parts(&self.mlp.down)?;
        gemv_into(
            &bufs.h,
            &bufs.act,
            &down_w,
            Prologue::None,
            down_b.as_ref(),
            true,
        )
    }
}
