//! Every unit and prefix of the own decoder callable alone, for the per-layer profiler: the
//! prefill's units on the prompt's real activations (each writes the same span of the cache
//! every call), a decode step's at one device-held position (each writes the same position
//! every call, and none advances it), so K calls of a unit are K identical calls.
//!
//! The head unit is the phase's tail as the whole phase runs it: the final RMSNorm, the output
//! projection, the greedy argmax, and the bookkeeping that feeds the step (the argmax copied
//! into the next step's input, the position advanced, or set to the prompt's end), written into
//! the profiler's own slots instead of the step's. So the units together run every kernel of a
//! whole step, and K calls of the head still move nothing.

use candle_core::{Module, Result, Tensor};

use super::block::Block;
use super::{CacheState, LlamaFamily};
use crate::model::parts::kv_cache::StaticKvCache;
use crate::model::parts::linear::Linear;
use crate::model::workload::{
    greedy, CapturedDecoderUnit, CapturedPhase, DecoderLayers, DecoderUnit, Generate, Phase,
};

impl LlamaFamily {
    pub(super) fn cache_state(&self) -> Result<&CacheState> {
        self.state.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("a decoder's layers run on a captured phase's cache".into())
        })
    }

    /// Block `i` whole, or one of its halves, in `phase`.
    fn run_block_part(&self, phase: Phase, unit: DecoderUnit, x: &Tensor) -> Result<Tensor> {
        let state = self.cache_state()?;
        let (DecoderUnit::Block(i) | DecoderUnit::Attention(i) | DecoderUnit::Mlp(i)) = unit else {
            candle_core::bail!("{} is not a block", unit.name());
        };
        self.run_block_part_on(phase, unit, &self.blocks[i], &state.caches[i], x)
    }

    /// [`Self::run_block_part`] with `block`'s weights and `cache` (block `i`'s own, or deep
    /// copies of them: `cold.rs`).
    pub(super) fn run_block_part_on(
        &self,
        phase: Phase,
        unit: DecoderUnit,
        block: &Block,
        cache: &StaticKvCache,
        x: &Tensor,
    ) -> Result<Tensor> {
        let state = self.cache_state()?;
        if phase == Phase::Decode && self.kernels.is_gemv() {
            candle_core::bail!(
                "the per-layer units of a decode step with decode_kernels = \"{}\" are not built (its layers add into one preallocated residual stream); profile layers with decode_kernels = \"fused\"",
                self.kernels.name()
            );
        }
        if phase == Phase::Decode && self.fused() {
            let at = state.at();
            return match unit {
                DecoderUnit::Mlp(_) => block.mlp_residual_fused(x),
                DecoderUnit::Attention(_) => {
                    block.decode_attention_fused(x, &self.rotary, cache, &at)
                }
                _ => block.mlp_residual_fused(&block.decode_attention_fused(
                    x,
                    &self.rotary,
                    cache,
                    &at,
                )?),
            };
        }
        match (phase, unit) {
            (_, DecoderUnit::Mlp(_)) => block.mlp_residual(x),
            (Phase::Prefill, DecoderUnit::Block(_)) => {
                block.prefill(x, &self.rotary, cache, &state.prefill_at(x.dim(1)?, 0)?)
            }
            (Phase::Prefill, _) => {
                block.prefill_attention(x, &self.rotary, cache, &state.prefill_at(x.dim(1)?, 0)?)
            }
            (Phase::Decode, DecoderUnit::Block(_)) => {
                block.decode(x, &self.rotary, cache, &state.at())
            }
            (Phase::Decode, _) => block.decode_attention(x, &self.rotary, cache, &state.at()),
        }
    }

    /// The phase's tail as the whole phase runs it (`fixed_step` after a decode step's layers,
    /// `fixed_prefill` after a prefill's): the last position's logits (f32), the position
    /// advanced (decode: by the step's add and copy; prefill: set to the prompt's end), the
    /// greedy argmax copied into the next step's input. Written into the profiler's slots
    /// ([`Self::fed_back`]), so that nothing the phase reads moves.
    fn run_tail(&self, phase: Phase, x: &Tensor) -> Result<Tensor> {
        self.run_tail_on(phase, &self.lm_head, x)
    }

    /// [`Self::head`] through `lm_head` (the model's, or a copy of it).
    pub(super) fn head_on(&self, lm_head: &Linear, x: &Tensor) -> Result<Tensor> {
        let len = x.dim(1)?;
        let last = x.narrow(1, len - 1, 1)?;
        let logits = lm_head.forward(&self.norm.forward(&last)?)?;
        logits.squeeze(1)?.to_dtype(candle_core::DType::F32)
    }

    /// [`Self::run_tail`] with `lm_head` (the model's own, or a deep copy of it: `cold.rs`).
    pub(super) fn run_tail_on(&self, phase: Phase, lm_head: &Linear, x: &Tensor) -> Result<Tensor> {
        let state = self.cache_state()?;
        let logits = self.head_on(lm_head, x)?;
        match phase {
            Phase::Decode => {
                let advanced = (&state.position + &state.one)?;
                state.tail_position.slice_set(&advanced, 0, 0)?;
                state.tail_tokens.slice_set(&greedy(&logits)?, 0, 0)?;
            }
            Phase::Prefill => {
                state.tail_tokens.slice_set(&greedy(&logits)?, 0, 0)?;
                let len = x.dim(1)?;
                state
                    .tail_position
                    .slice_set(state.prefill_end(len, 0)?, 0, 0)?;
            }
        }
        Ok(logits)
    }
}

