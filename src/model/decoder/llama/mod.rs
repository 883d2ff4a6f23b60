//! The runner's own decoder for the Llama family (llama, mistral, qwen2, qwen3), as deployed:
//! loaded from the same config.json and weights as the candle-transformers models (which stay
//! the reference it is checked against), with every layer callable alone (`block.rs`), a static
//! KV cache preallocated for the cell's batch and context and written in place, and the step
//! position held in a device tensor, so a decode step runs the same kernels with the same
//! arguments every step (what one captured CUDA graph per step needs).
//!
//! - `config.rs`: the family's config.json, one reader for the four architectures
//! - `block.rs`: a decoder layer: prefill of a span, decode step at the device-held position
//! - `fused.rs`: a layer's decode step with the runner's fused decode kernels (CUDA)
//! - `gguf_load.rs`: a llama GGUF file dequantized, its Q/K rows unpermuted
//! - `layers.rs`: every unit and prefix callable alone, for the per-layer profiler
//! - `prefill.rs`: the prefill's attention, plain or the runner's flash kernel

pub mod block;
mod cold;
pub mod config;
mod fused;
mod gemv;
pub mod gguf_load;
mod layers;
mod prefill;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, RmsNorm, VarBuilder};

use self::block::{causal_mask, Block, DecodeAt, PrefillAt};
use self::config::FamilyConfig;
use crate::config::DecodeKernels;
use crate::model::parts::kv_cache::StaticKvCache;
use crate::model::parts::linear::{Linear, Linears};
use crate::model::parts::rope::Rotary;
use crate::model::workload::{greedy, DecoderLayers, Describe, FixedStep, Generate};
use crate::ops::decode;

/// Positions a cache holds when no cell said how many (tests, fidelity): grown by doubling.
const DEFAULT_CAPACITY: usize = 256;

pub struct LlamaFamily {
    cfg: FamilyConfig,
    embed: Embedding,
    pub blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: Rotary,
    dtype: DType,
    device: Device,
    state: Option<CacheState>,
    /// (batch, context) the cell will run: the cache is allocated for it before any window.
    reserved: Option<(usize, usize)>,
    /// The host's copy of the position (the step's kernels read the device's).
    position: usize,
    marked: Option<usize>,
    implementation: BTreeMap<String, String>,
    /// The decode step's kernels: candle's, or the runner's fused ones (`fused.rs`).
    kernels: DecodeKernels,
}

/// The preallocated caches and the device-held position.
struct CacheState {
    caches: Vec<StaticKvCache>,
    /// u32 (1,): the next step's position, advanced in place by each step.
    position: Tensor,
    /// u32 (capacity,): 0..capacity, against which a step masks the positions not yet written.
    positions: Tensor,
    one: Tensor,
    /// f32 -inf, the score of a masked position (made once: no upload inside a step).
    masked: Tensor,
    /// u32 (batch, 1): the fixed step's input, overwritten by its argmax.
    tokens: Tensor,
    /// The per-layer profiler's own slots for the step's bookkeeping (`layers.rs`): its head
    /// unit feeds the argmax back and advances the position as the step does, into these, so
    /// that K calls of it run the step's kernels and move nothing.
    tail_tokens: Tensor,
    tail_position: Tensor,
    /// u32 (batch, 4), zero between steps: the grid-wide greedy pick's slot and counter a row
    /// (gemv-fold and gemv-cluster: [`gemv::pick_next`]; gemv-lean: its tail's launch).
    pick: Tensor,
    /// `decode_kernels = "gemv"`: the step's activations, written in place.
    buffers: Option<gemv::StepBuffers>,
    /// u32 (1,): the position [`Generate::mark`] remembered, for the fixed step's restore.
    marked: Tensor,
    /// The last prefill's (len, start), its causal mask (made on the device from `positions`)
    /// and the position it ends at (u32 (1,)), kept: a cell's prefills (one prompt shape) reuse
    /// them, uploading nothing.
    prefill_mask: Option<((usize, usize), Tensor, Tensor)>,
}

