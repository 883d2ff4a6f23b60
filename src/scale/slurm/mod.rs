//! `runner slurm FILE`: the sweep as Slurm job arrays, one task per cell, all writing into one run
//! directory, and a report job that runs after them. The runner uses the cluster's scheduler
//! rather than one of its own: it prepares the run directory (manifest with the plan), writes
//! sbatch scripts whose task i measures cell OFFSET+i (`runner run FILE --out DIR --cell-index N`),
//! and with `--submit` hands them to `sbatch`. What is done is read from the records, never from
//! `squeue`/`sacct`: submitting again submits only cells without a final record. The scripts
//! themselves (task ids, sbatch's quoting) are `script.rs`'s.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::config::QuantizeSelection;
use crate::device::DeviceInfo;
use crate::error::{exit, ConfigError};
use crate::results::{CellStatus, Manifest, RunDir};
use crate::run::{self, shell_quote, CellSelection, RunOptions};
use crate::sensor::SensorInfo;

mod script;
use script::{array_script, report_script_text};
pub use script::{array_spec, chunks, resubmit_command, ArrayChunk};

/// Slurm's default MaxArraySize is 1001: task ids 0..=1000.
pub const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

pub struct SlurmOptions {
    pub file: PathBuf,
    pub out: Option<PathBuf>,
    pub overrides: Vec<String>,
    pub results_root: PathBuf,
    pub partition: Option<String>,
    pub gpus_per_task: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// Slurm's time limit per task, e.g. `30:00`.
    pub time: Option<String>,
    /// At most this many tasks of an array at once (`--array=...%K`).
    pub array_parallelism: Option<u32>,
    /// The cluster's MaxArraySize: larger plans are split into several arrays.
    pub max_array_size: usize,
    /// More `#SBATCH` lines, verbatim (e.g. `--account=abc`).
    pub sbatch_args: Vec<String>,
    pub submit: bool,
    /// Start a new run directory even when the latest Slurm run of this experiment is unfinished.
    pub new: bool,
}

/// Which arrays a cell goes into: `top:K` cells after the others (layers cells rank them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    First,
    Ranked,
}

impl Stage {
    /// The scripts' file name prefix.
    fn prefix(self) -> &'static str {
        match self {
            Stage::First => "array",
            Stage::Ranked => "array-ranked",
        }
    }
}

/// Every value that lands in a job script, with the option that gave it: a control character
/// (a newline above all) would end the `#SBATCH` line or comment it sits in and start a command.
fn refuse_control_characters(opts: &SlurmOptions) -> Result<()> {
    let mut values: Vec<(&str, String)> =
        vec![("the experiment file", opts.file.display().to_string())];
    if let Some(o) = &opts.out {
        values.push(("--out", o.display().to_string()));
    }
    if let Some(p) = &opts.partition {
        values.push(("--partition", p.clone()));
    }
    if let Some(t) = &opts.time {
        values.push(("--time", t.clone()));
    }
    values.extend(opts.sbatch_args.iter().map(|a| ("--sbatch-arg", a.clone())));
    values.extend(opts.overrides.iter().map(|o| ("--set", o.clone())));
    if let Ok(cwd) = std::env::current_dir() {
        values.push(("the working directory", cwd.display().to_string()));
    }
    if let Ok(exe) = std::env::current_exe() {
        values.push(("the runner binary's path", exe.display().to_string()));
    }
    let mut problems: Vec<String> = values
        .iter()
        .filter(|(_, v)| v.chars().any(char::is_control))
        .map(|(what, v)| {
            format!(
                "{what} {v:?} holds a control character (newline, tab, escape ...): it would end its line of the sbatch script and run as a command; give a value without one"
            )
        })
        .collect();
    // The task logs' names are sbatch patterns under the run directory (see below, after it
    // resolves): refused before the directory is made.
    let run_root = opts.out.as_ref().unwrap_or(&opts.results_root);
    if run_root.display().to_string().contains('\\') {
        problems.push(format!(
            "the run directory {:?} holds a backslash: sbatch would then name every task's log the same; give --out a directory without one",
            run_root.display().to_string()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems }.into())
    }
}

