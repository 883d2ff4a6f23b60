//! A `layers` cell, measured: one forward pass captures every layer's and component's real input,
//! then, by the cell's `layer_method`,
//!
//! - isolated: each unit runs alone through the full protocol, K calls per loop (per
//!   synchronize), K chosen so that a loop lasts at least as long as one whole forward pass: a
//!   sub-millisecond layer with one synchronize per call would measure the synchronize and the
//!   idle gaps around it (H200 bf16 b16: Σ latency 134 % of the whole). On CUDA with graphs the K
//!   calls are one captured graph, replayed per loop, as the whole forward is; on the CPU, which
//!   is synchronous, K = 1.
//! - prefix: the prefixes embeddings, + block 0, ..., the whole model, each through the full
//!   protocol, executed as the whole pass is (one graph per prefix on CUDA); the analysis takes
//!   a layer as the difference of consecutive prefixes. Every prefix runs the same K calls per
//!   loop, K chosen so that the shortest (the embeddings) lasts a whole pass: with one call per
//!   synchronize, the per-loop launch + synchronize + idle gap, the same for every prefix, fell
//!   entirely on the embeddings (H200: 1.04-1.06 mJ by prefix against 0.97 alone); a common K
//!   spreads it over K calls in every prefix, and the differences cancel it.

use anyhow::{Context, Result};
use candle_core::Tensor;

use super::cell::ensure_finite;
use crate::config::{LayerMethod, ProtocolSection};
use crate::measure::{self, Clock, ProtocolOutcome};
use crate::model::Encoder;
use crate::ops::graph::{FixedWork, GraphMode};
use crate::results::{CellRecord, LayerRecord, Phase, PrefixRecord};
use crate::sensor::{self, EnergySensor};

/// The most calls one loop of an isolated unit runs: the smallest unit (the classifier, ~30 µs on
/// an H200) against a whole pass of a few ms; more would only lengthen the capture.
pub const MAX_CALLS_PER_LOOP: u32 = 64;

/// Timed calls (after two untimed ones) whose median is a unit's, or the whole pass's, single
/// loop time for choosing K.
const CALIBRATION_CALLS: usize = 5;

/// K for a unit: enough calls that one loop lasts at least as long as a whole pass.
pub fn calls_per_loop(whole_ms: f64, unit_ms: f64, synchronous: bool) -> u32 {
    if synchronous || !(whole_ms > 0.0 && unit_ms > 0.0) {
        return 1;
    }
    let k = (whole_ms / unit_ms).ceil();
    if k >= f64::from(MAX_CALLS_PER_LOOP) {
        MAX_CALLS_PER_LOOP
    } else {
        (k as u32).max(1)
    }
}

/// "1 call of X", "8 calls of X": what one loop runs, for the execution record.
fn calls_of(k: u32, what: &str) -> String {
    if k == 1 {
        format!("1 call of {what}")
    } else {
        format!("{k} calls of {what}")
    }
}

/// `call` K times back to back (one loop of a unit or prefix); the last output.
fn repeated(k: u32, call: impl Fn() -> candle_core::Result<Tensor>) -> candle_core::Result<Tensor> {
    let mut out = call()?;
    for _ in 1..k {
        out = call()?;
    }
    Ok(out)
}

/// Median time of `run` over a few synchronized calls, in ms.
fn median_call_ms(
    clock: &dyn Clock,
    device: &candle_core::Device,
    run: &mut dyn FnMut() -> Result<Tensor>,
) -> Result<f64> {
    for _ in 0..2 {
        run()?;
        device.synchronize()?;
    }
    let mut times = Vec::with_capacity(CALIBRATION_CALLS);
    for _ in 0..CALIBRATION_CALLS {
        let t0 = clock.now_s();
        run()?;
        device.synchronize()?;
        times.push((clock.now_s() - t0) * 1e3);
    }
    Ok(crate::stats::percentile(&times, 50.0))
}

/// What a layers cell needs besides the model and its batch.
pub(super) struct LayerSettings<'a> {
    pub protocol: &'a ProtocolSection,
    pub method: LayerMethod,
    pub graphs: GraphMode,
}

/// One unit, or one prefix, to measure: what the record calls it and one call of it.
pub(super) struct Work<'a> {
    pub name: String,
    /// The block a component belongs to (units only).
    pub parent: Option<String>,
    pub call: Box<dyn Fn() -> candle_core::Result<Tensor> + 'a>,
    /// Where the unit can run cold: the bytes a copy of it holds, and a maker of a call that
    /// rotates through that many copies (decoders' units; `None`: the unit runs warm).
    pub cold: Option<ColdWork<'a>>,
    /// `in-step`: the index (in the same list) of the unit that precedes this one in the step,
    /// which each call runs first; `None`: the unit alone.
    pub predecessor: Option<usize>,
}

