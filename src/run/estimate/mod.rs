//! How long a run will take, before its first cell and while it runs. Each cell costs the
//! protocol's own time (warm-up, `repeats` windows, pauses) with its loops priced by the workload
//! ([`CellCost`]), plus what it does outside its windows (fidelity and accuracy passes). The
//! encoder workload prices a loop from its FLOPs at the device's rate, measured here by a short
//! timed matmul in each float dtype the plan uses; the generate workload prices its prefill the
//! same way and its decode steps by the bytes of weights each reads ([`DecoderCost`]). As cells
//! finish, each cell class's estimates are scaled by what its measured cells really took (loading, slow kernels and all), so the ETA converges on the run.

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::{DType, Device};

use super::generate::{reference_precision, FIDELITY_PROMPTS, FIDELITY_STEPS};
use super::plan::{PERPLEXITY_SEQUENCES, PERPLEXITY_TOKENS};
use super::protocol_time::{decoder_layer_units, encoder_layer_units, protocol_s, WindowFloor};
use super::rates::{matmul_rate, random_weights_rate, weight_read_rate};
use crate::config::{FloatPrecision, LayerIsolation, Precision, ProtocolSection, Scope};
use crate::fidelity::FIDELITY_EXAMPLES;
use crate::matrix::Cell;
use crate::model::decoder::DecoderSpec;
use crate::model::ModelSpec;

/// What a workload's cells cost, for the estimate.
pub trait CellCost {
    /// The loop time, in seconds, of each unit the cell measures through the protocol: one for a
    /// `model` cell (its forward pass), one per layer, component or prefix of a `layers` cell.
    fn unit_loops_s(&self, cell: &Cell) -> Vec<f64>;
    /// Seconds outside the protocol: fidelity and accuracy passes, and the fp32 reference the
    /// first cell of a model and shape computes (`first_of_shape`).
    fn outside_s(&self, cell: &Cell, first_of_shape: bool) -> f64;
    /// Cells of one class are refined together (one precision's kernels share a speed).
    fn class(&self, cell: &Cell) -> String {
        cell.precision.name().to_string()
    }
    /// How the prices were made, for the line that announces the estimate.
    fn basis(&self) -> String;
}

/// Multiply-adds x 2 of one DistilBERT/BERT forward pass of `batch` sequences of `seq` tokens:
/// per block the Q, K, V and output projections (4 D^2), the FFN (2 D F) on every token, and
/// the attention's two S x S x D products.
pub fn encoder_flops(preset: &crate::config::Preset, batch: usize, seq: usize) -> f64 {
    let (b, s, d, f) = (
        batch as f64,
        seq as f64,
        preset.dim as f64,
        preset.hidden_dim as f64,
    );
    let block = 2.0 * b * s * (4.0 * d * d + 2.0 * d * f) + 4.0 * b * s * s * d;
    block * preset.n_layers as f64
}

/// The encoder workload's prices: FLOPs at the measured rate of the cell's float dtype. GGML and
/// W8A8 formats are priced like their float path until a cell of theirs is measured.
pub struct EncoderCost<'a> {
    pub specs: &'a BTreeMap<String, ModelSpec>,
    /// FLOP/s of a matmul in each float dtype on this device.
    pub rates: BTreeMap<FloatPrecision, f64>,
}

impl EncoderCost<'_> {
    fn forward_s(&self, cell: &Cell, batch: usize) -> f64 {
        let Some(preset) = self.specs.get(&cell.model).and_then(|s| s.encoder()) else {
            return 0.0;
        };
        let rate = self
            .rates
            .get(&cell.precision.float())
            .copied()
            .unwrap_or(1e9);
        encoder_flops(preset, batch, cell.seq_len) / rate
    }
}

