//! The experiment file's schema: serde structs with their defaults (the lowest layer of the
//! configuration), the precisions and scopes a matrix may name, and the loaded experiment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::precision::Precision;
use super::quantize::{LayerMethod, QuantizeSelection};

/// A fully loaded experiment file, with defaults applied and overrides merged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub experiment: ExperimentSection,
    #[serde(default)]
    pub device: DeviceSection,
    #[serde(default)]
    pub sensor: SensorSection,
    #[serde(default)]
    pub protocol: ProtocolSection,
    pub dataset: DatasetSection,
    pub models: BTreeMap<String, ModelSection>,
    pub matrix: MatrixSection,
    #[serde(default, skip_serializing_if = "ReportSection::is_default")]
    pub report: ReportSection,
}

/// What reports compare against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// Savings (energy, latency) are given in % of this precision's cell with the same model
    /// and shapes.
    #[serde(default = "default_baseline")]
    pub baseline: Precision,
}

impl Default for ReportSection {
    fn default() -> Self {
        Self {
            baseline: default_baseline(),
        }
    }
}

impl ReportSection {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_baseline() -> Precision {
    Precision::Fp32
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// Names the results folder: letters, digits, `-`, `_` and `.` only.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds random weights (and anything else random), so a re-run measures the same model.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// CUDA when compiled in and a GPU is present, else the CPU (with a notice).
    #[default]
    Auto,
    Cuda,
    Cpu,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSection {
    pub backend: Backend,
    /// CUDA ordinal of the GPU to use.
    pub gpu: usize,
    /// Several GPUs of this host, one worker process each, every worker taking the next
    /// unmeasured cell of the plan: `[0, 1, 3]` or `"all"`. Each cell still runs alone on its GPU,
    /// metered by that GPU's own counter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<GpuSet>,
    /// Worker processes on the CPU (device.backend = "cpu" only): stand-ins for GPUs that let the
    /// multi-worker path run without GPUs. They share the CPU, so their latencies are not
    /// independent measurements.
    #[serde(skip_serializing_if = "is_one")]
    pub cpu_workers: usize,
    /// On CUDA, capture each cell's whole forward pass once as a CUDA graph and replay it per
    /// loop, as a deployment would (`torch.compile(mode="reduce-overhead")` does the same); false
    /// runs it kernel by kernel, for comparison. Every record says which ran
    /// (`implementation.execution`). No effect on the CPU. Left out of the resolved config when
    /// true, so files written before the key existed resolve as they did.
    #[serde(skip_serializing_if = "is_true")]
    pub cuda_graphs: bool,
    /// W8A8 precisions on tensor cores: quantize the FFN's second GEMM's input inside the kernel
    /// that computes the first one's GELU, so that activation is never stored in the float dtype;
    /// false gives that GEMM a quantization pass of its own, for comparison. Every record says
    /// which ran (`implementation.activation_quantization`). Left out of the resolved config when
    /// true.
    #[serde(skip_serializing_if = "is_true")]
    pub fuse_quantization: bool,
    /// FP8 precisions on tensor cores: let cuBLASLt accumulate the E4M3 products in the tensor
    /// cores' own precision instead of promoting partial sums to f32 along K (faster on Hopper,
    /// less exact; the fidelity section measures what it costs). Off by default. The record says
    /// which ran (`implementation.linear`). No effect on int8, floats or the CPU reference.
    #[serde(skip_serializing_if = "is_false")]
    pub fp8_fast_accumulation: bool,
    /// On CUDA, the library of the GEMMs that fuse more than a bias: `"cublaslt"` (default: the
    /// 8-bit GEMMs write int32 or take their scales in cuBLASLt's epilogue, GELU and the int8
    /// dequantization run as kernels of their own) or `"cutlass"` (the runner's CUTLASS GEMMs for
    /// Hopper: per-token x per-channel scales, bias and erf GELU in the epilogue, for int8-*,
    /// fp8-* and the fp16/bf16 FFN-in; their FP8 GEMMs promote along K, so with
    /// `fp8_fast_accumulation` the FP8 layers stay cuBLASLt's). A GPU cell with a binary built
    /// without them fails before measuring. Every record says which GEMM and epilogue ran per
    /// linear and why a layer kept cuBLASLt (`implementation.gemms`). Left out of the resolved
    /// config when cuBLASLt.
    #[serde(skip_serializing_if = "GemmLibrary::is_cublaslt")]
    pub gemm_library: GemmLibrary,
}

/// `device.gemm_library`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GemmLibrary {
    #[default]
    Cublaslt,
    Cutlass,
}

impl GemmLibrary {
    pub fn is_cublaslt(&self) -> bool {
        *self == Self::Cublaslt
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cublaslt => "cublaslt",
            Self::Cutlass => "cutlass",
        }
    }
}

