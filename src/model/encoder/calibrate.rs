//! `device.ffn_activation_scales = "static"`: the steps of FFN-out's input (per column for int8,
//! one per tensor for E4M3: `ffn_steps` says why), calibrated
//! once at load through the float reference model (the fp32 one the fidelity section compares
//! against) on the dataset's first sentences, then checked on the next ones (how many values
//! would saturate). See src/model/parts/w8a8/static_codes.rs for what the steps do.

use candle_core::{DType, Result, Tensor};

use super::linear::Linear;
use super::units::Hidden;
use super::{Component, Encoder, Layer};
use crate::config::EightBit;
use crate::model::parts::w8a8::{ffn_step_sharing, ffn_steps, EightBitLinear};

/// Sentences the steps are calibrated on, and sentences (the next ones) their saturation is
/// measured on; fewer when the dataset has fewer (half each).
pub const CALIBRATION_SENTENCES: usize = 256;
/// Steps are this many times the largest |value| seen (1: the calibration set's maximum maps to
/// the largest code).
pub const MARGIN: f64 = 1.0;

/// What the calibration did, for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub format: EightBit,
    pub ffns: usize,
    pub sentences: usize,
    pub held_out: usize,
    pub seq_len: usize,
    pub margin: f64,
    /// Values of FFN-in's GELU output on the held-out sentences past the largest code (they
    /// saturate), and all of them, over every calibrated FFN.
    pub saturated: u64,
    pub values: u64,
}

impl Calibration {
    pub fn describe(&self) -> String {
        let fraction = if self.values > 0 {
            format!("{:.2e}", self.saturated as f64 / self.values as f64)
        } else {
            "n/a (no held-out sentences)".to_string()
        };
        format!(
            "FFN-out's input in {} with {} (device.ffn_activation_scales = \"static\") in {} of the FFNs: step = {} x max |GELU output| of the {} / {} over the dataset's first {} sentences at seq {} (padding included, as the kernels see it) through the fp32 model, folded into FFN-out's weights (W'[n, c] = W[n, c] x step[c], quantized per output channel); on the next {} sentences (held out) {} of {} values ({fraction}) saturate",
            self.format.name(),
            ffn_step_sharing(self.format),
            self.ffns,
            self.margin,
            match self.format {
                EightBit::Int8 => "column",
                EightBit::Fp8E4M3 => "tensor",
            },
            self.format.max_value(),
            self.sentences,
            self.seq_len,
            self.held_out,
            self.saturated,
            self.values,
        )
    }
}

impl Encoder {
    /// Runs `f` on every block's FFN-in GELU output ((rows, n), f32) over `batches`, through this
    /// model (the float reference).
    fn each_ffn_gelu(
        &self,
        batches: &[(Tensor, Tensor)],
        mut f: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        for (ids, mask) in batches {
            let additive = self.additive_mask(mask)?;
            let mut x =
                self.forward_layer(Layer::Embeddings, &Hidden::from(ids.clone()), &additive)?;
            for (i, block) in self.blocks.iter().enumerate() {
                let attended = block.component(Component::Attention, &x, &additive)?;
                let h = block.component(Component::SaLayerNorm, &attended, &x.values)?;
                let y = block.lin1.forward_gelu(&h.values, block.gemm_library)?;
                let n = y.dim(candle_core::D::Minus1)?;
                f(i, &y.to_dtype(DType::F32)?.reshape(((), n))?)?;
                let ffn = block.component(Component::Ffn, &h, &h.values)?;
                x = block.component(Component::OutputLayerNorm, &ffn, &h.values)?;
            }
        }
        Ok(())
    }

