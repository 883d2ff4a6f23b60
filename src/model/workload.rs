//! What a loaded model does in a cell: an encoder classifies (`model::Encoder`, measured by
//! run/classify.rs), a decoder generates ([`Generate`], measured by run/generate.rs). Both say
//! what ran ([`Describe`]) for the record.
//!
//! [`Generate`] is the one interface the generate workload sees, whoever implements it: the
//! candle-transformers decoders as the crate runs them (`decoder::CrateDecoder`), and the
//! runner's own Llama family as deployed (issue 30), which adds a capturable fixed step.

use std::collections::BTreeMap;

use candle_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

/// What a record says about the implementation that ran.
pub trait Describe {
    fn device(&self) -> &Device;
    /// The precision as it really executed (dtypes and quantized formats read back from the
    /// loaded model, never the name the cell asked for).
    fn executed_precision(&self) -> String;
    /// Which implementation ran each part (`linear`, `attention`, `kv_cache`, `decode`, ...).
    fn implementation(&self) -> BTreeMap<String, String>;
}

/// The workload a model family runs, chosen once per cell (run/cell.rs matches on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Fixed-shape batches in, logits (batch, labels) out: the encoders.
    Classify,
    /// Prompts in, greedy tokens out, prefill and decode measured apart: the decoders.
    Generate,
}

/// A decoder with a KV cache, stepped by the generate workload. Token ids are u32 tensors on
/// the model's device; logits come back as (batch, vocab) in the model's own dtype, for the last
/// position only (argmax runs on the device, so the next step's input never visits the host).
pub trait Generate: Describe {
    /// Prepares for `batch` sequences of up to `context` positions (before any window), so that
    /// an implementation with a preallocated KV cache allocates it once, outside the
    /// measurement. Implementations whose cache grows need nothing.
    fn reserve(&mut self, _batch: usize, _context: usize) -> Result<()> {
        Ok(())
    }
    /// Empties the KV cache: the next call is a prefill at position 0.
    fn reset(&mut self) -> Result<()>;
    /// Runs `prompt` (batch, len) from the current position; the last position's logits.
    fn prefill(&mut self, prompt: &Tensor) -> Result<Tensor>;
    /// One decode step: `tokens` (batch, 1) at the current position; its logits.
    fn step(&mut self, tokens: &Tensor) -> Result<Tensor>;
    /// Remembers the cache as it is now (after a prefill), for [`Self::rewind`].
    fn mark(&mut self) -> Result<()>;
    /// Puts the cache back where [`Self::mark`] left it, so that every decode loop of a window
    /// runs the same whole steps at the same context.
    fn rewind(&mut self) -> Result<()>;
    /// Tokens in the cache (the next step's position).
    fn position(&self) -> usize;
    /// How decode windows are made with this implementation, for the record.
    fn decode_windowing(&self) -> String;
    /// A decode step with the same kernels and arguments every call, from the mark, starting
    /// from `first` (batch, 1), for loops of up to `steps` steps (refused if the cache cannot
    /// hold them): what one CUDA graph per step captures. `None` where the implementation has
    /// none (candle-transformers' models: a growing cache, a host offset).
    fn fixed_step(&self, _first: &Tensor, _steps: usize) -> Result<Option<FixedStep<'_>>> {
        Ok(None)
    }
    /// The prefill of `prompt` (batch, len) from position 0 to the first token's argmax, with the
    /// same kernels and arguments every call (the same prompt, span and mask): what one CUDA
    /// graph per prompt shape captures. Each `run` leaves the cache as a prefill does (its
    /// keys and values written, the position at `len`) and returns the last position's logits;
    /// `restore` has nothing to undo. `None` where the implementation has none.
    fn fixed_prefill(&mut self, _prompt: &Tensor) -> Result<Option<FixedStep<'_>>> {
        Ok(None)
    }
    /// Every layer callable alone, for a `layers` cell; `None` where the implementation keeps
    /// its layers private (candle-transformers' models).
    fn layers(&mut self) -> Option<&mut dyn DecoderLayers> {
        None
    }
}

/// The two phases of a generation, measured apart: the prompt's forward pass, and one decode
/// step of one token per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Prefill,
    Decode,
}

impl Phase {
    pub const ALL: [Phase; 2] = [Phase::Prefill, Phase::Decode];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        }
    }

    /// What a per-layer figure of this phase is per.
    pub fn per(self) -> &'static str {
        match self {
            Phase::Prefill => "prompt token",
            Phase::Decode => "generated token",
        }
    }
}

