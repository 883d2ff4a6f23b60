//! The run directory: manifest.json, one JSON record per cell (written atomically as soon as the
//! cell ends), power traces, summary.csv. The record format is a public contract: it carries
//! `schema_version`, and `runner report` rebuilds every report from these files alone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, LoadedExperiment, ProtocolSection};
use crate::data::DatasetUsage;
use crate::device::DeviceInfo;
use crate::matrix::Cell;
use crate::measure::{IdleBaseline, SamplerOverhead, WarmupRecord, WindowRecord};
use crate::sensor::{GpuState, PowerSample, SensorInfo};

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
    pub device: DeviceInfo,
    pub sensor: SensorInfo,
    pub protocol: ProtocolSection,
    /// Idle power measured before the sweep: the baseline for net energy.
    pub idle_power_w: Option<f64>,
    /// GPU identity, clocks, temperature and power right before and after the cell.
    pub gpu_before: Option<GpuState>,
    pub gpu_after: Option<GpuState>,
    pub warmup: Option<WarmupRecord>,
    pub windows: Vec<WindowRecord>,
    /// For `layers` cells: every layer and component, each measured alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRecord>,
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
    pub windows: Vec<WindowRecord>,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitInfo {
    pub commit: String,
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
    pub cpu_model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub runner_version: String,
    /// Git commit the runner binary was built from ("-dirty": with uncommitted changes).
    #[serde(default)]
    pub runner_commit: Option<String>,
    pub run_id: String,
    pub experiment: String,
    pub description: String,
    pub experiment_file: String,
    pub experiment_sha256: String,
    /// The resolved configuration: defaults, file, environment and overrides merged.
    pub config: ExperimentConfig,
    pub overrides: Vec<String>,
    pub env_overrides: Vec<String>,
    /// Git state of the folder holding the experiment file; `None` outside a repository.
    pub git: Option<GitInfo>,
    pub host: HostInfo,
    pub device: DeviceInfo,
    pub sensor: SensorInfo,
    /// The metered GPU at the start of the sweep (name, UUID, driver, power limit ...).
    pub gpu: Option<GpuState>,
    pub idle_baseline: Option<IdleBaseline>,
    /// What the background power sampler costs the workload, measured on the first cell.
    pub sampler_overhead: Option<SamplerOverhead>,
    /// Versions of the crates that shape the numbers (candle, tokenizers ...).
    pub crate_versions: BTreeMap<String, String>,
    /// Kernel-affecting environment variables that were set (thread counts, CUDA settings).
    pub environment: BTreeMap<String, String>,
    /// Things the user was told at the start, e.g. a fallback to the CPU.
    pub notices: Vec<String>,
    /// Every planned cell, in plan order.
    pub plan: Vec<Cell>,
    pub started_at: String,
    /// `None` while the run is in progress or if it was cut off.
    pub ended_at: Option<String>,
}

impl Manifest {
    pub fn new(
        exp: &LoadedExperiment,
        run_id: &str,
        plan: &[Cell],
        device: &DeviceInfo,
        sensor: &SensorInfo,
        gpu: Option<GpuState>,
        notices: Vec<String>,
    ) -> Result<Self> {
        let bytes =
            std::fs::read(&exp.file).with_context(|| format!("reading {}", exp.file.display()))?;
        use sha2::Digest;
        Ok(Self {
            schema_version: SCHEMA_VERSION,
            runner_version: env!("CARGO_PKG_VERSION").to_string(),
            runner_commit: Some(env!("RUNNER_BUILD_COMMIT").to_string()),
            run_id: run_id.to_string(),
            experiment: exp.config.experiment.name.clone(),
            description: exp.config.experiment.description.clone(),
            experiment_file: exp.file.display().to_string(),
            experiment_sha256: crate::model::hex(&sha2::Sha256::digest(&bytes)),
            config: exp.config.clone(),
            overrides: exp.overrides.clone(),
            env_overrides: exp.env_overrides.clone(),
            git: git_info(&exp.base_dir),
            host: host_info(),
            device: device.clone(),
            sensor: sensor.clone(),
            gpu,
            idle_baseline: None,
            sampler_overhead: None,
            crate_versions: crate_versions(),
            environment: kernel_environment(),
            notices,
            plan: plan.to_vec(),
            started_at: now_rfc3339(),
            ended_at: None,
        })
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn git_info(dir: &Path) -> Option<GitInfo> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Some(GitInfo { commit, dirty })
}

fn host_info() -> HostInfo {
    HostInfo {
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: crate::device::cpu_model_name(),
    }
}

/// `name version` pairs recorded from Cargo.lock at build time (see build.rs).
fn crate_versions() -> BTreeMap<String, String> {
    env!("RUNNER_CRATE_VERSIONS")
        .split(';')
        .filter_map(|pair| pair.split_once(' '))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

const KERNEL_ENV: [&str; 8] = [
    "RAYON_NUM_THREADS",
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_MODULE_LOADING",
    "CANDLE_DEQUANTIZE_ALL",
    "NVIDIA_TF32_OVERRIDE",
];

fn kernel_environment() -> BTreeMap<String, String> {
    KERNEL_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

/// A run's folder on disk.
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// `results/<experiment>/<run-id>/` under `root`, or exactly `out` when given. A run id is the
    /// UTC start time; a suffix keeps two runs started in the same second apart.
    pub fn create(root: &Path, experiment: &str, out: Option<&Path>) -> Result<(Self, String)> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let (path, run_id) = match out {
            Some(dir) => {
                if dir.join("manifest.json").exists() {
                    bail!(
                        "{} already holds a run (manifest.json): choose another --out folder",
                        dir.display()
                    );
                }
                let id = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| stamp.clone());
                (dir.to_path_buf(), id)
            }
            None => {
                let base = root.join(experiment);
                let mut id = stamp.clone();
                let mut n = 1;
                while base.join(&id).exists() {
                    n += 1;
                    id = format!("{stamp}-{n}");
                }
                (base.join(&id), id)
            }
        };
        for sub in ["cells", "traces"] {
            std::fs::create_dir_all(path.join(sub))
                .with_context(|| format!("creating {}", path.join(sub).display()))?;
        }
        Ok((Self { path }, run_id))
    }

