//! How a run is executed when it is more than one loop in one process, and the entry points that
//! must know every way: `runner run` (one device, one worker of several, or a coordinator of
//! several workers) and `runner report` (any run, whoever drove it).
//!
//! - `workers.rs`: one worker process per GPU of a host (`device.gpus`), or CPU stand-ins
//! - `slurm/`: `runner slurm`: the plan as Slurm job arrays writing into one run directory
//!
//! These executors sit above `run`: they prepare a run directory and start processes that
//! measure into it (`runner run FILE --out DIR --worker gpuK`, `--cell-index N`), which enter
//! `run::run_worker`; `run` never calls back up. What a report must say about how to continue a
//! run ([`continue_command`]) is decided here and handed down to the renderers.
//!
//! May import `run` and everything below it; only `cli` imports this.

pub mod slurm;
pub mod workers;

use std::path::Path;

use anyhow::Result;

use crate::report::{self, TemplateSource};
use crate::results::{Manifest, RunDir};
use crate::run::{self, RunOptions};

/// `runner run FILE`: prepares the run (every input checked), then measures it as one worker of a
/// spread-out run, as the coordinator of several workers, or serially on one device; returns the
/// exit code (0 all cells succeeded, 1 some failed, 130 interrupted).
pub fn run(opts: &RunOptions) -> Result<u8> {
    // Wall time counts from here (see `run::run_serial`).
    let started = std::time::Instant::now();
    let prepared = run::prepare(opts)?;
    if let Some(label) = run::worker_label(opts) {
        return run::run_worker(opts, &prepared, &label);
    }
    if let Some(slots) = workers::slots(&prepared.exp.config.device)? {
        return workers::coordinate(opts, &prepared, &slots);
    }
    run::run_serial(opts, &prepared, started, &continue_command)
}

/// The command that completes a partial run, as its report shows it: a Slurm run is resubmitted
/// (only cells without a record), any other run is resumed.
pub fn continue_command(manifest: &Manifest, dir: &Path) -> String {
    if manifest.launcher.as_deref() == Some("slurm") {
        slurm::resubmit_command(&manifest.experiment_file, dir, &manifest.overrides)
    } else {
        run::resume_command_line(&manifest.experiment_file, dir, &manifest.overrides, &[])
    }
}

/// Re-renders the reports of a finished or partial run from its stored records.
pub fn report(dir: &Path, templates: Option<&Path>) -> Result<()> {
    let templates = TemplateSource::resolve(templates)?;
    let run_dir = RunDir::open(dir)?;
    let (written, summaries) = report::render(&run_dir, &templates, &continue_command)?;
    run::print_summary(&summaries);
    run::print_written(&written);
    Ok(())
}