/// A unit's cold variant ([`Work::cold`]).
pub(super) struct ColdWork<'a> {
    pub copy_bytes: u64,
    #[allow(clippy::type_complexity)]
    pub rotating:
        Box<dyn Fn(usize) -> Result<Box<dyn Fn() -> candle_core::Result<Tensor> + 'a>> + 'a>,
}

/// What the records of one run of [`measure_isolated`] or [`measure_prefixes`] share: the
/// whole pass's time (to choose K; 0 on the CPU), the phase (decoders), how loops execute.
pub(super) struct Pass<'a> {
    pub device: &'a candle_core::Device,
    pub whole_ms: f64,
    pub phase: Option<Phase>,
    pub graphs: GraphMode,
    pub protocol: &'a ProtocolSection,
    /// Cold isolation: the device's last-level cache the copies must exceed twice over; `None`:
    /// every unit warm.
    pub cold_cache_bytes: Option<u64>,
}

impl Pass<'_> {
    fn synchronous(&self) -> bool {
        !self.device.is_cuda()
    }

    /// A progress label, with the phase first where there is one.
    fn label(&self, what: String) -> String {
        match self.phase {
            Some(p) => format!("{} {what}", p.name()),
            None => what,
        }
    }
}

/// Times the whole pass as a cell runs it, to choose K (on CUDA only: the CPU runs K = 1).
pub(super) fn whole_pass_ms(
    device: &candle_core::Device,
    clock: &dyn Clock,
    on_progress: &mut dyn FnMut(&str),
    run: &mut dyn FnMut() -> Result<Tensor>,
) -> Result<f64> {
    if !device.is_cuda() {
        return Ok(0.0);
    }
    on_progress("timing the whole forward pass (to choose calls per loop)");
    median_call_ms(clock, device, run)
}

/// Measures a `layers` cell into `record.layers` (isolated) and `record.prefixes` (prefix);
/// returns the power trace of every window, one unit after the other.
#[allow(clippy::too_many_arguments)]
pub(super) fn measure_layers(
    model: &Encoder,
    ids: &Tensor,
    mask: &Tensor,
    settings: &LayerSettings,
    sensor: &mut dyn EnergySensor,
    clock: &dyn Clock,
    on_progress: &mut dyn FnMut(&str),
    record: &mut CellRecord,
) -> Result<Vec<sensor::PowerSample>> {
    if let Some(isolation) = settings.protocol.layer_isolation.filter(|i| i.is_cold()) {
        anyhow::bail!(
            "protocol.layer_isolation = \"{}\" is built for decoders' layers cells (the runner's own Llama-family decoder), not an encoder's: set it to \"warm\" or leave it out",
            isolation.name()
        );
    }
    let device = model.device().clone();
    let mut trace = Trace::default();
    // The whole pass as a model cell runs it (a graph replay per loop on CUDA).
    let whole_ms = {
        let mut forward = model.cell_forward(ids, mask, settings.graphs);
        let inputs = [ids.clone(), mask.clone()];
        whole_pass_ms(&device, clock, on_progress, &mut || {
            Ok(forward.forward(&inputs)?)
        })?
    };
    let pass = Pass {
        device: &device,
        whole_ms,
        phase: None,
        graphs: settings.graphs,
        protocol: settings.protocol,
        cold_cache_bytes: None,
    };
    if settings.method.isolated() {
        let captured = model.capture_units(ids, mask)?;
        device.synchronize()?;
        let units: Vec<Work> = captured
            .iter()
            .map(|c| Work {
                name: c.unit.name(),
                parent: c.unit.parent(),
                call: Box::new(move || model.forward_unit(c)),
                cold: None,
                predecessor: None,
            })
            .collect();
        measure_isolated(
            &pass,
            &units,
            sensor,
            clock,
            on_progress,
            &mut trace,
            record,
        )?;
    }
    if settings.method.prefix() {
        let prefixes: Vec<Work> = model
            .layers()
            .iter()
            .enumerate()
            .map(|(i, layer)| Work {
                name: layer.name(),
                parent: None,
                call: Box::new(move || model.forward_prefix(ids, mask, i + 1)),
                cold: None,
                predecessor: None,
            })
            .collect();
        measure_prefixes(
            &pass,
            &prefixes,
            sensor,
            clock,
            on_progress,
            &mut trace,
            record,
        )?;
    }
    Ok(trace.samples)
}