impl DecoderLayers for LlamaFamily {
    fn top_level(&self) -> Vec<DecoderUnit> {
        let mut units = vec![DecoderUnit::Embeddings];
        units.extend((0..self.blocks.len()).map(DecoderUnit::Block));
        units.push(DecoderUnit::Head);
        units
    }

    fn capture(
        &mut self,
        phase: Phase,
        prompt: &Tensor,
        decode_steps: usize,
    ) -> Result<CapturedPhase> {
        let (batch, len) = prompt.dims2()?;
        self.reset()?;
        let (ids, position) = match phase {
            Phase::Prefill => {
                self.ready_prefill(batch, len, 0)?;
                (prompt.clone(), format!("positions 0..{len}"))
            }
            Phase::Decode => {
                let mut tokens = greedy(&self.prefill(prompt)?)?;
                for _ in 0..decode_steps {
                    tokens = greedy(&self.step(&tokens)?)?;
                }
                // The step the units run: one token per sequence, at this position, never
                // advanced by them.
                self.ensure_cache(batch, self.position + 1)?;
                let capacity = self.cache_state()?.caches[0].capacity();
                let at = format!("position {} of a {capacity}-position cache", self.position);
                (tokens, at)
            }
        };
        // Nothing fed back yet: a stale slot is never read as this phase's.
        let state = self.cache_state()?;
        for slot in [&state.tail_tokens, &state.tail_position] {
            slot.slice_set(&Tensor::full(u32::MAX, slot.shape(), slot.device())?, 0, 0)?;
        }
        let mut units = vec![CapturedDecoderUnit {
            unit: DecoderUnit::Embeddings,
            input: ids.clone(),
        }];
        let mut x = self.embed(&ids)?;
        for i in 0..self.blocks.len() {
            units.push(CapturedDecoderUnit {
                unit: DecoderUnit::Block(i),
                input: x.clone(),
            });
            units.push(CapturedDecoderUnit {
                unit: DecoderUnit::Attention(i),
                input: x.clone(),
            });
            let y = self.run_block_part(phase, DecoderUnit::Attention(i), &x)?;
            units.push(CapturedDecoderUnit {
                unit: DecoderUnit::Mlp(i),
                input: y.clone(),
            });
            x = self.run_block_part(phase, DecoderUnit::Mlp(i), &y)?;
        }
        units.push(CapturedDecoderUnit {
            unit: DecoderUnit::Head,
            input: x,
        });
        Ok(CapturedPhase {
            phase,
            ids,
            units,
            position,
        })
    }

