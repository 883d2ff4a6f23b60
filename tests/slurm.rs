//! The sweep as a real Slurm job array: `.ci/slurm-up.sh` starts munge, slurmctld and slurmd for
//! this machine (CPU only); this test submits a small experiment with `runner slurm --submit`,
//! waits for the array and the report job, and checks that every cell record exists exactly once
//! and the report rendered; then it cancels one running array task and checks that submitting
//! again measures only the missing cell and completes the run.
//!
//! Without a usable Slurm the test says so and passes, except where RUNNER_REQUIRE_SLURM=1 (CI,
//! after .ci/slurm-up.sh succeeded): there a missing cluster is a failure.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn slurm_ready() -> Result<(), String> {
    let out = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map_err(|e| format!("sinfo: {e}"))?;
    let states = String::from_utf8_lossy(&out.stdout);
    if out.status.success()
        && states
            .lines()
            .any(|s| ["idle", "mixed", "allocated"].contains(&s.trim()))
    {
        Ok(())
    } else {
        Err(format!(
            "sinfo: {} {}",
            states.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Six cells of a few tenths of a second each (`slow` makes each last a few seconds).
fn experiment(slow: bool) -> String {
    let toml = format!(
        "[experiment]\nname = \"slurm\"\n{}{FAST_PROTOCOL}\
         [device]\nbackend = \"cpu\"\n\
         [matrix]\nbatch_size = [1, 2, 3]\nseq_len = [8, 16]\n",
        common_tables()
    );
    if slow {
        toml.replace("min_window_s = 0.05", "min_window_s = 1.5")
    } else {
        toml
    }
}

/// Job ids `runner slurm --submit` printed: the arrays', then the report job's.
fn job_ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("submitted array job ")
                .or_else(|| l.strip_prefix("submitted report job "))
        })
        .map(|rest| rest.split([':', ' ']).next().unwrap().to_string())
        .collect()
}