impl CellCost for EncoderCost<'_> {
    fn unit_loops_s(&self, cell: &Cell) -> Vec<f64> {
        let whole = self.forward_s(cell, cell.batch_size);
        match cell.scope {
            Scope::Model => vec![whole],
            Scope::Layers => {
                let blocks = self
                    .specs
                    .get(&cell.model)
                    .and_then(|s| s.encoder())
                    .map_or(1, |p| p.n_layers);
                let n = blocks as f64;
                let (isolated, prefix) = encoder_layer_units(blocks, cell.layer_method);
                let mut units = Vec::new();
                if isolated > 0 {
                    // Each block and its four components at about a block's time or less;
                    // embeddings and the heads cost little.
                    units.extend(std::iter::repeat_n(whole / n, isolated - 3));
                    units.extend([whole / (10.0 * n); 3]);
                }
                // Prefixes through 1, 2, ... n blocks: half a pass on average.
                units.extend(std::iter::repeat_n(whole / 2.0, prefix));
                units
            }
        }
    }

    fn outside_s(&self, cell: &Cell, first_of_shape: bool) -> f64 {
        if cell.scope != Scope::Model || cell.precision == Precision::Fp32 {
            return 0.0;
        }
        let per_example = |c: &Cell| self.forward_s(c, 1);
        let mut s = FIDELITY_EXAMPLES as f64 * per_example(cell);
        if first_of_shape {
            let fp32 = Cell {
                precision: Precision::Fp32,
                ..cell.clone()
            };
            s += FIDELITY_EXAMPLES as f64 * per_example(&fp32);
        }
        s
    }

    /// The GGML formats share their kernels (and on the CPU their slow f16-activation path),
    /// as the W8A8 ones do: the first cell of one prices the others of its family.
    fn class(&self, cell: &Cell) -> String {
        let float = cell.precision.float().precision().name();
        match cell.precision {
            Precision::Quantized(..) => format!("ggml-{float}"),
            Precision::EightBit(..) => format!("w8a8-{float}"),
            p => p.name().to_string(),
        }
    }

    fn basis(&self) -> String {
        let rates: Vec<String> = self
            .rates
            .iter()
            .map(|(f, r)| format!("{} {:.1} GFLOP/s", f.precision().name(), r / 1e9))
            .collect();
        format!(
            "each cell's FLOPs at this device's measured matmul rate ({}; quantized formats priced like their float path until one of their cells is measured)",
            rates.join(", ")
        )
    }
}

/// The generate workload's prices: a prefill at the matmul rate of the cell's dtype (its FLOPs
/// from the shapes: every weight once per token, causal attention), a decode step at the slower
/// of its FLOPs and reading every weight once at this device's measured one-row matmul rate.
pub struct DecoderCost<'a> {
    pub specs: &'a BTreeMap<String, ModelSpec>,
    pub rates: BTreeMap<FloatPrecision, f64>,
    /// Bytes of weights a one-row matmul reads per second, per float dtype.
    pub weight_read: BTreeMap<FloatPrecision, f64>,
    /// What an isolated unit of a layers cell runs (`protocol.layer_isolation`, resolved):
    /// `in-step` adds each top-level unit's predecessor loop.
    pub isolation: LayerIsolation,
    /// Seconds per value to build random weights in each float dtype on this device (loading a
    /// random-weight decoder, and its fidelity reference), where a cell needs them.
    pub random_load: BTreeMap<FloatPrecision, f64>,
}

/// The float dtype a decoder computes in at `precision`: GGUF files and quantized-at-load
/// linears compute in f32 around their blocks.
fn float_of(d: &DecoderSpec, precision: Precision) -> FloatPrecision {
    match d.dtype(precision) {
        DType::F16 => FloatPrecision::Fp16,
        DType::BF16 => FloatPrecision::Bf16,
        _ => FloatPrecision::Fp32,
    }
}