    fn run_unit(&self, phase: Phase, captured: &CapturedDecoderUnit) -> Result<Tensor> {
        match captured.unit {
            DecoderUnit::Embeddings => self.embed(&captured.input),
            DecoderUnit::Head => self.run_tail(phase, &captured.input),
            unit => self.run_block_part(phase, unit, &captured.input),
        }
    }

    fn run_prefix(&self, phase: Phase, ids: &Tensor, layers: usize) -> Result<Tensor> {
        let total = self.blocks.len() + 2;
        if layers == 0 || layers > total {
            candle_core::bail!("a prefix of {layers} layers, of {total}");
        }
        let mut x = self.embed(ids)?;
        for i in 0..(layers - 1).min(self.blocks.len()) {
            x = self.run_block_part(phase, DecoderUnit::Block(i), &x)?;
        }
        if layers == total {
            return self.run_tail(phase, &x);
        }
        Ok(x)
    }

    fn fed_back(&self) -> Result<(Tensor, Tensor)> {
        let state = self.cache_state()?;
        Ok((state.tail_tokens.copy()?, state.tail_position.copy()?))
    }

    fn cold_bytes(&self, unit: DecoderUnit) -> Result<Option<u64>> {
        LlamaFamily::cold_bytes(self, unit)
    }

    fn rotating<'a>(
        &'a self,
        phase: Phase,
        unit: &'a CapturedDecoderUnit,
        copies: usize,
    ) -> Result<Box<dyn Fn() -> Result<Tensor> + 'a>> {
        LlamaFamily::rotating(self, phase, unit, copies)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use crate::config::{Implementation, Precision};
    use crate::model::decoder::llama::config::OWN_ARCHITECTURES;
    use crate::model::decoder::DecoderSpec;
    use crate::model::workload::{greedy, DecoderLayers, DecoderUnit, Generate, Phase};

    fn load(arch: &str) -> Box<dyn Generate> {
        let spec = DecoderSpec::resolve(
            arch,
            Some(&format!("{arch}-tiny")),
            None,
            5,
            Implementation::Own,
        )
        .unwrap();
        let mut m = spec.load(Precision::Fp32, &Device::Cpu).unwrap();
        m.reserve(2, 16).unwrap();
        m
    }

    fn diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
        d.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    fn values(t: &Tensor) -> Vec<u32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The profiler's slots hold what the whole phase fed the next step.
    fn expect_fed(layers: &dyn DecoderLayers, fed: &(Tensor, usize), what: &str) {
        let (tokens, position) = layers.fed_back().unwrap();
        assert_eq!(
            values(&tokens),
            values(&fed.0),
            "{what} did not feed the argmax back"
        );
        assert_eq!(
            values(&position),
            [fed.1 as u32],
            "{what} did not advance the position as the step does"
        );
    }

    /// What the per-layer profiler runs is what the model runs: the units chained reproduce the
    /// whole phase, its logits and what it feeds the next step (the argmax copied back, the
    /// position advanced: a unit that left either out of the step fails here), the longest
    /// prefix is the whole phase, and neither moves the position (a decode unit called twice,
    /// or after the head, gives the same output), for every architecture.
    #[test]
    fn units_and_prefixes_compute_the_whole_phase_and_never_move() {
        let prompt =
            Tensor::from_vec((1u32..=10).collect::<Vec<_>>(), (2, 5), &Device::Cpu).unwrap();
        for arch in OWN_ARCHITECTURES {
            // The reference: a prefill, 4 greedy steps, then the step the profiler captures.
            let mut reference = load(arch);
            let prefill_logits = reference.prefill(&prompt).unwrap();
            let prefill_fed = (greedy(&prefill_logits).unwrap(), reference.position());
            let mut tokens = prefill_fed.0.clone();
            for _ in 0..4 {
                tokens = greedy(&reference.step(&tokens).unwrap()).unwrap();
            }
            let step_logits = reference.step(&tokens).unwrap();
            let step_fed = (greedy(&step_logits).unwrap(), reference.position());
            assert_eq!((prefill_fed.1, step_fed.1), (5, 10));

            let mut model = load(arch);
            let layers = model.layers().expect("the own decoder has layers");
            let total = layers.top_level().len();
            assert_eq!(total, 4, "{arch}: embeddings, 2 blocks, head");
            for (phase, whole, fed) in [
                (Phase::Prefill, &prefill_logits, &prefill_fed),
                (Phase::Decode, &step_logits, &step_fed),
            ] {
                let captured = layers.capture(phase, &prompt, 4).unwrap();
                let (tokens, position) = layers.fed_back().unwrap();
                assert!(
                    values(&tokens)
                        .iter()
                        .chain(&values(&position))
                        .all(|v| *v == u32::MAX),
                    "{arch} {phase:?}: a capture leaves the slots unwritten"
                );
                let prefix = layers.run_prefix(phase, &captured.ids, total).unwrap();
                assert!(
                    diff(&prefix, whole) < 1e-5,
                    "{arch} {phase:?}: the longest prefix is not the whole phase"
                );
                expect_fed(
                    &*layers,
                    fed,
                    &format!("{arch} {phase:?}: the longest prefix"),
                );
                let again = layers.run_prefix(phase, &captured.ids, total).unwrap();
                assert_eq!(
                    diff(&prefix, &again),
                    0.0,
                    "{arch} {phase:?}: a prefix moved"
                );
                // A fresh capture, so the units' tail is seen writing on its own.
                let captured = layers.capture(phase, &prompt, 4).unwrap();
                // Each unit's output is the next unit's captured input.
                let units = &captured.units;
                let input_of = |u: DecoderUnit| &units.iter().find(|c| c.unit == u).unwrap().input;
                let mut first_block = None;
                for c in units {
                    let out = layers.run_unit(phase, c).unwrap();
                    let next = match c.unit {
                        DecoderUnit::Embeddings => Some(input_of(DecoderUnit::Block(0))),
                        DecoderUnit::Attention(i) => Some(input_of(DecoderUnit::Mlp(i))),
                        DecoderUnit::Block(0) | DecoderUnit::Mlp(0) => {
                            Some(input_of(DecoderUnit::Block(1)))
                        }
                        DecoderUnit::Block(_) | DecoderUnit::Mlp(_) => {
                            Some(input_of(DecoderUnit::Head))
                        }
                        DecoderUnit::Head => {
                            assert!(diff(&out, whole) < 1e-5, "{arch} {phase:?}: head");
                            expect_fed(&*layers, fed, &format!("{arch} {phase:?}: the head"));
                            None
                        }
                    };
                    if c.unit == DecoderUnit::Block(0) {
                        first_block = Some((c, out.clone()));
                    }
                    if let Some(next) = next {
                        assert!(
                            diff(&out, next) < 1e-5,
                            "{arch} {phase:?}: {} is not what the next unit received",
                            c.unit.name()
                        );
                    }
                    let twice = layers.run_unit(phase, c).unwrap();
                    assert_eq!(
                        diff(&out, &twice),
                        0.0,
                        "{arch} {phase:?}: {} moved",
                        c.unit.name()
                    );
                }
                // The head ran last: a block after it still computes the captured step.
                let (block, before) = first_block.unwrap();
                let after = layers.run_unit(phase, block).unwrap();
                assert_eq!(
                    diff(&before, &after),
                    0.0,
                    "{arch} {phase:?}: the head moved"
                );
            }
        }
    }
}
