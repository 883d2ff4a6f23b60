//! A decoder cell (the generate workload), measured: `batch_size` prompts of `prompt_len` tokens,
//! then `new_tokens` greedy tokens each (EOS ignored, so every request has the same length).
//! Prefill and decode each go through the whole protocol (warm-up, windows, repeats), each in
//! its own synchronized, counter-aligned windows:
//!
//! - prefill: each loop runs the batch's prompts from position 0 to the first token's argmax
//!   (the own decoder: one fixed prefill, captured once as a CUDA graph where graphs are on;
//!   the crate's models: the cache emptied, then an eager prefill): ms per batch (time to first
//!   token), mJ per prompt token;
//! - decode: the prompts prefilled once outside the windows and the cache marked; each loop
//!   rewinds to the mark and runs `new_tokens` whole decode steps, each step's argmax on the
//!   device feeding the next: ms per step (time per output token), mJ per generated token.
//!
//! After the windows, outside them: the logits checked for NaN/Inf, fidelity against the
//! reference precision (teacher-forced on its greedy tokens), perplexity where the weights are
//! real.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

use super::cell::{ensure_finite, Store};
use super::Prepared;
use crate::config::Precision;
use crate::data::PromptSet;
use crate::error::ConfigError;
use crate::fidelity::generate::{self as fidelity, ReferenceRun};
use crate::matrix::Cell;
use crate::measure::{self, ProtocolOutcome, RealClock, SamplerOverhead};
use crate::model::decoder::shapes::human_bytes;
use crate::model::decoder::DecoderSpec;
use crate::model::workload::{greedy, Generate};
use crate::ops::graph::{FixedWork, GraphMode};
use crate::results::{per_step, CellRecord, GenerateRecord, HostSteps};
use crate::sensor::{self, EnergySensor};

/// Prompts compared against the reference precision, and positions compared per prompt (fewer
/// when a cell generates fewer tokens).
pub const FIDELITY_PROMPTS: usize = 4;
pub const FIDELITY_STEPS: usize = 32;

/// Models above this many parameters are compared against bf16 rather than fp32 (an fp32 copy
/// of an 8 B model would not fit beside the candidate on most GPUs).
const FP32_REFERENCE_MAX_PARAMETERS: u64 = 3_000_000_000;

/// The precision a decoder's cells are compared against.
pub fn reference_precision(decoder: &DecoderSpec) -> Precision {
    if decoder.real_weights() || decoder.shapes.parameters() <= FP32_REFERENCE_MAX_PARAMETERS {
        Precision::Fp32
    } else {
        Precision::Bf16
    }
}

/// Reference runs a session computed, per (model, prompt_len, steps).
pub(super) type References = BTreeMap<(String, usize, usize), ReferenceRun>;

/// Decoder cells whose estimate (weights + KV caches + the prefill's transient) exceeds what the
/// device has: refused before anything is measured, with the figures.
pub(super) fn check_memory(prepared: &Prepared, cells: &[&Cell], device: &Device) -> Result<()> {
    let Some((free, what)) = crate::device::free_memory(device) else {
        return Ok(());
    };
    let mut problems = Vec::new();
    for c in cells {
        let (Some(prompt), Some(new)) = (c.prompt_len, c.new_tokens) else {
            continue;
        };
        let Some(d) = prepared.specs[&c.model].decoder() else {
            continue;
        };
        if d.refuses(c.precision).is_some() || d.refuses_batch(c.precision, c.batch_size).is_some()
        {
            continue;
        }
        let need = d.memory_bytes(c.precision, c.batch_size, prompt, new);
        if need > free {
            problems.push(format!(
                "cell {} ({} {} batch {} prompt {prompt} + {new} tokens) needs about {} (weights {}, KV cache {}), and there is {} {what}: exclude it or use a smaller batch_size or context",
                c.id,
                c.model,
                c.precision.name(),
                c.batch_size,
                human_bytes(need),
                human_bytes(d.weight_bytes(c.precision)),
                human_bytes(2 * d.shapes.kv_cache_bytes(c.batch_size, prompt + new, d.dtype(c.precision).size_in_bytes())),
                human_bytes(free),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems }.into())
    }
}

/// The first `batch` prompts as a (batch, prompt_len) tensor on the device.
pub(super) fn prompt_tensor(prompts: &[Vec<u32>], batch: usize, device: &Device) -> Result<Tensor> {
    let len = prompts[0].len();
    let ids: Vec<u32> = prompts[..batch].iter().flatten().copied().collect();
    Ok(Tensor::from_vec(ids, (batch, len), device)?)
}

/// A decoder cell made ready to measure, for either scope: its prompts on the device, its
/// memory estimate checked against what the device has free (before anything is loaded), and
/// the model loaded in the cell's precision.
pub(super) struct LoadedDecoder<'p> {
    pub decoder: &'p DecoderSpec,
    pub set: &'p PromptSet,
    pub prompt_len: usize,
    pub new_tokens: usize,
    pub prompt: Tensor,
    pub model: Box<dyn Generate>,
    /// Weights + KV cache + the prefill's largest transient, in bytes (what was checked).
    pub memory_estimate: u64,
}