impl DecoderCost<'_> {
    /// (decoder, prefill seconds of `batch` prompts, seconds of one decode step at `batch`).
    fn phases(&self, cell: &Cell, batch: usize) -> Option<(f64, f64)> {
        let d = self.specs.get(&cell.model)?.decoder()?;
        // A refused cell is skipped with its reason: nothing to price.
        if d.refuses(cell.precision).is_some()
            || d.refuses_batch(cell.precision, cell.batch_size).is_some()
        {
            return None;
        }
        let prompt = cell.prompt_len.unwrap_or(cell.seq_len);
        let float = float_of(d, cell.precision);
        let rate = self.rates.get(&float).copied().unwrap_or(1e9);
        let read = self.weight_read.get(&float).copied().unwrap_or(1e9);
        let weights_s = d.weight_bytes(cell.precision) as f64 / read;
        let s = &d.shapes;
        let prefill = (s.prefill_flops(batch, prompt) / rate).max(weights_s);
        let step = (s.decode_flops(batch, prompt, 1) / rate).max(weights_s);
        Some((prefill, step))
    }
}

impl CellCost for DecoderCost<'_> {
    /// Two units: the prefill (a loop is one batch's prompts) and the decode (a loop is
    /// `new_tokens` steps).
    fn unit_loops_s(&self, cell: &Cell) -> Vec<f64> {
        let Some((prefill, step)) = self.phases(cell, cell.batch_size) else {
            return Vec::new();
        };
        if cell.scope == Scope::Layers {
            // Per phase, one call per loop on the CPU: each block and its two halves at about
            // a block's time, the embeddings and the head little; prefixes half a pass; in-step
            // isolation's predecessor loops as what they run.
            let layers = self
                .specs
                .get(&cell.model)
                .and_then(|s| s.decoder())
                .map_or(1, |d| d.shapes.layers);
            let n = layers as f64;
            let (isolated, prefix) = decoder_layer_units(layers, cell.layer_method, self.isolation);
            let mut units = Vec::new();
            for whole in [prefill, step] {
                let (block, small) = (whole / n, whole / (10.0 * n));
                if isolated > 0 {
                    // Each block's two halves alone.
                    units.extend(std::iter::repeat_n(block, 2 * layers));
                    if self.isolation.in_step() {
                        // Each top-level unit after its step predecessor, the pair a loop, and
                        // that predecessor's own loop alone: the embeddings after the head,
                        // block 0 after the embeddings, each block after the one before, the
                        // head after the last block.
                        units.extend([2.0 * small, small, block + small, small]);
                        for _ in 1..layers {
                            units.extend([2.0 * block, block]);
                        }
                        units.extend([block + small, block]);
                    } else {
                        // The embeddings, each block and the head alone.
                        units.extend(std::iter::repeat_n(block, layers));
                        units.extend([small; 2]);
                    }
                }
                units.extend(std::iter::repeat_n(whole / 2.0, prefix));
            }
            debug_assert_eq!(units.len(), 2 * (isolated + prefix));
            return units;
        }
        vec![prefill, step * cell.new_tokens.unwrap_or(0) as f64]
    }

    /// Loading: random weights built at this device's measured rate (the cell's model, and
    /// first for its model and prompt the fidelity reference's); fidelity: the candidate (and,
    /// first, the reference) generates each fidelity prompt alone; perplexity where the weights
    /// are real.
    fn outside_s(&self, cell: &Cell, first_of_shape: bool) -> f64 {
        let Some(d) = self.specs.get(&cell.model).and_then(|s| s.decoder()) else {
            return 0.0;
        };
        let Some((prefill, step)) = self.phases(cell, 1) else {
            return 0.0;
        };
        let load = |precision: Precision| match d.real_weights() {
            true => 0.0,
            false => {
                let per_value = self.random_load.get(&float_of(d, precision));
                d.shapes.parameters() as f64 * per_value.copied().unwrap_or(0.0)
            }
        };
        let steps = cell.new_tokens.unwrap_or(0).min(FIDELITY_STEPS) as f64;
        let mut s = load(cell.precision) + prefill + step * cell.new_tokens.unwrap_or(0) as f64;
        let reference = reference_precision(d);
        if cell.precision != reference {
            let per_prompt = prefill + step * steps;
            let passes = if first_of_shape { 2.0 } else { 1.0 };
            s += passes * FIDELITY_PROMPTS as f64 * per_prompt;
            if first_of_shape && cell.scope == Scope::Model {
                s += load(reference);
            }
        }
        if d.real_weights() {
            if let Some((_, batched)) = self.phases(cell, PERPLEXITY_SEQUENCES) {
                s += batched * PERPLEXITY_TOKENS as f64;
            }
        }
        s
    }

    fn class(&self, cell: &Cell) -> String {
        format!("decoder-{}", cell.precision.name())
    }

    fn basis(&self) -> String {
        let list = |m: &BTreeMap<FloatPrecision, f64>, unit: &str| -> String {
            let v: Vec<String> = m
                .iter()
                .map(|(f, r)| format!("{} {:.1} {unit}", f.precision().name(), r / 1e9))
                .collect();
            v.join(", ")
        };
        let loads = match self.random_load.is_empty() {
            true => String::new(),
            false => {
                let per_second: BTreeMap<FloatPrecision, f64> = self
                    .random_load
                    .iter()
                    .map(|(f, s)| (*f, 1.0 / s))
                    .collect();
                format!(
                    ", random weights built at their measured rate ({})",
                    list(&per_second, "G values/s")
                )
            }
        };
        format!(
            "decoders: prefill FLOPs at this device's measured matmul rate ({}), decode steps at the slower of their FLOPs and reading every weight at its measured one-row matmul rate ({}){loads}",
            list(&self.rates, "GFLOP/s"),
            list(&self.weight_read, "GB/s")
        )
    }
}

