//! Nothing lost, round 2: `--out` folders the runner did not create (records without a manifest,
//! a user's own files) are refused before anything is written; a single-cell task never measures
//! beside a serial run of the same directory, nor for another build of the runner; worker labels
//! never name a path outside it.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn experiment(cooldown_s: f64) -> String {
    format!(
        "[experiment]\nname = \"lost\"\n{}{FAST_PROTOCOL}cooldown_s = {cooldown_s}\n\
         [matrix]\nbatch_size = [1, 2]\nseq_len = [8]\n",
        common_tables()
    )
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(contents(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn records_without_a_manifest_are_refused_fresh_and_on_resume() {
    let f = Fixture::new(&experiment(0.0));
    let run = f.dir.path().join("run");
    std::fs::create_dir_all(run.join("cells")).unwrap();
    std::fs::write(run.join("cells/0123456789ab.json"), b"{\"precious\": true}").unwrap();
    let before = contents(&run);
    for args in [
        vec!["exp.toml", "--out", "run"],
        vec!["exp.toml", "--resume", "--out", "run"],
        vec!["slurm", "exp.toml", "--out", "run"],
    ] {
        let out = f.runner().args(&args).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("is not empty"), "{args:?}: {stderr}");
        assert!(stderr.contains("cells/"), "{args:?}: {stderr}");
        assert!(stderr.contains("choose another --out"), "{stderr}");
        assert_eq!(contents(&run), before, "{args:?} touched the folder");
    }
}

#[test]
fn an_ordinary_folder_with_a_users_files_is_refused_and_left_alone() {
    let f = Fixture::new(&experiment(0.0));
    let mine = f.dir.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("report.md"), b"my notes").unwrap();
    std::fs::write(mine.join("summary.csv"), b"a,b\n1,2\n").unwrap();
    let before = contents(&mine);
    for args in [
        vec!["exp.toml", "--out", "mine"],
        vec!["exp.toml", "--resume", "--out", "mine"],
        vec!["slurm", "exp.toml", "--out", "mine"],
    ] {
        let out = f.runner().args(&args).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("found report.md, summary.csv"),
            "{args:?}: {stderr}"
        );
        assert_eq!(contents(&mine), before, "{args:?} touched the folder");
    }
    // An empty folder, and one a run killed at its very start left behind, are fine.
    std::fs::create_dir_all(f.dir.path().join("empty/cells")).unwrap();
    std::fs::write(f.dir.path().join("empty/.lock"), b"").unwrap();
    let out = f
        .runner()
        .args(["exp.toml", "--out", "empty"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

#[test]
fn a_single_cell_task_is_refused_beside_a_serial_run_and_keeps_ok_records() {
    // A long cool-down keeps the serial run at work while the task tries to join it.
    let f = Fixture::new(&experiment(20.0));
    let run = f.dir.path().join("run");
    let mut serial = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(f.dir.path())
        .args(["exp.toml", "--out", "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !run.join("manifest.json").is_file() {
        assert!(start.elapsed() < Duration::from_secs(120), "no manifest");
        std::thread::sleep(Duration::from_millis(10));
    }
    for args in [
        vec!["run", "exp.toml", "--out", "run", "--cell-index", "1"],
        vec!["run", "exp.toml", "--out", "run", "--worker", "gpu0"],
    ] {
        let out = f.runner().args(&args).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("pid {}", serial.id())),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("must not measure beside it"), "{stderr}");
    }
    serial.kill().unwrap();
    serial.wait().unwrap();
    // Now free: the task measures its cell; asked again, it keeps the ok record.
    let index = ["run", "exp.toml", "--out", "run", "--cell-index", "1"];
    let out = f.runner().args(index).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let recorded = contents(&run.join("cells"));
    let out = f.runner().args(index).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("already has a record"));
    assert_eq!(contents(&run.join("cells")), recorded);
}

/// A single-cell task or a worker of another build (another commit) does not measure into a run
/// prepared by this one: one run's records come from one build. Nothing is written.
#[test]
fn a_task_of_another_build_is_refused_and_writes_nothing() {
    let f = Fixture::new(&experiment(0.0));
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    edit_json(&run.join("manifest.json"), |m| {
        m["runner_commit"] = "0123456789ab".into()
    });
    let first = std::fs::read_dir(run.join("cells"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&first).unwrap();
    let before = contents(&run);
    for args in [
        vec!["run", "exp.toml", "--out", "run", "--cell-index", "0"],
        vec!["run", "exp.toml", "--out", "run", "--worker", "gpu0"],
    ] {
        let out = f.runner().args(&args).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("prepared by runner ")
                && stderr.contains(" built from 0123456789ab; this is runner ")
                && stderr.contains("one run holds one build's numbers")
                && stderr.contains("measure its cells with the binary that prepared it"),
            "{args:?}: {stderr}"
        );
        assert_eq!(contents(&run), before, "{args:?}");
    }
}

#[test]
fn worker_labels_cannot_name_a_path() {
    let f = Fixture::new(&experiment(0.0));
    let out = f
        .runner()
        .args(["slurm", "exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let out = f
        .runner()
        .args(["run", "exp.toml", "--out", "run", "--worker", "../../../x"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("worker label \"../../../x\""), "{stderr}");
    let out = f
        .runner()
        .args(["run", "exp.toml", "--out", "run", "--cell-index", "0"])
        .env("SLURM_ARRAY_JOB_ID", "../../x")
        .env("SLURM_ARRAY_TASK_ID", "0")
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("SLURM_ARRAY_JOB_ID"), "{stderr}");
    assert!(!f.dir.path().join("x-").exists());
    let stray: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("x"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
