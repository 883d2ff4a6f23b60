//! Experiment files: serde structs, figment layering and validation.
//!
//! Layers, lowest first: built-in defaults (the `Default` impls below) < the experiment file <
//! `RUNNER_SECTION__KEY` environment variables < `--set key=value` overrides. Every value is checked
//! here, before any model or dataset work, and each problem names the file or override and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::model::preset::Preset;

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
}

impl Default for DeviceSection {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            gpu: 0,
            gpus: None,
            cpu_workers: 1,
        }
    }
}

fn is_one(n: &usize) -> bool {
    *n == 1
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
    /// NVML when the run is on a GPU and NVML is available, else none (said in every report).
    #[default]
    Auto,
    Nvml,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSection {
    pub kind: SensorKind,
    /// Period of the background power sampler.
    pub sample_interval_ms: u64,
}

impl Default for SensorSection {
    fn default() -> Self {
        Self {
            kind: SensorKind::Auto,
            sample_interval_ms: 20,
        }
    }
}

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
    /// Windows per cell: they give the median and the confidence interval.
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
            repeats: 3,
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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[default]
    Distilbert,
    Bert,
}

impl Architecture {
    pub fn is_distilbert(&self) -> bool {
        *self == Architecture::Distilbert
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub architecture: Architecture,
    /// A named architecture preset, e.g. `distilbert-base-uncased`.
    pub preset: String,
    /// `random` (seeded, the preset's architecture) or a local Hugging Face folder holding
    /// `config.json` and `model.safetensors` (relative to the experiment file's folder).
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

/// What a cell computes in. Float precisions hold every weight and activation in one dtype;
/// quantized ones hold every linear layer's weight in a GGML block format (candle's `QMatMul`),
/// quantized in-process from the loaded weights, and everything else (embeddings, norms,
/// attention, activations) in the stated float dtype: `q8_0` is q8_0 linears with fp32 floats,
/// `q8_0-fp16` the same linears with fp16 floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
    Quantized(QuantFormat, FloatPrecision),
}

/// GGML block formats candle quantizes to and multiplies with on CPU and CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantFormat {
    /// 8-bit weights in blocks of 32 with an f16 scale (8.5 bits per weight).
    Q8_0,
    /// 4-bit weights in blocks of 32 with an f16 scale (4.5 bits per weight).
    Q4_0,
    /// 4-bit K-quant: super-blocks of 256 (4.5 bits per weight); inputs must be multiples of 256.
    Q4K,
    /// 6-bit K-quant: super-blocks of 256 (6.56 bits per weight); inputs must be multiples of 256.
    Q6K,
}

impl QuantFormat {
    pub const ALL: [QuantFormat; 4] = [Self::Q8_0, Self::Q4_0, Self::Q4K, Self::Q6K];

    pub fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4K => "q4k",
            Self::Q6K => "q6k",
        }
    }

    /// Weights per block: a linear layer's input width must be a multiple of it.
    pub fn block_size(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_0 => 32,
            Self::Q4K | Self::Q6K => 256,
        }
    }
}

/// The float dtype of everything a quantized precision does not quantize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FloatPrecision {
    Fp32,
    Fp16,
    Bf16,
}

impl FloatPrecision {
    pub fn precision(self) -> Precision {
        match self {
            Self::Fp32 => Precision::Fp32,
            Self::Fp16 => Precision::Fp16,
            Self::Bf16 => Precision::Bf16,
        }
    }
}