impl Default for DeviceSection {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            gpu: 0,
            gpus: None,
            cpu_workers: 1,
            cuda_graphs: true,
            fuse_quantization: true,
            fp8_fast_accumulation: false,
            gemm_library: GemmLibrary::Cublaslt,
        }
    }
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `device.gpus`: a list of CUDA ordinals, or every GPU of the host.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum GpuSet {
    List(Vec<usize>),
    /// Only "all" is valid (checked in validation, so the message can name the key).
    Named(String),
}

impl<'de> Deserialize<'de> for GpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct GpuSetVisitor;
        impl<'de> serde::de::Visitor<'de> for GpuSetVisitor {
            type Value = GpuSet;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of CUDA ordinals such as [0, 1], or \"all\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GpuSet, E> {
                Ok(GpuSet::Named(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<GpuSet, A::Error> {
                let mut list = Vec::new();
                while let Some(k) = seq.next_element::<usize>()? {
                    list.push(k);
                }
                Ok(GpuSet::List(list))
            }
        }
        d.deserialize_any(GpuSetVisitor)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SensorKind {
    /// Every sensor this machine has: NVML when the cells run on a GPU and NVML answers, RAPL
    /// (CPU packages and DRAM) when the powercap counters are there and readable. Whatever is
    /// missing is said in one line, and every report says what the energy covers.
    #[default]
    Auto,
    /// NVML only; a configuration error where it cannot work.
    Nvml,
    /// RAPL only (CPU packages and DRAM); a configuration error where it is absent or unreadable.
    Rapl,
    /// NVML and RAPL both, each required.
    #[serde(rename = "nvml+rapl")]
    NvmlRapl,
    None,
}

impl SensorKind {
    /// As the experiment file spells it.
    pub fn name(self) -> &'static str {
        match self {
            SensorKind::Auto => "auto",
            SensorKind::Nvml => "nvml",
            SensorKind::Rapl => "rapl",
            SensorKind::NvmlRapl => "nvml+rapl",
            SensorKind::None => "none",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSection {
    pub kind: SensorKind,
    /// Period of the background power sampler.
    pub sample_interval_ms: u64,
    /// Where the kernel's powercap tree is (RAPL's counters): an absolute path. Tests point it
    /// at a tree they write. Left out of what is written when it is the kernel's, so records and
    /// reports of runs made before it existed read the same.
    #[serde(skip_serializing_if = "is_default_powercap_root")]
    pub powercap_root: PathBuf,
}

fn is_default_powercap_root(p: &Path) -> bool {
    p == Path::new(DEFAULT_POWERCAP_ROOT)
}

impl Default for SensorSection {
    fn default() -> Self {
        Self {
            kind: SensorKind::Auto,
            sample_interval_ms: 20,
            powercap_root: PathBuf::from(DEFAULT_POWERCAP_ROOT),
        }
    }
}

/// Where Linux exposes powercap (RAPL).
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// The measurement protocol. A window lasts until both `min_window_s` and `min_loops` are reached,
/// so slow CPU cells stay short while fast GPU cells run long enough for the energy counter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolSection {
    /// Warm-up runs at least this long after its first loop (which absorbs module loading and
    /// JIT compilation, however long they take) ...
    pub warmup_s: f64,
    /// ... and at least this many loops, then continues until latency is steady.
    pub warmup_min_loops: u32,
    /// Warm-up gives up waiting for steady latency this long after its first loop (flagged).
    pub warmup_max_s: f64,
    /// Steady = the last few loops' latencies lie within this relative spread.
    pub steady_tolerance: f64,
    /// Pause between warm-up and the first window.
    pub stabilize_s: f64,
    pub min_window_s: f64,
    pub min_loops: u32,
    /// Windows per cell: they give the median and its 95 % interval, which needs 6 windows (the
    /// order-statistic interval of a median: [min, max] of 6 covers 96.9 %, of 3 only 75 %).
    pub repeats: u32,
    /// Pause after each cell.
    pub cooldown_s: f64,
    /// Before the idle baseline, the device rests this long (power settles after start-up work).
    pub idle_settle_s: f64,
    /// Idle power is measured for this long before the sweep, where energy is measured.
    pub idle_baseline_s: f64,
}

impl Default for ProtocolSection {
    fn default() -> Self {
        Self {
            warmup_s: 2.0,
            warmup_min_loops: 3,
            warmup_max_s: 30.0,
            steady_tolerance: 0.10,
            stabilize_s: 1.0,
            min_window_s: 3.0,
            min_loops: 10,
            repeats: 6,
            cooldown_s: 0.0,
            idle_settle_s: 5.0,
            idle_baseline_s: 5.0,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// `id<TAB>rating<TAB>text` lines; label = sign of the rating, zero ratings dropped.
    #[default]
    RatingTsv,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// Relative paths are resolved against the experiment file's folder.
    pub path: PathBuf,
    #[serde(default)]
    pub format: DatasetFormat,
    /// A WordPiece `vocab.txt` (BERT uncased rules) or a Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Use only the first N examples.
    #[serde(default)]
    pub limit: Option<i64>,
}

/// The encoder architectures the runner implements itself (BERT-family classifiers). Decoder
/// architectures are not listed here: every candle-transformers decoder is one entry of
/// `model::decoder::zoo`, and a model section names it as a string that `runner plan` looks up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[default]
    Distilbert,
    Bert,
}

impl Architecture {
    pub const ENCODERS: [(&'static str, Architecture); 2] = [
        ("distilbert", Architecture::Distilbert),
        ("bert", Architecture::Bert),
    ];

    pub fn is_distilbert(&self) -> bool {
        *self == Architecture::Distilbert
    }

    /// The encoder architecture of this name; `None` for anything else (a decoder's name, or a
    /// typo that the decoder zoo's lookup then answers with "did you mean").
    pub fn parse_encoder(name: &str) -> Option<Architecture> {
        Self::ENCODERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `distilbert` or `bert` (the runner's encoders), or a decoder architecture of
    /// candle-transformers (`llama`, `qwen2`, `mistral`, ...; `runner plan` lists them).
    pub architecture: String,
    /// A named preset: the shapes of a published checkpoint (`distilbert-base-uncased`,
    /// `smollm2-135m`, ...). Encoders always name one; decoders with weights from a folder or a
    /// .gguf file take the shapes from there (a preset given beside them must agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// `random` (seeded, the preset's architecture), a local Hugging Face folder holding
    /// `config.json` and `*.safetensors` (relative to the experiment file's folder), or, for
    /// decoders, a `.gguf` file (its tokenizer and quantization types are used).
    #[serde(default = "default_weights")]
    pub weights: String,
    /// What classifies: the checkpoint's own head, or a linear probe the runner trains on the
    /// fp32 model's pooled outputs (and then reports accuracy at every precision).
    // Defaults are left out of the resolved config that reports print, as before probes existed.
    #[serde(default, skip_serializing_if = "HeadKind::is_checkpoint")]
    pub head: HeadKind,
    /// Settings of the linear probe (`head = "probe"`).
    #[serde(default, skip_serializing_if = "ProbeSection::is_default")]
    pub probe: ProbeSection,
    /// Decoders: who runs the model. `crate` (the default): candle-transformers' model as the
    /// crate runs it (eager, its KV cache grown by `Tensor::cat`); `own`: the runner's own
    /// Llama-family decoder as deployed (static KV cache, device-held position, precisions
    /// quantized at load), for llama, mistral, qwen2 and qwen3.
    #[serde(default, skip_serializing_if = "Implementation::is_crate")]
    pub implementation: Implementation,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    #[default]
    Crate,
    Own,
}

impl Implementation {
    pub fn is_crate(&self) -> bool {
        *self == Implementation::Crate
    }
}

impl ModelSection {
    /// The encoder architecture, for sections that declare one.
    pub fn encoder(&self) -> Option<Architecture> {
        Architecture::parse_encoder(&self.architecture)
    }

    /// The encoder preset this section names, when it declares an encoder and a known preset.
    pub fn encoder_preset(&self) -> Option<super::Preset> {
        super::Preset::lookup(self.encoder()?, self.preset.as_deref()?)
    }
}

fn default_weights() -> String {
    "random".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// DistilBERT: pre-classifier + ReLU + classifier on [CLS]; BERT: pooler (dense + tanh on
    /// [CLS]) + classifier. Random weights, or the folder's trained head.
    #[default]
    Checkpoint,
    /// Masked mean pooling + a logistic-regression head trained by the runner (sentence-embedding
    /// models such as all-MiniLM-L6-v2 have no classifier of their own).
    Probe,
}

/// A linear probe: a seeded split of the labelled dataset into `train_examples` and
/// `test_examples`, logistic regression on the fp32 model's centred, scaled pooled outputs (full-batch
/// gradient descent, L2 penalty), then accuracy on the test split in every cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    #[serde(default = "default_probe_train")]
    pub train_examples: i64,
    #[serde(default = "default_probe_test")]
    pub test_examples: i64,
    #[serde(default = "default_probe_l2")]
    pub l2: f64,
    #[serde(default = "default_probe_steps")]
    pub steps: i64,
}

impl HeadKind {
    fn is_checkpoint(&self) -> bool {
        *self == HeadKind::Checkpoint
    }
}

impl ProbeSection {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for ProbeSection {
    fn default() -> Self {
        Self {
            train_examples: default_probe_train(),
            test_examples: default_probe_test(),
            l2: default_probe_l2(),
            steps: default_probe_steps(),
        }
    }
}

fn default_probe_train() -> i64 {
    4000
}
fn default_probe_test() -> i64 {
    2000
}
/// Chosen once on all-MiniLM-L6-v2 (seq 32, 2,000/1,000 split, seed 0): test accuracy 73.2 % at
/// 1e-3, 74.8 % at 1e-2; 500 steps had converged (2,000 gave the same).
fn default_probe_l2() -> f64 {
    1e-2
}
fn default_probe_steps() -> i64 {
    500
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole forward pass.
    Model,
    /// Each layer alone (and each transformer block's components), on its real captured input.
    Layers,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Model => "model",
            Scope::Layers => "layers",
        }
    }
}

/// Axes of the matrix plus GitHub-Actions-style `include` and `exclude`.
/// Integers are read signed so that a negative value gets our own message, not serde's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MatrixSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Vec<Precision>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<Vec<i64>>,
    /// Decoders: tokens per prompt (the prefill's length); encoders ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_len: Option<Vec<i64>>,
    /// Decoders: greedy tokens generated per prompt after the prefill (EOS ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tokens: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<Scope>>,
    /// Which linear layers quantized precisions quantize (`all` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<Vec<QuantizeSelection>>,
    /// How `layers` cells attribute energy to layers (`isolated` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_method: Option<Vec<LayerMethod>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<MatrixEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<MatrixEntry>,
    /// Order in which the axes appear in the experiment file (the Cartesian product's key order).
    /// Not a key users write: recovered from the file, since figment's maps are sorted.
    #[serde(skip)]
    pub axis_order: Vec<String>,
}

/// A partial cell: an `include` or `exclude` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MatrixEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_len: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<QuantizeSelection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_method: Option<LayerMethod>,
}

/// The axis names, in the order used when an axis is absent from the file.
pub const AXES: [&str; 9] = [
    "model",
    "precision",
    "batch_size",
    "seq_len",
    "prompt_len",
    "new_tokens",
    "scope",
    "quantize",
    "layer_method",
];

/// Where a loaded experiment came from, for the manifest and for resolving relative paths.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadedExperiment {
    pub config: ExperimentConfig,
    /// The experiment file as given on the command line.
    pub file: PathBuf,
    /// Folder that relative dataset and weight paths are resolved against.
    pub base_dir: PathBuf,
    /// `--set` overrides, verbatim.
    pub overrides: Vec<String>,
    /// `RUNNER_*` environment variables that took part, `NAME=value`.
    pub env_overrides: Vec<String>,
}

impl LoadedExperiment {
    /// Resolves a path from the experiment file against the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}
