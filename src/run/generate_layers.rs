//! A decoder's `layers` cell (the runner's own Llama-family decoder), measured: the encoder's
//! two methods (`layers.rs`), each phase apart.
//!
//! - prefill: the batch's prompts; each unit on the activations it received in one prefill,
//!   each prefix the prefill cut after k layers (the head's greedy argmax included in the
//!   whole), one CUDA graph per loop where graphs are on, as the whole-model cell's prefill
//!   runs (each call writes the same span of the cache); per prompt token.
//! - decode: the prompts prefilled and `new_tokens / 2` greedy steps run, so that the captured
//!   step sees the mean context of the whole-model cell's decode windows; each unit (and each
//!   prefix) then runs that one step at that device-held position, writing the same cache
//!   slot every call and never advancing, K calls per loop (one CUDA graph per loop where
//!   graphs are on, as the whole cell's steps); per generated token.
//!
//! Units: the embeddings, each block and its two halves (attention: input RMSNorm, Q/K/V,
//! rotary, the cache write, attention, output projection, residual; mlp: post-attention
//! RMSNorm, SwiGLU, residual), and the head: the phase's tail as the whole-model cell runs it
//! (final RMSNorm, output projection, argmax, the argmax copied back as the next input and the
//! position advanced, into the profiler's own slots so that nothing moves), so the units cover
//! every kernel of a whole step.

use anyhow::{Context, Result};
use candle_core::Device;

use super::cell::Store;
use super::generate::{load, LoadedDecoder};
use super::layers::{
    measure_isolated, measure_prefixes, whole_pass_ms, ColdWork, Pass, Trace, Work,
};
use super::Prepared;
use crate::config::LayerIsolation;
use crate::matrix::Cell;
use crate::measure::RealClock;
use crate::model::workload::{DecoderLayers, Phase};
use crate::ops::graph::{FixedWork, GraphMode};
use crate::results::CellRecord;
use crate::sensor::{self, EnergySensor};

