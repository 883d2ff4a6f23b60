//! Error kinds that decide the process exit code.
//!
//! Everything else travels as `anyhow::Error` with context naming the file or the cell; only the
//! distinction "the input is wrong" (exit 2: the experiment file, an override, the command line,
//! or a file read back that is damaged or not what it claims) vs "something failed while running"
//! (exit 1) needs a type, because `main` branches on it.

use std::fmt;

/// A problem with the experiment file, an override or the command line: exit code 2.
///
/// Holds every problem found, so a user fixes them all in one round instead of one per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    pub fn new(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                writeln!(f, "{} problems in the configuration:", many.len())?;
                for (i, p) in many.iter().enumerate() {
                    if i + 1 < many.len() {
                        writeln!(f, "  - {p}")?;
                    } else {
                        write!(f, "  - {p}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A file the runner reads back (a record, the manifest, a session, a trace, a run directory) or
/// an input file it reads (weights' config.json, tokenizer, dataset) that is damaged, too large,
/// not a regular file, or disagrees with what it claims to be: exit code 2, like a
/// [`ConfigError`]. The message names the file and says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const CELLS_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    /// `runner compare` compared nothing: no cell (and no unit of a layers cell) was measured
    /// in both runs. A regression gate that compared nothing must not pass.
    pub const COMPARED_NOTHING: u8 = 3;
    /// Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

/// Exit code for an error that ended the command: 2 when any cause is a [`ConfigError`] or an
/// [`InputError`].
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|cause| cause.is::<ConfigError>() || cause.is::<InputError>())
    {
        exit::USAGE
    } else {
        exit::CELLS_FAILED
    }
}
