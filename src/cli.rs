//! The command line (clap): `runner FILE` (= `runner run FILE`), `runner plan FILE`,
//! `runner report DIR`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::error::{exit, ConfigError};
use crate::sweep::{self, RunOptions};

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Measure latency and energy of ML models from TOML experiment files",
    long_about = "Measure latency and energy of ML models from TOML experiment files.\n\n\
        `runner FILE` runs the experiment (same as `runner run FILE`).\n\
        Exit codes: 0 every cell succeeded, 1 some cells failed (or the device was lost), 2 usage or\n\
        configuration error (or the run directory is in use), 130 interrupted (Ctrl-C, SIGTERM).",
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
        /// Override a configuration value, e.g. --set protocol.repeats=3 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Re-render the reports of a finished or partial run from its stored records.
    Report {
        /// A run directory (results/<experiment>/<run-id>).
        dir: PathBuf,
        /// Folder with report.html.j2 and report.md.j2 (default: ./templates, else built-in).
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The experiment file (TOML).
    file: Option<PathBuf>,
    /// Write the run here instead of results/<experiment>/<run-id>.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Override a configuration value, e.g. --set protocol.repeats=3 or
    /// --set matrix.batch_size=[8,16] (repeatable; beats RUNNER_SECTION__KEY variables).
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
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Some(Command::Run(args)) => run_experiment(args),
        Some(Command::Plan { file, set }) => sweep::plan(&file, &set).map(|()| exit::OK),
        Some(Command::Report { dir, templates }) => {
            sweep::report(&dir, templates.as_deref()).map(|()| exit::OK)
        }
        None => run_experiment(cli.run),
    }
}

fn run_experiment(args: RunArgs) -> Result<u8> {
    let file = args.file.ok_or_else(|| {
        ConfigError::new("no experiment file given: usage `runner FILE` (see `runner --help`)")
    })?;
    sweep::run(&RunOptions {
        file,
        out: args.out,
        overrides: args.set,
        templates: args.templates,
        results_root: PathBuf::from("results"),
        resume: args.resume,
        fail_fast: args.fail_fast,
    })
}
