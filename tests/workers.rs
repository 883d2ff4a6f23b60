//! Several workers on one run directory (`device.cpu_workers`, the CPU stand-in for
//! `device.gpus`): the plan shared out cell by cell, each cell recorded exactly once, a killed
//! worker and Ctrl-C resumed, the report's workers section; and `--cell-index`'s errors. Every
//! test drives the real binary.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn experiment(workers: usize, min_window_s: f64) -> String {
    format!(
        "[experiment]\nname = \"workers\"\n{}{FAST_PROTOCOL}\
         [device]\nbackend = \"cpu\"\ncpu_workers = {workers}\n\
         [matrix]\nbatch_size = [1, 2, 3, 4]\nseq_len = [8, 16]\n",
        common_tables()
    )
    .replace(
        "min_window_s = 0.05",
        &format!("min_window_s = {min_window_s}"),
    )
}

fn records(run: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(run.join("cells")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "a temporary file was left: {name}");
        out.push(serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap());
    }
    out
}

fn plan_ids(run: &Path) -> BTreeSet<String> {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    m["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every planned cell has exactly one record (file names are cell ids, so "once" means the set
/// of record ids equals the plan and no file is left over).
fn assert_complete(run: &Path) -> Vec<serde_json::Value> {
    let recs = records(run);
    let ids: BTreeSet<String> = recs
        .iter()
        .map(|r| r["cell"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), recs.len(), "a cell recorded twice");
    assert_eq!(ids, plan_ids(run), "records and plan differ");
    assert!(recs.iter().all(|r| r["status"] == "ok"), "a cell failed");
    recs
}

fn wait(child: &mut Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < limit,
            "the runner did not end in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = std::process::Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out.stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut out.stderr)
        .unwrap();
    out
}

/// Worker sessions in `run/sessions/` as (label, pid).
fn worker_sessions(run: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(run.join("sessions")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.ok()?.path()).ok()?;
            let s: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some((
                s["worker"]["label"].as_str()?.to_string(),
                s["pid"].as_u64()? as u32,
            ))
        })
        .collect()
}

fn worker_pid(run: &Path, label: &str) -> Option<u32> {
    worker_sessions(run)
        .into_iter()
        .find(|(l, _)| l == label)
        .map(|(_, pid)| pid)
}

#[test]
fn cpu_workers_share_the_plan_and_record_each_cell_once() {
    let f = Fixture::new(&experiment(3, 0.05));
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let run = f.dir.path().join("run");
    let recs = assert_complete(&run);
    let workers: BTreeSet<&str> = recs
        .iter()
        .map(|r| r["worker"].as_str().expect("each record names its worker"))
        .collect();
    assert!(
        workers.iter().all(|w| w.starts_with("cpu-worker-")) && workers.len() >= 2,
        "{workers:?}"
    );
    let labels: BTreeSet<String> = worker_sessions(&run).into_iter().map(|(l, _)| l).collect();
    assert_eq!(
        labels,
        ["cpu-worker-0", "cpu-worker-1", "cpu-worker-2"]
            .map(String::from)
            .into()
    );
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("## Workers"), "{report}");
    assert!(report.contains("several at a time"), "{report}");
    assert!(report.contains("8 measured, 0 skipped, 0 failed, of 8 planned cells"));
    let err = stderr_of(&out);
    assert!(err.contains("8 of 8 cells recorded by 3 workers"), "{err}");
    assert!(err.contains("their latencies are not independent"), "{err}");
}

#[test]
fn a_worker_killed_mid_run_loses_at_most_its_cell_and_resume_completes() {
    let f = Fixture::new(&experiment(2, 0.3));
    let mut child = f.spawn(&["exp.toml", "--out", "run"]);
    let run = f.dir.path().join("run");
    // Kill worker 1 once some cells are recorded (it is then in the middle of another). Only
    // finished records count: a temporary being written is no sign that a write has ended.
    let start = Instant::now();
    let finished = |run: &Path| {
        run.join("cells").read_dir().map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
            })
            .count()
        })
    };
    let pid = loop {
        if let Some(pid) = worker_pid(&run, "cpu-worker-1") {
            if finished(&run) >= 2 {
                break pid;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    };
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let out = wait(&mut child, Duration::from_secs(120));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cpu-worker-1") && err.contains("Resume with"),
        "{err}"
    );
    // The killed worker's cell is either missing or was taken over by the other worker once the
    // kernel dropped the dead worker's claim; never half-written, never twice.
    let before = records(&run);
    assert!(
        before.len() >= 7,
        "only the killed worker's cell may be missing"
    );
    // Resume: every missing cell measured once, earlier records untouched.
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run", "--resume"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let after = assert_complete(&run);
    for r in &before {
        assert!(after.contains(r), "an earlier record changed");
    }
}