pub(super) fn measure(
    cell: &Cell,
    prepared: &Prepared,
    store: &mut Store,
    device: &Device,
    sensor: &mut dyn EnergySensor,
    on_progress: &mut dyn FnMut(&str),
    record: &mut CellRecord,
) -> Result<Vec<sensor::PowerSample>> {
    let LoadedDecoder {
        decoder,
        set,
        prompt_len,
        new_tokens,
        prompt,
        mut model,
        ..
    } = load(cell, prepared, store, device, on_progress, record)?;
    let mut implementation = model.implementation();
    // The load-time text describes a whole cell's decode step, which a layers cell never runs whole.
    implementation.insert(
        "execution".into(),
        "layers cell: each unit and each prefix runs as its own fixed work, its record saying how (a CUDA graph of its K calls per loop, or eager and why)".into(),
    );
    model.reserve(cell.batch_size, prompt_len + new_tokens)?;
    let layers: &mut dyn DecoderLayers = model.layers().with_context(|| {
        format!(
            "scope = \"layers\": {} keeps its layers private; set implementation = \"own\"",
            decoder.architecture
        )
    })?;
    let clock = RealClock::default();
    let protocol = &prepared.exp.config.protocol;
    let graphs = if prepared.exp.config.device.cuda_graphs {
        GraphMode::Auto
    } else {
        GraphMode::Off
    };
    let method = cell.layer_method;
    let isolation = protocol
        .layer_isolation
        .unwrap_or_else(LayerIsolation::decoder_default);
    // Cold: the device's cache (each unit's bytes are checked after the first capture, before
    // anything is measured: refused where the weights cannot be copied).
    let cold_cache_bytes = if method.isolated() && isolation.is_cold() {
        Some(super::cold::last_level_cache_bytes(device)?)
    } else {
        None
    };
    if method.isolated() {
        implementation.insert(
            "layers_isolation".into(),
            match cold_cache_bytes {
                Some(cache) if isolation.in_step() => format!(
                    "in-step (protocol.layer_isolation): as cold (C deep copies of each unit's weights and KV cache in turn, C x its bytes > 2x the device's {:.1} MB last-level cache), and each top-level unit (the embeddings, each block, the head) runs after the unit before it in the step (the embeddings after the head), the pair K times a loop; its figures are the pair's less that predecessor's own loop of K calls (each record's context); a block's halves run alone",
                    cache as f64 / 1e6
                ),
                Some(cache) => format!(
                    "cold (protocol.layer_isolation): each isolated unit's calls read C deep copies of its weights and KV cache in turn, C x its bytes > 2x the device's {:.1} MB last-level cache (each unit's record: copies, bytes); K a whole number of rotations; the embeddings (one row of the table a token) run warm",
                    cache as f64 / 1e6
                ),
                None => "warm (protocol.layer_isolation): each isolated unit's K calls read the same weights, from the device's cache where they fit".into(),
            },
        );
    }
    let mut trace = Trace::default();
    for phase in Phase::ALL {
        crate::interrupt::check()?;
        on_progress(&format!("{}: capturing every layer's input", phase.name()));
        let captured = layers.capture(phase, &prompt, new_tokens / 2)?;
        device.synchronize()?;
        implementation.insert(
            format!("layers_{}", phase.name()),
            match phase {
                Phase::Prefill => format!(
                    "the batch's prompts at {}, per prompt token",
                    captured.position
                ),
                Phase::Decode => format!(
                    "one decode step at {} (prompt_len + new_tokens / 2: the mean context of the whole cell's steps), per generated token",
                    captured.position
                ),
            },
        );
        let layers: &dyn DecoderLayers = &*layers;
        let top = layers.top_level();
        if cold_cache_bytes.is_some() {
            for unit in &top {
                layers.cold_bytes(*unit)?;
            }
        }
        let ids = &captured.ids;
        let whole_ms = {
            let whole = FixedWork::new(device, graphs, "the whole pass", || {
                layers.run_prefix(phase, ids, top.len())
            });
            let mut progress = |what: &str| on_progress(&format!("{}: {what}", phase.name()));
            whole_pass_ms(device, &clock, &mut progress, &mut || Ok(whole.run()?))?
        };
        let pass = Pass {
            device,
            whole_ms,
            phase: Some(phase),
            graphs,
            protocol,
            cold_cache_bytes,
        };
        if method.isolated() {
            // In-step: each top-level unit after the one before it in the step (the embeddings
            // after the head: the previous step's tail); a block's halves stay alone.
            let top_units: Vec<usize> = (0..captured.units.len())
                .filter(|&i| captured.units[i].unit.parent().is_none())
                .collect();
            let predecessor = |i: usize| -> Option<usize> {
                if !isolation.in_step() {
                    return None;
                }
                let at = top_units.iter().position(|&t| t == i)?;
                Some(top_units[(at + top_units.len() - 1) % top_units.len()])
            };
            let units: Vec<Work> = captured
                .units
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let cold = match cold_cache_bytes {
                        Some(_) => layers.cold_bytes(c.unit)?.map(|copy_bytes| ColdWork {
                            copy_bytes,
                            rotating: Box::new(
                                move |copies| Ok(layers.rotating(phase, c, copies)?),
                            ),
                        }),
                        None => None,
                    };
                    Ok(Work {
                        name: c.unit.name(),
                        parent: c.unit.parent(),
                        call: Box::new(move || layers.run_unit(phase, c)),
                        cold,
                        predecessor: predecessor(i),
                    })
                })
                .collect::<Result<_>>()?;
            measure_isolated(
                &pass,
                &units,
                sensor,
                &clock,
                on_progress,
                &mut trace,
                record,
            )?;
        }
        if method.prefix() {
            let prefixes: Vec<Work> = top
                .iter()
                .enumerate()
                .map(|(i, unit)| Work {
                    name: unit.name(),
                    parent: None,
                    call: Box::new(move || layers.run_prefix(phase, ids, i + 1)),
                    cold: None,
                    predecessor: None,
                })
                .collect();
            measure_prefixes(
                &pass,
                &prefixes,
                sensor,
                &clock,
                on_progress,
                &mut trace,
                record,
            )?;
        }
    }
    record.implementation = Some(implementation);
    record.dataset = Some(crate::data::DatasetUsage {
        examples: set.texts,
        samples_served: (cell.batch_size * prompt_len) as u64,
        wraparounds: set.wraparounds,
    });
    Ok(trace.samples)
}
