//! Rotary position embeddings from tables of every position's cos and sin: a prefill takes rows
//! by a host offset, a decode step gathers its row with the device-held position (no host
//! offset in the step). Non-interleaved halves, as Hugging Face's Llama family and
//! candle-transformers' llama, mistral, qwen2 and qwen3 rotate them.

use candle_core::{DType, Device, Result, Tensor};

pub struct Rotary {
    /// (max_positions, head_dim / 2), in the model's dtype.
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    pub fn new(
        inverse_frequencies: &[f32],
        positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let half = inverse_frequencies.len();
        let inv = Tensor::from_vec(inverse_frequencies.to_vec(), (1, half), device)?;
        let t = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?;
        let freqs = t.broadcast_mul(&inv)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    /// The (max_positions, head_dim / 2) cos and sin tables (the fused rotary kernel reads them).
    pub fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    pub fn positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// `x` (batch, heads, len, head_dim) at positions start..start+len.
    pub fn apply_span(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let len = x.dim(2)?;
        candle_nn::rotary_emb::rope(
            &x.contiguous()?,
            &self.cos.narrow(0, start, len)?,
            &self.sin.narrow(0, start, len)?,
        )
    }

    /// `x` (batch, heads, 1, head_dim) at the device-held `position` (u32, (1,)).
    pub fn apply_at(&self, x: &Tensor, position: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope(
            &x.contiguous()?,
            &self.cos.index_select(position, 0)?,
            &self.sin.index_select(position, 0)?,
        )
    }
}
