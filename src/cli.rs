//! The command line (clap): `runner FILE` (= `runner run FILE`), `runner plan FILE`,
//! `runner slurm FILE`, `runner report DIR`, `runner compare RUN_A RUN_B`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::error::{exit, ConfigError};
use crate::report;
use crate::run::{self, CellSelection, RunOptions};
use crate::scale;

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Measure latency and energy of ML models from TOML experiment files",
    long_about = "Measure latency and energy of ML models from TOML experiment files.\n\n\
        `runner FILE` runs the experiment (same as `runner run FILE`).\n\
        Exit codes: 0 every cell was measured or skipped (a cell whose shapes a quantized format\n\
        cannot run is skipped, not failed), 1 some cells failed (or the device was lost; for compare:\n\
        a cell regressed), 2 usage or configuration error, a damaged or foreign file read back (or the\n\
        run directory is in use), 3 compare compared nothing, 130 interrupted (Ctrl-C, SIGTERM,\n\
        SIGHUP): finished cells kept, the partial report and the resume command written.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment: measure every cell, write records and reports.
    Run(RunArgs),
    /// List the cells of an experiment without running anything.
    Plan {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Override a configuration value, e.g. --set protocol.repeats=3 (repeatable). KEY is a
        /// TOML key path: quote a name with dots as the file does, e.g.
        /// --set 'models."qwen2.5-0.5b".decode_kernels=fused'.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Run the experiment as Slurm job arrays (one task per cell, one shared run directory) and
    /// a report job after them; again on the same --out, submits only cells without a record.
    Slurm(SlurmArgs),
    /// Re-render the reports of a finished or partial run from its stored records.
    Report {
        /// A run directory (results/<experiment>/<run-id>).
        dir: PathBuf,
        /// Folder with report.html.j2 and report.md.j2 (default: ./templates, else built-in).
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Compare two runs cell by cell (matched by definition, on any machines): each metric's
    /// medians in A and B and B/A with its 95 % interval, judged improved, regressed or within
    /// noise; exit 1 when a cell (or a unit of a layers cell) regressed, 3 when no cell was
    /// measured in both runs.
    Compare {
        /// The earlier (reference) run directory.
        run_a: PathBuf,
        /// The later run directory, compared against A.
        run_b: PathBuf,
        /// Run-to-run noise, in %: a change smaller than PCT % is within noise even where the
        /// runs' within-run interval excludes 1 (two runs of one cell differ by a few %); beyond
        /// it and beyond the interval a metric improved or regressed (as criterion's
        /// noise_threshold).
        #[arg(long = "noise-threshold", visible_alias = "threshold", value_name = "PCT",
              default_value_t = report::compare::DEFAULT_NOISE_THRESHOLD_PCT)]
        noise_threshold: f64,
        /// Write compare.md and compare.html into DIR (created when absent; default:
        /// ./compare-<A's run id>-vs-<B's run id>, never inside a run's directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct SlurmArgs {
    /// The experiment file (TOML).
    file: PathBuf,
    /// The run directory every task writes into (default: the latest unfinished Slurm run of this
    /// experiment, else a new results/<experiment>/<run-id>), on a filesystem all nodes see. Given
    /// again, re-submits only cells without a record.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Override a configuration value (repeatable), passed on to every task. KEY is a TOML key
    /// path: quote a name with dots as the file does, e.g.
    /// --set 'models."qwen2.5-0.5b".decode_kernels=fused'.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// GPUs per task (each cell runs alone on the GPU it gets).
    #[arg(long, value_name = "N")]
    gpus_per_task: Option<u32>,
    /// CPUs per task.
    #[arg(long, value_name = "N")]
    cpus_per_task: Option<u32>,
    /// Time limit per task, in Slurm's format (e.g. 30:00).
    #[arg(long, value_name = "T")]
    time: Option<String>,
    /// At most K tasks of an array at once (--array=...%K).
    #[arg(long, value_name = "K")]
    array_parallelism: Option<u32>,
    /// The cluster's MaxArraySize (scontrol show config): larger plans become several arrays.
    #[arg(long, value_name = "N", default_value_t = scale::slurm::DEFAULT_MAX_ARRAY_SIZE)]
    max_array_size: usize,
    /// An extra #SBATCH option, verbatim (repeatable), e.g. --sbatch-arg=--account=abc.
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// Submit with sbatch (else only write the scripts and print the commands).
    #[arg(long)]
    submit: bool,
    /// Start a new run directory; without it (and without --out) the latest Slurm run of the same
    /// experiment and plan is continued: only cells without a record are submitted.
    #[arg(long, conflicts_with = "out")]
    new: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The experiment file (TOML).
    file: Option<PathBuf>,
    /// Write the run here instead of results/<experiment>/<run-id>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Override a configuration value, e.g. --set protocol.repeats=3 or
    /// --set matrix.batch_size=[8,16] (repeatable; beats RUNNER_SECTION__KEY variables). KEY is a
    /// TOML key path: quote a name with dots as the file does, e.g.
    /// --set 'models."qwen2.5-0.5b".decode_kernels=fused'.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Folder with report.html.j2 and report.md.j2 (default: ./templates, else built-in).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Complete an earlier run: the latest of this experiment, or --out DIR (started there if it
    /// holds no run). Cells with a record are kept; failed cells are measured again.
    #[arg(long)]
    resume: bool,
    /// Stop at the first failed cell (default: record the failure and measure the rest).
    #[arg(long)]
    fail_fast: bool,
    /// Measure only cell N of the plan (0-based, plan order as `runner plan` lists it) into the
    /// run directory --out, which `runner slurm` prepared: what each Slurm array task runs.
    #[arg(long, value_name = "N", requires = "out", conflicts_with_all = ["cell", "resume"])]
    cell_index: Option<usize>,
    /// Measure only this cell (by id; repeatable) into the prepared run directory --out.
    #[arg(long, value_name = "ID", requires = "out", conflicts_with = "resume")]
    cell: Vec<String>,
    /// Internal: run as the worker with this label of a multi-GPU run (the coordinator starts it).
    #[arg(long, value_name = "LABEL", hide = true, requires = "out")]
    worker: Option<String>,
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Some(Command::Run(args)) => run_experiment(args),
        Some(Command::Plan { file, set }) => run::plan(&file, &set).map(|()| exit::OK),
        Some(Command::Slurm(a)) => scale::slurm::run(&scale::slurm::SlurmOptions {
            file: a.file,
            out: a.out,
            overrides: a.set,
            results_root: PathBuf::from("results"),
            partition: a.partition,
            gpus_per_task: a.gpus_per_task,
            cpus_per_task: a.cpus_per_task,
            time: a.time,
            array_parallelism: a.array_parallelism,
            max_array_size: a.max_array_size,
            sbatch_args: a.sbatch_args,
            submit: a.submit,
            new: a.new,
        }),
        Some(Command::Report { dir, templates }) => {
            scale::report(&dir, templates.as_deref()).map(|()| exit::OK)
        }
        Some(Command::Compare {
            run_a,
            run_b,
            noise_threshold,
            out,
        }) => report::compare::run(&report::compare::CompareOptions {
            a: run_a,
            b: run_b,
            threshold_pct: noise_threshold,
            out,
        }),
        None => run_experiment(cli.run),
    }
}

fn run_experiment(args: RunArgs) -> Result<u8> {
    let file = args.file.ok_or_else(|| {
        ConfigError::new("no experiment file given: usage `runner FILE` (see `runner --help`)")
    })?;
    scale::run(&RunOptions {
        file,
        out: args.out,
        overrides: args.set,
        templates: args.templates,
        results_root: PathBuf::from("results"),
        resume: args.resume,
        fail_fast: args.fail_fast,
        cells: match (args.cell_index, args.cell.is_empty()) {
            (Some(i), _) => CellSelection::Index(i),
            (None, false) => CellSelection::Ids(args.cell),
            (None, true) => CellSelection::All,
        },
        worker: args.worker,
    })
}
