//! Nothing lost: `kill -9` at several points then `--resume`, two runners on one run directory,
//! a failing cell among good ones (with and without `--fail-fast`), Ctrl-C and SIGTERM. Every test
//! drives the real binary and really signals it.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn experiment(matrix: &str, cooldown_s: f64) -> String {
    format!(
        "[experiment]\nname = \"resilience\"\n{}{FAST_PROTOCOL}cooldown_s = {cooldown_s}\n{matrix}",
        common_tables()
    )
}

/// Eight quick cells.
const EIGHT_CELLS: &str = "[matrix]\nbatch_size = [1, 2, 3, 4]\nseq_len = [8, 16]\n";

fn record_files(run: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(run.join("cells"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `ready` holds (or the child ends, or 120 s pass); true if it held.
fn wait_for(child: &mut Child, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return ready();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the runner neither reached the expected point nor ended in 120 s");
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} failed");
}

/// Every file under the run directory is complete: JSON parses, nothing temporary is left.
fn assert_no_partial_files(run: &Path) {
    for entry in walk(run) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp"),
            "temporary file left behind: {}",
            entry.display()
        );
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(&entry).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{} is not complete JSON: {e}", entry.display()));
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn plan_ids(run: &Path) -> Vec<String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    manifest["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn snapshot_records(run: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    record_files(run)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// When to kill: a condition on the run directory.
type KillPoint = Box<dyn Fn(&Path) -> bool>;

#[test]
fn kill_9_at_several_points_then_resume_completes_every_cell_exactly_once() {
    let f = Fixture::new(&experiment(EIGHT_CELLS, 0.0));
    let run = f.dir.path().join("run");
    let resume = ["exp.toml", "--resume", "--out", "run"];
    // Kill points: at start-up, before the first record, after 1, 3 and 6 records.
    let records_at_least = |n: usize| move |r: &Path| record_files(r).len() >= n;
    let points: [(&str, KillPoint); 5] = [
        ("at start-up", Box::new(|_: &Path| true)),
        (
            "before the first record",
            Box::new(|r: &Path| r.join("manifest.json").is_file()),
        ),
        ("after 1 record", Box::new(records_at_least(1))),
        ("after 3 records", Box::new(records_at_least(3))),
        ("after 6 records", Box::new(records_at_least(6))),
    ];
    let mut kept: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    for (what, ready) in &points {
        let mut child = f.spawn(&resume);
        wait_for(&mut child, || ready(&run));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        eprintln!(
            "killed {what}: {status:?}, {} records",
            record_files(&run).len()
        );
        if run.exists() {
            assert_no_partial_files(&run);
        }
        // Records written before a kill are never rewritten by a later session.
        let now = snapshot_records(&run);
        for (path, bytes) in &kept {
            assert_eq!(now.get(path), Some(bytes), "{} changed", path.display());
        }
        kept = now;
    }

    let out = f.runner().args(resume).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("runner: resuming"), "{stderr}");
    assert_no_partial_files(&run);
    let ids = plan_ids(&run);
    assert_eq!(ids.len(), 8);
    let mut recorded: Vec<String> = record_files(&run)
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    recorded.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(recorded, expected, "every planned cell exactly once");
    for (path, bytes) in &kept {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            bytes,
            "{} changed",
            path.display()
        );
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(!md.contains("Partial run"), "{md}");
    assert!(
        md.contains("8 measured, 0 skipped, 0 failed, of 8 planned cells"),
        "{md}"
    );
    assert!(md.contains("| Sessions |"), "{md}");
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9, "{csv}");
}

#[test]
fn a_second_runner_on_the_same_run_directory_is_refused_with_the_holders_pid() {
    // Slow cells (a long cool-down), so the first runner is surely still at work.
    let f = Fixture::new(&experiment(EIGHT_CELLS, 5.0));
    let run = f.dir.path().join("run");
    let mut first = f.spawn(&["exp.toml", "--out", "run"]);
    assert!(wait_for(&mut first, || run.join("manifest.json").is_file()));
    for args in [
        vec!["exp.toml", "--resume", "--out", "run"],
        vec!["exp.toml", "--out", "run"],
    ] {
        let out = f.runner().args(&args).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let expected = format!(
            "error: run is in use by another runner (pid {} on ",
            first.id()
        );
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert!(
            stderr.contains("two runners must not write one run directory"),
            "{stderr}"
        );
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // Once the holder is gone (even by SIGKILL), the lock is free and the run can be completed.
    let had_records = !record_files(&run).is_empty();
    let out = f
        .runner()
        .args([
            "exp.toml",
            "--resume",
            "--out",
            "run",
            "--set",
            "protocol.cooldown_s=0",
        ])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    // The override changes the protocol, hence every cell id: a record of the old plan blocks it.
    if had_records {
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("no longer plans"), "{stderr}");
    } else {
        assert_eq!(out.status.code(), Some(0), "{stderr}");
    }
}

fn good_and_bad_models() -> Fixture {
    let toml = experiment(
        "[models.broken]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\nweights = \"overflowing\"\n\n\
         [matrix]\nmodel = [\"tiny\", \"broken\"]\nbatch_size = [2, 4]\nseq_len = [16]\n",
        0.0,
    );
    let f = Fixture::new(&toml);
    overflowing_checkpoint(&f.dir.path().join("overflowing"));
    f
}

#[test]
fn a_failing_cell_is_recorded_and_the_others_are_measured() {
    let f = good_and_bad_models();
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 cell(s) failed:"), "{stderr}");
    assert!(
        stderr.contains(
            "broken fp32 batch 2 seq 16: the model in fp32 produced NaN or infinite values"
        ),
        "{stderr}"
    );
    let csv = std::fs::read_to_string(f.dir.path().join("run/summary.csv")).unwrap();
    assert_eq!(csv.matches(",ok,").count(), 2, "{csv}");
    assert_eq!(csv.matches(",failed,").count(), 2, "{csv}");
    let md = std::fs::read_to_string(f.dir.path().join("run/report.md")).unwrap();
    assert!(
        md.contains("2 measured, 0 skipped, 2 failed, of 4 planned cells"),
        "{md}"
    );
    assert!(!md.contains("Partial run"), "{md}");
}

#[test]
fn fail_fast_stops_at_the_first_failure_and_resume_measures_the_rest() {
    let f = good_and_bad_models();
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run", "--fail-fast"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("runner: stopped at the first failure (--fail-fast): cell "),
        "{stderr}"
    );
    assert!(
        stderr.contains("Resume with:\n  runner run exp.toml --resume --out run --fail-fast"),
        "{stderr}"
    );
    // Plan order is model-major: tiny b2, tiny b4, then broken b2 fails and broken b4 never runs.
    let run = f.dir.path().join("run");
    assert_eq!(record_files(&run).len(), 3);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("**Partial run:** 3 of 4 planned cells have records"),
        "{md}"
    );
    assert!(
        md.contains("(last session: stopped at the first failure (--fail-fast))"),
        "{md}"
    );

    // Without --fail-fast, the resume measures the failed cell again and the one left.
    let out = f
        .runner()
        .args(["exp.toml", "--resume", "--out", "run"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("2 of 4 cells already recorded, 2 to measure"),
        "{stderr}"
    );
    assert_eq!(record_files(&run).len(), 4);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(!md.contains("Partial run"), "{md}");
}

