//! A classifier cell (an encoder), measured: the model loaded (with its probe head, trained once
//! on fp32 features), then the timed protocol: for a `model` cell the whole forward pass per
//! loop, for a `layers` cell each layer and component alone on its captured input. After the
//! windows: the outputs checked for NaN/Inf, fidelity against fp32, accuracy on the probe's test
//! split.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};

use super::cell::{ensure_finite, Store};
use super::Prepared;
use crate::config::{Precision, Scope};
use crate::data::BatchCycle;
use crate::fidelity;
use crate::matrix::Cell;
use crate::measure::{self, RealClock, SamplerOverhead};
use crate::model::{self, Encoder};
use crate::ops::graph::GraphMode;
use crate::probe;
use crate::results::CellRecord;
use crate::sensor::{self, EnergySensor};

#[allow(clippy::too_many_arguments)]
pub(super) fn measure(
    cell: &Cell,
    prepared: &Prepared,
    store: &mut Store,
    device: &Device,
    sensor: &mut dyn EnergySensor,
    check_overhead: bool,
    on_progress: &mut dyn FnMut(&str),
    record: &mut CellRecord,
    earlier: &[CellRecord],
) -> Result<(Vec<sensor::PowerSample>, Option<SamplerOverhead>)> {
    let spec = &prepared.specs[&cell.model];
    let set = &prepared.tokenized[&cell.seq_len];
    let probe = match &spec.probe {
        Some(settings) => {
            let key = (cell.model.clone(), cell.seq_len);
            if !store.probes.contains_key(&key) {
                crate::interrupt::check()?;
                on_progress("training the linear probe on fp32 features");
                let features = store.models.load(spec, Precision::Fp32, device)?;
                let head = probe::train_head(&features, set, settings, spec.seed, device)
                    .with_context(|| {
                        format!(
                            "{}: training the probe head",
                            crate::config::toml_key(&["models", &cell.model])
                        )
                    })?;
                store.probes.insert(key.clone(), head);
            }
            Some(store.probes[&key].clone())
        }
        None => None,
    };
    crate::interrupt::check()?;
    // Which linear layers this cell quantizes (top:K ranks them by an earlier layers cell).
    let selection = super::quantize::resolve(cell, &prepared.plan, earlier, spec)?;
    on_progress("loading model");
    let mut model = store.models.load_selected(
        spec,
        cell.precision,
        device,
        probe.as_ref().map(|h| h as &dyn model::HeadTensors),
        selection.sites.as_deref(),
    )?;
    model.set_fused_quantization(prepared.exp.config.device.fuse_quantization);
    model.set_fp8_fast_accumulation(prepared.exp.config.device.fp8_fast_accumulation);
    model.set_gemm_library(prepared.exp.config.device.gemm_library);
    // Before anything is launched or described: the kernels the GEMMs pick and the record names.
    crate::ops::cutlass::set_gelu_epilogue(prepared.exp.config.device.gelu_epilogue);
    crate::ops::attention::set_padding(prepared.exp.config.device.attention_padding);
    crate::ops::cutlass::tactics::set_tactics(prepared.exp.config.device.gemm_tactics);
    crate::ops::fused::use_pair_norms(prepared.exp.config.device.pair_norms());
    model.set_fused_embeddings(prepared.exp.config.device.fused_embeddings())?;
    let dev = &prepared.exp.config.device;
    let (ffn, attention) = (
        !dev.ffn_activation_scales.is_dynamic(),
        !dev.attention_activation_scales.is_dynamic(),
    );
    if (ffn || attention) && cell.precision.eight_bit().is_some() {
        crate::interrupt::check()?;
        on_progress("calibrating the static activation steps through the fp32 model");
        let reference = store.models.load(spec, Precision::Fp32, device)?;
        super::calibrate::static_steps(&mut model, &reference, set, device, (ffn, attention))
            .with_context(|| format!("{}: calibrating static activation scales", cell.id))?;
    }
    record.quantization = selection.record(&model);
    record.precision_executed = Some(model.executed_precision());
    record.implementation = Some(model.implementation());
    record.truncated_examples = Some(set.truncated);
    let clock = RealClock::default();
    let protocol = &prepared.exp.config.protocol;
    let mode = if prepared.exp.config.device.cuda_graphs {
        GraphMode::Auto
    } else {
        GraphMode::Off
    };
    if cell.scope == Scope::Layers {
        // Every loop of a layers cell reuses one captured batch.
        let mut batches = BatchCycle::with_at_most(set, cell.batch_size, device, 1)?;
        let (ids, mask) = batches.next_batch().clone();
        record.dataset = Some(batches.usage());
        let settings = super::layers::LayerSettings {
            protocol,
            method: cell.layer_method,
            graphs: mode,
        };
        let trace = super::layers::measure_layers(
            &model,
            &ids,
            &mask,
            &settings,
            sensor,
            &clock,
            on_progress,
            record,
        )?;
        record_tactics(record);
        return Ok((trace, None));
    }
    let mut batches = BatchCycle::new(set, cell.batch_size, device)?;
    if device.is_cuda() && mode == GraphMode::Auto {
        crate::interrupt::check()?;
        on_progress("capturing the forward as a CUDA graph");
    }
    let (first_ids, first_mask) = batches.first().clone();
    let mut forward = model.cell_forward(&first_ids, &first_mask, mode);
    record
        .implementation
        .get_or_insert_with(Default::default)
        .insert("execution".into(), forward.execution().describe());
    record_tactics(record);
    let mut last = None;
    let (outcome, overhead) = {
        let mut run_loop = || -> Result<()> {
            let (ids, mask) = batches.next_batch();
            // With a graph, the graph's output buffer: checked after the last loop, before any
            // other replay overwrites it.
            let logits = forward.forward(&[ids.clone(), mask.clone()])?;
            device.synchronize()?;
            last = Some((logits, ids.clone(), mask.clone()));
            Ok(())
        };
        let outcome = measure::run_protocol(protocol, sensor, &clock, on_progress, &mut run_loop)?;
        // Once per sweep, on the first measured cell: what the power sampler costs.
        let overhead = if check_overhead {
            on_progress("sampler overhead check");
            measure::measure_sampler_overhead(&cell.id, protocol, sensor, &clock, &mut run_loop)?
        } else {
            None
        };
        (outcome, overhead)
    };
    record.dataset = Some(batches.usage());
    if let Some((logits, ids, mask)) = last {
        // The last measured batch again, checking the encoder's output too (a ReLU pooler would
        // hide NaN in finite logits), and on failure re-run layer by layer to say where.
        let checked = ensure_finite(&logits, "the logits")
            .and_then(|_| Ok(model.forward_checked(&ids, &mask)?));
        if let Err(e) = checked {
            let place = locate_non_finite(&model, &ids, &mask).ok().flatten();
            anyhow::bail!(
                "the model in {} produced NaN or infinite values ({e}){}",
                cell.precision.name(),
                place.map(|p| format!("; {p}")).unwrap_or_default()
            );
        }
    }
    if cell.precision != Precision::Fp32 {
        crate::interrupt::check()?;
        on_progress("fidelity against fp32");
        let n = fidelity::FIDELITY_EXAMPLES;
        let candidate = fidelity::logits(&model, set, n, cell.batch_size, device)?;
        let key = (cell.model.clone(), cell.seq_len);
        if !store.models.references.contains_key(&key) {
            let reference_model = match &probe {
                Some(head) => store
                    .models
                    .load_with_probe(spec, Precision::Fp32, device, head)?,
                None => store.models.load(spec, Precision::Fp32, device)?,
            };
            let logits = fidelity::logits(&reference_model, set, n, cell.batch_size, device)?;
            store.models.references.insert(key.clone(), logits);
        }
        record.fidelity = Some(fidelity::compare(
            "fp32",
            &store.models.references[&key],
            &candidate,
        ));
    }
    if let Some(head) = &probe {
        crate::interrupt::check()?;
        on_progress("accuracy on the probe's test split");
        record.accuracy = Some(probe::accuracy(&model, set, head, cell.batch_size, device)?);
    }
    record.warmup = Some(outcome.warmup);
    record.windows = outcome.windows;
    Ok((outcome.trace, overhead))
}

