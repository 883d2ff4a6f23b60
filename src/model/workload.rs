//! What a loaded model does in a cell: an encoder classifies (`model::Encoder`, measured by
//! run/classify.rs), a decoder generates ([`Generate`], measured by run/generate.rs). Both say
//! what ran ([`Describe`]) for the record.
//!
//! [`Generate`] is the one interface the generate workload sees, whoever implements it: the
//! candle-transformers decoders as the crate runs them (`decoder::CrateDecoder`), and the
//! runner's own Llama family as deployed (issue 30), which adds a capturable fixed step.

use std::collections::BTreeMap;

use candle_core::{Device, Result, Tensor};

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
}

/// One decode step as a closure of no arguments: each `run` reads the device-held tokens and
/// position, writes its keys and values, its greedy argmax into the tokens (the next call's
/// input, without a host round trip) and the position + 1, and returns the step's logits.
/// `restore` puts tokens and position back at the mark (device to device copies), before every
/// loop of whole steps.
pub struct FixedStep<'m> {
    pub run: Box<dyn Fn() -> Result<Tensor> + 'm>,
    pub restore: Box<dyn Fn() -> Result<()> + 'm>,
}

/// The greedy next tokens of (batch, vocab) logits, as (batch, 1) u32 on the same device.
pub fn greedy(logits: &Tensor) -> Result<Tensor> {
    logits.argmax_keepdim(candle_core::D::Minus1)
}
