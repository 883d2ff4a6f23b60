//! An encoder's embeddings as one kernel (`device.fused_embeddings`): the token-embedding gather,
//! the position (+ token-type) add and the layer norm, which candle runs as a gather, a broadcast
//! add and a norm, ~20x their memory floor on the H100 (202-212 us of every batch-64 DistilBERT
//! forward; docs/results/2026-12-06-nvidia-h100-cutlass/NOTES.md). The kernel is
//! src/ops/kernels/fused.cu's `embed_layer_norm`; [`plain_embed_layer_norm`] is the candle
//! computation it replaces, bit-identical to the encoder's unfused embeddings, the reference of the
//! GPU check (examples/cutlass_check) and what the CPU runs.

use candle_core::{IndexOp, Result, Tensor};

/// The tables the kernel reads besides the word embeddings, stacked into one tensor
/// (positions + 2, cols): the position rows with the token-type-0 row (BERT; DistilBERT and
/// MiniLM-as-DistilBERT have none) already added in the dtype, as the unfused path's broadcast add
/// rounds it, then the norm's weight and bias.
pub fn embedding_table(
    position: &Tensor,
    segment: Option<&Tensor>,
    norm_weight: &Tensor,
    norm_bias: &Tensor,
) -> Result<Tensor> {
    let positions = match segment {
        Some(segment) => position.broadcast_add(segment)?,
        None => position.clone(),
    };
    Tensor::cat(
        &[
            positions,
            norm_weight.unsqueeze(0)?,
            norm_bias.unsqueeze(0)?,
        ],
        0,
    )
}

/// `layer_norm(word[ids] + positions[..seq])` for (batch, seq) token `ids`, with `table` from
/// [`embedding_table`]: (batch, seq, cols) in the tables' dtype. On CUDA one kernel (an id outside
/// the vocabulary gives that token a NaN row); elsewhere [`plain_embed_layer_norm`].
pub fn embed_layer_norm(ids: &Tensor, word: &Tensor, table: &Tensor, eps: f64) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if word.device().is_cuda() {
        let (batch, seq) = ids.dims2()?;
        let cols = word.dim(1)?;
        let ids = ids
            .to_dtype(candle_core::DType::U32)?
            .flatten_all()?
            .contiguous()?;
        let out = word.contiguous()?.apply_op3_no_bwd(
            &ids,
            &table.contiguous()?,
            &cuda::EmbedLayerNorm {
                eps: eps as f32,
                seq,
            },
        )?;
        return out.reshape((batch, seq, cols));
    }
    plain_embed_layer_norm(ids, word, table, eps)
}