/// A run's cells priced by their own workload: encoders by [`EncoderCost`], decoders by
/// [`DecoderCost`].
pub struct RunCost<'a> {
    pub encoder: EncoderCost<'a>,
    pub decoder: DecoderCost<'a>,
}

impl<'a> RunCost<'a> {
    fn of(&self, cell: &Cell) -> &dyn CellCost {
        let decoder = self
            .encoder
            .specs
            .get(&cell.model)
            .is_some_and(|s| s.decoder().is_some());
        if decoder {
            &self.decoder
        } else {
            &self.encoder
        }
    }

    /// Prices for `cells` on `device`: a short timed matmul in each float dtype they use, and
    /// for decoders a one-row one for the rate weights are read at; `protocol` says what a
    /// decoder's isolated units run.
    pub fn measure(
        specs: &'a BTreeMap<String, ModelSpec>,
        device: &Device,
        cells: &[&Cell],
        protocol: &ProtocolSection,
    ) -> Result<RunCost<'a>> {
        let dim = specs
            .values()
            .map(|s| s.encoder().map_or(1024, |p| p.dim))
            .max()
            .unwrap_or(768);
        let mut rates = BTreeMap::new();
        let mut weight_read = BTreeMap::new();
        let mut random_load = BTreeMap::new();
        for c in cells {
            let decoder = specs.get(&c.model).and_then(|s| s.decoder());
            let float = decoder.map_or(c.precision.float(), |d| float_of(d, c.precision));
            if let std::collections::btree_map::Entry::Vacant(e) = rates.entry(float) {
                e.insert(matmul_rate(device, float, dim)?);
            }
            let Some(d) = decoder else { continue };
            if let std::collections::btree_map::Entry::Vacant(e) = weight_read.entry(float) {
                e.insert(weight_read_rate(device, float)?);
            }
            if !d.real_weights() {
                // The cell's weights, and the fidelity reference's where it is another dtype.
                let reference = float_of(d, reference_precision(d));
                for f in [float, reference] {
                    if let std::collections::btree_map::Entry::Vacant(e) = random_load.entry(f) {
                        e.insert(random_weights_rate(device, f)?);
                    }
                }
            }
        }
        Ok(RunCost {
            encoder: EncoderCost {
                specs,
                rates: rates.clone(),
            },
            decoder: DecoderCost {
                specs,
                rates,
                weight_read,
                isolation: protocol
                    .layer_isolation
                    .unwrap_or_else(LayerIsolation::decoder_default),
                random_load,
            },
        })
    }
}

