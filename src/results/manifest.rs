//! The run's manifest (what ran, where, with which build and configuration) and the sessions
//! that measured it: written once at the start of a run, read back by resume, report and
//! compare.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::SCHEMA_VERSION;
use crate::config::{ExperimentConfig, LoadedExperiment};
use crate::device::DeviceInfo;
use crate::matrix::Cell;
use crate::measure::{IdleBaseline, SamplerOverhead};
use crate::sensor::{GpuState, SensorInfo};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitInfo {
    pub commit: String,
    pub dirty: bool,
    /// The repository holding the experiment file (its top folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Whether the experiment file is tracked at `commit` (a file in an ignored or new folder of
    /// the repository is not: the commit does not say what ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_tracked: Option<bool>,
    /// Whether the experiment file differs from its version at `commit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_modified: Option<bool>,
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
    /// Each invocation that worked on this run directory: the first, then every `--resume`.
    /// (Workers of a multi-GPU run or a Slurm array keep theirs in sessions/<label>-<pid>.json.)
    #[serde(default)]
    pub sessions: Vec<Session>,
    /// `slurm` for a run prepared by `runner slurm` (its array tasks measure; `runner report`
    /// renders); absent for runs the runner drives itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher: Option<String>,
}

/// One invocation of the runner on a run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub started_at: String,
    pub ended_at: Option<String>,
    pub pid: u32,
    pub hostname: String,
    /// Cells that already had a record when this session started (0 for the first).
    pub cells_already_recorded: usize,
    /// Idle power measured at this session's start (records carry it too).
    pub idle_baseline: Option<IdleBaseline>,
    /// `completed`, `interrupted`, `stopped at the first failure (--fail-fast)`, `device lost`;
    /// `None` while running or after a crash.
    pub outcome: Option<String>,
    /// Wall time of the session, start to last report, and the part of it the measurement
    /// protocol took (idle baseline, warm-up, stabilization, windows, cool-down): their ratio is
    /// the runner's overhead.
    #[serde(default)]
    pub wall_s: Option<f64>,
    #[serde(default)]
    pub protocol_s: Option<f64>,
    /// What the runner estimated, before the first cell, the session's cells would take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_s: Option<f64>,
    /// For a worker's session (sessions/<label>-<pid>.json): its label and the device it measured on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerInfo>,
    /// A worker's own check of what the power sampler costs (the lead session's is in the
    /// manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler_overhead: Option<SamplerOverhead>,
}

/// Who a worker session was: its label and its device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub label: String,
    pub device: DeviceInfo,
}

impl Session {
    pub fn begin(cells_already_recorded: usize) -> Self {
        Self {
            started_at: now_rfc3339(),
            ended_at: None,
            pid: std::process::id(),
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            cells_already_recorded,
            idle_baseline: None,
            outcome: None,
            wall_s: None,
            protocol_s: None,
            estimated_s: None,
            worker: None,
            sampler_overhead: None,
        }
    }
}

impl Manifest {
    /// `runner 0.1.0 built from 3f29f1e0abcd`: the build that wrote this manifest, as resume's
    /// refusals and compare's header name it.
    pub fn build(&self) -> String {
        build_text(&self.runner_version, self.runner_commit.as_deref())
    }

    pub fn new(
        exp: &LoadedExperiment,
        run_id: &str,
        plan: &[Cell],
        device: &DeviceInfo,
        sensor: &SensorInfo,
        gpu: Option<GpuState>,
        notices: Vec<String>,
    ) -> Result<Self> {
        let bytes = crate::files::read(
            &exp.file,
            crate::files::limit::EXPERIMENT,
            "experiment file",
        )?;
        use sha2::Digest;
        let git = git_info(&exp.file);
        let mut notices = notices;
        if let Some(g) = &git {
            let file = exp.file.display();
            let repo = g.repository.as_deref().unwrap_or("its repository");
            let short = &g.commit[..g.commit.len().min(12)];
            if g.file_tracked == Some(false) {
                notices.push(format!(
                    "the experiment file {file} is not tracked in {repo} at commit {short}: that commit does not record what ran (commit the file to make the run reproducible)"
                ));
            } else if g.file_modified == Some(true) {
                notices.push(format!(
                    "the experiment file {file} has changes not committed at {short}: the manifest's copy of the configuration, not the commit, is what ran"
                ));
            }
        }
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
            git,
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
            sessions: Vec::new(),
            launcher: None,
        })
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The git state of the repository that holds the experiment file itself (not of whatever
/// repository encloses the working directory), and of the file in it.
fn git_info(file: &Path) -> Option<GitInfo> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = file.file_name()?;
    let run = |args: &[&std::ffi::OsStr]| -> Option<(bool, String)> {
        let out = std::process::Command::new("git")
            .arg("--no-optional-locks")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    };
    let ok = |args: &[&str]| -> Option<String> {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        run(&args).filter(|(ok, _)| *ok).map(|(_, out)| out)
    };
    let commit = ok(&["rev-parse", "HEAD"])?;
    let dirty = !ok(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    let repository = ok(&["rev-parse", "--show-toplevel"]);
    let with_file = |args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        all.push(std::ffi::OsStr::new("--"));
        all.push(name);
        run(&all)
    };
    // `git cat-file -e HEAD:./NAME` would do too; ls-tree names the file relative to `dir`.
    let file_tracked =
        with_file(&["ls-tree", "--name-only", "HEAD"]).map(|(ok, out)| ok && !out.is_empty());
    let file_modified = match file_tracked {
        Some(true) => with_file(&["diff", "--quiet", "HEAD"]).map(|(same, _)| !same),
        _ => None,
    };
    Some(GitInfo {
        commit,
        dirty,
        repository,
        file_tracked,
        file_modified,
    })
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

/// This binary's build, in the words of [`Manifest::build`].
pub fn this_build() -> String {
    build_text(env!("CARGO_PKG_VERSION"), Some(env!("RUNNER_BUILD_COMMIT")))
}

fn build_text(version: &str, commit: Option<&str>) -> String {
    format!(
        "runner {version} built from {}",
        commit.unwrap_or("an unknown commit")
    )
}