    pub fn open(path: &Path) -> Result<Self> {
        if !path.join("manifest.json").is_file() {
            bail!(
                "{} is not a run directory: it has no manifest.json (expected results/<experiment>/<run-id>/)",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        write_atomic(
            &self.path.join("manifest.json"),
            serde_json::to_string_pretty(manifest)?.as_bytes(),
        )
    }

    pub fn read_manifest(&self) -> Result<Manifest> {
        let path = self.path.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let m: Manifest =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        check_schema(m.schema_version, &path)?;
        Ok(m)
    }

    pub fn write_record(&self, record: &CellRecord) -> Result<()> {
        write_atomic(
            &self
                .path
                .join("cells")
                .join(format!("{}.json", record.cell.id)),
            serde_json::to_string_pretty(record)?.as_bytes(),
        )
    }

    pub fn write_trace(&self, cell_id: &str, trace: &[PowerSample]) -> Result<()> {
        let mut text = String::from("t_s,power_w\n");
        for s in trace {
            text.push_str(&format!("{:.4},{:.3}\n", s.t_s, s.power_w));
        }
        write_atomic(
            &self.path.join("traces").join(format!("{cell_id}.csv")),
            text.as_bytes(),
        )
    }

    /// Every stored cell record, in the manifest's plan order (records of cells not in the plan
    /// are an error: they belong to another run).
    pub fn read_records(&self, plan: &[Cell]) -> Result<Vec<CellRecord>> {
        let mut by_id = BTreeMap::new();
        let dir = self.path.join("cells");
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let record: CellRecord = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            check_schema(record.schema_version, &path)?;
            by_id.insert(record.cell.id.clone(), record);
        }
        let mut ordered = Vec::with_capacity(by_id.len());
        for cell in plan {
            if let Some(r) = by_id.remove(&cell.id) {
                ordered.push(r);
            }
        }
        if let Some(stray) = by_id.keys().next() {
            bail!(
                "{}: cells/{stray}.json is not in this run's plan (manifest.json): was it copied from another run?",
                self.path.display()
            );
        }
        Ok(ordered)
    }
}

fn check_schema(version: u32, path: &Path) -> Result<()> {
    if version != SCHEMA_VERSION {
        bail!(
            "{}: schema_version {version}, but this runner reads version {SCHEMA_VERSION}",
            path.display()
        );
    }
    Ok(())
}

/// Write to a temporary file in the same folder, fsync, then rename: a reader (or a crash) never
/// sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, path)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    drop(tmp.1);
    std::fs::rename(&tmp.0, path)
        .with_context(|| format!("renaming {} to {}", tmp.0.display(), path.display()))?;
    // The rename itself is durable only once the folder's entry is on disk (a crash right after
    // could otherwise lose a finished cell's record).
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

fn tempfile_in(dir: &Path, target: &Path) -> Result<(PathBuf, std::fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    Ok((tmp, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
