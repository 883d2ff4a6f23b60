//! Error kinds that decide the process exit code.
//!
//! Everything else travels as `anyhow::Error` with context naming the file or the cell; only the
//! distinction "the user's input is wrong" (exit 2) vs "something failed while running" (exit 1)
//! needs a type, because `main` branches on it.

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

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const CELLS_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    /// Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

/// Exit code for an error that ended the command: 2 when any cause is a [`ConfigError`].
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<ConfigError>()) {
        exit::USAGE
    } else {
        exit::CELLS_FAILED
    }
}