/// Every precision with its name, in the order error messages list them.
const PRECISIONS: [(&str, Precision); 15] = {
    use FloatPrecision as F;
    use Precision::Quantized as Q;
    use QuantFormat as QF;
    [
        ("fp32", Precision::Fp32),
        ("fp16", Precision::Fp16),
        ("bf16", Precision::Bf16),
        ("q8_0", Q(QF::Q8_0, F::Fp32)),
        ("q8_0-fp16", Q(QF::Q8_0, F::Fp16)),
        ("q8_0-bf16", Q(QF::Q8_0, F::Bf16)),
        ("q4_0", Q(QF::Q4_0, F::Fp32)),
        ("q4_0-fp16", Q(QF::Q4_0, F::Fp16)),
        ("q4_0-bf16", Q(QF::Q4_0, F::Bf16)),
        ("q4k", Q(QF::Q4K, F::Fp32)),
        ("q4k-fp16", Q(QF::Q4K, F::Fp16)),
        ("q4k-bf16", Q(QF::Q4K, F::Bf16)),
        ("q6k", Q(QF::Q6K, F::Fp32)),
        ("q6k-fp16", Q(QF::Q6K, F::Fp16)),
        ("q6k-bf16", Q(QF::Q6K, F::Bf16)),
    ]
};

const PRECISION_NAMES: [&str; PRECISIONS.len()] = {
    let mut names = [""; PRECISIONS.len()];
    let mut i = 0;
    while i < PRECISIONS.len() {
        names[i] = PRECISIONS[i].0;
        i += 1;
    }
    names
};

impl Precision {
    pub const FLOATS: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];

    pub fn name(self) -> &'static str {
        PRECISIONS
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .expect("every precision is in the table")
    }

    pub fn parse(name: &str) -> Option<Precision> {
        PRECISIONS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    /// The dtype of everything that is not a quantized linear weight.
    pub fn float(self) -> FloatPrecision {
        match self {
            Precision::Fp32 => FloatPrecision::Fp32,
            Precision::Fp16 => FloatPrecision::Fp16,
            Precision::Bf16 => FloatPrecision::Bf16,
            Precision::Quantized(_, f) => f,
        }
    }

    pub fn quant(self) -> Option<QuantFormat> {
        match self {
            Precision::Quantized(q, _) => Some(q),
            _ => None,
        }
    }
}

impl Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Precision::parse(&name)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &PRECISION_NAMES))
    }
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<Scope>>,
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
    pub scope: Option<Scope>,
}

/// The axis names, in the order used when an axis is absent from the file.
pub const AXES: [&str; 5] = ["model", "precision", "batch_size", "seq_len", "scope"];

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

/// Environment variables of the form `RUNNER_SECTION__KEY` (double underscore between levels).
/// Single-level names such as `RUNNER_TEMP` (set by CI systems) are ignored, not errors.
const ENV_PREFIX: &str = "RUNNER_";

fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

