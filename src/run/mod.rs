//! One run of an experiment on one device, start to end, in the order a run goes:
//!
//! - `plan.rs`: load, validate and expand the experiment, resolve its models and tokenize its
//!   dataset: what `runner plan` lists, and everything checked before anything is measured
//! - `cell.rs`: one cell's frame: its record, the precision probed, failures and interrupts
//! - `classify.rs`: a classifier (encoder) cell: the model's timed loop (or each layer alone),
//!   then fidelity against fp32 and accuracy on the probe's split
//! - `layers.rs`: a `layers` cell: units alone (K calls per loop) and prefixes of the forward
//! - `generate_layers.rs`: a decoder's `layers` cell: both methods, prefill and decode apart
//! - `quantize.rs`: a cell's `quantize` selection resolved to the linear layers it quantizes
//! - `serial.rs`: the loop over the cells on one device: resume, failures, device health,
//!   interrupts, then the reports
//! - `worker.rs`: the same loop as one worker of a run spread over workers (a GPU of several, a
//!   Slurm array task): claims cells in a run directory another process prepared
//! - `resume.rs`: the run directory this invocation writes (new, or an earlier run completed) and
//!   the command that completes it
//! - `console.rs`: what the user sees: progress, a line per cell, per-layer breakdowns, the
//!   closing summary (`console_layers.rs`: the per-layer breakdown)
//! - `protocol_time.rs`, `estimate.rs` and `rates.rs`: how long the cells take: the protocol's
//!   own time per unit (with what the energy sensor adds to each window), the workloads' prices,
//!   and the device's rates they are priced at
//!
//! May import every stage below it (config, matrix, model, data, device, sensor, measure, probe,
//! fidelity, results, analysis, report, stats, interrupt, error); never `scale` or `cli`, which
//! drive it. What it cannot know itself (how a Slurm run is continued) its callers hand it.

mod calibrate;
mod cell;
mod classify;
mod cold;
mod console;
mod console_layers;
pub mod estimate;
mod generate;
mod generate_layers;
mod layers;
mod plan;
mod protocol_time;
mod quantize;
mod rates;
mod resume;
mod serial;
mod worker;

use std::path::PathBuf;

/// Quoting lives in `crate::shell`, where the report (below `run`) reaches it too.
pub use crate::shell::shell_quote;
pub use console::{list_unsuccessful, print_summary, print_written};
pub use plan::{human_duration, plan, prepare, Prepared};
pub use protocol_time::{protocol_lower_bound_s, WindowFloor};
pub use resume::{open_run, resume_command, resume_command_line};
pub use serial::run_serial;
pub use worker::{run_worker, worker_label};

pub struct RunOptions {
    pub file: PathBuf,
    pub out: Option<PathBuf>,
    pub overrides: Vec<String>,
    pub templates: Option<PathBuf>,
    /// Parent of `<experiment>/<run-id>/` when `out` is not given.
    pub results_root: PathBuf,
    /// Complete an earlier run (the latest one, or `out`) instead of starting a new one.
    pub resume: bool,
    /// Stop at the first failed cell instead of recording it and going on.
    pub fail_fast: bool,
    /// Which cells this invocation measures: all of the plan, or some (a Slurm array task).
    pub cells: CellSelection,
    /// Set for a worker of a multi-GPU run (its label, e.g. `gpu1`): it measures into the run
    /// directory its coordinator prepared, claiming cells one at a time.
    pub worker: Option<String>,
}

/// `--cell-index N` / `--cell ID`: measure only these cells of the plan, into a run directory
/// that `runner slurm` (or a coordinator) prepared.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum CellSelection {
    #[default]
    All,
    Index(usize),
    Ids(Vec<String>),
}
