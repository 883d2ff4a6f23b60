//! `runner`: TOML experiment files in, trustworthy latency/energy measurements and reports out.
//!
//! The modules are layers, each importing only layers below it (tests/layering.rs fails on an
//! import circle and prints these layers), lowest first:
//!
//! 1. `error`, `stats`, `files` (bounded reading of files the runner did not just write),
//!    `shell` (quoting for a POSIX shell)
//! 2. `config` (schema, presets, layering, validation), `interrupt`
//! 3. `data`, `device`, `ops` (the GPU operations: fused kernels, W8A8 GEMMs, CUDA graphs; they
//!    know no model type)
//! 4. `model` (encoders; weights, numerics and shared parts), `sensor`
//! 5. `fidelity`, `matrix`, `measure`, `probe`
//! 6. `results`: the record schema and the run directory
//! 7. `analysis`: statistics of records
//! 8. `report`: templates, CSV, charts
//! 9. `run`: one run on one device, start to end (plan, cell, the serial loop, a worker's loop,
//!    resume, console)
//! 10. `scale`: executors above `run` (one worker per GPU, Slurm job arrays) and the `run` and
//!     `report` entry points that must know them
//! 11. `cli`: the command line

/// `println!` for the runner's standard output, except that a reader that went away (`runner
/// plan FILE | head -1`) ends nothing: the line is dropped and the command goes on (a run keeps
/// measuring) and exits as it would have, instead of panicking on the broken pipe. Declared
/// before the modules, so every one of them can use it.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics: after SIGHUP (the terminal closed) writing to it fails, and
/// a run must still finish its window, write its records, its partial report and the resume
/// command into them, and exit 130 as after Ctrl-C. A line that cannot be written is dropped.
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::stderr_line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout for [`say!`]: a closed pipe is not an error; another failure
/// (a full disk behind a redirection) is said once on stderr.
pub fn stdout_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() != std::io::ErrorKind::BrokenPipe && !SAID.swap(true, Ordering::Relaxed) {
            tell!("runner: writing to standard output failed: {e}");
        }
    }
}

/// Writes one line to stderr for [`tell!`], dropping it when stderr is gone (a closed terminal).
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

pub mod analysis;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod fidelity;
pub mod files;
pub mod interrupt;
pub mod matrix;
pub mod measure;
pub mod model;
pub mod ops;
pub mod probe;
pub mod report;
pub mod results;
pub mod run;
pub mod scale;
pub mod sensor;
pub mod shell;
pub mod stats;
