//! A second Ctrl-C quits at once, cleanly: exit status 130 (never a signal's death or glibc's
//! abort), the runner's own line on stderr and nothing from the C library, every record already
//! written intact. The runner leaves with `_exit` from its handler thread while the measuring
//! thread is inside a window: `exit` there ran the C libraries' teardown under the measuring
//! thread's feet (a GPU run printed `munmap_chunk(): invalid pointer`). Drives the real binary
//! and really signals it.

mod common;
use common::*;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Two cells of the tiny encoder on the CPU; the test's `--set` makes every window last 30 s, so
/// both interrupts land inside the first cell's first window (or its warm-up).
fn experiment() -> String {
    format!(
        "[experiment]\nname = \"second_interrupt\"\n[device]\nbackend = \"cpu\"\n\
         [protocol]\nwarmup_s = 0.05\nwarmup_min_loops = 2\nwarmup_max_s = 1.0\nstabilize_s = 0.0\n\
         min_window_s = 0.05\nmin_loops = 2\nrepeats = 2\nidle_settle_s = 0.0\nidle_baseline_s = 0.0\n\
         {}\n[matrix]\nbatch_size = [1, 2]\nseq_len = [8]\n",
        common_tables()
    )
}

fn records(run: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(run.join("cells"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default()
}

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -INT failed");
}

#[test]
fn a_second_ctrl_c_quits_at_once_with_130_and_no_abort() {
    let f = Fixture::new(&experiment());
    let run = f.dir.path().join("run");
    let mut child = f.spawn(&[
        "exp.toml",
        "--out",
        "run",
        "--set",
        "protocol.min_window_s=30",
    ]);
    // The sweep is inside its first window once the plan is written and a moment has passed.
    let start = Instant::now();
    while !run.join("manifest.json").exists() && start.elapsed() < Duration::from_secs(120) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the runner ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the runner ended before the interrupts"
    );
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let second = Instant::now();
    let out = child.wait_with_output().unwrap();
    let quit_s = second.elapsed().as_secs_f64();
    let stderr = stderr_of(&out);
    // 130, not a death by signal (SIGABRT from glibc's heap checks would read as None here).
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("runner: interrupt: stopping after the current window")
            && stderr.contains("runner: second interrupt: quitting now (finished cells are kept)"),
        "{stderr}"
    );
    for libc_complaint in [
        "munmap_chunk",
        "double free",
        "free(): ",
        "corrupted",
        "Aborted",
        "panicked",
    ] {
        assert!(
            !stderr.contains(libc_complaint),
            "{libc_complaint}: {stderr}"
        );
    }
    // At once: the window in progress had ~30 s to go.
    assert!(
        quit_s < 10.0,
        "quit {quit_s:.1} s after the second interrupt"
    );
    // Whatever was recorded is whole JSON (atomic writes: a rename or nothing).
    for r in records(&run) {
        let text = std::fs::read_to_string(&r).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", r.display()));
    }
}