/// The first layer (and inside a block, the first component) whose output holds NaN or infinite
/// values for this batch, with the largest finite magnitudes of its input and output: values near
/// 65504 point to an fp16 overflow.
fn locate_non_finite(model: &Encoder, ids: &Tensor, mask: &Tensor) -> Result<Option<String>> {
    let units = model.capture_units(ids, mask)?;
    let magnitude = |t: &Tensor| -> Result<(usize, f32)> {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        let largest = v
            .iter()
            .filter(|x| x.is_finite())
            .fold(0f32, |a, x| a.max(x.abs()));
        Ok((bad, largest))
    };
    let mut culprit = None;
    for (i, u) in units.iter().enumerate() {
        let (bad, largest) = magnitude(&model.forward_unit(u)?)?;
        if bad == 0 {
            continue;
        }
        let is_block = matches!(u.unit, model::Unit::Layer(model::Layer::Block(_)));
        if culprit.is_none() || !is_block {
            culprit = Some((i, bad, largest));
        }
        // A block: look on among its components for the first one that breaks.
        if !is_block {
            break;
        }
    }
    let Some((i, bad, out_largest)) = culprit else {
        return Ok(None);
    };
    let u = &units[i];
    let (_, in_largest) = magnitude(&u.input.values)?;
    Ok(Some(format!(
        "first non-finite output: {} ({bad} values; largest finite |value| of its input {in_largest:.4e}, of its output {out_largest:.4e})",
        u.unit.name()
    )))
}

/// The shapes the captures' warm-ups timed and what each runs (`device.gemm_tactics = "timed"`).
fn record_tactics(record: &mut CellRecord) {
    use crate::ops::cutlass::tactics;
    if !tactics::tactics().is_rule() {
        record
            .implementation
            .get_or_insert_with(Default::default)
            .insert("gemm_tactics".into(), tactics::describe(&tactics::picks()));
    }
}