pub(super) fn load<'p>(
    cell: &Cell,
    prepared: &'p Prepared,
    store: &mut Store,
    device: &Device,
    on_progress: &mut dyn FnMut(&str),
    record: &mut CellRecord,
) -> Result<LoadedDecoder<'p>> {
    let spec = &prepared.specs[&cell.model];
    let decoder = spec
        .decoder()
        .context("a generate cell's model is a decoder")?;
    let (prompt_len, new_tokens) = (
        cell.prompt_len.context("a decoder cell has a prompt_len")?,
        cell.new_tokens.context("a decoder cell has new_tokens")?,
    );
    let set = &prepared.prompts[&(cell.model.clone(), prompt_len)];
    let prompt = prompt_tensor(&set.prompts, cell.batch_size, device)?;
    let estimate = decoder.memory_bytes(cell.precision, cell.batch_size, prompt_len, new_tokens);
    if let Some((free, what)) = crate::device::free_memory(device) {
        anyhow::ensure!(
            estimate <= free,
            "needs about {} and there is {} {what}: use a smaller batch_size or context for this cell",
            human_bytes(estimate),
            human_bytes(free)
        );
    }
    crate::interrupt::check()?;
    on_progress("loading model");
    let model = store.models.load_decoder(spec, cell.precision, device)?;
    record.precision_executed = Some(model.executed_precision());
    Ok(LoadedDecoder {
        decoder,
        set,
        prompt_len,
        new_tokens,
        prompt,
        model,
        memory_estimate: estimate,
    })
}

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
) -> Result<(Vec<sensor::PowerSample>, Option<SamplerOverhead>)> {
    let spec = &prepared.specs[&cell.model];
    let LoadedDecoder {
        decoder,
        set,
        prompt_len,
        new_tokens,
        prompt,
        mut model,
        memory_estimate: estimate,
    } = load(cell, prepared, store, device, on_progress, record)?;
    let dtype_bytes = decoder.dtype(cell.precision).size_in_bytes();
    record.implementation = Some(model.implementation());
    // A static KV cache is allocated here, once, for the cell's batch and context.
    model.reserve(cell.batch_size, prompt_len + new_tokens)?;
    let clock = RealClock::default();
    let protocol = &prepared.exp.config.protocol;
    let graphs = if prepared.exp.config.device.cuda_graphs {
        GraphMode::Auto
    } else {
        GraphMode::Off
    };

    let (prefill, logits, prefill_execution) = prefill_protocol(
        model.as_mut(),
        &prompt,
        device,
        graphs,
        protocol,
        sensor,
        &clock,
        on_progress,
    )?;
    ensure_finite(&logits, "the prefill's logits")?;
    let first = greedy(&logits)?;
    if let Some(implementation) = record.implementation.as_mut() {
        implementation.insert("prefill_execution".into(), prefill_execution);
    }

    // Decode: the prefill once, outside every window; each loop rewinds to it.
    crate::interrupt::check()?;
    model.reset()?;
    model.prefill(&prompt)?;
    model.mark()?;
    device.synchronize()?;
    let mut progress = |phase: &str| on_progress(&format!("decode: {phase}"));
    let fixed_outcome = match model.fixed_step(&first, new_tokens)? {
        // The runner's own decoder: one fixed step, captured once as a CUDA graph and replayed
        // every step (eager where it cannot be, saying why); each loop restores the mark.
        Some(fixed) => {
            let work = FixedWork::stateful(
                device,
                graphs,
                "one decode step",
                &fixed.run,
                &*fixed.restore,
            );
            let mut last = None;
            let mut decode_loop = || -> Result<()> {
                (fixed.restore)()?;
                let mut logits = None;
                for _ in 0..new_tokens {
                    logits = Some(work.run()?);
                }
                device.synchronize()?;
                last = logits;
                Ok(())
            };
            let (decode, overhead) = decode_protocol(
                cell,
                protocol,
                sensor,
                &clock,
                check_overhead,
                &mut progress,
                &mut decode_loop,
            )?;
            Some((
                decode,
                overhead,
                last,
                Some(work.describe_repeated(new_tokens)),
            ))
        }
        None => None,
    };
    let mut host_steps = Vec::new();
    let (decode, overhead, last_logits, execution) = match fixed_outcome {
        Some(outcome) => outcome,
        None => {
            let mut last = None;
            // Each step as the host issued it (no synchronize: the loop's own timing stands).
            let mut step_ms = Vec::new();
            let mut decode_loop = || -> Result<()> {
                model.rewind()?;
                let mut tokens = first.clone();
                let mut logits = None;
                for _ in 0..new_tokens {
                    let t = std::time::Instant::now();
                    let l = model.step(&tokens)?;
                    tokens = greedy(&l)?;
                    step_ms.push(t.elapsed().as_secs_f64() * 1e3);
                    logits = Some(l);
                }
                device.synchronize()?;
                last = logits;
                Ok(())
            };
            let (decode, overhead) = decode_protocol(
                cell,
                protocol,
                sensor,
                &clock,
                check_overhead,
                &mut progress,
                &mut decode_loop,
            )?;
            let loops: Vec<usize> = decode.windows.iter().map(|w| w.loops as usize).collect();
            host_steps =
                HostSteps::per_window(&step_ms, new_tokens, decode.warmup.loops as usize, &loops);
            (decode, overhead, last, None)
        }
    };
    if let (Some(execution), Some(implementation)) = (execution, record.implementation.as_mut()) {
        implementation.insert("execution".into(), execution);
    }
    if let Some(l) = &last_logits {
        ensure_finite(l, "the decode steps' logits")?;
    }

    let mut generate = GenerateRecord {
        prompt_len,
        new_tokens,
        prefill_warmup: prefill.warmup.clone(),
        prefill_windows: prefill.windows.clone(),
        decode_steps_per_loop: new_tokens,
        decode_windowing: model.decode_windowing(),
        kv_cache_bytes: decoder.shapes.kv_cache_bytes(
            cell.batch_size,
            prompt_len + new_tokens,
            dtype_bytes,
        ),
        weight_bytes: decoder.weight_bytes(cell.precision),
        memory_estimate_bytes: estimate,
        prompt_texts: set.texts,
        prompt_wraparounds: set.wraparounds,
        tokenizer: set.tokenizer.clone(),
        fidelity: None,
        perplexity: None,
        decode_host_steps: host_steps,
    };

    // Fidelity and perplexity, outside the windows.
    let steps = new_tokens.min(FIDELITY_STEPS);
    let reference = reference_precision(decoder);
    let fidelity_prompts = prompt_tensor(
        &set.prompts,
        FIDELITY_PROMPTS.min(set.prompts.len()),
        device,
    )?;
    if cell.precision != reference {
        crate::interrupt::check()?;
        let key = (cell.model.clone(), prompt_len, steps);
        if !store.references.contains_key(&key) {
            on_progress(&format!(
                "fidelity: the {} reference generates",
                reference.name()
            ));
            let mut reference_model = store.models.load_decoder(spec, reference, device)?;
            let run = fidelity::reference_run(
                reference_model.as_mut(),
                &fidelity_prompts,
                steps,
                reference.name(),
            )?;
            store.references.insert(key.clone(), run);
        }
        let candidate = fidelity::teacher_forced(
            model.as_mut(),
            &fidelity_prompts,
            &store.references[&key],
            device,
        )?;
        generate.fidelity = Some(fidelity::compare(&store.references[&key], &candidate)?);
    }
    if let Some(text) = prepared.perplexity_text.get(&cell.model) {
        crate::interrupt::check()?;
        on_progress("perplexity on the dataset's text");
        generate.perplexity = Some(fidelity::perplexity(model.as_mut(), &text.prompts, device)?);
    }

    record.dataset = Some(crate::data::DatasetUsage {
        examples: set.texts,
        samples_served: (cell.batch_size * prompt_len) as u64,
        wraparounds: set.wraparounds,
    });
    record.warmup = Some(decode.warmup.clone());
    record.windows = per_step(&decode.windows, new_tokens);
    record.generate = Some(generate);
    Ok((joined_trace(&prefill, &decode), overhead))
}

