//! What a run leaves behind: the record schema (one JSON record per cell, the manifest with its
//! sessions) and the run directory that holds them (`run_dir.rs`: layout, locks, claims, atomic
//! writes; `read_back.rs`: reading every file back, bounded; `check.rs`: the one validation of
//! what is read back, against the plan's cell with its id). The record format is a public contract: it carries `schema_version`,
//! and `runner report` rebuilds every report from these files alone.
//!
//! May import the stages whose results it records (config, matrix, data, device, sensor,
//! measure, fidelity, probe, model for hashing) and error; never analysis, report, run or scale.

mod check;
mod context;
mod generate;
mod manifest;
mod read_back;
mod run_dir;

pub use check::{MAX_POWER_W, MAX_UNITS, MAX_WINDOWS};
pub(crate) use context::per_call;
pub use context::StepContext;
pub use generate::{per_step, GenerateRecord, HostSteps};
pub use manifest::{now_rfc3339, this_build, GitInfo, HostInfo, Manifest, Session, WorkerInfo};
pub use read_back::{parse_manifest, parse_record, parse_session, parse_trace};
pub use run_dir::{
    write_atomic, write_derived, CellClaim, RenderLock, RunDir, RunLock, CLAIMS_DIR, LOCK_FILE,
    RENDER_LOCK_FILE, SESSIONS_DIR,
};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ProtocolSection;
use crate::data::DatasetUsage;
use crate::device::DeviceInfo;
use crate::matrix::Cell;
use crate::measure::{WarmupRecord, WindowRecord};
pub use crate::model::workload::Phase;
use crate::sensor::{GpuState, SensorInfo};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellStatus {
    Ok,
    /// The device cannot run the cell (e.g. its precision); not a failure.
    Skipped,
    Failed,
}

/// Everything measured for one cell, and everything needed to interpret it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    pub schema_version: u32,
    pub cell: Cell,
    pub status: CellStatus,
    /// Why the cell was skipped or failed.
    pub reason: Option<String>,
    /// The precision that really executed, read back from the loaded weights.
    pub precision_executed: Option<String>,
    /// Which implementation ran each part of the model (attention, linear, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<BTreeMap<String, String>>,
    /// The worker that measured the cell, in runs spread over several workers (one per GPU, or
    /// a Slurm array task): `gpu1`, `cpu-worker-0`, `slurm-4711_3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub device: DeviceInfo,
    pub sensor: SensorInfo,
    pub protocol: ProtocolSection,
    /// Idle power measured before the sweep, over every metered domain: the baseline for net
    /// energy.
    pub idle_power_w: Option<f64>,
    /// The same per domain (`gpu-board`, `cpu-package`, `dram`); empty in records made before
    /// domains were recorded (their idle power is the GPU board's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub idle_domain_power_w: BTreeMap<String, f64>,
    /// GPU identity, clocks, temperature and power right before and after the cell.
    pub gpu_before: Option<GpuState>,
    pub gpu_after: Option<GpuState>,
    pub warmup: Option<WarmupRecord>,
    pub windows: Vec<WindowRecord>,
    /// For `layers` cells: every layer and component, each measured alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRecord>,
    /// For `layers` cells measured by prefix differencing (`layer_method = "prefix"` or
    /// `"both"`): the prefixes embeddings, + block 0, ..., the whole model, each measured alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixRecord>,
    /// For cells of quantized precisions: which linear layers were quantized and which stayed in
    /// the float path (and, for `quantize = "top:K"`, the profile that ranked them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<QuantizationRecord>,
    /// For `layers` cells: the layers' sum against the whole-model cell of the same settings,
    /// when that cell was measured earlier in the run (reports recompute it in any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciliation>,
    /// Outputs against the fp32 model on the same inputs (non-fp32 whole-model cells).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<crate::fidelity::Fidelity>,
    /// Accuracy on the probe's test split (models with `head = "probe"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<crate::probe::Accuracy>,
    /// Decoder cells: prefill windows, the KV cache, fidelity and perplexity (`windows` above
    /// are the decode windows, per step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateRecord>,
    pub dataset: Option<DatasetUsage>,
    /// Examples longer than seq_len (cut short by the tokenizer).
    pub truncated_examples: Option<usize>,
    pub started_at: String,
    pub ended_at: String,
}

/// One layer or component of a `layers` cell, measured alone on its captured input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// e.g. `embeddings`, `transformer_block_0`, `transformer_block_0.attention`.
    pub name: String,
    /// Position in execution order (components follow their block).
    pub index: usize,
    /// The block a component belongs to; `None` for top-level layers.
    pub parent: Option<String>,
    pub warmup: WarmupRecord,
    /// Each loop ran the unit this many times back to back before one synchronize (K, chosen
    /// so that a loop lasts about as long as a whole forward pass; 1 on the CPU, which is
    /// synchronous, and in records written before K existed). `windows` hold loop times and
    /// loop counts as measured: [`Self::per_call_windows`] divides them into calls.
    #[serde(default = "one")]
    pub calls_per_loop: u32,
    /// How a loop ran (a CUDA graph of K calls, or eager launches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// Decoders: the phase the unit ran in (a prefill of the prompts, or one decode step);
    /// `None` for an encoder's forward pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Cold isolation: the copies of its weights (and KV cache) the unit's calls read in turn;
    /// `None`: warm, the same weights every call (every record before the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold: Option<ColdCopies>,
    /// `in-step`: the unit ran after its step predecessor, and `windows` are the pair's; its
    /// figures are the pair's less the predecessor's ([`Self::per_call_windows`]). `None`: the
    /// unit alone (every record before the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<StepContext>,
    pub windows: Vec<WindowRecord>,
}

