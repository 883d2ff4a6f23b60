//! `runner report DIR` on what it did not write itself: a folder that is not a run, the
//! committed H100 run's records (its reports byte for byte), and records edited to carry markup
//! or paths out of the run. Split from tests/run.rs (the runs end to end).

mod common;
use common::*;

use std::path::Path;

#[test]
fn report_on_a_folder_that_is_not_a_run_says_so() {
    let f = Fixture::new("");
    let out = f.runner().args(["report", "."]).output().unwrap();
    // Bad input, like a missing experiment file: exit 2.
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("is not a run directory: it has no manifest.json"));
    // A folder that does not exist is the same usage error, not a failure (exit 1).
    let out = f.runner().args(["report", "no-such-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("no-such-run"));
}

#[test]
fn golden_report_of_the_h100_run_renders_byte_for_byte() {
    // The committed H100 run (records, traces, manifest) re-rendered must give the committed reports:
    // energy, idle baseline, GPU state and power traces rendered from real measurements, on any machine.
    let evidence = repo("docs/results/2026-11-24-nvidia-h100-80gb-hbm3");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    copy_tree(&evidence, &run);
    for generated in ["report.html", "report.md", "summary.csv"] {
        std::fs::remove_file(run.join(generated)).unwrap();
    }
    std::fs::remove_dir_all(run.join("charts")).unwrap();
    let out = assert_cmd::Command::cargo_bin("runner")
        .unwrap()
        .current_dir(repo(""))
        .arg("report")
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    for file in [
        "report.md",
        "summary.csv",
        "report.html",
        "charts/energy.svg",
        "charts/trace-4c571e8e845f.svg",
    ] {
        assert!(
            read(&run.join(file)) == read(&evidence.join(file)),
            "{file} differs from the committed evidence: re-render it with `runner report` if the change is intended"
        );
    }
    let md = String::from_utf8(read(&run.join("report.md"))).unwrap();
    assert!(md.contains("Idle baseline: **116.2 W**"));
    // Savings against fp32 from the committed windows: three a cell, so points without
    // intervals (a ratio's 95 % interval needs four windows a cell), and the report says so.
    assert!(
        md.contains("| `cd1a24e6994f` | fp16 | 8 | 66.3 | 46.2 |"),
        "fp16 b8 saving"
    );
    assert!(md.contains("3 windows a cell: too few for a 95 % interval of a median"));
    // The first screen: what the energy includes, from records that predate `metered`.
    assert!(md.contains("| Energy scope | the GPU board (NVML's total-energy counter"));
    assert!(md.contains("| Clocks |"));
    assert!(md.contains("NVIDIA H100 80GB HBM3"));
    assert!(!md.contains("Energy was not measured"));
}

#[test]
fn report_escapes_markup_from_edited_records_and_keeps_files_inside_the_run() {
    let f = Fixture::new(&tiny_experiment(
        "[matrix]\nprecision = [\"fp32\", \"bf16\"]\nbatch_size = [2]\nseq_len = [16]\n",
    ));
    let run = f.dir.path().join("run");
    f.runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .assert()
        .success();
    // Somebody edits the stored run: markup and path tricks in every free-text field.
    let evil = "<script>alert(1)</script>/../../x";
    let edit = |path: &Path, change: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_slice(&read(path)).unwrap();
        change(&mut v);
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    };
    edit(&run.join("manifest.json"), &|m| {
        m["experiment"] = evil.into();
        m["description"] = evil.into();
        for c in m["plan"].as_array_mut().unwrap() {
            c["model"] = evil.into();
        }
    });
    for record in std::fs::read_dir(run.join("cells")).unwrap() {
        edit(&record.unwrap().path(), &|r| {
            r["cell"]["model"] = evil.into()
        });
    }
    f.runner().arg("report").arg(&run).assert().success();
    let html = String::from_utf8(read(&run.join("report.html"))).unwrap();
    assert!(!html.contains("<script>alert"), "markup got through");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;"),
        "escaped text shown"
    );
    // Nothing was written beside the run directory.
    let beside: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}"); // exp.toml and run

    // A record whose cell id would name a path outside the run is refused.
    let record = std::fs::read_dir(run.join("cells"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    edit(&record, &|r| r["cell"]["id"] = "../../escape".into());
    let out = f.runner().arg("report").arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains(
            "holds cell id \"../../escape\", which is not this file's name or not a runner cell id (12 hex digits)"
        ),
        "{}",
        stderr_of(&out)
    );
}
