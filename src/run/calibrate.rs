//! `device.ffn_activation_scales = "static"` and `attention_activation_scales = "static"` for one
//! cell: the calibration and held-out batches from the cell's tokenized dataset
//! (model::encoder::calibrate and calibrate_attention do the rest), then a check that every
//! calibrated layer has its kernel on this device, before anything is measured.

use anyhow::Result;
use candle_core::{Device, Tensor};

use crate::data::TokenizedSet;
use crate::model::encoder::CALIBRATION_SENTENCES;
use crate::model::Encoder;

/// Sentences per calibration forward (the fp32 model's activations for 64 x 128 tokens: ~100 MB
/// per FFN-in output).
const BATCH: usize = 64;

/// `(ffn, attention)`: which steps to calibrate (`ffn_activation_scales`,
/// `attention_activation_scales`), on the same batches.
pub(super) fn static_steps(
    model: &mut Encoder,
    reference: &Encoder,
    set: &TokenizedSet,
    device: &Device,
    (ffn, attention): (bool, bool),
) -> Result<()> {
    let n = set.len();
    let calibrate = CALIBRATION_SENTENCES.min(n.div_ceil(2));
    let held_out = CALIBRATION_SENTENCES.min(n - calibrate);
    let batches = |from: usize, to: usize| -> Result<Vec<(Tensor, Tensor)>> {
        (from..to)
            .step_by(BATCH)
            .map(|s| set.batch(s..(s + BATCH).min(to), device))
            .collect()
    };
    let calibration = batches(0, calibrate)?;
    let held = batches(calibrate, calibrate + held_out)?;
    if ffn {
        model.calibrate_static_ffn(reference, &calibration, &held)?;
        model.static_ffns_runnable()?;
    }
    if attention {
        model.calibrate_static_attention(reference, &calibration, &held)?;
    }
    Ok(())
}