fn queued(ids: &[String]) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i %T", "-j", &ids.join(",")])
        .output()
        .unwrap();
    // squeue refuses ids it has forgotten: those jobs are long done.
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for_jobs(ids: &[String]) {
    let start = Instant::now();
    while !queued(ids).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "Slurm jobs {ids:?} still queued after 300 s: {}",
            queued(ids)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn record_ids(run: &Path) -> Vec<String> {
    std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "temporary file left: {name}");
            let r: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            assert_eq!(r["status"], "ok", "{name}: {}", r["reason"]);
            assert!(
                r["worker"].as_str().unwrap().starts_with("slurm-"),
                "{}",
                r["worker"]
            );
            r["cell"]["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn plan_ids(run: &Path) -> Vec<String> {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    m["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_every_cell_once(run: &Path) {
    let ids = record_ids(run);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a cell recorded twice");
    assert_eq!(
        unique,
        plan_ids(run).iter().collect::<BTreeSet<_>>(),
        "records and plan differ"
    );
}

#[test]
fn a_job_array_measures_every_cell_once_and_resubmission_completes_a_cancelled_task() {
    if let Err(why) = slurm_ready() {
        if std::env::var("RUNNER_REQUIRE_SLURM").as_deref() == Ok("1") {
            panic!("RUNNER_REQUIRE_SLURM=1 but Slurm is not usable here: {why}");
        }
        skipped(
            "tests/slurm.rs",
            &format!("no usable Slurm cluster on this machine ({why}); start one with `bash .ci/slurm-up.sh` (as root) to run this test"),
        );
        return;
    }

    // 1. The whole sweep as an array, then the report job.
    let f = Fixture::new(&experiment(false));
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run", "--submit"])
        .args(["--array-parallelism", "2", "--time", "10:00"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}{}", stderr_of(&out));
    assert!(
        text.contains("6 cells planned, 0 recorded, 6 to measure"),
        "{text}"
    );
    let ids = job_ids(&text);
    assert_eq!(ids.len(), 2, "{text}");
    wait_for_jobs(&ids);
    let run = f.dir.path().join("run");
    assert_every_cell_once(&run);
    let logs = std::fs::read_dir(run.join("slurm/logs")).unwrap().count();
    assert_eq!(logs, 7, "six task logs and the report job's");
    let report = std::fs::read_to_string(run.join("report.md")).expect("the report job rendered");
    assert!(
        report.contains("6 measured, 0 skipped, 0 failed, of 6 planned cells"),
        "{report}"
    );
    assert!(!report.contains("Partial run"), "{report}");
    assert!(report.contains("## Workers"), "{report}");
    // Submitting again: nothing is missing.
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run", "--submit"])
        .output()
        .unwrap();
    assert!(
        stdout_of(&out).contains("all 6 cells"),
        "{}",
        stdout_of(&out)
    );

    // 2. One array task cancelled while it measures; resubmission measures only its cell.
    let f = Fixture::new(&experiment(true));
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run", "--submit"])
        .args(["--array-parallelism", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ids = job_ids(&stdout_of(&out));
    let array = &ids[0];
    let task = format!("{array}_0");
    let start = Instant::now();
    while !queued(std::slice::from_ref(&task)).contains("RUNNING") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "task {task} never ran"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Into its windows (past start-up), then cancel it: Slurm signals and then kills it.
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("scancel").arg(&task).status().unwrap();
    assert!(status.success());
    wait_for_jobs(&ids);
    let run = f.dir.path().join("run");
    let first_cell = &plan_ids(&run)[0];
    let recorded = record_ids(&run);
    assert_eq!(
        recorded.len(),
        5,
        "only the cancelled task's cell is missing"
    );
    assert!(!recorded.contains(first_cell));
    let partial = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(partial.contains("Partial run"), "{partial}");
    assert!(partial.contains("runner slurm exp.toml --out"), "{partial}");
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run", "--submit"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(text.contains("5 recorded, 1 to measure"), "{text}");
    wait_for_jobs(&job_ids(&text));
    assert_every_cell_once(&run);
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("6 measured, 0 skipped, 0 failed, of 6 planned cells"),
        "{report}"
    );
    assert!(!report.contains("Partial run"), "{report}");
}

/// A `top:K` cell ranks its layers by a layers cell's record, so its array must start after the
/// arrays that measure the others: checked against a stand-in `sbatch` that records its
/// arguments (no cluster needed).
#[test]
fn top_k_cells_are_submitted_after_the_layers_cells_they_rank_by() {
    let f = Fixture::new(&format!(
        "[experiment]\nname = \"ranked\"\n{}{FAST_PROTOCOL}\
         [device]\nbackend = \"cpu\"\n\
         [matrix]\nprecision = [\"int8-fp32\"]\nbatch_size = [2]\nseq_len = [8]\n\
         scope = [\"model\", \"layers\"]\nquantize = [\"all\", \"top:1\"]\n\
         exclude = [{{ scope = \"layers\", quantize = \"top:1\" }}]\n",
        common_tables()
    ));
    let bin = f.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = f.dir.path().join("sbatch.log");
    let fake = bin.join("sbatch");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\necho $((1000 + $(wc -l < '{}')))\n",
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run", "--submit"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", stderr_of(&out));
    let calls: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(
        calls[0].starts_with("--parsable ") && calls[0].ends_with("slurm/array-0.sbatch"),
        "{calls:?}"
    );
    assert!(
        calls[1].starts_with("--parsable --dependency=afterany:1001 ")
            && calls[1].ends_with("slurm/array-ranked-0.sbatch"),
        "the top:K array waits for the profile's: {calls:?}"
    );
    assert!(
        calls[2].starts_with("--parsable --dependency=afterany:1001:1002 "),
        "{calls:?}"
    );
    // The first array measures cells 0 and 1 (the model and layers cells), the second cell 2.
    let first = std::fs::read_to_string(f.dir.path().join("run/slurm/array-0.sbatch")).unwrap();
    let ranked =
        std::fs::read_to_string(f.dir.path().join("run/slurm/array-ranked-0.sbatch")).unwrap();
    assert!(first.contains("#SBATCH --array=0-1\n"), "{first}");
    assert!(ranked.contains("#SBATCH --array=2\n"), "{ranked}");
    assert!(
        stdout.contains("top:K cells, after array job(s) 1001"),
        "{stdout}"
    );
}

/// The job scripts and logs are the run's own files: `slurm/` as a symlink out of the run is
/// refused, and nothing is written where it points.
#[test]
fn job_scripts_are_never_written_through_a_symlink_out_of_the_run() {
    let f = Fixture::new(&experiment(false));
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let run = f.dir.path().join("run");
    let outside = f.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::remove_dir_all(run.join("slurm")).unwrap();
    std::os::unix::fs::symlink(&outside, run.join("slurm")).unwrap();
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("slurm is a symlink to"), "{stderr}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
