//! `device.attention_activation_scales = "static"`: the per-column steps of attention-out's input
//! (the attention's context), calibrated once at load through the fp32 reference model on the
//! dataset's first sentences, as calibrate.rs does for FFN-out's, and folded into attention-out's
//! weights (W'[n, c] = W[n, c] x step[c], quantized per output channel). The attention kernel then
//! writes the codes itself (src/ops/attention_codes.rs): no quantization pass after it.

use candle_core::{DType, Result, Tensor};

use super::calibrate::{
    count_saturated, fold_column_absmax, saturation_limit, sentences, seq_len, MARGIN,
};
use super::linear::Linear;
use super::units::Hidden;
use super::{Encoder, Layer};
use crate::config::EightBit;
use crate::model::parts::w8a8::{steps_from_absmax, EightBitLinear};

/// What the attention's calibration did, for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionCalibration {
    pub format: EightBit,
    pub blocks: usize,
    pub sentences: usize,
    pub held_out: usize,
    pub seq_len: usize,
    pub margin: f64,
    /// Context values on the held-out sentences past the largest code (they saturate), and all.
    pub saturated: u64,
    pub values: u64,
}

impl AttentionCalibration {
    pub fn describe(&self) -> String {
        let fraction = if self.values > 0 {
            format!("{:.2e}", self.saturated as f64 / self.values as f64)
        } else {
            "n/a (no held-out sentences)".to_string()
        };
        format!(
            "attention-out's input in {} with static per-column steps (device.attention_activation_scales = \"static\") in {} blocks: step = {} x max |context| of the column / {} over the dataset's first {} sentences at seq {} (padding included) through the fp32 model, folded into attention-out's weights (W'[n, c] = W[n, c] x step[c], quantized per output channel), the codes written by the attention kernel (row scales 1, NaN where the row's context has one); on the next {} sentences (held out) {} of {} values ({fraction}) saturate",
            self.format.name(),
            self.blocks,
            self.margin,
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
    /// Runs `f` on every block's attention context ((rows, width), f32) over `batches`, through
    /// this model (the float reference).
    fn each_context(
        &self,
        batches: &[(Tensor, Tensor)],
        mut f: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        for (ids, mask) in batches {
            let additive = self.additive_mask(mask)?;
            let mut x =
                self.forward_layer(Layer::Embeddings, &Hidden::from(ids.clone()), &additive)?;
            for (i, block) in self.blocks.iter().enumerate() {
                let c = block.context(&x, &additive)?;
                let n = c.dim(candle_core::D::Minus1)?;
                f(i, &c.to_dtype(DType::F32)?.reshape(((), n))?)?;
                x = block.forward(&x, &additive)?;
            }
        }
        Ok(())
    }

    /// Static steps for every W8A8 attention-out of this model whose block has the fused Q/K/V
    /// projection: calibrated on `calibration` through `reference` (the fp32 model of the same
    /// weights), attention-out rebuilt from the reference's f32 weight with the steps folded in,
    /// the block set to write codes; saturation counted on `held_out`. `None` when no
    /// attention-out is W8A8.
    pub fn calibrate_static_attention(
        &mut self,
        reference: &Encoder,
        calibration: &[(Tensor, Tensor)],
        held_out: &[(Tensor, Tensor)],
    ) -> Result<Option<AttentionCalibration>> {
        let formats: Vec<Option<EightBit>> = self
            .blocks
            .iter()
            .map(|b| match &b.out_lin {
                Linear::EightBit(o) if b.qkv.is_some() => Some(o.format()),
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
        reference.each_context(calibration, |i, c| fold_column_absmax(&mut maxima[i], c))?;
        let mut steps = vec![None; self.blocks.len()];
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let (Some(_), Some(absmax)) = (formats[i], &maxima[i]) else {
                continue;
            };
            let Linear::Float(w) = &reference.blocks[i].out_lin else {
                candle_core::bail!(
                    "block {i}: the reference's attention-out is not a float linear"
                );
            };
            let Linear::EightBit(o) = &block.out_lin else {
                unreachable!("formats[i] is set for W8A8 attention-outs only");
            };
            if !crate::ops::attention::one_kernel_on(&self.device, o.float_dtype(), block.head_dim)
            {
                candle_core::bail!(
                    "block {i}: static attention scales: the attention kernel that writes the codes runs on CUDA in f16/bf16 with heads of 32 or 64, not {:?} heads of {} on {:?}",
                    o.float_dtype(),
                    block.head_dim,
                    self.device.location()
                );
            }
            let step = steps_from_absmax(absmax, format, MARGIN)?;
            let mut folded =
                EightBitLinear::with_folded_steps(w.weight(), o.bias().clone(), &step, format)?;
            o.carry_settings_to(&mut folded);
            block.out_lin = Linear::EightBit(folded);
            block.attention_codes = Some(
                step.recip()?
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_device(&self.device)?,
            );
            steps[i] = Some(step);
        }
        let limit = saturation_limit(format);
        let (mut saturated, mut values) = (0u64, 0u64);
        reference.each_context(held_out, |i, c| {
            if let Some(step) = &steps[i] {
                saturated += count_saturated(c, step, limit)?;
                values += c.elem_count() as u64;
            }
            Ok(())
        })?;
        let calibration = AttentionCalibration {
            format,
            blocks: steps.iter().flatten().count(),
            sentences: sentences(calibration),
            held_out: sentences(held_out),
            seq_len: seq_len(calibration),
            margin: MARGIN,
            saturated,
            values,
        };
        self.attention_calibration = Some(calibration.clone());
        Ok(Some(calibration))
    }

    /// The record's keys with static attention steps: `attention_activation_scales` (the
    /// calibration), and `activation_quantization` / `attention` naming what writes attention-out's
    /// input.
    pub(super) fn amend_for_static_attention(
        &self,
        implementation: &mut std::collections::BTreeMap<String, String>,
    ) {
        let Some(c) = &self.attention_calibration else {
            return;
        };
        let blocks = self
            .blocks
            .iter()
            .filter(|b| b.attention_codes.is_some())
            .count();
        implementation.insert("attention_activation_scales".into(), c.describe());
        let fmt = c.format.name();
        let what = format!("attention-out's input: static per-column steps, {fmt} codes written by the attention kernel ({blocks} of {} blocks; attention_activation_scales)", self.blocks.len());
        if let Some(q) = implementation.get_mut("activation_quantization") {
            *q = q.replace("attention-out's input and any other", "any other");
            q.push_str(&format!("; {what}"));
        } else {
            implementation.insert("activation_quantization".into(), what);
        }
        if let Some(a) = implementation.get_mut("attention") {
            a.push_str(&format!("; in {blocks} of {} blocks the context is written as attention-out's {fmt} codes (rounded to the float dtype, x 1 / step of its column, rounded; row scales 1, NaN where the row's context has one: src/ops/attention_codes.rs) instead of in the float dtype", self.blocks.len()));
        }
    }
}