/// What [`embed_layer_norm`] replaces, with candle's kernels: the gather (index_select), the
/// broadcast add of the position rows, candle-nn's layer norm. The same operations as the
/// encoder's unfused embeddings, so the same values bit for bit.
pub fn plain_embed_layer_norm(
    ids: &Tensor,
    word: &Tensor,
    table: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (batch, seq) = ids.dims2()?;
    let (_, cols) = word.dims2()?;
    let positions = table.dim(0)?.saturating_sub(2);
    if seq > positions {
        candle_core::bail!("{seq} tokens a sequence, but only {positions} position embeddings");
    }
    let words = word
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((batch, seq, cols))?;
    let sum = words.broadcast_add(&table.narrow(0, 0, seq)?)?;
    candle_nn::ops::layer_norm(
        &sum,
        &table.i(positions)?,
        &table.i(positions + 1)?,
        eps as f32,
    )
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape};

    use crate::ops::fused::cuda::PTX;

    pub struct EmbedLayerNorm {
        pub eps: f32,
        pub seq: usize,
    }

    impl candle_core::CustomOp3 for EmbedLayerNorm {
        fn name(&self) -> &'static str {
            "runner-embed-layer-norm"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!(
                "runner-embed-layer-norm is a CUDA kernel (the CPU runs the plain path)"
            )
        }

        fn cuda_fwd(
            &self,
            word: &CudaStorage,
            wl: &Layout,
            ids: &CudaStorage,
            il: &Layout,
            table: &CudaStorage,
            tl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let kernel = "runner-embed-layer-norm";
            let (vocab, cols) = wl.shape().dims2()?;
            let rows = il.shape().elem_count();
            let positions = tl.shape().dims2()?.0.saturating_sub(2);
            let offsets = [wl, il, tl].map(|l| l.contiguous_offsets().map(|(s, _)| s));
            if ids.dtype() != DType::U32
                || table.dtype() != word.dtype()
                || tl.shape().dims2()?.1 != cols
                || self.seq == 0
                || !rows.is_multiple_of(self.seq)
                || self.seq > positions
                || offsets.iter().any(Option::is_none)
            {
                candle_core::bail!(
                    "{kernel}: contiguous word table {:?}, u32 ids {:?} ({} a sequence), table {:?} of the word table's dtype with at least seq + 2 rows",
                    wl.shape(),
                    il.shape(),
                    self.seq,
                    tl.shape()
                );
            }
            let [wo, io, to] = offsets.map(|o| o.unwrap_or(0));
            let n = 16 / word.dtype().size_in_bytes();
            // 16-byte loads where every row and both tables' starts allow them.
            let vec = [cols, wo, to].iter().all(|v| v.is_multiple_of(n));
            let dtype = match word.dtype() {
                DType::F32 => "f32",
                DType::F16 => "f16",
                DType::BF16 => "bf16",
                other => candle_core::bail!("{kernel}: no {other:?} version"),
            };
            let name = format!("embed_layer_norm{}_{dtype}", if vec { "_vec" } else { "" });
            let dev = word.device().clone();
            let func = dev.get_or_load_custom_func(&name, "runner_fused", PTX)?;
            let ids = ids.as_cuda_slice::<u32>()?.slice(io..);
            let sizes = [rows, self.seq, vocab, positions, cols].map(|v| v as u32);
            // One warp a row, 8 rows a block (as fused::add_layer_norm).
            let cfg = LaunchConfig {
                grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            macro_rules! launch {
                ($t:ty) => {{
                    let ws = word.as_cuda_slice::<$t>()?.slice(wo..);
                    let ts = table.as_cuda_slice::<$t>()?.slice(to..);
                    // SAFETY: the kernel writes every element of its output.
                    let out = unsafe { dev.alloc::<$t>(rows * cols)? };
                    let mut b = func.builder();
                    b.arg(&ws).arg(&ids).arg(&ts).arg(&out);
                    for s in &sizes {
                        b.arg(s);
                    }
                    b.arg(&self.eps);
                    // SAFETY: the arguments match the kernel's signature.
                    unsafe { b.launch(cfg) }.w()?;
                    CudaStorage::wrap_cuda_slice(out, dev.clone())
                }};
            }
            let out = match word.dtype() {
                DType::F32 => launch!(f32),
                DType::F16 => launch!(half::f16),
                _ => launch!(half::bf16),
            };
            Ok((out, Shape::from((rows, cols))))
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{Embedding, LayerNorm, Module};

    use super::*;

    /// The encoder's unfused embeddings, as src/model/encoder writes them.
    fn unfused(
        ids: &Tensor,
        word: &Tensor,
        position: &Tensor,
        segment: Option<&Tensor>,
        norm: &LayerNorm,
    ) -> Result<Tensor> {
        let (_, seq) = ids.dims2()?;
        let cols = word.dim(1)?;
        let words = Embedding::new(word.clone(), cols).forward(ids)?;
        let arange = Tensor::arange(0u32, seq as u32, ids.device())?;
        let mut positions = Embedding::new(position.clone(), cols).forward(&arange)?;
        if let Some(segment) = segment {
            positions = positions.broadcast_add(segment)?;
        }
        norm.forward(&words.broadcast_add(&positions)?)
    }

    #[test]
    fn the_plain_twin_is_the_unfused_embeddings_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for with_segment in [false, true] {
                let (vocab, positions, cols) = (50, 16, 24);
                let word = Tensor::randn(0f32, 1.0, (vocab, cols), &dev)?.to_dtype(dtype)?;
                let position =
                    Tensor::randn(0f32, 0.5, (positions, cols), &dev)?.to_dtype(dtype)?;
                let segment = Tensor::randn(0f32, 0.5, cols, &dev)?.to_dtype(dtype)?;
                let segment = with_segment.then_some(&segment);
                let gamma = Tensor::randn(1f32, 0.1, cols, &dev)?.to_dtype(dtype)?;
                let beta = Tensor::randn(0f32, 0.1, cols, &dev)?.to_dtype(dtype)?;
                let norm = LayerNorm::new(gamma.clone(), beta.clone(), 1e-12);
                let ids = Tensor::new(&[[0u32, 7, 49, 3, 3, 12], [1, 2, 3, 4, 5, 48]], &dev)?;
                let want = unfused(&ids, &word, &position, segment, &norm)?;
                let table = embedding_table(&position, segment, &gamma, &beta)?;
                let got = embed_layer_norm(&ids, &word, &table, 1e-12)?;
                assert_eq!(got.dims(), want.dims());
                let (got, want) = (
                    got.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
                    want.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
                );
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{dtype:?}, segment {with_segment}");
            }
        }
        Ok(())
    }

    #[test]
    fn more_tokens_than_positions_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let word = Tensor::zeros((10, 8), DType::F32, &dev)?;
        let table = Tensor::zeros((4 + 2, 8), DType::F32, &dev)?;
        let ids = Tensor::zeros((1, 5), DType::U32, &dev)?;
        let err = plain_embed_layer_norm(&ids, &word, &table, 1e-5).unwrap_err();
        assert!(err.to_string().contains("4 position embeddings"), "{err}");
        Ok(())
    }
}
