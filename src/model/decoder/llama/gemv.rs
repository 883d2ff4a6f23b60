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

use candle_core::{DType, Device, Module, Result, Tensor};

use super::block::{Block, DecodeAt};
use super::config::FamilyConfig;
use super::fused::float_parts;
use super::{CacheState, LlamaFamily};
use crate::config::DecodeKernels;
use crate::model::parts::kv_cache::StaticKvCache;
use crate::model::parts::rope::Rotary;
use crate::ops::decode::gemv::{
    gemv_bulk_into, gemv_fold_batched_into, gemv_fold_into, gemv_into_launched, gemv_long_into,
    gemv_split_into, swiglu_into_launched, Prologue, MAX_BATCH,
};
use crate::ops::decode::{self, Launch};

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
    /// (batch, heads head_dim): the rotated Q (gemv-pdl writes it here: no allocation node
    /// between the Q|K|V GEMV and rope_kv_write; gemv allocates it per layer as before).
    q: Tensor,
    /// gemv-lean: f32 (batch, vocab), the step's logits, written by its tail's one launch.
    logits: Option<Tensor>,
    /// gemv-lean: (batch, vocab) in the model's dtype, the lm_head GEMV's output (the final
    /// RMSNorm folded in), which the tail launch reads.
    head_out: Option<Tensor>,
}