impl CacheState {
    /// The device-held position a decode step runs at.
    fn at(&self) -> DecodeAt<'_> {
        DecodeAt {
            position: &self.position,
            positions: &self.positions,
            neg_inf: &self.masked,
        }
    }

    /// Where a prefill of `len` positions at `start` runs: the mask [`LlamaFamily::ready_prefill`]
    /// made for it.
    fn prefill_at(&self, len: usize, start: usize) -> Result<PrefillAt<'_>> {
        match &self.prefill_mask {
            Some((made, mask, _)) if *made == (len, start) => Ok(PrefillAt {
                start,
                mask,
                neg_inf: &self.masked,
            }),
            _ => candle_core::bail!("no causal mask was made for a prefill of {len} at {start}"),
        }
    }

    /// The device-held position a prefill of `len` at `start` leaves (made with its mask).
    fn prefill_end(&self, len: usize, start: usize) -> Result<&Tensor> {
        match &self.prefill_mask {
            Some((made, _, end)) if *made == (len, start) => Ok(end),
            _ => candle_core::bail!("no prefill of {len} at {start} was made ready"),
        }
    }
}

impl LlamaFamily {
    /// `linears`: float as loaded, quantized at load, or a GGUF file's blocks as stored.
    pub fn load(
        cfg: FamilyConfig,
        vb: VarBuilder,
        linears: Linears,
        weights: String,
        kernels: DecodeKernels,
    ) -> Result<Self> {
        let fused = kernels != DecodeKernels::Plain;
        let name = kernels.name();
        if fused && !vb.device().is_cuda() {
            candle_core::bail!(
                "decode_kernels = \"{name}\": the fused decode kernels are CUDA kernels and this cell runs on the CPU; leave the key out (plain) to run here"
            );
        }
        if fused && !linears.is_float() {
            candle_core::bail!(
                "decode_kernels = \"{name}\" stacks float linears; a GGML format runs with the plain kernels"
            );
        }
        let m = vb.pp("model");
        let embed = candle_nn::embedding(cfg.vocab, cfg.hidden, m.pp("embed_tokens"))?;
        let blocks = (0..cfg.layers)
            .map(|i| Block::load(&cfg, m.pp(format!("layers.{i}")), &linears, fused))
            .collect::<Result<Vec<_>>>()?;
        let norm = candle_nn::rms_norm(cfg.hidden, cfg.rms_norm_eps, m.pp("norm"))?;
        // As candle-transformers: tied when the config says so or the checkpoint has no head.
        let lm_head = if cfg.tie_word_embeddings || !vb.contains_tensor("lm_head.weight") {
            let name = "model.embed_tokens.weight";
            Linear::from_weight(embed.embeddings().clone(), name, &linears)?
        } else {
            Linear::load(vb.pp("lm_head"), cfg.hidden, cfg.vocab, false, &linears)?
        };
        let rotary = Rotary::new(
            &cfg.inverse_frequencies(),
            cfg.max_positions,
            vb.dtype(),
            vb.device(),
        )?;
        let mut implementation = BTreeMap::new();
        implementation.insert(
            "model".into(),
            format!(
                "runner's own {} (Llama family): plain candle ops, eager",
                cfg.architecture
            ),
        );
        implementation.insert("weights".into(), weights);
        implementation.insert("linear".into(), blocks[0].mlp.describe());
        implementation.insert(
            "kv_cache".into(),
            "static: preallocated (batch, kv_heads, context, head_dim) per layer, written in place (a step scatters its keys and values at the device-held position; no Tensor::cat)".into(),
        );
        implementation.insert(
            "attention".into(),
            "decode: grouped query heads as rows of one f32 matmul over the whole static cache, positions past the device-held one masked, softmax, matmul; prefill: causal over the prompt".into(),
        );
        implementation.insert(
            "execution".into(),
            "eager (kernel by kernel): this build has no captured decode step".into(),
        );
        implementation.insert(
            "decode_kernels".into(),
            if kernels.is_gemv() {
                gemv::describe(kernels)
            } else if fused {
                "fused (src/ops/kernels/decode.cu): a layer's decode step is add_rms_norm, one Q|K|V GEMM, rope_kv_write (rotary + KV write at the device-held position), split-K decode attention, the output GEMM, add_rms_norm, one gate|up GEMM, swiglu, the down GEMM; prefill plain".into()
            } else {
                "plain (candle's kernels)".into()
            },
        );
        if fused {
            let cluster = matches!(
                kernels,
                DecodeKernels::GemvCluster | DecodeKernels::GemvLean
            );
            let attention = if cluster {
                decode::CLUSTER_ATTENTION
            } else {
                decode::attention_kernel(cfg.head_dim, cfg.heads / cfg.kv_heads.max(1))
            };
            implementation.insert("attention".into(), attention.into());
            implementation.insert(
                "model".into(),
                format!(
                    "runner's own {} (Llama family): {name} decode kernels, plain candle ops in prefill, eager",
                    cfg.architecture
                ),
            );
        }
        Ok(Self {
            embed,
            blocks,
            norm,
            lm_head,
            rotary,
            dtype: vb.dtype(),
            device: vb.device().clone(),
            state: None,
            reserved: None,
            position: 0,
            marked: None,
            implementation,
            kernels,
            cfg,
        })
    }

