//! Ctrl-C, SIGTERM and SIGHUP: the first one asks the sweep to stop after the current measurement
//! window (finished cells are already on disk); the reports are rendered, marked partial, with
//! the resume command. A second Ctrl-C or SIGTERM ends the process at once, which is just as safe
//! because every record is written atomically: it leaves with `_exit`, not `exit` (see
//! [`quit_now`]). SIGHUP (the terminal closed) only ever asks for the
//! stop: nobody is there to want a hard exit, and a closing terminal may send it more than once;
//! what the runner then writes to the gone terminal is dropped (`tell!`), never a panic.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::exit;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static HUNG_UP: AtomicBool = AtomicBool::new(false);

/// Installs the handlers; call once, before measuring.
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) && !HUNG_UP.load(Ordering::SeqCst) {
            tell!("\nrunner: second interrupt: quitting now (finished cells are kept)");
            quit_now(exit::INTERRUPTED);
        }
        tell!(
            "\nrunner: interrupt: stopping after the current window (press Ctrl-C again to quit at once)"
        );
    })
    .map_err(|e| anyhow::anyhow!("installing the Ctrl-C handler: {e}"))?;
    on_hangup()
}

/// Ends the process at once with `code`, from ctrlc's handler thread while the measuring thread
/// may be inside a CUDA, cuBLAS or NVML call. `std::process::exit` would run libc's `exit`: the
/// atexit handlers and the shared libraries' destructors (the CUDA driver's, NVML's), on this
/// thread, tearing down state the other thread is still using: a GPU run printed glibc's
/// `munmap_chunk(): invalid pointer` on a second interrupt (glibc aborts there: SIGABRT, not
/// 130). `_exit` runs none of them and leaves the rest to the kernel. Nothing is lost: every
/// record is written atomically (a temporary file renamed), stderr is unbuffered, and standard
/// output is line-buffered and written a whole line at a time (`say!`), so no finished line
/// waits in a buffer.
#[cfg(unix)]
fn quit_now(code: u8) -> ! {
    // SAFETY: `_exit` is async-signal-safe and ends the process; it touches no Rust state.
    unsafe { libc::_exit(i32::from(code)) }
}

#[cfg(not(unix))]
fn quit_now(code: u8) -> ! {
    std::process::exit(i32::from(code))
}

/// Replaces ctrlc's SIGHUP disposition with one that only asks for the stop (and says why when
/// the run ends). Async-signal-safe: two atomic stores.
#[cfg(unix)]
fn on_hangup() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn hangup(_: nix::libc::c_int) {
        HUNG_UP.store(true, Ordering::SeqCst);
        REQUESTED.store(true, Ordering::SeqCst);
    }
    let action = SigAction::new(
        SigHandler::Handler(hangup),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to atomics, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGHUP, &action) }
        .map_err(|e| anyhow::anyhow!("installing the SIGHUP handler: {e}"))?;
    Ok(())
}

#[cfg(not(unix))]
fn on_hangup() -> anyhow::Result<()> {
    Ok(())
}

/// Whether the stop came from SIGHUP (the terminal closed).
pub fn hung_up() -> bool {
    HUNG_UP.load(Ordering::SeqCst)
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