impl StepBuffers {
    /// For `batch` sequences of a step with `kernels` (gemv-lean: the logits' buffer too).
    pub fn new(
        cfg: &FamilyConfig,
        (batch, kernels): (usize, DecodeKernels),
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
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
            q: Tensor::zeros((batch, cfg.heads * cfg.head_dim), dtype, device)?,
            logits: match kernels {
                DecodeKernels::GemvLean => {
                    Some(Tensor::zeros((batch, cfg.vocab), DType::F32, device)?)
                }
                _ => None,
            },
            head_out: match kernels {
                DecodeKernels::GemvLean => Some(Tensor::zeros((batch, cfg.vocab), dtype, device)?),
                _ => None,
            },
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

/// The record's `implementation.decode_kernels` of a gemv step (gemv, gemv-pdl or gemv-bulk).
pub fn describe(kernels: DecodeKernels) -> String {
    let bulk = if kernels == DecodeKernels::GemvBulk {
        "gemv-bulk: gemv-pdl with the Q|K|V, o, gate|up and down GEMVs' weights streamed by TMA bulk copies (cp.async.bulk into a ring of shared-memory stages a block, each completed on an mbarrier; gemv.cu's gemv_bulk, the first stages requested before griddepcontrol.wait) and the attention's wide merge (its last CTA loading every split's partial before using any); "
    } else {
        ""
    };
    // gemv-lean is gemv-cluster's step with its tail changed: its record says both.
    let cluster = "gemv-cluster: gemv-fold (5 launches a layer, SwiGLU in gate|up's epilogue, the RMSNorm GEMVs without a block prologue) with the attention decode.cu's decode_attention_cluster (rotary + KV write folded in; 8 CTAs of 8 warps a sequence and KV head as one thread-block cluster, the first round of cache loads and the position's cos/sin issued before griddepcontrol.wait, the CTAs' softmax states merged through distributed shared memory: no partials in global memory, no fence or atomic ticket) the o and down GEMVs (+ residual) gemv_long (gemv.cu: a lane's 8 weight loads and their inputs issued before any is used), and the fixed step's greedy pick one grid-wide argmax launch (argmax_rows_f32) instead of candle's one-block argmax and a copy; ";
    let fold = match kernels {
        DecodeKernels::GemvFold => "gemv-fold: gemv-pdl in 5 launches a layer: rope_kv_write folded into the attention (decode.cu's decode_attention_rope: Q and the position's K rotated from the Q|K|V row, K and V written into the cache, the first round of cache loads issued before griddepcontrol.wait), SwiGLU into the gate|up GEMV's epilogue (gemv.cu's gemv_fold: gate and up rows in one warp, the act row written; no swiglu_rows), the Q|K|V and gate|up GEMVs' RMSNorm applied to the finished dot products, its sum of squares taken by each warp from the input it loads (no block prologue), the down GEMV's rows split over a block's 4 warps (gemv_split), and the fixed step's greedy pick one grid-wide argmax launch (argmax_rows_f32) instead of candle's one-block argmax and a copy; ".to_string(),
        DecodeKernels::GemvCluster => cluster.to_string(),
        DecodeKernels::GemvLean => format!(
            "{}{cluster}",
            "gemv-lean: gemv-cluster with the final RMSNorm and the lm_head as one GEMV (gemv.cu's gemv_fold with BATCH: a lane's 8 weight loads issued before any is used, the norm applied to the finished dot products) instead of candle's RMSNorm and cuBLAS, and the step's tail after it one launch (decode.cu's logits_pick: the logits written as f32, the greedy pick of argmax_rows_f32, the position advanced) instead of candle's cast, add and copy and argmax_rows_f32; "
        ),
        _ => String::new(),
    };
    let launches = if kernels.is_programmatic() {
        "gemv-pdl: the gemv step with Programmatic Dependent Launch (cuLaunchKernelEx, programmatic stream serialization; captured as programmatic graph edges) for every kernel of the step but its first (layer 0's Q|K|V GEMV, after the embedding copy), Q written into a buffer of the step so no allocation node sits between two launches, the GEMVs prefetching their first weight rows into L2 before griddepcontrol.wait"
    } else {
        "gemv"
    };
    format!("{bulk}{fold}{launches} (src/ops/kernels/gemv.cu + decode.cu): a layer's decode step is the runner's GEMV of Q|K|V with the input RMSNorm in its prologue, rope_kv_write (rotary + KV write at the device-held position), split-K decode attention, the output GEMV adding into the residual stream in place, the gate|up GEMV with the post-attention RMSNorm in its prologue, SwiGLU, the down GEMV adding into the residual stream; activations preallocated with the cache; final norm and lm_head candle's; prefill plain")
}

impl Block {
    /// One decode step of the residual stream in `bufs.h`, in place; `(kernels, first)`: launch
    /// programmatically (gemv-pdl, gemv-bulk) where the predecessor is one of the step's kernels (every
    /// launch but the step's `first` GEMV). Returns gemv-pdl's Q view (the caller keeps it to the
    /// step's end: no free node between two programmatic launches).
    pub fn decode_gemv(
        &self,
        bufs: &StepBuffers,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &DecodeAt,
        (kernels, first): (DecodeKernels, bool),
    ) -> Result<Option<Tensor>> {
        let pdl = kernels.is_programmatic();
        // gemv-bulk: the same GEMVs with their weights streamed by bulk copies, and the
        // attention's wide merge.
        let bulk = kernels == DecodeKernels::GemvBulk;
        let gemv = if bulk {
            gemv_bulk_into
        } else {
            gemv_into_launched
        };
        let (Some((qkv_w, qkv_b)), Some(gate_up_w)) = (&self.attention.qkv, &self.mlp.gate_up)
        else {
            candle_core::bail!("a gemv decode step on weights loaded for the plain kernels");
        };
        let after_kernel = if pdl {
            Launch::Programmatic
        } else {
            Launch::Stream
        };
        // The two-pass attention (no one-launch variant) allocates and frees its partials.
        let one_launch = decode::variant(
            self.attention.head_dim,
            self.attention.heads / self.attention.kv_heads.max(1),
        )
        .is_some();
        if matches!(
            kernels,
            DecodeKernels::GemvFold | DecodeKernels::GemvCluster | DecodeKernels::GemvLean
        ) {
            if !one_launch {
                candle_core::bail!(
                    "decode_kernels = \"{}\" folds rotary + KV write into the one-launch attention, which has no variant for head_dim {} with {} query heads a KV head: use decode_kernels = \"gemv-pdl\"",
                    kernels.name(),
                    self.attention.head_dim,
                    self.attention.heads / self.attention.kv_heads.max(1)
                );
            }
            let cluster = kernels != DecodeKernels::GemvFold;
            return self.decode_folded(bufs, rotary, cache, at, (first, cluster));
        }
        let after_attention = if one_launch {
            after_kernel
        } else {
            Launch::Stream
        };
        gemv(
            &bufs.qkv,
            &bufs.h,
            qkv_w,
            norm(&self.input_norm),
            None,
            false,
            if first { Launch::Stream } else { after_kernel },
        )?;
        // gemv-pdl: Q into the step's buffer, rope_kv_write programmatic after the GEMV.
        let (context, q) = self.attention.rope_attend(
            &bufs.qkv,
            qkv_b.as_ref(),
            rotary,
            cache,
            at.position,
            pdl.then_some((&bufs.q, after_kernel)),
            bulk,
        )?;
        // gemv: Q freed here, as before gemv-pdl existed.
        let q = if pdl { Some(q) } else { None };
        let (o_w, o_b) = float_parts(&self.attention.o)?;
        gemv(
            &bufs.h,
            &context,
            &o_w,
            Prologue::None,
            o_b.as_ref(),
            true,
            after_attention,
        )?;
        gemv(
            &bufs.gate_up,
            &bufs.h,
            gate_up_w,
            norm(&self.post_attention_norm),
            None,
            false,
            after_kernel,
        )?;
        // SwiGLU once, not in the down GEMV's prologue (which recomputes it for every output row).
        swiglu_into_launched(&bufs.act, &bufs.gate_up, after_kernel)?;
        let (down_w, down_b) = float_parts(&self.mlp.down)?;
        gemv(
            &bufs.h,
            &bufs.act,
            &down_w,
            Prologue::None,
            down_b.as_ref(),
            true,
            after_kernel,
        )?;
        Ok(q)
    }

    /// `decode_kernels = "gemv-fold"`'s layer: 5 launches, every one programmatic but the step's
    /// first: Q|K|V GEMV (RMSNorm at the end) -> attention with rotary + KV write -> o GEMV +
    /// residual -> gate|up GEMV with SwiGLU out (RMSNorm at the end) -> down GEMV + residual
    /// (its rows' columns split over a block's warps). `cluster` (`"gemv-cluster"`, session 9):
    /// the attention decode_attention_cluster, o and down gemv_long.
    /// gemv-lean runs this layer as gemv-cluster's: gemv_fold with BATCH was slower alone at
    /// gate|up (27.7 against 25.4 us on an H100, session 11), so it runs only the lm_head.
    fn decode_folded(
        &self,
        bufs: &StepBuffers,
        rotary: &Rotary,
        cache: &StaticKvCache,
        at: &DecodeAt,
        (first, cluster): (bool, bool),
    ) -> Result<Option<Tensor>> {
        let (Some((qkv_w, qkv_b)), Some(gate_up_w)) = (&self.attention.qkv, &self.mlp.gate_up)
        else {
            candle_core::bail!("a gemv-fold decode step on weights loaded for the plain kernels");
        };
        let after = Launch::Programmatic;
        let qkv_launch = if first { Launch::Stream } else { after };
        let input_norm = norm(&self.input_norm);
        gemv_fold_into(
            &bufs.qkv, &bufs.h, qkv_w, input_norm, None, false, qkv_launch,
        )?;
        let context = self.attention.attend_folded(
            &bufs.qkv,
            qkv_b.as_ref(),
            rotary,
            cache,
            at.position,
            (after, cluster),
        )?;
        let (o_w, o_b) = float_parts(&self.attention.o)?;
        if cluster {
            gemv_long_into(&bufs.h, &context, &o_w, o_b.as_ref(), true, after)?;
        } else {
            let none = Prologue::None;
            gemv_into_launched(&bufs.h, &context, &o_w, none, o_b.as_ref(), true, after)?;
        }
        let post_norm = norm(&self.post_attention_norm);
        gemv_fold_into(&bufs.act, &bufs.h, gate_up_w, post_norm, None, true, after)?;
        let (down_w, down_b) = float_parts(&self.mlp.down)?;
        if cluster {
            gemv_long_into(&bufs.h, &bufs.act, &down_w, down_b.as_ref(), true, after)?;
        } else {
            gemv_split_into(&bufs.h, &bufs.act, &down_w, down_b.as_ref(), true, after)?;
        }
        Ok(None)
    }
}

impl LlamaFamily {
    /// [`Self::decode`] with the decode GEMV: the embedding copied into the preallocated residual
    /// stream, each layer adding into it in place. `pick` (gemv-lean's fixed step): its greedy
    /// tokens' tensor, written by the step's tail launch.
    pub(super) fn decode_gemv(
        &self,
        state: &CacheState,
        tokens: &Tensor,
        pick: Option<&Tensor>,
    ) -> Result<Tensor> {
        let Some(bufs) = &state.buffers else {
            candle_core::bail!("a gemv decode step without its step buffers");
        };
        let x = self.embed(tokens)?;
        let (b, _, hidden) = x.dims3()?;
        bufs.h.slice_set(&x.reshape((b, hidden))?, 0, 0)?;
        let at = state.at();
        // gemv-pdl/-bulk: every kernel launch but the step's first follows one of the step's kernels.
        let mut queries = Vec::with_capacity(self.blocks.len());
        for (i, (block, cache)) in self.blocks.iter().zip(&state.caches).enumerate() {
            queries.push(block.decode_gemv(
                bufs,
                &self.rotary,
                cache,
                &at,
                (self.kernels, i == 0),
            )?);
        }
        // gemv-pdl's Q views kept to here (gemv's own Q is freed in each layer, as before).
        drop(queries);
        if let (Some(out), Some(head_out)) = (&bufs.logits, &bufs.head_out) {
            // gemv-lean: the final RMSNorm and the lm_head in one GEMV (98 % of the copy
            // bandwidth on an H100 against cuBLAS's 93 %, session 10's ncu-step), then the f32
            // logits, the position's advance and (the fixed step) the pick in one launch.
            let (head_w, head_b) = float_parts(&self.lm_head)?;
            let after = Launch::Programmatic;
            let final_norm = norm(&self.norm);
            gemv_fold_batched_into(
                head_out,
                &bufs.h,
                &head_w,
                final_norm,
                head_b.as_ref(),
                false,
                after,
            )?;
            let advance = Some((&state.position, &state.position));
            decode::logits_pick(head_out, out, pick.map(|t| (t, &state.pick)), advance)?;
            // A step outside the fixed loop: its logits outlive the next step's.
            return if pick.is_some() {
                Ok(out.clone())
            } else {
                out.copy()
            };
        }
        if pick.is_some() {
            candle_core::bail!("only a gemv-lean step picks inside its tail");
        }
        let normed = self.norm.forward(&bufs.h)?;
        let logits = self.lm_head.forward(&normed)?.to_dtype(DType::F32)?;
        state
            .position
            .slice_set(&(&state.position + &state.one)?, 0, 0)?;
        Ok(logits)
    }
}

/// Whether the fixed step picks with the grid-wide argmax (gemv-fold, gemv-cluster).
fn grid_pick(kernels: DecodeKernels) -> bool {
    matches!(
        kernels,
        DecodeKernels::GemvFold | DecodeKernels::GemvCluster
    )
}

/// The fixed step's greedy pick into `tokens` (batch, 1): gemv-fold and gemv-cluster (CUDA only)
/// one launch of the grid-wide argmax (decode::argmax_into, `scratch` (batch, 4) u32 zero
/// between calls), every other way candle's argmax and a copy.
pub fn pick_next(
    kernels: DecodeKernels,
    scratch: &Tensor,
    logits: &Tensor,
    tokens: &Tensor,
) -> Result<()> {
    if grid_pick(kernels) {
        decode::argmax_into(tokens, logits, scratch)
    } else {
        let next = logits.argmax_keepdim(candle_core::D::Minus1)?;
        tokens.slice_set(&next, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gemv-fold and gemv-cluster pick with the grid-wide argmax and say so in their record;
    /// every other way keeps candle's.
    #[test]
    fn the_fold_ways_pick_with_the_grid_wide_argmax() {
        use DecodeKernels::*;
        for k in [GemvFold, GemvCluster] {
            assert!(
                grid_pick(k) && describe(k).contains("argmax_rows_f32"),
                "{k:?}"
            );
        }
        for k in [Plain, Fused, Gemv, GemvPdl, GemvBulk] {
            assert!(
                !grid_pick(k) && !describe(k).contains("argmax_rows_f32"),
                "{k:?}"
            );
        }
    }

    /// gemv-lean picks inside its step's tail (logits_pick), not with pick_next, runs its lm_head
    /// as a GEMV of its own and keeps both outputs' buffers with the step's activations (the
    /// lm_head's in the model's dtype); the other ways have none.
    #[test]
    fn gemv_lean_picks_in_its_tail() {
        use DecodeKernels::*;
        let lean = describe(GemvLean);
        assert!(!grid_pick(GemvLean) && lean.contains("logits_pick"));
        assert!(lean.contains("the final RMSNorm and the lm_head as one GEMV"));
        let cfg = FamilyConfig {
            architecture: "llama",
            hidden: 32,
            intermediate: 64,
            layers: 1,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
            vocab: 50,
            max_positions: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            tie_word_embeddings: true,
            qkv_bias: false,
            qk_norm: false,
            sliding_window: None,
        };
        let dev = Device::Cpu;
        for (k, want) in [
            (GemvLean, Some(cfg.vocab)),
            (GemvCluster, None),
            (GemvFold, None),
        ] {
            let bufs = StepBuffers::new(&cfg, (2, k), DType::BF16, &dev).unwrap();
            let got = bufs
                .logits
                .as_ref()
                .map(|l| (l.dims2().unwrap(), l.dtype()));
            assert_eq!(got, want.map(|v| ((2, v), DType::F32)), "{k:?}");
            let got = bufs
                .head_out
                .as_ref()
                .map(|l| (l.dims2().unwrap(), l.dtype()));
            assert_eq!(got, want.map(|v| ((2, v), DType::BF16)), "{k:?}");
        }
    }

    /// candle's pick (the lowest index of equal maxima); a grid-pick way's pick on the CPU is an
    /// error naming its kernel, never candle's result.
    #[test]
    fn the_pick_on_the_cpu() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[0f32, 3., 1., 3.], [5., -1., 2., 0.]], &dev).unwrap();
        let tokens = Tensor::zeros((2, 1), DType::U32, &dev).unwrap();
        let scratch = Tensor::zeros((2, 4), DType::U32, &dev).unwrap();
        pick_next(DecodeKernels::Fused, &scratch, &logits, &tokens).unwrap();
        assert_eq!(
            tokens.flatten_all().unwrap().to_vec1::<u32>().unwrap(),
            [1, 0]
        );
        let err = pick_next(DecodeKernels::GemvCluster, &scratch, &logits, &tokens)
            .unwrap_err()
            .to_string();
        assert!(err.contains("argmax_rows"), "{err}");
    }
}
