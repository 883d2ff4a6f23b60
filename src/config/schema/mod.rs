//! The experiment file's schema: serde structs with their defaults (the lowest layer of the
//! configuration), the precisions and scopes a matrix may name, and the loaded experiment.
//!
//! One file per table of the experiment file where a table is large: `device.rs` (`[device]`,
//! `[sensor]`), `models.rs` (`[models.NAME]`), `matrix.rs` (`[matrix]`); the small tables and the
//! loaded experiment stay here.

mod device;
mod matrix;
mod models;

pub use device::*;
pub use matrix::*;
pub use models::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::precision::Precision;

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
    /// Decoders' `layers` cells: each isolated unit's weights warm (the same copy every call)
    /// or cold (rotating copies larger than the cache); unset: [`LayerIsolation::decoder_default`].
    /// Left out of the text when unset, so the ids of runs before the key stay what they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_isolation: Option<crate::config::LayerIsolation>,
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
            layer_isolation: None,
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
