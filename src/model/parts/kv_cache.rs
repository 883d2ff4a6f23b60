//! A KV cache as deployed: preallocated for the cell's batch and context, written in place, and
//! addressed by a position held in a device tensor, so a decode step's kernels take no host
//! offset (the same launch arguments every step: capturable as one CUDA graph). Rewinding is
//! moving the position back: positions past it are masked until they are written again.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};

use crate::ops::decode::AttentionScratch;

pub struct StaticKvCache {
    /// (batch, kv_heads, capacity, head_dim), zero until written.
    keys: Tensor,
    values: Tensor,
    /// The fused decode attention's partials, counters and context, allocated with the cache so
    /// a captured step allocates nothing (None on the CPU, where no fused kernel runs). Shared
    /// by a cache's deep copies: its calls run one after the other on one stream.
    attention: Option<Arc<AttentionScratch>>,
}

impl StaticKvCache {
    pub fn new(
        batch: usize,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (batch, kv_heads, capacity, head_dim);
        Ok(Self {
            keys: Tensor::zeros(shape, dtype, device)?,
            values: Tensor::zeros(shape, dtype, device)?,
            attention: None,
        })
    }

    /// The cache with the fused decode attention's scratch for `heads` query heads (CUDA only).
    pub fn with_attention_scratch(mut self, heads: usize) -> Result<Self> {
        if self.keys.device().is_cuda() {
            let [batch, kv_heads, capacity, head_dim] = *self.keys.dims() else {
                candle_core::bail!("a KV cache of {:?}", self.keys.dims());
            };
            let shape = [batch, heads, kv_heads, head_dim, capacity];
            let device = self.keys.device().clone();
            self.attention = Some(Arc::new(AttentionScratch::new(
                shape,
                self.keys.dtype(),
                &device,
            )?));
        }
        Ok(self)
    }

    pub fn attention_scratch(&self) -> Option<&AttentionScratch> {
        self.attention.as_deref()
    }

    /// The keys and values in new storage, as they are now (the per-layer profiler's cold
    /// units: a call on a copy finds nothing of it in the device's cache).
    pub fn deep_copy(&self) -> Result<Self> {
        Ok(Self {
            keys: self.keys.copy()?,
            values: self.values.copy()?,
            attention: self.attention.clone(),
        })
    }

    pub fn batch(&self) -> usize {
        self.keys.dims()[0]
    }

    pub fn capacity(&self) -> usize {
        self.keys.dims()[2]
    }

    pub fn bytes(&self) -> usize {
        2 * self.keys.elem_count() * self.keys.dtype().size_in_bytes()
    }

    /// A prefill's keys and values (batch, kv_heads, len, head_dim) at `start` (a prefill has a
    /// fixed shape per prompt length; its start is 0 in a cell).
    pub fn write_span(&self, k: &Tensor, v: &Tensor, start: usize) -> Result<()> {
        if start + k.dim(2)? > self.capacity() {
            candle_core::bail!(
                "the KV cache holds {} positions and a prefill of {} at {start} would pass its end",
                self.capacity(),
                k.dim(2)?
            );
        }
        self.keys.slice_set(&k.contiguous()?, 2, start)?;
        self.values.slice_set(&v.contiguous()?, 2, start)
    }

    /// One decode step's keys and values (batch, kv_heads, 1, head_dim) at the device-held
    /// `position` (u32, shape (1,)), in place.
    pub fn write_at(&self, k: &Tensor, v: &Tensor, position: &Tensor) -> Result<()> {
        let index = position
            .reshape((1, 1, 1, 1))?
            .broadcast_as(k.shape())?
            .contiguous()?;
        self.keys.scatter_set(&index, &k.contiguous()?, 2)?;
        self.values.scatter_set(&index, &v.contiguous()?, 2)
    }

    /// The first `len` positions (a prefill's attention).
    pub fn prefix(&self, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((self.keys.narrow(2, 0, len)?, self.values.narrow(2, 0, len)?))
    }

    /// Every position (a decode step attends to all of them, those past the position masked).
    pub fn all(&self) -> (&Tensor, &Tensor) {
        (&self.keys, &self.values)
    }
}