/// A unit's call as it runs: its rotation through cold copies (made here, dropped with the
/// returned call) or its own call; the copies for the record.
#[allow(clippy::type_complexity)]
fn unit_call<'u, 'w: 'u>(
    pass: &Pass,
    unit: &'u Work<'w>,
    on_progress: &mut dyn FnMut(&str),
) -> Result<(
    Box<dyn Fn() -> candle_core::Result<Tensor> + 'u>,
    Option<crate::results::ColdCopies>,
)> {
    let name = &unit.name;
    match (&unit.cold, pass.cold_cache_bytes) {
        (Some(c), Some(cache)) => {
            let copies = super::cold::copies_for(c.copy_bytes, cache);
            on_progress(&pass.label(format!("{name}: {} copies of its weights", copies.copies)));
            let call = (c.rotating)(copies.copies as usize)
                .with_context(|| pass.label(format!("layer {name}")))?;
            Ok((call, Some(copies)))
        }
        _ => Ok((Box::new(|| (unit.call)()), None)),
    }
}

/// Each unit alone through the full protocol, K calls per loop, into `record.layers`; a unit
/// with a step predecessor (`in-step`) runs after it, and that predecessor's own loop (same K)
/// is measured first into the record's context.
pub(super) fn measure_isolated(
    pass: &Pass,
    units: &[Work],
    sensor: &mut dyn EnergySensor,
    clock: &dyn Clock,
    on_progress: &mut dyn FnMut(&str),
    trace: &mut Trace,
    record: &mut CellRecord,
) -> Result<()> {
    let synchronous = pass.synchronous();
    for (index, unit) in units.iter().enumerate() {
        let name = &unit.name;
        // Cold: the copies are made here, one unit's at a time, and dropped after its windows.
        let (own, cold) = unit_call(pass, unit, on_progress)?;
        let before = match unit.predecessor {
            Some(p) => Some((&units[p], unit_call(pass, &units[p], on_progress)?)),
            None => None,
        };
        let pair = || -> candle_core::Result<Tensor> {
            if let Some((_, (call, _))) = &before {
                call()?;
            }
            own()
        };
        let k = if synchronous {
            1
        } else {
            let unit_ms = median_call_ms(clock, pass.device, &mut || Ok(pair()?))?;
            let k = calls_per_loop(pass.whole_ms, unit_ms, synchronous);
            // Whole rotations of every copied unit the loop runs.
            let rotations = [cold, before.as_ref().and_then(|(_, (_, c))| *c)]
                .iter()
                .flatten()
                .fold(1, |r, c| lcm(r, c.copies));
            super::cold::calls_per_loop(k, rotations)
        };
        let mut what = match &cold {
            Some(c) => format!("{} ({})", calls_of(k, name), super::cold::describe(c)),
            None => calls_of(k, name),
        };
        let context = match &before {
            Some((p, (call, p_cold))) => {
                let p_what = match p_cold {
                    Some(c) => format!("{} ({})", calls_of(k, &p.name), super::cold::describe(c)),
                    None => calls_of(k, &p.name),
                };
                let work = FixedWork::new(pass.device, pass.graphs, &p_what, || repeated(k, call));
                let label = pass.label(format!(
                    "{}/{} {name}: {} alone",
                    index + 1,
                    units.len(),
                    p.name
                ));
                let outcome = run_work(&work, pass.protocol, sensor, clock, on_progress, &label)
                    .with_context(|| {
                        pass.label(format!("layer {name}'s predecessor {}", p.name))
                    })?;
                trace.append(&outcome);
                what = format!("{what}, each after {} (in-step)", p.name);
                Some(crate::results::StepContext {
                    predecessor: p.name.clone(),
                    windows: outcome.windows,
                })
            }
            None => None,
        };
        let work = FixedWork::new(pass.device, pass.graphs, &what, || repeated(k, pair));
        let label = pass.label(format!("{}/{} {name}", index + 1, units.len()));
        let outcome = run_work(&work, pass.protocol, sensor, clock, on_progress, &label)
            .with_context(|| pass.label(format!("layer {name}")))?;
        trace.append(&outcome);
        record.layers.push(LayerRecord {
            name: name.clone(),
            index,
            parent: unit.parent.clone(),
            warmup: outcome.warmup,
            calls_per_loop: k,
            execution: (!synchronous).then(|| work.describe()),
            phase: pass.phase,
            cold,
            context,
            windows: outcome.windows,
        });
    }
    Ok(())
}

