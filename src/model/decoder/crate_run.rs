//! candle-transformers decoders as the crate runs them (eager, the KV cache growing by
//! `Tensor::cat` each step), behind the runner's [`Generate`]: one adapter per calling
//! convention, and [`CrateDecoder`], which gives every one of them reset, mark and rewind.
//!
//! Rewind is a snapshot: the crate's models derive Clone and hold their weights and KV caches
//! as candle tensors (reference-counted, never written in place), so a clone taken after the
//! prefill is the cache at that point, at the cost of a few hundred reference counts. A decode
//! window's loops each restore it and run whole decode steps, so every loop measures the same
//! steps at the same context, and no prefill falls inside a decode window.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, IndexOp, Result, Tensor};

use crate::model::workload::{Describe, Generate};

/// One crate model behind one calling convention.
pub trait Forward {
    /// Logits for `ids` (batch, len) fed at position `offset`.
    fn forward(&mut self, ids: &Tensor, offset: usize) -> Result<Tensor>;
    /// The model with its KV cache as it is now (weights shared).
    fn boxed_clone(&self) -> Box<dyn Forward>;
}

/// `forward(&mut self, ids, seqlen_offset)`.
pub struct Offset<M> {
    pub model: M,
    pub forward: fn(&mut M, &Tensor, usize) -> Result<Tensor>,
}

impl<M: Clone + 'static> Forward for Offset<M> {
    fn forward(&mut self, ids: &Tensor, offset: usize) -> Result<Tensor> {
        (self.forward)(&mut self.model, ids, offset)
    }
    fn boxed_clone(&self) -> Box<dyn Forward> {
        Box::new(Offset {
            model: self.model.clone(),
            forward: self.forward,
        })
    }
}

/// `forward(&self, ids, index_pos, &mut Cache)`: the model shared, the cache cloned.
pub struct External<M, C> {
    model: Arc<M>,
    cache: C,
    forward: fn(&M, &Tensor, usize, &mut C) -> Result<Tensor>,
}

impl<M, C> External<M, C> {
    pub fn new(
        model: M,
        cache: C,
        forward: fn(&M, &Tensor, usize, &mut C) -> Result<Tensor>,
    ) -> Self {
        Self {
            model: Arc::new(model),
            cache,
            forward,
        }
    }
}

impl<M: 'static, C: Clone + 'static> Forward for External<M, C> {
    fn forward(&mut self, ids: &Tensor, offset: usize) -> Result<Tensor> {
        (self.forward)(&self.model, ids, offset, &mut self.cache)
    }
    fn boxed_clone(&self) -> Box<dyn Forward> {
        Box::new(External {
            model: self.model.clone(),
            cache: self.cache.clone(),
            forward: self.forward,
        })
    }
}

/// `forward(&mut self, ids)`: the model counts its own position (from its KV cache).
pub struct NoOffset<M> {
    pub model: M,
    pub forward: fn(&mut M, &Tensor) -> Result<Tensor>,
}

impl<M: Clone + 'static> Forward for NoOffset<M> {
    fn forward(&mut self, ids: &Tensor, _offset: usize) -> Result<Tensor> {
        (self.forward)(&mut self.model, ids)
    }
    fn boxed_clone(&self) -> Box<dyn Forward> {
        Box::new(NoOffset {
            model: self.model.clone(),
            forward: self.forward,
        })
    }
}

/// What a [`CrateDecoder`] says about itself in the record.
#[derive(Debug, Clone)]
pub struct Description {
    pub device: Device,
    pub executed_precision: String,
    pub implementation: BTreeMap<String, String>,
}

/// A crate decoder with reset (back to the model as loaded), mark and rewind (clones).
pub struct CrateDecoder {
    pristine: Box<dyn Forward>,
    live: Box<dyn Forward>,
    marked: Option<(Box<dyn Forward>, usize)>,
    position: usize,
    description: Description,
}

impl CrateDecoder {
    pub fn new(model: Box<dyn Forward>, description: Description) -> Self {
        Self {
            live: model.boxed_clone(),
            pristine: model,
            marked: None,
            position: 0,
            description,
        }
    }

    fn run(&mut self, ids: &Tensor) -> Result<Tensor> {
        let len = ids.dim(1)?;
        let logits = self.live.forward(ids, self.position)?;
        self.position += len;
        last_position(&logits)
    }
}

/// The crate's models return (batch, vocab), (batch, 1, vocab) or (batch, len, vocab): the last
/// position's (batch, vocab).
fn last_position(logits: &Tensor) -> Result<Tensor> {
    match logits.rank() {
        2 => Ok(logits.clone()),
        3 => {
            let len = logits.dim(1)?;
            logits.i((.., len - 1, ..))?.contiguous()
        }
        r => candle_core::bail!(
            "the model returned logits of rank {r}: {:?}",
            logits.shape()
        ),
    }
}

impl Describe for CrateDecoder {
    fn device(&self) -> &Device {
        &self.description.device
    }
    fn executed_precision(&self) -> String {
        self.description.executed_precision.clone()
    }
    fn implementation(&self) -> BTreeMap<String, String> {
        let mut map = self.description.implementation.clone();
        map.insert("decode".into(), self.decode_windowing());
        map
    }
}

impl Generate for CrateDecoder {
    fn reset(&mut self) -> Result<()> {
        self.live = self.pristine.boxed_clone();
        self.marked = None;
        self.position = 0;
        Ok(())
    }

    fn prefill(&mut self, prompt: &Tensor) -> Result<Tensor> {
        self.run(prompt)
    }

    fn step(&mut self, tokens: &Tensor) -> Result<Tensor> {
        if tokens.dim(1)? != 1 {
            candle_core::bail!(
                "a decode step takes one token per sequence, got {:?}",
                tokens.shape()
            );
        }
        self.run(tokens)
    }

    fn mark(&mut self) -> Result<()> {
        self.marked = Some((self.live.boxed_clone(), self.position));
        Ok(())
    }

    fn rewind(&mut self) -> Result<()> {
        let Some((snapshot, position)) = &self.marked else {
            candle_core::bail!("rewind without a mark");
        };
        self.live = snapshot.boxed_clone();
        self.position = *position;
        Ok(())
    }

    fn position(&self) -> usize {
        self.position
    }

    fn decode_windowing(&self) -> String {
        "eager: the prompt prefilled once outside the window and the model (its KV cache) cloned; \
         each loop restores that clone (reference counts, no copy) and runs whole decode steps, \
         each one forward of one token per sequence and a greedy argmax on the device"
            .into()
    }
}

/// The dtype name a record gives the decoder's floats.
pub fn float_name(dtype: DType) -> &'static str {
    crate::model::dtype_name(dtype)
}