    pub fn config(&self) -> &FamilyConfig {
        &self.cfg
    }

    /// Caches for `batch` sequences of `capacity` positions, the position at 0.
    fn allocate(&mut self, batch: usize, capacity: usize) -> Result<()> {
        let capacity = capacity.min(self.cfg.max_positions);
        if let Some(w) = self.cfg.sliding_window {
            if capacity > w {
                candle_core::bail!(
                    "a context of {capacity} passes {}'s sliding window of {w}, which the runner's own decoder does not apply: use implementation = \"crate\" or a shorter context",
                    self.cfg.architecture
                );
            }
        }
        let fused = self.kernels != DecodeKernels::Plain;
        let caches = (0..self.cfg.layers)
            .map(|_| {
                let cache = StaticKvCache::new(
                    batch,
                    self.cfg.kv_heads,
                    capacity,
                    self.cfg.head_dim,
                    self.dtype,
                    &self.device,
                )?;
                // The fused attention's partials and context, allocated once with the cache.
                if fused {
                    cache.with_attention_scratch(self.cfg.heads)
                } else {
                    Ok(cache)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.state = Some(CacheState {
            caches,
            position: Tensor::zeros(1, DType::U32, &self.device)?,
            positions: Tensor::arange(0u32, capacity as u32, &self.device)?,
            one: Tensor::ones(1, DType::U32, &self.device)?,
            masked: Tensor::new(f32::NEG_INFINITY, &self.device)?,
            tokens: Tensor::zeros((batch, 1), DType::U32, &self.device)?,
            tail_tokens: Tensor::zeros((batch, 1), DType::U32, &self.device)?,
            tail_position: Tensor::zeros(1, DType::U32, &self.device)?,
            pick: Tensor::zeros((batch, 4), DType::U32, &self.device)?,
            buffers: match self.kernels {
                k if k.is_gemv() => Some(gemv::StepBuffers::new(
                    &self.cfg,
                    (batch, k),
                    self.dtype,
                    &self.device,
                )?),
                _ => None,
            },
            marked: Tensor::zeros(1, DType::U32, &self.device)?,
            prefill_mask: None,
        });
        Ok(())
    }

    /// The cache, allocated for this batch with room for `needed` positions (kept when it fits).
    fn ensure_cache(&mut self, batch: usize, needed: usize) -> Result<()> {
        if needed > self.cfg.max_positions {
            candle_core::bail!(
                "position {needed} passes max_position_embeddings {}",
                self.cfg.max_positions
            );
        }
        let fits = self
            .state
            .as_ref()
            .is_some_and(|s| s.caches[0].batch() == batch && s.caches[0].capacity() >= needed);
        if fits {
            return Ok(());
        }
        let reserved = match self.reserved {
            Some((b, context)) if b == batch => context,
            _ => DEFAULT_CAPACITY,
        };
        let keep = self.position;
        let old = self.state.take();
        self.allocate(batch, reserved.max(needed).max(2 * keep))?;
        // A cache outgrown mid-sequence (never inside a cell's windows, which reserve first)
        // keeps what it held.
        if let (Some(old), Some(new)) = (old, &self.state) {
            if keep > 0 && old.caches[0].batch() == batch {
                for (o, n) in old.caches.iter().zip(&new.caches) {
                    let (k, v) = o.prefix(keep)?;
                    n.write_span(&k, &v, 0)?;
                }
                self.set_position(keep)?;
            }
        }
        Ok(())
    }

    fn set_position(&mut self, position: usize) -> Result<()> {
        let state = self.state.as_ref().expect("a cache");
        state.position.slice_set(
            &Tensor::from_vec(vec![position as u32], 1, &self.device)?,
            0,
            0,
        )?;
        self.position = position;
        Ok(())
    }

    /// The cache and the causal mask for a prefill of `batch` x `len` at `start` (the mask made
    /// only when the shape or start changed).
    fn ready_prefill(&mut self, batch: usize, len: usize, start: usize) -> Result<()> {
        self.ensure_cache(batch, start + len)?;
        let state = self.state.as_mut().expect("ensured");
        if !matches!(&state.prefill_mask, Some((made, ..)) if *made == (len, start)) {
            let mask = causal_mask(&state.positions, len, start)?;
            let end = Tensor::new(&[(start + len) as u32], &self.device)?;
            state.prefill_mask = Some(((len, start), mask, end));
        }
        Ok(())
    }

    /// The prompt's forward pass at `at` (cache and mask ready): the last position's logits.
    fn run_prefill(&self, state: &CacheState, prompt: &Tensor, at: &PrefillAt) -> Result<Tensor> {
        let mut x = self.embed(prompt)?;
        for (block, cache) in self.blocks.iter().zip(&state.caches) {
            x = block.prefill(&x, &self.rotary, cache, at)?;
        }
        self.head(&x)
    }

    /// One decode step of `tokens` (batch, 1) at the device-held position, which it advances in
    /// place: no host value enters the step (the same launches every step).
    fn decode(&self, state: &CacheState, tokens: &Tensor) -> Result<Tensor> {
        match self.kernels {
            DecodeKernels::Fused => return self.decode_fused(state, tokens),
            k if k.is_gemv() => return self.decode_gemv(state, tokens, None),
            _ => {}
        }
        let mut x = self.embed(tokens)?;
        let at = state.at();
        for (block, cache) in self.blocks.iter().zip(&state.caches) {
            x = block.decode(&x, &self.rotary, cache, &at)?;
        }
        let logits = self.head(&x)?;
        state
            .position
            .slice_set(&(&state.position + &state.one)?, 0, 0)?;
        Ok(logits)
    }

    fn fused(&self) -> bool {
        self.kernels == DecodeKernels::Fused
    }

    /// [`Self::decode`] with the fused kernels (`fused.rs`): each layer's MLP output is added to
    /// the residual stream by the next layer's norm kernel (the last by the final norm's).
    fn decode_fused(&self, state: &CacheState, tokens: &Tensor) -> Result<Tensor> {
        let x = self.embed(tokens)?;
        let (b, _, hidden) = x.dims3()?;
        let mut h = x.reshape((b, hidden))?;
        let mut pending: Option<Tensor> = None;
        let at = state.at();
        for (block, cache) in self.blocks.iter().zip(&state.caches) {
            let (next, out) = block.decode_fused(&h, pending.as_ref(), &self.rotary, cache, &at)?;
            h = next;
            pending = Some(out);
        }
        let normed = match &pending {
            Some(p) => decode::add_rms_norm(p, &h, self.norm.weight(), self.norm.eps())?.0,
            None => self.norm.forward(&h)?,
        };
        let logits = self.lm_head.forward(&normed)?.to_dtype(DType::F32)?;
        state
            .position
            .slice_set(&(&state.position + &state.one)?, 0, 0)?;
        Ok(logits)
    }

    /// The embeddings of `ids` (batch, len).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed.forward(ids)
    }

    /// The final norm and output projection of the last position: f32 (batch, vocab).
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        self.head_on(&self.lm_head, x)
    }
}

impl Describe for LlamaFamily {
    fn device(&self) -> &Device {
        &self.device
    }
    fn executed_precision(&self) -> String {
        let float = crate::model::dtype_name(self.dtype);
        match &self.lm_head {
            Linear::Float(_) => float.to_string(),
            Linear::Ggml { weight, .. } => {
                let format = match weight {
                    candle_core::quantized::QMatMul::QTensor(t) => {
                        format!("{:?}", t.dtype()).to_lowercase()
                    }
                    _ => "dequantized".into(),
                };
                format!("{format} linears (candle QMatMul), {float} elsewhere")
            }
        }
    }
    fn implementation(&self) -> BTreeMap<String, String> {
        let mut map = self.implementation.clone();
        map.insert("decode".into(), self.decode_windowing());
        map
    }
}

impl Generate for LlamaFamily {
    fn reserve(&mut self, batch: usize, context: usize) -> Result<()> {
        self.reserved = Some((batch, context));
        self.ensure_cache(batch, context)
    }