fn lcm(a: u32, b: u32) -> u32 {
    let gcd = |mut a: u32, mut b: u32| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b).max(1) * b
}

/// Each prefix (the pass through `prefixes[..=n]`) through the full protocol, the same K
/// calls per loop for all, into `record.prefixes`.
pub(super) fn measure_prefixes(
    pass: &Pass,
    prefixes: &[Work],
    sensor: &mut dyn EnergySensor,
    clock: &dyn Clock,
    on_progress: &mut dyn FnMut(&str),
    trace: &mut Trace,
    record: &mut CellRecord,
) -> Result<()> {
    let synchronous = pass.synchronous();
    let k = match prefixes.first() {
        Some(shortest) if !synchronous => {
            let shortest_ms = median_call_ms(clock, pass.device, &mut || Ok((shortest.call)()?))?;
            calls_per_loop(pass.whole_ms, shortest_ms, synchronous)
        }
        _ => 1,
    };
    let total = prefixes.len();
    for (i, prefix) in prefixes.iter().enumerate() {
        let (n, name) = (i + 1, &prefix.name);
        let what = calls_of(
            k,
            &format!("the forward pass through {name} ({n} of {total} layers)"),
        );
        let work = FixedWork::new(pass.device, pass.graphs, &what, || {
            repeated(k, || (prefix.call)())
        });
        let label = pass.label(format!("prefix {n}/{total} through {name}"));
        let outcome = run_work(&work, pass.protocol, sensor, clock, on_progress, &label)
            .with_context(|| pass.label(format!("prefix through {name}")))?;
        trace.append(&outcome);
        record.prefixes.push(PrefixRecord {
            name: name.clone(),
            layers: n,
            warmup: outcome.warmup,
            calls_per_loop: k,
            execution: (!synchronous).then(|| work.describe()),
            phase: pass.phase,
            windows: outcome.windows,
        });
    }
    Ok(())
}

/// One unit's or prefix's protocol: each loop runs the work once and synchronizes; the last
/// output is checked for NaN and infinities.
fn run_work(
    work: &FixedWork,
    protocol: &ProtocolSection,
    sensor: &mut dyn EnergySensor,
    clock: &dyn Clock,
    on_progress: &mut dyn FnMut(&str),
    label: &str,
) -> Result<ProtocolOutcome> {
    let device_sync = |t: &Tensor| t.device().synchronize();
    let mut last = None;
    let mut run_loop = || -> Result<()> {
        let out = work.run()?;
        device_sync(&out)?;
        last = Some(out);
        Ok(())
    };
    let mut progress = |phase: &str| on_progress(&format!("{label}: {phase}"));
    let outcome = measure::run_protocol(protocol, sensor, clock, &mut progress, &mut run_loop)?;
    if let Some(out) = last {
        ensure_finite(&out, label)?;
    }
    Ok(outcome)
}

/// One trace for the cell: each unit's samples after the previous unit's.
#[derive(Default)]
pub(super) struct Trace {
    pub(super) samples: Vec<sensor::PowerSample>,
    offset: f64,
}

impl Trace {
    fn append(&mut self, outcome: &ProtocolOutcome) {
        let end = outcome.trace.iter().map(|s| s.t_s).fold(0.0, f64::max);
        let offset = self.offset;
        self.samples
            .extend(outcome.trace.iter().map(|s| sensor::PowerSample {
                t_s: s.t_s + offset,
                power_w: s.power_w,
            }));
        self.offset += end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_per_loop_fill_a_whole_pass_and_stay_bounded() {
        // H200 bf16 b16: whole pass ~1.6 ms; a block 0.17 ms, the classifier 0.03 ms.
        assert_eq!(calls_per_loop(1.6, 0.17, false), 10);
        assert_eq!(calls_per_loop(1.6, 0.03, false), 54);
        assert_eq!(calls_per_loop(1.6, 0.001, false), MAX_CALLS_PER_LOOP);
        // A unit as slow as the whole pass (or slower) runs once per loop.
        assert_eq!(calls_per_loop(1.6, 1.6, false), 1);
        assert_eq!(calls_per_loop(1.6, 3.0, false), 1);
        // The CPU is synchronous: one call per loop, whatever the times.
        assert_eq!(calls_per_loop(1.6, 0.03, true), 1);
        // Nothing measured: no guess.
        assert_eq!(calls_per_loop(0.0, 0.03, false), 1);
        assert_eq!(calls_per_loop(f64::NAN, 0.03, false), 1);
    }
}