#[test]
fn ctrl_c_stops_every_worker_after_its_window_and_resume_completes() {
    let f = Fixture::new(&experiment(2, 0.3));
    let mut child = f.spawn(&["exp.toml", "--out", "run"]);
    let run = f.dir.path().join("run");
    let start = Instant::now();
    while run.join("cells").read_dir().map(|d| d.count()).unwrap_or(0) < 1 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = wait(&mut child, Duration::from_secs(60));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("--resume"),
        "{err}"
    );
    let partial = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(partial.contains("Partial run"), "{partial}");
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run", "--resume"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_complete(&run);
    // Both sessions of each worker are kept, and the report lists them.
    assert_eq!(
        worker_sessions(&run).len(),
        4,
        "{:?}",
        worker_sessions(&run)
    );
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("cpu-worker-1: "), "{report}");
}

#[test]
fn cell_index_measures_one_cell_into_a_prepared_run_and_says_what_is_wrong() {
    let f = Fixture::new(&experiment(1, 0.05));
    // Not prepared: no manifest there.
    let out = f
        .runner()
        .args(["run", "exp.toml", "--out", "nothing", "--cell-index", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("is not a run directory"),
        "{}",
        stderr_of(&out)
    );
    // Prepared by `runner slurm` (scripts only, no submission): index 3 measures plan cell 3.
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    assert!(text.contains("8 to measure in 1 array job"), "{text}");
    let run = f.dir.path().join("run");
    let script = std::fs::read_to_string(run.join("slurm/array-0.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-7"), "{script}");
    assert!(
        script.contains("--cell-index \"$((0 + SLURM_ARRAY_TASK_ID))\""),
        "{script}"
    );
    let out = f
        .runner()
        .args(["run", "exp.toml", "--out", "run", "--cell-index", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let recs = records(&run);
    assert_eq!(recs.len(), 1);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(recs[0]["cell"]["id"], manifest["plan"][3]["id"]);
    // Again: nothing to do, the record is kept.
    let out = f
        .runner()
        .args(["run", "exp.toml", "--out", "run", "--cell-index", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stderr_of(&out).contains("already has a record"),
        "{}",
        stderr_of(&out)
    );
    // Out of range.
    let out = f
        .runner()
        .args(["run", "exp.toml", "--out", "run", "--cell-index", "8"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out)
            .contains("--cell-index 8: the plan of exp.toml has 8 cells (indices 0 to 7)"),
        "{}",
        stderr_of(&out)
    );
    // A changed plan is refused.
    let out = f
        .runner()
        .args(["run", "exp.toml", "--out", "run", "--cell-index", "0"])
        .args(["--set", "matrix.batch_size=[9]"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("is not what exp.toml plans now"),
        "{}",
        stderr_of(&out)
    );
    // Re-preparing writes scripts for the 7 cells without a record only.
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert!(
        stdout_of(&out).contains("1 recorded, 7 to measure"),
        "{}",
        stdout_of(&out)
    );
    let script = std::fs::read_to_string(run.join("slurm/array-0.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-2,4-7"), "{script}");
}

#[test]
fn runner_slurm_without_out_continues_the_latest_slurm_run_of_the_experiment() {
    let f = Fixture::new(&experiment(1, 0.05));
    let first = f.runner().args(["slurm", "exp.toml"]).output().unwrap();
    assert!(first.status.success(), "{}", stderr_of(&first));
    let runs: Vec<_> = std::fs::read_dir(f.dir.path().join("results/workers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let out = f
        .runner()
        .args(["run", "exp.toml", "--cell-index", "0", "--out"])
        .arg(run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The same file again: the same run, one cell fewer to measure.
    let again = f.runner().args(["slurm", "exp.toml"]).output().unwrap();
    let text = stdout_of(&again);
    assert!(text.contains("continuing the Slurm run in"), "{text}");
    assert!(text.contains("1 recorded, 7 to measure"), "{text}");
    // --new starts another run directory; a changed plan never continues the old one.
    let fresh = f
        .runner()
        .args(["slurm", "exp.toml", "--new"])
        .output()
        .unwrap();
    assert!(
        stdout_of(&fresh).contains("0 recorded, 8 to measure"),
        "{}",
        stdout_of(&fresh)
    );
    let changed = f
        .runner()
        .args(["slurm", "exp.toml", "--set", "matrix.batch_size=[5]"])
        .output()
        .unwrap();
    let text = stdout_of(&changed);
    assert!(!text.contains("continuing"), "{text}");
    assert!(text.contains("2 cells planned, 0 recorded"), "{text}");
}