/// `protocol.layer_isolation = "cold"`, as one unit ran it: `copies` x `copy_bytes` against the
/// device's last-level cache (the GPU's L2), which the copies exceed twice over unless capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdCopies {
    pub copies: u32,
    pub copy_bytes: u64,
    pub cache_bytes: u64,
}

fn one() -> u32 {
    1
}

impl LayerRecord {
    /// The windows per call of the unit: loop latencies divided by K, loops multiplied by K, so
    /// that energy / loops and the latency medians are per call (durations and energies are
    /// the windows' own). An `in-step` unit's: the pair's less its predecessor's.
    pub fn per_call_windows(&self) -> Vec<WindowRecord> {
        let k = self.calls_per_loop;
        match &self.context {
            Some(c) => context::unit_windows(&per_call(&self.windows, k), &per_call(&c.windows, k)),
            None => per_call(&self.windows, k),
        }
    }
}

/// One prefix of the forward pass (its first `layers` top-level layers, through `name`),
/// measured through the full protocol; consecutive prefixes differ by one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixRecord {
    /// The prefix's last layer, e.g. `transformer_block_2`.
    pub name: String,
    /// How many top-level layers it runs (1 = the embeddings alone).
    pub layers: usize,
    pub warmup: WarmupRecord,
    /// Each loop ran the prefix this many times before one synchronize, the same K for every
    /// prefix of the cell (1 on the CPU and in records written before K existed); as for
    /// [`LayerRecord::calls_per_loop`], `windows` hold loops as measured.
    #[serde(default = "one")]
    pub calls_per_loop: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// Decoders: the phase the unit ran in (a prefill of the prompts, or one decode step);
    /// `None` for an encoder's forward pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    pub windows: Vec<WindowRecord>,
}

impl PrefixRecord {
    /// The windows per call of the prefix (see [`LayerRecord::per_call_windows`]).
    pub fn per_call_windows(&self) -> Vec<WindowRecord> {
        per_call(&self.windows, self.calls_per_loop)
    }
}

/// What a quantized cell quantized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizationRecord {
    /// The cell's `quantize` selection as written (`all`, `ffn`, `top:3`, ...).
    pub selection: String,
    /// Linear sites in the quantized numerics (`transformer_block_0.attention` = its query,
    /// key, value and output projections; `.ffn` = lin1 and lin2; `pre_classifier`, ...).
    pub quantized: Vec<String>,
    /// Linear sites left in the float path.
    pub float: Vec<String>,
    /// For `top:K`: the `layers` cell whose profile ranked the layers, and the ranking (largest
    /// share first) with the metric it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranking: Vec<RankedLayer>,
}

/// A layer's share of its `layers` cell, as `top:K` ranked it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedLayer {
    pub layer: String,
    pub share_pct: f64,
    /// `energy` where the cell measured energy, else `latency`.
    pub metric: String,
}

/// Σ top-level layers against the whole model, same model, precision and shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconciliation {
    pub model_cell_id: String,
    pub layers_latency_ms: f64,
    pub whole_latency_ms: f64,
    /// layers / whole.
    pub latency_ratio: f64,
    pub layers_energy_per_inference_mj: Option<f64>,
    pub whole_energy_per_inference_mj: Option<f64>,
    pub energy_ratio: Option<f64>,
    /// Prefix differencing: Σ of the differences (= the longest prefix, the whole model measured
    /// inside the layers cell) against the whole-model cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_latency_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_energy_ratio: Option<f64>,
    /// Decoders: the phase these figures are of (decode: per generated token), and the
    /// prefill's reconciliation (per prompt token) beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<Box<Reconciliation>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(k: u32) -> PrefixRecord {
        PrefixRecord {
            name: "embeddings".into(),
            layers: 1,
            warmup: WarmupRecord {
                loops: 3,
                duration_s: 0.1,
                first_loop_ms: 4.0,
                steady: true,
            },
            calls_per_loop: k,
            execution: None,
            phase: None,
            windows: vec![WindowRecord {
                loops: 250,
                duration_s: 1.0,
                loop_ms: vec![4.0; 250],
                loop_ms_stride: 1,
                energy_j: Some(100.0),
                counter_delta_j: Some(100.0),
                tail_correction_j: Some(0.0),
                trace_energy_j: None,
                counter_ticks: Some(10),
                num_power_samples: 0,
                throttle_reasons: None,
                sm_clock_min_mhz: None,
                sm_clock_max_mhz: None,
                host: None,
                domain_energy_j: Default::default(),
            }],
        }
    }

    #[test]
    fn a_prefix_of_k_calls_per_loop_is_read_per_call_and_old_records_mean_one() {
        let w = &prefix(4).per_call_windows()[0];
        assert_eq!(w.loops, 1000);
        assert!(w.loop_ms.iter().all(|&ms| (ms - 1.0).abs() < 1e-12));
        assert_eq!((w.duration_s, w.energy_j), (1.0, Some(100.0)));
        // A record written before K existed has no calls_per_loop: one call per loop.
        let mut json = serde_json::to_value(prefix(4)).unwrap();
        json.as_object_mut().unwrap().remove("calls_per_loop");
        let old: PrefixRecord = serde_json::from_value(json).unwrap();
        assert_eq!(old.calls_per_loop, 1);
        assert_eq!(old.per_call_windows(), old.windows);
    }
}