/// The prefill windows, each loop the batch's prompts from position 0 to the first token's
/// argmax; the last loop's logits (a copy) and, for the record, how the prefill executed.
#[allow(clippy::too_many_arguments)]
fn prefill_protocol(
    model: &mut dyn Generate,
    prompt: &Tensor,
    device: &Device,
    graphs: GraphMode,
    protocol: &crate::config::ProtocolSection,
    sensor: &mut dyn EnergySensor,
    clock: &RealClock,
    on_progress: &mut dyn FnMut(&str),
) -> Result<(ProtocolOutcome, Tensor, String)> {
    let mut progress = |phase: &str| on_progress(&format!("prefill: {phase}"));
    if let Some(fixed) = model.fixed_prefill(prompt)? {
        // The own decoder: the same prompt, span and mask every loop, so one CUDA graph per
        // prompt shape, checked against the eager prefill when captured (eager, saying why,
        // where it cannot be).
        let work = FixedWork::stateful(
            device,
            graphs,
            "one prefill of the batch's prompts to the first token's argmax",
            &fixed.run,
            &*fixed.restore,
        );
        let mut last = None;
        let mut prefill_loop = || -> Result<()> {
            let logits = work.run()?;
            device.synchronize()?;
            last = Some(logits);
            Ok(())
        };
        let outcome =
            measure::run_protocol(protocol, sensor, clock, &mut progress, &mut prefill_loop)?;
        // A copy: a graph's output buffer is the graph's, gone with it.
        let logits = last.context("the prefill ran no loop")?.copy()?;
        return Ok((outcome, logits, work.describe()));
    }
    let mut last = None;
    let mut prefill_loop = || -> Result<()> {
        model.reset()?;
        let logits = model.prefill(prompt)?;
        greedy(&logits)?;
        device.synchronize()?;
        last = Some(logits);
        Ok(())
    };
    let outcome = measure::run_protocol(protocol, sensor, clock, &mut progress, &mut prefill_loop)?;
    let logits = last.context("the prefill ran no loop")?;
    Ok((
        outcome,
        logits,
        "eager: the cache emptied and the batch's prompts prefilled to the first token's argmax per loop (this implementation has no fixed prefill to capture)".into(),
    ))
}