/// A part of a decoder the per-layer profiler runs alone: the top-level layers (embeddings,
/// each block, the final norm with the output projection) and each block's two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderUnit {
    Embeddings,
    Block(usize),
    /// input RMSNorm, Q/K/V, rotary, KV-cache write, attention, output projection, residual.
    Attention(usize),
    /// post-attention RMSNorm, SwiGLU, residual.
    Mlp(usize),
    /// Final RMSNorm of the last position, the output projection, the greedy argmax.
    Head,
}

impl DecoderUnit {
    /// Named as the encoder's units are, so the report's tables and the quantize ranking read
    /// both alike (`transformer_block_3.attention`).
    pub fn name(self) -> String {
        match self {
            DecoderUnit::Embeddings => "embeddings".into(),
            DecoderUnit::Block(i) => format!("transformer_block_{i}"),
            DecoderUnit::Attention(i) => format!("transformer_block_{i}.attention"),
            DecoderUnit::Mlp(i) => format!("transformer_block_{i}.mlp"),
            DecoderUnit::Head => "lm_head".into(),
        }
    }

    pub fn parent(self) -> Option<String> {
        match self {
            DecoderUnit::Attention(i) | DecoderUnit::Mlp(i) => Some(DecoderUnit::Block(i).name()),
            _ => None,
        }
    }
}

/// A unit with the real input it received in one pass of its phase.
pub struct CapturedDecoderUnit {
    pub unit: DecoderUnit,
    pub input: Tensor,
}

/// One phase made ready for the per-layer profiler: the KV cache in the state the phase's
/// windows of a whole-model cell see, the phase's input ids, and every unit's captured input.
pub struct CapturedPhase {
    pub phase: Phase,
    /// (batch, prompt_len) for the prefill, (batch, 1) for a decode step.
    pub ids: Tensor,
    pub units: Vec<CapturedDecoderUnit>,
    /// Where the phase runs, for the record ("positions 0..512", "position 576 of 640").
    pub position: String,
}

/// Per-layer access to a decoder with a static KV cache. No call of a unit or a prefix moves
/// the position: a decode unit writes its keys and values at the same device-held position
/// every call, a prefill unit the same span, so K calls per loop measure K identical calls.
pub trait DecoderLayers {
    /// The top-level units in execution order: embeddings, each block, the head.
    fn top_level(&self) -> Vec<DecoderUnit>;
    /// Prefills `prompt` and, for the decode phase, runs `decode_steps` greedy steps after it,
    /// so that the captured step sees the context the whole-model cell's steps see on average.
    fn capture(
        &mut self,
        phase: Phase,
        prompt: &Tensor,
        decode_steps: usize,
    ) -> Result<CapturedPhase>;
    fn run_unit(&self, phase: Phase, unit: &CapturedDecoderUnit) -> Result<Tensor>;
    /// The model cut after `layers` top-level units (1 = the embeddings alone; all of them: the
    /// whole phase, its argmax fed back and its position advanced included) on the phase's ids.
    fn run_prefix(&self, phase: Phase, ids: &Tensor, layers: usize) -> Result<Tensor>;
    /// What the last run of the head unit (or of the longest prefix) fed back, as the whole
    /// phase feeds the next step: the next tokens (batch, 1) and the position the next step runs
    /// at (1,), both u32, from the profiler's own slots (the phase's are never written).
    fn fed_back(&self) -> Result<(Tensor, Tensor)>;
    /// Cold isolation (`protocol.layer_isolation = "cold"`): the bytes of weights and KV cache
    /// one call of `unit` reads (what a copy of it holds), `None` where no copy makes the unit
    /// cold (the embeddings read one row a token); refused where the weights cannot be copied.
    fn cold_bytes(&self, unit: DecoderUnit) -> Result<Option<u64>>;
    /// A call of the captured unit reading `copies` deep copies of its weights and KV cache in
    /// turn, one a call (the copies live as long as the call).
    fn rotating<'a>(
        &'a self,
        phase: Phase,
        unit: &'a CapturedDecoderUnit,
        copies: usize,
    ) -> Result<Box<dyn Fn() -> Result<Tensor> + 'a>>;
}

/// One decode step (or one prefill: [`Generate::fixed_prefill`]) as a closure of no arguments:
/// each `run` of a step reads the device-held tokens and position, writes its keys and values,
/// its greedy argmax into the tokens (the next call's input, without a host round trip) and the
/// position + 1, and returns the step's logits. `restore` puts tokens and position back at the
/// mark (device to device copies), before every loop of whole steps.
pub struct FixedStep<'m> {
    pub run: Box<dyn Fn() -> Result<Tensor> + 'm>,
    pub restore: Box<dyn Fn() -> Result<()> + 'm>,
}

/// The greedy next tokens of (batch, vocab) logits, as (batch, 1) u32 on the same device.
pub fn greedy(logits: &Tensor) -> Result<Tensor> {
    logits.argmax_keepdim(candle_core::D::Minus1)
}