    /// Static steps for every W8A8 FFN of this model: calibrated on `calibration` through
    /// `reference` (the fp32 model of the same weights), FFN-out rebuilt from the reference's f32
    /// weight with the steps folded in, FFN-in set to write codes; saturation counted on
    /// `held_out`. `None` when no FFN is W8A8.
    pub fn calibrate_static_ffn(
        &mut self,
        reference: &Encoder,
        calibration: &[(Tensor, Tensor)],
        held_out: &[(Tensor, Tensor)],
    ) -> Result<Option<Calibration>> {
        let formats: Vec<Option<EightBit>> = self
            .blocks
            .iter()
            .map(|b| match (&b.lin1, &b.lin2) {
                (Linear::EightBit(a), Linear::EightBit(c)) if a.format() == c.format() => {
                    Some(a.format())
                }
                _ => None,
            })
            .collect();
        let Some(format) = formats.iter().flatten().next().copied() else {
            return Ok(None);
        };
        if reference.blocks.len() != self.blocks.len() {
            candle_core::bail!("the reference model has other blocks");
        }
        let mut maxima: Vec<Option<Tensor>> = vec![None; self.blocks.len()];
        reference.each_ffn_gelu(calibration, |i, y| fold_column_absmax(&mut maxima[i], y))?;
        let mut steps = vec![None; self.blocks.len()];
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let (Some(_), Some(absmax)) = (formats[i], &maxima[i]) else {
                continue;
            };
            let Linear::Float(w2) = &reference.blocks[i].lin2 else {
                candle_core::bail!("block {i}: the reference's FFN-out is not a float linear");
            };
            let step = ffn_steps(absmax, format, MARGIN)?;
            let (Linear::EightBit(a), Linear::EightBit(b)) = (&mut block.lin1, &block.lin2) else {
                unreachable!("formats[i] is set for W8A8 FFNs only");
            };
            let mut folded =
                EightBitLinear::with_folded_steps(w2.weight(), b.bias().clone(), &step, format)?;
            b.carry_settings_to(&mut folded);
            a.set_static_output(&step)?;
            block.lin2 = Linear::EightBit(folded);
            steps[i] = Some(step);
        }
        let limit = saturation_limit(format);
        let (mut saturated, mut values) = (0u64, 0u64);
        reference.each_ffn_gelu(held_out, |i, y| {
            if let Some(step) = &steps[i] {
                saturated += count_saturated(y, step, limit)?;
                values += y.elem_count() as u64;
            }
            Ok(())
        })?;
        let calibration = Calibration {
            format,
            ffns: steps.iter().flatten().count(),
            sentences: sentences(calibration),
            held_out: sentences(held_out),
            seq_len: seq_len(calibration),
            margin: MARGIN,
            saturated,
            values,
        };
        self.static_calibration = Some(calibration.clone());
        Ok(Some(calibration))
    }

    /// The record's keys as they are with static steps: `ffn_activation_scales` (the
    /// calibration), and `activation_quantization` / `activation` naming what writes FFN-out's
    /// input.
    pub(super) fn amend_for_static_steps(
        &self,
        implementation: &mut std::collections::BTreeMap<String, String>,
    ) {
        let Some(c) = &self.static_calibration else {
            return;
        };
        let on_tensor_cores = self.blocks.iter().any(|b| {
            matches!((&b.lin1, &b.lin2), (Linear::EightBit(a), Linear::EightBit(n))
                if a.static_steps().is_some() && a.static_codes_kernel().is_ok() && a.gelu_packs_for(n))
        });
        let writer = if on_tensor_cores {
            "FFN-in's CUTLASS epilogue (dequantization, bias, erf GELU, x 1 / step per column, rounded: no row pass, never stored in the float dtype)"
        } else {
            "the f32 numerics reference (static_ffn_reference)"
        };
        implementation.insert("ffn_activation_scales".into(), c.describe());
        let fmt = c.format.name();
        let head = format!(
            "FFN-out's input: {} ({} of {} FFNs; ffn_activation_scales), {fmt} codes written by {writer}",
            ffn_step_sharing(c.format),
            self.static_ffns(),
            self.blocks.len()
        );
        if let Some(q) = implementation.get_mut("activation_quantization") {
            // The dynamic text's first clause is FFN-out's input; the rest (norms, passes) holds.
            let rest = q
                .split_once("; ")
                .map(|(_, r)| r.to_string())
                .unwrap_or_default();
            *q = format!("{head}; every other input per token, dynamic: {rest}");
        } else {
            implementation.insert("activation_quantization".into(), head);
        }
        if on_tensor_cores {
            let erf = self
                .blocks
                .iter()
                .find_map(|b| match &b.lin1 {
                    Linear::EightBit(a) => a.codes_kind().ok(),
                    _ => None,
                })
                .map_or("none", crate::ops::cutlass::gelu_erf);
            implementation.insert("activation".into(), format!("erf GELU in FFN-in's CUTLASS epilogue (0.5 x (1 + erf(x / sqrt 2)) in f32, erf by a {erf}), then x 1 / step[column] and rounded to {fmt} in the same epilogue"));
        }
    }

    /// Fails, naming the reason, where a calibrated FFN on tensor cores has no kernel to write
    /// its codes (the CPU runs the f32 reference).
    pub fn static_ffns_runnable(&self) -> Result<()> {
        for (i, b) in self.blocks.iter().enumerate() {
            if let (Linear::EightBit(a), Linear::EightBit(n)) = (&b.lin1, &b.lin2) {
                if a.static_steps().is_none() || !a.on_tensor_cores() {
                    continue;
                }
                if let Err(why) = a.static_codes_kernel() {
                    candle_core::bail!("block {i}: static activation scales: {why}");
                }
                if !a.gelu_packs_for(n) {
                    candle_core::bail!("block {i}: static activation scales: FFN-out cannot read FFN-in's codes (formats or widths differ, or padded outputs)");
                }
            }
        }
        Ok(())
    }

    /// The FFNs whose FFN-in writes FFN-out's codes with static steps.
    pub fn static_ffns(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| matches!(&b.lin1, Linear::EightBit(a) if a.static_steps().is_some()))
            .count()
    }
}