pub fn run(opts: &SlurmOptions) -> Result<u8> {
    refuse_control_characters(opts)?;
    let run_opts = RunOptions {
        file: opts.file.clone(),
        out: opts.out.clone(),
        overrides: opts.overrides.clone(),
        templates: None,
        results_root: opts.results_root.clone(),
        resume: false,
        fail_fast: false,
        cells: CellSelection::All,
        worker: None,
    };
    let prepared = run::prepare(&run_opts)?;
    if opts.max_array_size == 0 {
        return Err(
            ConfigError::new("--max-array-size 0: Slurm arrays hold at least one task").into(),
        );
    }
    // Without --out, the same file continues the latest Slurm run of its experiment when that run
    // has the same plan: re-submitting submits only what has no record.
    let continued = match (&opts.out, opts.new) {
        (None, false) => {
            latest_slurm_run(opts, &prepared.exp.config.experiment.name, &prepared.plan)?
        }
        _ => None,
    };
    if let Some(dir) = &continued {
        say!(
            "runner slurm: continuing the Slurm run in {} (same plan; --new starts a new run directory)",
            dir.display()
        );
    }
    let existing = opts
        .out
        .as_ref()
        .or(continued.as_ref())
        .filter(|d| d.join("manifest.json").exists());
    let run_dir = match existing {
        Some(dir) => {
            // Shared: array tasks of an earlier submission may still be measuring.
            let run_dir = RunDir::open_shared(dir)?;
            let manifest = run_dir.read_manifest()?;
            if manifest.launcher.as_deref() != Some("slurm") {
                return Err(ConfigError::new(format!(
                    "{} holds a run the runner drove itself, not a Slurm run: complete it with `runner run ... --resume`, or give runner slurm a new --out folder",
                    dir.display()
                ))
                .into());
            }
            if !crate::matrix::same_cells(&manifest.plan, &prepared.plan) {
                return Err(ConfigError::new(format!(
                    "{}: its plan ({} cells) is not what {} plans now ({} cells): the experiment, its overrides, weights, dataset or protocol changed; give runner slurm a new --out folder",
                    dir.display(),
                    manifest.plan.len(),
                    opts.file.display(),
                    prepared.plan.len()
                ))
                .into());
            }
            run_dir
        }
        None => {
            let (run_dir, run_id) = RunDir::create(
                &opts.results_root,
                &prepared.exp.config.experiment.name,
                opts.out.as_deref(),
            )?;
            let device = DeviceInfo {
                backend: "slurm".into(),
                ordinal: None,
                name: "Slurm array tasks (each record names the device that measured it)".into(),
                uuid: None,
                cpu_threads: 0,
                cublas_version: None,
            };
            let sensor = SensorInfo {
                kind: "per task".into(),
                measures_energy: opts.gpus_per_task.is_some(),
                note: "each array task meters the device it was given; the records say which"
                    .into(),
                metered: Vec::new(),
            };
            let mut manifest = Manifest::new(
                &prepared.exp,
                &run_id,
                &prepared.plan,
                &device,
                &sensor,
                None,
                Vec::new(),
            )?;
            manifest.launcher = Some("slurm".into());
            run_dir.write_manifest(&manifest)?;
            run_dir
        }
    };
    let dir = std::fs::canonicalize(&run_dir.path)
        .with_context(|| format!("resolving {}", run_dir.path.display()))?;
    let file = std::fs::canonicalize(&opts.file)
        .with_context(|| format!("resolving {}", opts.file.display()))?;
    // A symbolic link may resolve to what its own name did not show.
    for (what, path) in [("the experiment file", &file), ("the run directory", &dir)] {
        if path.display().to_string().chars().any(char::is_control) {
            return Err(ConfigError::new(format!(
                "{what} resolves to {:?}, which holds a control character: it would end its line of the sbatch script; rename it",
                path.display().to_string()
            ))
            .into());
        }
    }
    // sbatch reads a `\` anywhere in a log name as "no replacement symbols": every task would
    // write one literal `%A_%a.log`.
    if dir.display().to_string().contains('\\') {
        return Err(ConfigError::new(format!(
            "the run directory resolves to {:?}, which holds a backslash: sbatch would then name every task's log the same; give --out a directory without one",
            dir.display().to_string()
        ))
        .into());
    }

    let mut missing = Vec::new();
    for (i, cell) in prepared.plan.iter().enumerate() {
        let record = run_dir.read_record(cell, &prepared.exp.config.protocol)?;
        if record.is_none_or(|r| r.status == CellStatus::Failed) {
            missing.push(i);
        }
    }
    let planned = prepared.plan.len();
    if missing.is_empty() {
        say!(
            "runner slurm: all {planned} cells of {} have a record; render the reports with: runner report {}",
            dir.display(),
            dir.display()
        );
        return Ok(exit::OK);
    }

    // The run's own folders (a symlink in their place is refused): scripts and logs stay inside.
    let slurm_dir = crate::files::own_dir(&dir, "slurm")?;
    crate::files::own_dir(&slurm_dir, "logs")?;
    let exe = std::env::current_exe().context("finding the runner binary for the job scripts")?;
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let name = &prepared.exp.config.experiment.name;
    // A top:K cell ranks its layers by a layers cell's record: it is measured in arrays of its
    // own that start after every other array has ended (afterany: a failed profile still lets
    // the top:K task run and say so, instead of waiting forever).
    let (ranked, first): (Vec<usize>, Vec<usize>) = missing
        .iter()
        .partition(|&&i| matches!(prepared.plan[i].quantize, QuantizeSelection::Top(_)));
    let mut scripts = Vec::new();
    for (stage, cells) in [(Stage::First, &first), (Stage::Ranked, &ranked)] {
        for chunk in chunks(cells, opts.max_array_size) {
            let path = slurm_dir.join(format!("{}-{}.sbatch", stage.prefix(), chunk.offset));
            let text = array_script(opts, name, &exe, &file, &dir, &cwd, &chunk);
            crate::results::write_atomic(&path, text.as_bytes())?;
            scripts.push((path, chunk, stage));
        }
    }
    let waits = scripts.iter().any(|s| s.2 == Stage::First) && !ranked.is_empty();
    let report_script = slurm_dir.join("report.sbatch");
    crate::results::write_atomic(
        &report_script,
        report_script_text(opts, name, &exe, &dir, &cwd).as_bytes(),
    )?;
    say!(
        "runner slurm: {planned} cells planned, {} recorded, {} to measure in {} array job(s); scripts in {}",
        planned - missing.len(),
        missing.len(),
        scripts.len(),
        slurm_dir.display()
    );
    if !opts.submit {
        let arrays: Vec<String> = scripts
            .iter()
            .map(|(p, _, stage)| {
                let after = if *stage == Stage::Ranked && waits {
                    "--dependency=afterany:<job ids of the arrays above> "
                } else {
                    ""
                };
                format!(
                    "sbatch --parsable {after}{}",
                    shell_quote(&p.display().to_string())
                )
            })
            .collect();
        let ranked_note = if waits {
            "\n(the top:K cells' arrays after the others: they rank layers by a layers cell's record)"
        } else {
            ""
        };
        say!(
            "submit them with:\n  {}{ranked_note}\nthen the reports after them:\n  sbatch --dependency=afterany:<job ids> {}\n(or add --submit)",
            arrays.join("\n  "),
            shell_quote(&report_script.display().to_string())
        );
        return Ok(exit::OK);
    }
    let mut job_ids = Vec::new();
    let mut first_ids = Vec::new();
    for (path, chunk, stage) in &scripts {
        let mut args = Vec::new();
        if *stage == Stage::Ranked && !first_ids.is_empty() {
            args.push(format!("--dependency=afterany:{}", first_ids.join(":")).into());
        }
        args.push(path.as_os_str().to_owned());
        let id = sbatch(&args)?;
        say!(
            "submitted array job {id}: {} task(s) for cells {}..={} of the plan{}",
            chunk.tasks.len(),
            chunk.offset + chunk.tasks[0],
            chunk.offset + chunk.tasks.last().expect("a chunk has tasks"),
            if *stage == Stage::Ranked && !first_ids.is_empty() {
                format!(
                    " (top:K cells, after array job(s) {}: they rank by a layers cell)",
                    first_ids.join(", ")
                )
            } else {
                String::new()
            }
        );
        if *stage == Stage::First {
            first_ids.push(id.clone());
        }
        job_ids.push(id);
    }
    let dependency = format!("--dependency=afterany:{}", job_ids.join(":"));
    let report_id = sbatch(&[dependency.into(), report_script.as_os_str().to_owned()])?;
    say!("submitted report job {report_id} (runs `runner report` after the arrays end)");
    let log = slurm_dir.join("submissions.log");
    let line = format!(
        "{} arrays {} report {report_id} cells {}\n",
        crate::results::now_rfc3339(),
        job_ids.join(","),
        missing.len()
    );
    use std::io::Write;
    let mut append = std::fs::OpenOptions::new();
    append.create(true).append(true);
    // Never appended to through a link: the log is the run's own file.
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut append, libc::O_NOFOLLOW);
    append
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .with_context(|| format!("appending to {}", log.display()))?;
    say!(
        "task logs: {}/logs/; the records are the truth: `{}` submits only cells without a record",
        slurm_dir.display(),
        resubmit_command(&opts.file.display().to_string(), &dir, &opts.overrides)
    );
    Ok(exit::OK)
}

/// The newest run of `experiment` under the results root, if `runner slurm` prepared it and it
/// plans exactly these cells.
fn latest_slurm_run(
    opts: &SlurmOptions,
    experiment: &str,
    plan: &[crate::matrix::Cell],
) -> Result<Option<PathBuf>> {
    let Some(path) = RunDir::latest(&opts.results_root, experiment)? else {
        return Ok(None);
    };
    let manifest = RunDir::open(&path)?.read_manifest()?;
    let ours = manifest.launcher.as_deref() == Some("slurm")
        && crate::matrix::same_cells(&manifest.plan, plan);
    Ok(ours.then_some(path))
}

/// Runs `sbatch --parsable ARGS`; returns the job id.
fn sbatch(args: &[std::ffi::OsString]) -> Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .output()
        .map_err(|e| {
            ConfigError::new(format!(
                "running sbatch: {e}: run `runner slurm ... --submit` on a Slurm login node, or drop --submit and submit the written scripts there"
            ))
        })?;
    if !output.status.success() {
        anyhow::bail!(
            "sbatch refused the job ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // `--parsable` prints "id" or "id;cluster".
    let id = text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        anyhow::bail!("sbatch printed no job id: {text:?}");
    }
    Ok(id)
}