fn interrupt_then_resume(sig: &str) {
    let f = Fixture::new(&experiment(EIGHT_CELLS, 0.3));
    let run = f.dir.path().join("run");
    let mut child = f.spawn(&["exp.toml", "--out", "run"]);
    assert!(
        wait_for(&mut child, || record_files(&run).len() >= 2),
        "the runner ended before its second record"
    );
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("runner: interrupt: stopping after the current window"),
        "{stderr}"
    );
    assert!(
        stderr.contains("runner: interrupted. ")
            && stderr.contains("cells are recorded in run. Resume with:\n  runner run exp.toml --resume --out run\n"),
        "{stderr}"
    );
    assert_no_partial_files(&run);
    let recorded = record_files(&run).len();
    assert!((2..8).contains(&recorded), "{recorded} records");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains(&format!(
            "**Partial run:** {recorded} of 8 planned cells have records; the run did not finish (last session: interrupted)."
        )),
        "{md}"
    );
    assert!(
        md.contains("Complete it with `runner run exp.toml --resume --out "),
        "{md}"
    );
    // `runner report` renders the partial run too, marked as such.
    f.runner().args(["report", "run"]).assert().success();
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("**Partial run:**"), "{md}");

    let out = f
        .runner()
        .args(["run", "exp.toml", "--resume", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(record_files(&run).len(), 8);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(!md.contains("Partial run"), "{md}");
}

#[test]
fn ctrl_c_stops_after_the_window_keeps_finished_cells_and_says_how_to_resume() {
    interrupt_then_resume("-INT");
}

#[test]
fn sigterm_is_handled_like_ctrl_c() {
    interrupt_then_resume("-TERM");
}

#[test]
fn sighup_with_the_terminal_gone_still_writes_the_partial_report() {
    // Closing the terminal: its output is gone (here both pipes closed, so every write fails as
    // on a hung-up tty) and SIGHUP arrives, maybe twice. The run stops after its window, keeps
    // every finished cell and writes the partial report with the resume command in it; it never
    // dies on a failed write, and a second SIGHUP is not a second Ctrl-C.
    let f = Fixture::new(&experiment(EIGHT_CELLS, 0.3));
    let run = f.dir.path().join("run");
    let mut child = f.spawn(&["exp.toml", "--out", "run"]);
    assert!(
        wait_for(&mut child, || record_files(&run).len() >= 2),
        "the runner ended before its second record"
    );
    drop(child.stdout.take());
    drop(child.stderr.take());
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, "-HUP");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_no_partial_files(&run);
    let recorded = record_files(&run).len();
    assert!((2..8).contains(&recorded), "{recorded} records");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains(&format!(
            "**Partial run:** {recorded} of 8 planned cells have records; the run did not finish (last session: interrupted (SIGHUP: the terminal closed))."
        )),
        "{md}"
    );
    assert!(
        md.contains("Complete it with `runner run exp.toml --resume --out "),
        "{md}"
    );
    let out = f
        .runner()
        .args(["run", "exp.toml", "--resume", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(record_files(&run).len(), 8);
}

#[test]
fn resume_without_out_completes_the_latest_run_of_the_experiment() {
    let f = Fixture::new(&experiment(
        "[matrix]\nbatch_size = [2, 4]\nseq_len = [16]\n",
        0.0,
    ));
    let out = f.runner().args(["exp.toml", "--resume"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains(
            "error: --resume: no earlier run of experiment \"resilience\" under results/resilience: start one without --resume"
        ),
        "{}",
        stderr_of(&out)
    );
    f.runner().arg("exp.toml").assert().success();
    let runs: Vec<PathBuf> = std::fs::read_dir(f.dir.path().join("results/resilience"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let victim = record_files(&runs[0]).pop().unwrap();
    std::fs::remove_file(&victim).unwrap();
    let out = f.runner().args(["exp.toml", "--resume"]).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1 of 2 cells already recorded, 1 to measure"),
        "{stderr}"
    );
    assert!(victim.is_file());
}

/// A run begun by another build (another commit or version) is not completed by this one: the
/// refusal names both builds, and the run's files stay as they were.
#[test]
fn resume_refuses_a_run_begun_by_another_build_and_leaves_it_alone() {
    let f = Fixture::new(&experiment(
        "[matrix]\nbatch_size = [2, 4]\nseq_len = [16]\n",
        0.0,
    ));
    f.runner()
        .args(["exp.toml", "--out", "run"])
        .assert()
        .success();
    let run = f.dir.path().join("run");
    std::fs::remove_file(record_files(&run).pop().unwrap()).unwrap();
    let manifest = run.join("manifest.json");
    let (mut ours, mut version) = (String::new(), String::new());
    edit_json(&manifest, |m| {
        ours = m["runner_commit"].as_str().unwrap().to_string();
        version = m["runner_version"].as_str().unwrap().to_string();
        m["runner_commit"] = "0123456789ab".into();
    });
    let before = snapshot_records(&run);
    let manifest_before = std::fs::read(&manifest).unwrap();
    let out = f
        .runner()
        .args(["exp.toml", "--resume", "--out", "run"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: --resume: run was measured by runner {version} built from 0123456789ab; this is runner {version} built from {ours}: one run holds one build's numbers"
        )),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("resume with the binary that began it, or start a new run without --resume"),
        "{stderr}"
    );
    assert_eq!(snapshot_records(&run), before);
    assert_eq!(std::fs::read(&manifest).unwrap(), manifest_before);
    // With the build it began with (its commit restored), the resume completes the run.
    edit_json(&manifest, |m| m["runner_commit"] = ours.clone().into());
    let out = f
        .runner()
        .args(["exp.toml", "--resume", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(record_files(&run).len(), 2);
}

#[test]
fn resume_refuses_a_run_whose_cells_the_experiment_no_longer_plans() {
    let f = Fixture::new(&experiment(
        "[matrix]\nbatch_size = [2]\nseq_len = [16]\n",
        0.0,
    ));
    f.runner()
        .args(["exp.toml", "--out", "run"])
        .assert()
        .success();
    let out = f
        .runner()
        .args([
            "exp.toml",
            "--resume",
            "--out",
            "run",
            "--set",
            "protocol.repeats=4",
        ])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "error: --resume: run has 1 recorded cell(s) that exp.toml no longer plans (cells/"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("start a new run without --resume"),
        "{stderr}"
    );
}

#[test]
fn a_lost_sensor_fails_its_cell_and_ends_the_sweep_keeping_every_finished_cell() {
    // The sensor stops answering in the third cell's second window (six windows a cell), as
    // NVML does when its GPU falls off the bus.
    let f = Fixture::new(&experiment(EIGHT_CELLS, 0.0));
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .env("RUNNER_FAULT_INJECT", "sensor-lost-after-windows:13")
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("runner: RUNNER_FAULT_INJECT=sensor-lost-after-windows:13 is set: the sensor will fail on purpose"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the device or its sensor stopped answering: reading the sensor: GPU is lost (injected fault)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(". Once the device is back: 3 of 8 cells are recorded in run. Resume with:\n  runner run exp.toml --resume --out run\n"),
        "{stderr}"
    );
    let run = f.dir.path().join("run");
    assert_eq!(record_files(&run).len(), 3);
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(csv.matches(",ok,").count(), 2, "{csv}");
    assert_eq!(csv.matches(",failed,").count(), 1, "{csv}");
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("(last session: device lost)"), "{md}");

    // With the device back, the resume measures the failed cell again and the five left.
    let out = f
        .runner()
        .args(["exp.toml", "--resume", "--out", "run"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("2 of 8 cells already recorded, 6 to measure"),
        "{stderr}"
    );
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(csv.matches(",ok,").count(), 8, "{csv}");
}