impl CellCost for RunCost<'_> {
    fn unit_loops_s(&self, cell: &Cell) -> Vec<f64> {
        self.of(cell).unit_loops_s(cell)
    }
    fn outside_s(&self, cell: &Cell, first_of_shape: bool) -> f64 {
        self.of(cell).outside_s(cell, first_of_shape)
    }
    fn class(&self, cell: &Cell) -> String {
        self.of(cell).class(cell)
    }
    fn basis(&self) -> String {
        let encoders = self.encoder.specs.values().any(|s| s.encoder().is_some());
        match (encoders, self.decoder.weight_read.is_empty()) {
            (_, true) => self.encoder.basis(),
            (false, false) => self.decoder.basis(),
            (true, false) => format!("{}; {}", self.encoder.basis(), self.decoder.basis()),
        }
    }
}

/// The run's estimate: each cell's price, scaled per class by what measured cells took.
pub struct Estimate {
    cells: Vec<(String, f64)>,
    /// actual / estimated of every finished cell, per class.
    ratios: BTreeMap<String, Vec<f64>>,
    /// The whole run's estimate before its first cell.
    pub initial_s: f64,
    pub basis: String,
}

/// Windows the sampler-overhead check runs on a run's first cell (off, on, off, on), where a
/// sampler reads the counter (`measure::measure_sampler_overhead`).
const SAMPLER_CHECK_WINDOWS: f64 = 4.0;

impl Estimate {
    /// `floor`: what the energy sensor adds to every window ([`WindowFloor::of_run`]).
    pub fn new(
        cells: &[&Cell],
        cost: &dyn CellCost,
        protocol: &ProtocolSection,
        floor: WindowFloor,
    ) -> Self {
        let mut seen = std::collections::HashSet::new();
        let cells: Vec<(String, f64)> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let first = seen.insert((c.model.clone(), c.seq_len));
                let loops = cost.unit_loops_s(c);
                let mut s = protocol_s(protocol, &loops, floor) + cost.outside_s(c, first);
                if i == 0 && floor.update_s.is_some() {
                    // Windows of min_window_s and min_loops, not held to the counter's floor,
                    // of the cell's last unit (a decoder's decode loop).
                    let loop_s = loops.last().copied().unwrap_or(0.0);
                    let window = protocol
                        .min_window_s
                        .max(f64::from(protocol.min_loops) * loop_s);
                    s += SAMPLER_CHECK_WINDOWS * (window + floor.start_wait_s);
                }
                (cost.class(c), s)
            })
            .collect();
        Self {
            initial_s: cells.iter().map(|c| c.1).sum(),
            cells,
            ratios: BTreeMap::new(),
            basis: cost.basis(),
        }
    }

    fn factor(&self, class: &str) -> f64 {
        let median = |v: &[f64]| crate::stats::percentile(v, 50.0);
        match self.ratios.get(class) {
            Some(r) => median(r),
            None => {
                let all: Vec<f64> = self.ratios.values().flatten().copied().collect();
                if all.is_empty() {
                    1.0
                } else {
                    median(&all)
                }
            }
        }
    }

    /// Cell `i` (plan order of the cells to measure) took `actual_s`.
    pub fn finished(&mut self, i: usize, actual_s: f64) {
        if let Some((class, est)) = self.cells.get(i) {
            if *est > 0.0 && actual_s.is_finite() {
                self.ratios
                    .entry(class.clone())
                    .or_default()
                    .push(actual_s / est);
            }
        }
    }

    /// Seconds left: the cells after `current`, and what is left of `current` after
    /// `elapsed_s` in it (never below a second, so an overrun cell shows as about to end).
    pub fn remaining_s(&self, current: usize, elapsed_s: f64) -> f64 {
        let price = |i: usize| {
            let (class, s) = &self.cells[i];
            s * self.factor(class)
        };
        let rest: f64 = (current + 1..self.cells.len()).map(price).sum();
        let here = if current < self.cells.len() {
            (price(current) - elapsed_s).max(1.0)
        } else {
            0.0
        };
        rest + here
    }
}

#[cfg(test)]
mod tests;