/// Folds `x`'s per-column max |x| ((rows, n) -> (1, n)) into `max`: a calibration's running maxima.
pub(super) fn fold_column_absmax(max: &mut Option<Tensor>, x: &Tensor) -> Result<()> {
    let col = x.abs()?.max_keepdim(0)?;
    *max = Some(match max.take() {
        Some(m) => m.maximum(&col)?,
        None => col,
    });
    Ok(())
}

/// Past the largest code by more than half its step (int8 1, E4M3 32 at 448) a value rounds to
/// it with a larger error than any other: saturated. The limit in units of the step.
pub(super) fn saturation_limit(format: EightBit) -> f64 {
    let top_half_step = match format {
        EightBit::Int8 => 0.5,
        EightBit::Fp8E4M3 => 16.0,
    };
    f64::from(format.max_value()) + top_half_step
}

/// How many of `x`'s values, divided by their column's `step`, lie past `limit`.
pub(super) fn count_saturated(x: &Tensor, step: &Tensor, limit: f64) -> Result<u64> {
    Ok(x.abs()?
        .broadcast_div(step)?
        .gt(limit)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as u64)
}

/// Sentences in a calibration's batches.
pub(super) fn sentences(batches: &[(Tensor, Tensor)]) -> usize {
    batches.iter().map(|(ids, _)| ids.dim(0).unwrap_or(0)).sum()
}

/// The calibration batches' sequence length (0 without batches).
pub(super) fn seq_len(batches: &[(Tensor, Tensor)]) -> usize {
    batches
        .first()
        .map(|(ids, _)| ids.dim(1).unwrap_or(0))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_shared_calibration_pieces_fold_maxima_and_count_what_saturates() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1f32, -4.0], [-2.0, 3.0]], &dev).unwrap();
        let b = Tensor::new(&[[-5f32, 1.0]], &dev).unwrap();
        let mut max = None;
        fold_column_absmax(&mut max, &a).unwrap();
        fold_column_absmax(&mut max, &b).unwrap();
        assert_eq!(max.unwrap().to_vec2::<f32>().unwrap(), vec![vec![5.0, 4.0]]);
        assert_eq!(saturation_limit(EightBit::Int8), 127.5);
        assert_eq!(saturation_limit(EightBit::Fp8E4M3), 464.0);
        // Steps of 0.01 and 0.1 a column: 1.28 and -13.0 land past 127.5 steps, 12.7 and -1.0 do not.
        let x = Tensor::new(&[[1.28f32, 12.7], [-1.0, -13.0]], &dev).unwrap();
        let step = Tensor::new(&[[0.01f32, 0.1]], &dev).unwrap();
        assert_eq!(count_saturated(&x, &step, 127.5).unwrap(), 2);
        let ids = Tensor::zeros((3, 16), DType::U32, &dev).unwrap();
        let batches = vec![(ids.clone(), ids.clone()), (ids.clone(), ids)];
        assert_eq!((sentences(&batches), seq_len(&batches)), (6, 16));
        assert_eq!((sentences(&[]), seq_len(&[])), (0, 0));
    }
}