/// Loads, layers and validates an experiment file. Every error is a [`ConfigError`] (exit 2).
pub fn load(file: &Path, overrides: &[String]) -> Result<LoadedExperiment, ConfigError> {
    let bytes = std::fs::read(file).map_err(|e| {
        ConfigError::new(format!(
            "cannot read experiment file {}: {e}",
            file.display()
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigError::new(format!(
            "{}: not UTF-8 text (first bad byte at offset {}): TOML files must be UTF-8",
            file.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    load_text(file, &text, overrides)
}

/// [`load`] on text already read; `file` names it in messages and anchors relative paths.
/// (The fuzz target drives this directly.)
pub fn load_text(
    file: &Path,
    text: &str,
    overrides: &[String],
) -> Result<LoadedExperiment, ConfigError> {
    // Parse once ourselves: syntax errors then carry line and column, and the matrix's key order
    // survives (figment's maps are sorted).
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigError::new(format!(
            "{}{}: TOML syntax error: {}",
            file.display(),
            span_location(text, e.span()),
            e.message().trim()
        ))
    })?;

    let mut figment = Figment::new()
        .merge(Toml::string(text))
        .merge(env_provider());
    for raw in overrides {
        figment = figment.merge(SetOverride::parse(raw)?);
    }
    let origin = Origin::new(file, text, &figment);
    let mut config: ExperimentConfig = figment
        .extract()
        .map_err(|e| figment_to_config_error(e, &origin))?;
    config.matrix.axis_order = axis_order(&table);

    let env_overrides = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    // Empty for a file in the working directory, so resolved paths print as the user wrote them.
    let base_dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
    let loaded = LoadedExperiment {
        config,
        file: file.to_path_buf(),
        base_dir,
        overrides: overrides.to_vec(),
        env_overrides,
    };
    validate(&loaded, &origin)?;
    Ok(loaded)
}

/// Says where a configuration value came from, for error messages: `file:line:column` when the
/// file set it, else the `--set` override or the `RUNNER_*` variable that did.
struct Origin<'a> {
    file: &'a Path,
    text: &'a str,
    /// The file with byte spans; the text already parsed once, so this cannot fail in practice.
    spans: Option<toml::Spanned<toml::de::DeTable<'a>>>,
    figment: &'a Figment,
}

impl<'a> Origin<'a> {
    fn new(file: &'a Path, text: &'a str, figment: &'a Figment) -> Self {
        Self {
            file,
            text,
            spans: toml::de::DeTable::parse(text).ok(),
            figment,
        }
    }

    /// Who set the value at `path` (e.g. `["matrix", "batch_size", "1"]`): an override or
    /// environment variable when one did, else the file, with the value's line and column.
    fn of(&self, path: &[String]) -> String {
        let md = self.figment.find_metadata(&keys_of(path).join("."));
        self.source(md, path, false)
    }

    /// Names the provider `md` that set the value at `path` (figment's metadata): the override,
    /// the variable, or the file with the value's (or, when `key_itself`, the key's) position.
    fn source(&self, md: Option<&Metadata>, path: &[String], key_itself: bool) -> String {
        match md {
            Some(md) if md.name.starts_with("--set") => md.name.to_string(),
            Some(md) if md.name.contains("environment") => env_var_name(&keys_of(path)),
            _ => self.in_file(path, key_itself),
        }
    }

    /// `file:line:column` of the value at `path` (of its key when `key_itself`); just `file` when
    /// the file does not hold that path.
    fn in_file(&self, path: &[String], key_itself: bool) -> String {
        let span = self
            .spans
            .as_ref()
            .and_then(|doc| span_of(doc.get_ref(), path, key_itself));
        format!("{}{}", self.file.display(), span_location(self.text, span))
    }
}

/// The key names of a path, without array indices (`matrix.batch_size[1]` -> matrix, batch_size).
fn keys_of(path: &[String]) -> Vec<&str> {
    path.iter()
        .map(String::as_str)
        .filter(|p| p.parse::<usize>().is_err())
        .collect()
}

fn env_var_name(path: &[&str]) -> String {
    format!(
        "environment variable {ENV_PREFIX}{}",
        path.join("__").to_ascii_uppercase()
    )
}

/// Byte span of the value (or key) at `path` in a parsed TOML document; array elements are
/// numeric parts. `None` when the file does not hold the path (the value came from elsewhere).
fn span_of(
    doc: &toml::de::DeTable<'_>,
    path: &[String],
    key_itself: bool,
) -> Option<std::ops::Range<usize>> {
    use toml::de::DeValue;
    let mut table = Some(doc);
    let mut array: Option<&toml::de::DeArray<'_>> = None;
    let mut found = None;
    for part in path {
        let (key_span, value) = if let Some(t) = table {
            let (k, v) = t.iter().find(|(k, _)| k.get_ref().as_ref() == part)?;
            (k.span(), v)
        } else if let Some(a) = array {
            let v = a.get(part.parse::<usize>().ok()?)?;
            (v.span(), v)
        } else {
            break;
        };
        found = Some(if key_itself { key_span } else { value.span() });
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(a) => (None, Some(a)),
            _ => (None, None),
        };
    }
    found
}

/// Axis names in the order the file lists them, then the rest in canonical order.
fn axis_order(table: &toml::Table) -> Vec<String> {
    let mut order: Vec<String> = table
        .get("matrix")
        .and_then(|m| m.as_table())
        .map(|m| {
            m.keys()
                .filter(|k| AXES.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for axis in AXES {
        if !order.iter().any(|a| a == axis) {
            order.push(axis.to_string());
        }
    }
    order
}

/// `:line:column` for a byte span of `text` (1-based, as editors count), so `file:line:column`
/// jumps to the spot in an editor or terminal.
fn span_location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count() + 1)
        .unwrap_or(1);
    format!(":{line}:{column}")
}

/// A `--set key.path=value` override as a figment provider, so errors name the override.
struct SetOverride {
    raw: String,
    dict: Dict,
}

impl SetOverride {
    fn parse(raw: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| {
            ConfigError::new(format!(
                "--set {raw}: {why} (expected KEY=VALUE, e.g. --set protocol.repeats=3 or --set matrix.batch_size=[8,16])"
            ))
        };
        let (key, value) = raw.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(|part| part.trim().is_empty()) {
            return Err(bad("empty key"));
        }
        // The value is TOML (numbers, booleans, arrays, quoted strings); a bare word is a string,
        // so `--set experiment.name=trial` works without shell-quoted quotes.
        let parsed: Value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
            Ok(mut t) => to_figment_value(t.remove("v").expect("key v was just parsed")),
            Err(_) => Value::from(value.to_string()),
        };
        let mut dict = Dict::new();
        let parts: Vec<&str> = key.split('.').map(str::trim).collect();
        let mut nested = parsed;
        for part in parts.iter().skip(1).rev() {
            let mut d = Dict::new();
            d.insert(part.to_string(), nested);
            nested = Value::from(d);
        }
        dict.insert(parts[0].to_string(), nested);
        Ok(Self {
            raw: raw.to_string(),
            dict,
        })
    }
}

fn to_figment_value(v: toml::Value) -> Value {
    Value::serialize(v).expect("a TOML value always serializes")
}

impl Provider for SetOverride {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("--set {}", self.raw))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Turns figment's errors into messages that name the source (file, variable or override) and
/// the full key path.
fn figment_to_config_error(err: figment::Error, origin: &Origin<'_>) -> ConfigError {
    use figment::error::Kind;
    let problems = err
        .into_iter()
        .map(|e| {
            let mut path = key_path(&e.path);
            let what = match &e.kind {
                Kind::UnknownField(field, expected) => {
                    if e.path.last() != Some(field) {
                        path = join_key(&path, field);
                    }
                    format!(
                        "unknown key `{path}`{}; allowed here: {}",
                        did_you_mean(field, expected.iter().copied()),
                        expected.join(", ")
                    )
                }
                Kind::MissingField(field) => {
                    if e.path.last().map(String::as_str) != Some(field.as_ref()) {
                        path = join_key(&path, field);
                    }
                    format!("missing required key `{path}`")
                }
                Kind::UnknownVariant(found, expected) => format!(
                    "`{path}`: unknown value \"{found}\"{}; expected one of: {}",
                    did_you_mean(found, expected.iter().copied()),
                    expected.join(", ")
                ),
                Kind::InvalidType(actual, expected) => {
                    format!(
                        "`{path}`: expected {}, found {actual}",
                        plain_type(expected)
                    )
                }
                other => {
                    if path.is_empty() {
                        other.to_string()
                    } else {
                        format!("`{path}`: {other}")
                    }
                }
            };
            // An unknown key is pointed at itself; anything else at its value.
            let key_itself = matches!(e.kind, Kind::UnknownField(..));
            let mut located = e.path.clone();
            if let Kind::UnknownField(field, _) = &e.kind {
                if e.path.last() != Some(field) {
                    located.push(field.clone());
                }
            }
            let source = origin.source(e.metadata.as_ref(), &located, key_itself);
            format!("{source}: {what}")
        })
        .collect();
    ConfigError { problems }
}

/// serde's Rust type names in words a TOML author uses.
fn plain_type(expected: &str) -> &str {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "usize"
        | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        other => other,
    }
}

/// Safe as one path component on any OS: not empty, letters, digits, `-`, `_`, `.`, no leading dot.
fn is_file_name_safe(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// ` (did you mean `x`?)` when one candidate is close to what was written (a typo, not a guess):
/// Jaro-Winkler similarity of at least 0.85, the closest one; else nothing.
pub fn did_you_mean<'a>(written: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (strsim::jaro_winkler(written, c), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// `["matrix", "precision", "1"]` -> `matrix.precision[1]`, as a user would write it.
fn key_path(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        if p.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    out
}

fn join_key(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// Checks every value before any model work. Collects all problems, each with its key.
fn validate(loaded: &LoadedExperiment, origin: &Origin<'_>) -> Result<(), ConfigError> {
    let c = &loaded.config;
    let mut problems = Vec::new();
    // Each problem names the key it is about, so the message can say who set it and where.
    let mut bad = |at: &[&str], msg: String| {
        let path: Vec<String> = at.iter().map(|p| p.to_string()).collect();
        problems.push(format!("{}: {msg}", origin.of(&path)));
    };

    let name = &c.experiment.name;
    if !is_file_name_safe(name) {
        bad(&["experiment", "name"], format!(
            "experiment.name = {name:?}: use letters, digits, '-', '_' and '.' only (it names the results folder)"
        ));
    }
    for model_name in c.models.keys() {
        if !is_file_name_safe(model_name) {
            bad(&["models", model_name], format!(
                "models.{model_name:?}: model names may hold letters, digits, '-', '_' and '.' only, not starting with '.' (they name chart files)"
            ));
        }
    }

    if c.device.backend == Backend::Cuda && !cfg!(feature = "cuda") {
        bad(&["device", "backend"], "device.backend = \"cuda\" but this runner was built without CUDA: build it with scripts/build-cuda.sh (or `cargo build --release --features cuda`), or set device.backend = \"auto\" or \"cpu\"".into());
    }
    if let Some(gpus) = &c.device.gpus {
        match gpus {
            GpuSet::Named(name) if name != "all" => bad(&["device", "gpus"], format!(
                "device.gpus = {name:?}: use a list of CUDA ordinals such as [0, 1], or \"all\""
            )),
            GpuSet::List(list) if list.is_empty() => bad(&["device", "gpus"],
                "device.gpus = []: list at least one GPU (e.g. [0, 1]), or leave device.gpus out to use device.gpu".into()),
            GpuSet::List(list) => {
                let mut seen = std::collections::BTreeSet::new();
                if let Some(dup) = list.iter().find(|g| !seen.insert(**g)) {
                    bad(&["device", "gpus"], format!(
                        "device.gpus lists GPU {dup} twice: each GPU runs one worker, and two cells on one GPU would disturb each other's measurements"
                    ));
                }
            }
            GpuSet::Named(_) => {}
        }
        if c.device.backend == Backend::Cpu {
            bad(&["device", "gpus"], "device.gpus names GPUs but device.backend = \"cpu\": set device.backend = \"cuda\" (or \"auto\"), or use device.cpu_workers for several CPU workers".into());
        } else if !cfg!(feature = "cuda") {
            bad(&["device", "gpus"], "device.gpus names GPUs but this runner was built without CUDA: build it with scripts/build-cuda.sh, or leave device.gpus out".into());
        }
    }
    if c.device.cpu_workers == 0 {
        bad(
            &["device", "cpu_workers"],
            "device.cpu_workers = 0: at least one worker must measure".into(),
        );
    } else if c.device.cpu_workers > 1 && c.device.backend != Backend::Cpu {
        bad(&["device", "cpu_workers"], format!(
            "device.cpu_workers = {} needs device.backend = \"cpu\" (CPU workers stand in for GPUs in tests); on GPUs use device.gpus = [0, 1, ...]",
            c.device.cpu_workers
        ));
    }
    if c.sensor.sample_interval_ms == 0 {
        bad(
            &["sensor", "sample_interval_ms"],
            "sensor.sample_interval_ms must be >= 1".into(),
        );
    }

    let p = &c.protocol;
    let seconds = [
        ("warmup_s", p.warmup_s),
        ("warmup_max_s", p.warmup_max_s),
        ("stabilize_s", p.stabilize_s),
        ("cooldown_s", p.cooldown_s),
        ("idle_settle_s", p.idle_settle_s),
        ("idle_baseline_s", p.idle_baseline_s),
    ];
    for (key, v) in seconds {
        if !(v.is_finite() && v >= 0.0) {
            bad(
                &["protocol", key],
                format!("protocol.{key} = {v}: must be a number of seconds >= 0"),
            );
        }
    }
    if !(p.min_window_s.is_finite() && p.min_window_s > 0.0) {
        bad(&["protocol", "min_window_s"], format!(
            "protocol.min_window_s = {}: must be > 0 seconds (a window of zero length measures nothing)",
            p.min_window_s
        ));
    }
    if p.warmup_max_s < p.warmup_s {
        bad(
            &["protocol", "warmup_max_s"],
            format!(
                "protocol.warmup_max_s = {} is shorter than protocol.warmup_s = {}",
                p.warmup_max_s, p.warmup_s
            ),
        );
    }
    if !(p.steady_tolerance.is_finite() && p.steady_tolerance > 0.0) {
        bad(
            &["protocol", "steady_tolerance"],
            format!(
                "protocol.steady_tolerance = {}: must be > 0 (e.g. 0.10 for 10 %)",
                p.steady_tolerance
            ),
        );
    }
    for (key, v) in [
        ("min_loops", p.min_loops),
        ("repeats", p.repeats),
        ("warmup_min_loops", p.warmup_min_loops),
    ] {
        if v == 0 {
            bad(&["protocol", key], format!("protocol.{key} must be >= 1"));
        }
    }

    let dataset = loaded.resolve(&c.dataset.path);
    if !dataset.is_file() {
        bad(&["dataset", "path"], format!(
            "dataset.path: no dataset file at {} (paths are relative to the experiment file's folder)",
            dataset.display()
        ));
    }
    let tokenizer = loaded.resolve(&c.dataset.tokenizer);
    if !tokenizer.is_file() {
        bad(
            &["dataset", "tokenizer"],
            format!(
                "dataset.tokenizer: no tokenizer file (vocab.txt or tokenizer.json) at {}",
                tokenizer.display()
            ),
        );
    }
    if let Some(limit) = c.dataset.limit {
        if limit < 1 {
            bad(
                &["dataset", "limit"],
                format!("dataset.limit = {limit}: must be >= 1 (or left out to use every example)"),
            );
        }
    }

    if c.models.is_empty() {
        bad(
            &["models"],
            "no models declared: add a [models.NAME] table".into(),
        );
    }
    let mut max_positions = BTreeMap::new();
    for (model_name, m) in &c.models {
        match Preset::lookup(m.architecture, &m.preset) {
            Some(preset) => {
                max_positions.insert(model_name.clone(), preset.max_position_embeddings);
            }
            None => bad(
                &["models", model_name, "preset"],
                format!(
                    "models.{model_name}.preset = {:?}: unknown preset for {:?}; known: {}",
                    m.preset,
                    m.architecture,
                    Preset::names(m.architecture).join(", ")
                ),
            ),
        }
        if m.weights != "random" {
            let dir = loaded.resolve(Path::new(&m.weights));
            for needed in ["config.json", "model.safetensors"] {
                if !dir.join(needed).is_file() {
                    bad(&["models", model_name, "weights"], format!(
                        "models.{model_name}.weights: {} has no {needed} (expected \"random\" or a local Hugging Face folder with config.json and model.safetensors)",
                        dir.display()
                    ));
                }
            }
        }
        let probe = &m.probe;
        let at = format!("models.{model_name}.probe");
        if probe.train_examples < 2 {
            bad(&["models", model_name, "probe", "train_examples"], format!(
                "{at}.train_examples = {}: must be >= 2 (a classifier needs examples of both labels)",
                probe.train_examples
            ));
        }
        if probe.test_examples < 1 {
            bad(
                &["models", model_name, "probe", "test_examples"],
                format!("{at}.test_examples = {}: must be >= 1", probe.test_examples),
            );
        }
        if !(probe.l2.is_finite() && probe.l2 >= 0.0) {
            bad(
                &["models", model_name, "probe", "l2"],
                format!("{at}.l2 = {}: must be a finite number >= 0", probe.l2),
            );
        }
        if probe.steps < 1 {
            bad(
                &["models", model_name, "probe", "steps"],
                format!("{at}.steps = {}: must be >= 1", probe.steps),
            );
        }
    }

    let m = &c.matrix;
    let declared = |name: &str| c.models.contains_key(name);
    let known_models = c.models.keys().cloned().collect::<Vec<_>>().join(", ");
    let smallest_max_pos = max_positions.values().copied().min().unwrap_or(usize::MAX);
    for (i, name) in m.model.iter().flatten().enumerate() {
        if !declared(name) {
            bad(
                &["matrix", "model", &i.to_string()],
                format!(
                    "matrix.model[{i}] = {name:?} is not declared; declared models: {known_models}"
                ),
            );
        }
    }
    for (i, &b) in m.batch_size.iter().flatten().enumerate() {
        if b < 1 {
            bad(
                &["matrix", "batch_size", &i.to_string()],
                format!("batch_size must be >= 1 (matrix.batch_size[{i}] = {b})"),
            );
        }
    }
    for (i, &s) in m.seq_len.iter().flatten().enumerate() {
        check_seq_len(
            &mut bad,
            &["matrix", "seq_len", &i.to_string()],
            s,
            smallest_max_pos,
        );
    }
    for (list, entries) in [("include", &m.include), ("exclude", &m.exclude)] {
        for (i, e) in entries.iter().enumerate() {
            if let Some(name) = &e.model {
                if !declared(name) {
                    bad(&["matrix", list, &i.to_string(), "model"], format!(
                        "matrix.{list}[{i}].model = {name:?} is not declared; declared models: {known_models}"
                    ));
                }
            }
            if let Some(b) = e.batch_size {
                if b < 1 {
                    bad(
                        &["matrix", list, &i.to_string(), "batch_size"],
                        format!("batch_size must be >= 1 (matrix.{list}[{i}].batch_size = {b})"),
                    );
                }
            }
            if let Some(s) = e.seq_len {
                let limit = e
                    .model
                    .as_ref()
                    .and_then(|n| max_positions.get(n).copied())
                    .unwrap_or(smallest_max_pos);
                let at = ["matrix", list, &i.to_string(), "seq_len"];
                check_seq_len(&mut bad, &at, s, limit);
            }
        }
    }
    for (axis, empty) in [
        ("model", m.model.as_ref().is_some_and(Vec::is_empty)),
        ("precision", m.precision.as_ref().is_some_and(Vec::is_empty)),
        (
            "batch_size",
            m.batch_size.as_ref().is_some_and(Vec::is_empty),
        ),
        ("seq_len", m.seq_len.as_ref().is_some_and(Vec::is_empty)),
        ("scope", m.scope.as_ref().is_some_and(Vec::is_empty)),
    ] {
        if empty {
            bad(
                &["matrix", axis],
                format!(
                    "matrix.{axis} is an empty list: give at least one value or leave the key out"
                ),
            );
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

fn check_seq_len(bad: &mut impl FnMut(&[&str], String), at: &[&str], s: i64, max_positions: usize) {
    // `matrix.seq_len[0]` or `matrix.include[1].seq_len`, as the user would write it.
    let key = key_path(&at.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    if s < 2 {
        bad(
            at,
            format!("{key} = {s}: seq_len must be >= 2 (room for [CLS] and [SEP])"),
        );
    } else if s as u64 > max_positions as u64 {
        bad(
            at,
            format!("{key} = {s}: seq_len exceeds the model's {max_positions} position embeddings"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_suggests_close_names_only() {
        let keys = ["repeats", "min_loops", "min_window_s"];
        assert_eq!(
            did_you_mean("repets", keys.into_iter()),
            " (did you mean `repeats`?)"
        );
        assert_eq!(
            did_you_mean("min_window", keys.into_iter()),
            " (did you mean `min_window_s`?)"
        );
        assert_eq!(did_you_mean("colour", keys.into_iter()), "");
        let precisions = ["fp32", "fp16", "bf16", "q8_0", "q4_0"];
        assert_eq!(
            did_you_mean("q8", precisions.into_iter()),
            " (did you mean `q8_0`?)"
        );
    }

    #[test]
    fn span_location_counts_lines_and_columns_from_one() {
        let text = "a = 1\nb = [\nc";
        assert_eq!(span_location(text, Some(6..7)), ":2:1");
        assert_eq!(span_location(text, Some(10..11)), ":2:5");
        assert_eq!(span_location(text, None), "");
    }

    #[test]
    fn span_of_finds_values_keys_and_array_elements() {
        let text = "[matrix]\nbatch_size = [1, 20]\n[[matrix.include]]\nseq_len = 64\n";
        let doc = toml::de::DeTable::parse(text).unwrap();
        let at = |path: &[&str], key: bool| {
            let path: Vec<String> = path.iter().map(|p| p.to_string()).collect();
            span_location(text, span_of(doc.get_ref(), &path, key))
        };
        assert_eq!(at(&["matrix", "batch_size", "1"], false), ":2:18");
        assert_eq!(at(&["matrix", "batch_size"], true), ":2:1");
        assert_eq!(at(&["matrix", "include", "0", "seq_len"], false), ":4:11");
        // A path the file lacks stops at its deepest existing part.
        assert_eq!(at(&["matrix", "nothing"], false), "");
        assert_eq!(at(&["protocol", "repeats"], false), "");
    }

    #[test]
    fn set_override_parses_toml_values_and_bare_words() {
        let o = SetOverride::parse("protocol.repeats=3").unwrap();
        let protocol = o.dict["protocol"].as_dict().unwrap();
        assert_eq!(protocol["repeats"].to_i128(), Some(3));
        let o = SetOverride::parse("matrix.batch_size=[8,16]").unwrap();
        let list = o.dict["matrix"].as_dict().unwrap()["batch_size"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(list, 2);
        let o = SetOverride::parse("experiment.name=trial").unwrap();
        assert_eq!(
            o.dict["experiment"].as_dict().unwrap()["name"].as_str(),
            Some("trial")
        );
        assert!(SetOverride::parse("novalue").is_err());
        assert!(SetOverride::parse("a..b=1").is_err());
    }

    #[test]
    fn key_paths_print_indices_in_brackets() {
        let parts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            key_path(&parts(&["matrix", "precision", "1"])),
            "matrix.precision[1]"
        );
        assert_eq!(
            key_path(&parts(&["protocol", "repeats"])),
            "protocol.repeats"
        );
    }

    #[test]
    fn axis_order_follows_the_file_then_canonical_order() {
        let table: toml::Table =
            toml::from_str("[matrix]\nbatch_size = [1]\nprecision = [\"fp32\"]\n").unwrap();
        assert_eq!(
            axis_order(&table),
            ["batch_size", "precision", "model", "seq_len", "scope"]
        );
    }
}