/// The decode windows through the protocol, then the sampler's overhead check if asked.
fn decode_protocol(
    cell: &Cell,
    protocol: &crate::config::ProtocolSection,
    sensor: &mut dyn EnergySensor,
    clock: &RealClock,
    check_overhead: bool,
    on_progress: &mut dyn FnMut(&str),
    decode_loop: &mut dyn FnMut() -> Result<()>,
) -> Result<(ProtocolOutcome, Option<SamplerOverhead>)> {
    let decode = measure::run_protocol(protocol, sensor, clock, on_progress, decode_loop)?;
    let overhead = if check_overhead {
        on_progress("sampler overhead check");
        measure::measure_sampler_overhead(&cell.id, protocol, sensor, clock, decode_loop)?
    } else {
        None
    };
    Ok((decode, overhead))
}

/// One trace for the cell: the decode windows' samples after the prefill's.
fn joined_trace(prefill: &ProtocolOutcome, decode: &ProtocolOutcome) -> Vec<sensor::PowerSample> {
    let end = prefill.trace.iter().map(|s| s.t_s).fold(0.0, f64::max);
    prefill
        .trace
        .iter()
        .cloned()
        .chain(decode.trace.iter().map(|s| sensor::PowerSample {
            t_s: s.t_s + end,
            power_w: s.power_w,
        }))
        .collect()
}