    fn reset(&mut self) -> Result<()> {
        self.marked = None;
        if self.state.is_some() {
            self.set_position(0)?;
        }
        self.position = 0;
        Ok(())
    }

    fn prefill(&mut self, prompt: &Tensor) -> Result<Tensor> {
        let (batch, len) = prompt.dims2()?;
        let start = self.position;
        self.ready_prefill(batch, len, start)?;
        let state = self.state.as_ref().expect("ensured");
        let logits = self.run_prefill(state, prompt, &state.prefill_at(len, start)?)?;
        self.set_position(start + len)?;
        Ok(logits)
    }

    fn step(&mut self, tokens: &Tensor) -> Result<Tensor> {
        let (batch, len) = tokens.dims2()?;
        if len != 1 {
            candle_core::bail!("a decode step takes one token per sequence, got {len}");
        }
        self.ensure_cache(batch, self.position + 1)?;
        let state = self.state.as_ref().expect("ensured");
        let logits = self.decode(state, tokens)?;
        self.position += 1;
        Ok(logits)
    }

    fn mark(&mut self) -> Result<()> {
        self.marked = Some(self.position);
        if let Some(state) = &self.state {
            state.marked.slice_set(&state.position.copy()?, 0, 0)?;
        }
        Ok(())
    }

    fn rewind(&mut self) -> Result<()> {
        let Some(position) = self.marked else {
            candle_core::bail!("rewind without a mark");
        };
        // Positions past the mark are masked until the next steps write them again.
        self.set_position(position)
    }

