//! The encoder's embeddings: token gather + position (+ BERT's token-type-0) add + layer norm, as
//! candle's three kernels (default) or as one runner kernel (`device.fused_embeddings`,
//! src/ops/embeddings.rs), which reads the position and token-type rows pre-added once at setting
//! time, in the dtype, as the unfused path's add rounds them.

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use super::{layer_norm, Encoder, Preset};
use crate::ops::embeddings::{embed_layer_norm, embedding_table};

pub(super) struct Embeddings {
    word: Embedding,
    position: Embedding,
    /// BERT's segment embedding of type 0 (every input is one segment); DistilBERT has none.
    segment: Option<Tensor>,
    norm: LayerNorm,
    eps: f64,
    /// The fused kernel's position + norm table (`ops::embeddings::embedding_table`) when
    /// `device.fused_embeddings` is on.
    fused: Option<Tensor>,
    /// `device.fused_embeddings` on for a cell on the CPU: candle's ops ran, and the record says so.
    asked_on_cpu: bool,
}

impl Embeddings {
    pub(super) fn load(vb: VarBuilder, p: &Preset) -> Result<Self> {
        let segment = if p.type_vocab_size > 0 {
            let table = vb.get((p.type_vocab_size, p.dim), "token_type_embeddings.weight")?;
            Some(table.i(0)?)
        } else {
            None
        };
        Ok(Self {
            word: candle_nn::embedding(p.vocab_size, p.dim, vb.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                p.max_position_embeddings,
                p.dim,
                vb.pp("position_embeddings"),
            )?,
            segment,
            norm: layer_norm(p.dim, p.layer_norm_eps, vb.pp("LayerNorm"))?,
            eps: p.layer_norm_eps,
            fused: None,
            asked_on_cpu: false,
        })
    }

    pub(super) fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        if let Some(table) = &self.fused {
            return embed_layer_norm(input_ids, self.word.embeddings(), table, self.eps);
        }
        let (_, seq_len) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let words = self.word.forward(input_ids)?;
        let mut positions = self.position.forward(&positions)?;
        if let Some(segment) = &self.segment {
            positions = positions.broadcast_add(segment)?;
        }
        self.norm.forward(&words.broadcast_add(&positions)?)
    }

    /// What ran, for the record's `implementation.embeddings`.
    pub(super) fn describe(&self) -> String {
        let token_type = if self.segment.is_some() {
            " + token-type-0 row"
        } else {
            ""
        };
        if self.fused.is_some() {
            format!("token gather + position{token_type} add + layer norm in one runner kernel (f32 arithmetic; device.fused_embeddings = true)")
        } else if self.asked_on_cpu {
            format!("candle: gather (index_select), broadcast add of the position{token_type} rows, layer norm (device.fused_embeddings is on, but its kernel is CUDA's and this cell ran on the CPU: candle's ops, which the kernel's plain twin is bit for bit)")
        } else {
            format!("candle: gather (index_select), broadcast add of the position{token_type} rows, candle-nn fused layer_norm kernel")
        }
    }
}

impl Encoder {
    /// `device.fused_embeddings`: the embeddings as one runner kernel, or candle's. The kernel is
    /// CUDA's: a cell on the CPU with the key on (a CUDA build on a machine without a GPU, where it
    /// is the default) runs candle's ops, the kernel's plain twin bit for bit, and its record
    /// says so (validation refuses an explicit true where no GPU can run it).
    pub fn set_fused_embeddings(&mut self, on: bool) -> Result<()> {
        let e = &mut self.embeddings;
        e.fused = None;
        e.asked_on_cpu = on && !crate::ops::fused_on(&self.device);
        if !on || e.asked_on_cpu {
            return Ok(());
        }
        let norm_bias = e
            .norm
            .bias()
            .ok_or_else(|| candle_core::Error::msg("the embeddings' layer norm has no bias"))?;
        e.fused = Some(embedding_table(
            e.position.embeddings(),
            e.segment.as_ref(),
            e.norm.weight(),
            norm_bias,
        )?);
        Ok(())
    }
}
