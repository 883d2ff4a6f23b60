//! Ctrl-C and SIGTERM: the first one asks the sweep to stop after the current measurement window
//! (finished cells are already on disk); a second one ends the process at once, which is just as
//! safe because every record is written atomically.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::exit;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler; call once, before measuring.
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nrunner: second interrupt: quitting now (finished cells are kept)");
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
        eprintln!(
            "\nrunner: interrupt: stopping after the current window (press Ctrl-C again to quit at once)"
        );
    })
    .map_err(|e| anyhow::anyhow!("installing the Ctrl-C handler: {e}"))
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once a stop was asked for: the `?` at each safe point of the measurement.
pub fn check() -> anyhow::Result<()> {
    if requested() {
        Err(Interrupted.into())
    } else {
        Ok(())
    }
}

/// The sweep was asked to stop; the cell in progress is dropped, not recorded half-measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Whether an error (anywhere in its chain) is an interrupt rather than a failure.
pub fn is_interrupt(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.is::<Interrupted>())
}