    fn position(&self) -> usize {
        self.position
    }

    fn fixed_step(&self, first: &Tensor, steps: usize) -> Result<Option<FixedStep<'_>>> {
        let (Some(state), Some(marked)) = (&self.state, self.marked) else {
            candle_core::bail!("a fixed decode step starts from a prefilled, marked cache");
        };
        if first.dims() != state.tokens.dims() {
            candle_core::bail!(
                "a fixed decode step for tokens {:?} on a cache for {:?}",
                first.dims(),
                state.tokens.dims()
            );
        }
        // No step checks its position on the host: every one of a loop must fit beforehand.
        if marked + steps > state.caches[0].capacity() {
            candle_core::bail!(
                "{steps} fixed decode steps from position {marked} pass the KV cache's {} positions",
                state.caches[0].capacity()
            );
        }
        let first = first.clone();
        Ok(Some(FixedStep {
            run: Box::new(move || {
                // gemv-lean: the pick inside the step's tail launch.
                if self.kernels == DecodeKernels::GemvLean {
                    return self.decode_gemv(state, &state.tokens, Some(&state.tokens));
                }
                let logits = self.decode(state, &state.tokens)?;
                gemv::pick_next(self.kernels, &state.pick, &logits, &state.tokens)?;
                Ok(logits)
            }),
            restore: Box::new(move || {
                state.tokens.slice_set(&first, 0, 0)?;
                state.position.slice_set(&state.marked, 0, 0)
            }),
        }))
    }

    fn fixed_prefill(&mut self, prompt: &Tensor) -> Result<Option<FixedStep<'_>>> {
        let (batch, len) = prompt.dims2()?;
        self.reset()?;
        self.ready_prefill(batch, len, 0)?;
        // Where every run leaves the sequence; no host value enters a run.
        self.position = len;
        let this: &Self = self;
        let state = this.state.as_ref().expect("ready");
        let prompt = prompt.clone();
        Ok(Some(FixedStep {
            run: Box::new(move || {
                let logits = this.run_prefill(state, &prompt, &state.prefill_at(len, 0)?)?;
                state.tokens.slice_set(&greedy(&logits)?, 0, 0)?;
                state.position.slice_set(state.prefill_end(len, 0)?, 0, 0)?;
                Ok(logits)
            }),
            // Each run writes the same span from the same prompt: nothing to put back.
            restore: Box::new(|| Ok(())),
        }))
    }

    fn layers(&mut self) -> Option<&mut dyn DecoderLayers> {
        Some(self)
    }

    fn decode_windowing(&self) -> String {
        "static KV cache: the prompt prefilled once outside the window; each loop moves the device-held position back to the prompt's end (no copy: later positions are masked until rewritten) and runs whole decode steps, each one forward of one token per sequence and a greedy argmax on the device".into()
    }
}

/// A float or quantized-at-load precision's linears, for [`LlamaFamily::load`].
pub fn linears_of(precision: crate::config::Precision) -> Linears {
    match precision.quant() {
        Some(q) => Linears::Quantize(crate::model::ggml_for(q)),
        None => Linears::Float,
    }
}

#[cfg(test)]
mod tests;
