//! Cold isolated units (`protocol.layer_isolation = "cold"`): deep copies of what one unit of
//! the own decoder reads (a block's weights and its layer's KV cache, the head's output
//! projection), and a call of the unit that reads them in turn, one copy a call. With enough
//! copies a call finds nothing of its copy in the device's cache, as a block finds nothing of
//! its weights there in a whole step (the other blocks and the head stream through the cache
//! between two of its reads); with one copy, K calls of a block smaller than the cache read it
//! from the cache after the first.
//!
//! The norms' weights (a hidden width each) are shared, not copied: a few kB a call.

use std::cell::Cell;

use candle_core::{Result, Tensor};

use super::block::{Attention, Block, Mlp};
use super::LlamaFamily;
use crate::model::parts::kv_cache::StaticKvCache;
use crate::model::parts::linear::Linear;
use crate::model::workload::{CapturedDecoderUnit, DecoderUnit, Phase};

/// Why a GGML linear has no copy: its blocks are not the float tensors copied here.
const NOT_FLOAT: &str = "protocol.layer_isolation = \"cold\" copies float linears, and this cell's are GGUF blocks; set protocol.layer_isolation = \"warm\" to profile it";

fn float_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}

/// A float linear's weight and bias in new storage.
fn deep_linear(l: &Linear) -> Result<Linear> {
    match l {
        Linear::Float(l) => Ok(Linear::Float(candle_nn::Linear::new(
            l.weight().copy()?,
            l.bias().map(Tensor::copy).transpose()?,
        ))),
        Linear::Ggml { .. } => candle_core::bail!("{NOT_FLOAT}"),
    }
}

fn linear_bytes(l: &Linear) -> Result<u64> {
    match l {
        Linear::Float(l) => Ok(float_bytes(l.weight()) + l.bias().map_or(0, float_bytes)),
        Linear::Ggml { .. } => candle_core::bail!("{NOT_FLOAT}"),
    }
}

impl Block {
    /// Every linear in new storage (stacked again where the fused kernels read a stack), the
    /// norms shared.
    fn deep_copy(&self) -> Result<Block> {
        let a = &self.attention;
        let mut attention = Attention {
            q: deep_linear(&a.q)?,
            k: deep_linear(&a.k)?,
            v: deep_linear(&a.v)?,
            o: deep_linear(&a.o)?,
            q_norm: a.q_norm.clone(),
            k_norm: a.k_norm.clone(),
            heads: a.heads,
            kv_heads: a.kv_heads,
            head_dim: a.head_dim,
            qkv: None,
            flash_prefill: a.flash_prefill,
        };
        if a.qkv.is_some() {
            attention.stack()?;
        }
        let m = &self.mlp;
        let mut mlp = Mlp {
            gate: deep_linear(&m.gate)?,
            up: deep_linear(&m.up)?,
            down: deep_linear(&m.down)?,
            gate_up: None,
        };
        if m.gate_up.is_some() {
            mlp.stack()?;
        }
        Ok(Block {
            input_norm: self.input_norm.clone(),
            attention,
            post_attention_norm: self.post_attention_norm.clone(),
            mlp,
        })
    }

    fn attention_bytes(&self) -> Result<u64> {
        let a = &self.attention;
        let norms = [Some(&self.input_norm), a.q_norm.as_ref(), a.k_norm.as_ref()];
        let norms: u64 = norms.into_iter().flatten().map(norm_bytes).sum();
        let mut bytes = norms;
        for l in [&a.q, &a.k, &a.v, &a.o] {
            bytes += linear_bytes(l)?;
        }
        Ok(bytes)
    }

    fn mlp_bytes(&self) -> Result<u64> {
        let m = &self.mlp;
        let mut bytes = norm_bytes(&self.post_attention_norm);
        for l in [&m.gate, &m.up, &m.down] {
            bytes += linear_bytes(l)?;
        }
        Ok(bytes)
    }
}

fn norm_bytes(n: &candle_nn::RmsNorm) -> u64 {
    float_bytes(n.clone().into_inner().weight())
}

impl LlamaFamily {
    /// The bytes of weights and KV cache one call of `unit` reads: what a copy must hold for a
    /// call on it to find nothing in the cache. The whole layer's cache (a decode step attends
    /// over all of it, the positions not yet written masked; a prefill reads the prompt's span of
    /// it). `None` for the embeddings: a call reads one row of the table a token, which no copy
    /// of the table moves out of the cache.
    pub(super) fn cold_bytes(&self, unit: DecoderUnit) -> Result<Option<u64>> {
        let cache = |i: usize| -> Result<u64> { Ok(self.cache_state()?.caches[i].bytes() as u64) };
        Ok(match unit {
            DecoderUnit::Embeddings => None,
            DecoderUnit::Block(i) => {
                let b = &self.blocks[i];
                Some(b.attention_bytes()? + b.mlp_bytes()? + cache(i)?)
            }
            DecoderUnit::Attention(i) => Some(self.blocks[i].attention_bytes()? + cache(i)?),
            DecoderUnit::Mlp(i) => Some(self.blocks[i].mlp_bytes()?),
            DecoderUnit::Head => Some(linear_bytes(&self.lm_head)? + norm_bytes(&self.norm)),
        })
    }

    /// A call of the captured unit on `copies` deep copies of what it reads, the next copy each
    /// call (copy 0 first; the copies live as long as the call). The copies are of the block
    /// whole (and its layer's cache) for a block's halves too; [`Self::cold_bytes`] counts what
    /// the half reads.
    pub(super) fn rotating<'a>(
        &'a self,
        phase: Phase,
        captured: &'a CapturedDecoderUnit,
        copies: usize,
    ) -> Result<Box<dyn Fn() -> Result<Tensor> + 'a>> {
        if copies == 0 {
            candle_core::bail!("a rotation through 0 copies");
        }
        let next = Cell::new(0usize);
        let turn = move || {
            let i = next.get();
            next.set((i + 1) % copies);
            i
        };
        let x = &captured.input;
        match captured.unit {
            DecoderUnit::Embeddings => candle_core::bail!(
                "the embeddings read one row of the table a token: no copy makes them cold"
            ),
            DecoderUnit::Head => {
                let heads = (0..copies)
                    .map(|_| deep_linear(&self.lm_head))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Box::new(move || self.run_tail_on(phase, &heads[turn()], x)))
            }
            unit @ (DecoderUnit::Block(i) | DecoderUnit::Attention(i) | DecoderUnit::Mlp(i)) => {
                let cache = &self.cache_state()?.caches[i];
                let sets = (0..copies)
                    .map(|_| Ok((self.blocks[i].deep_copy()?, cache.deep_copy()?)))
                    .collect::<Result<Vec<(Block, StaticKvCache)>>>()?;
                Ok(Box::new(move || {
                    let (block, cache) = &sets[turn()];
                    self.run_block_part_on(phase, unit, block, cache, x)
                }))
            }
        }
    }
}
