//! `runner compare` as a regression gate: it fails when it compared nothing (exit 3, saying why),
//! counts a layers cell unit by unit (a unit 3x slower is a regression), refuses bad input with 2
//! (a damaged record, an `--out` that is a file), says what is true of every cell it did not
//! compare, and keeps run ids and names out of compare.md's markup.
//!
//! Run A is a real run of the binary: an int8-fp32 whole-model cell, its layers cell, and a
//! `top:1` cell ranked by that profile. The other runs are copies of it, edited the way a broken
//! or different run would be, or real runs with another protocol.

mod common;
use common::*;

use std::path::{Path, PathBuf};

const MATRIX: &str = r#"[matrix]
precision = ["int8-fp32"]
batch_size = [2]
seq_len = [8]
scope = ["model", "layers"]
quantize = ["all", "top:1"]
exclude = [{ scope = "layers", quantize = "top:1" }]
"#;

fn fixture() -> Fixture {
    Fixture::new(&format!(
        "[experiment]\nname = \"gate\"\n{}{FAST_PROTOCOL}{MATRIX}",
        common_tables()
    ))
}

fn run(f: &Fixture, out: &str, extra: &[&str]) -> PathBuf {
    let dir = f.dir.path().join(out);
    let result = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&dir)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(0), "{}", stderr_of(&result));
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != ".lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn copy_of(f: &Fixture, run: &Path, name: &str) -> PathBuf {
    let to = f.dir.path().join(name);
    copy_tree(run, &to);
    to
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every record of `run` edited by `edit`.
fn edit_records(run: &Path, edit: impl Fn(&mut serde_json::Value)) {
    for entry in std::fs::read_dir(run.join("cells")).unwrap() {
        let path = entry.unwrap().path();
        let mut r = json(&path);
        edit(&mut r);
        std::fs::write(&path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
    }
}

fn edit_manifest(run: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let path = run.join("manifest.json");
    let mut m = json(&path);
    edit(&mut m);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

/// Windows of known, tight latencies (window k's loops all take `ms * (1 + k / 1000)`), so a
/// slowdown is beyond noise whatever the machine's load did to the real ones.
fn pin(windows: &mut serde_json::Value, ms: f64) {
    for (k, w) in windows.as_array_mut().unwrap().iter_mut().enumerate() {
        let ms = ms * (1.0 + k as f64 / 1000.0);
        w["loops"] = 20.into();
        w["loop_ms"] = vec![ms; 20].into();
        w["duration_s"] = (ms * 20.0 / 1e3).into();
        w.as_object_mut().unwrap().remove("loop_ms_stride");
    }
}

/// Every window of every record (and of every layer and prefix) pinned, then `factor` slower.
fn pin_all(run: &Path, factor: f64) {
    edit_records(run, |r| {
        if let Some(w) = r.get_mut("windows") {
            pin(w, factor);
        }
        for units in ["layers", "prefixes"] {
            if let Some(list) = r.get_mut(units).and_then(|l| l.as_array_mut()) {
                for u in list {
                    pin(&mut u["windows"], 0.1 * factor);
                }
            }
        }
    });
}

fn compare(f: &Fixture, a: &Path, b: &Path, out: &str) -> (Option<i32>, String, String) {
    let result = f
        .runner()
        .arg("compare")
        .arg(a)
        .arg(b)
        .arg("--out")
        .arg(f.dir.path().join(out))
        .output()
        .unwrap();
    (result.status.code(), stdout_of(&result), stderr_of(&result))
}

#[test]
fn a_comparison_that_compared_nothing_exits_3_and_says_why() {
    let f = fixture();
    let a = run(&f, "a", &[]);

    // Every cell of B failed.
    let failed = copy_of(&f, &a, "failed");
    edit_records(&failed, |r| {
        r["status"] = "failed".into();
        r["reason"] = "out of memory".into();
    });
    let (code, stdout, stderr) = compare(&f, &a, &failed, "o1");
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("0 cells compared"), "{stdout}");
    assert!(
        stderr.contains("compared nothing: the 3 cell(s) both plans hold were not measured in both runs: 3 failed in B"),
        "{stderr}"
    );
    assert!(
        stdout.contains("failed in B (out of memory)"),
        "each cell says why: {stdout}"
    );
    let md = std::fs::read_to_string(f.dir.path().join("o1/compare.md")).unwrap();
    assert!(md.contains("**Nothing was compared:**"), "{md}");

    // Skipped in both runs: said of both, not as a cell of one side.
    let skipped_a = copy_of(&f, &a, "skipped_a");
    let skipped_b = copy_of(&f, &a, "skipped_b");
    for run in [&skipped_a, &skipped_b] {
        edit_records(run, |r| {
            // A skipped cell never ran: no windows, no units.
            r["status"] = "skipped".into();
            r["reason"] = "int8 does not run here".into();
            for key in ["windows", "layers", "prefixes"] {
                r[key] = serde_json::json!([]);
            }
        });
    }
    let (code, stdout, _) = compare(&f, &skipped_a, &skipped_b, "o2");
    assert_eq!(code, Some(3), "{stdout}");
    assert!(
        stdout.contains("skipped in both runs (int8 does not run here)"),
        "{stdout}"
    );
    assert!(!stdout.contains("only in"), "{stdout}");

    // B changed its protocol: every id differs.
    let other_protocol = run(&f, "protocol", &["--set", "protocol.min_loops=4"]);
    let (code, stdout, stderr) = compare(&f, &a, &other_protocol, "o3");
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(
        stderr.contains("A's plan and B's plan share no cell (the protocol differs"),
        "{stderr}"
    );
    assert!(
        stdout.contains("B's plan has no cell with this definition"),
        "{stdout}"
    );

    // B is a run of another experiment.
    edit_manifest(&other_protocol, |m| m["experiment"] = "other".into());
    let (code, _, stderr) = compare(&f, &a, &other_protocol, "o4");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("A is a run of experiment \"gate\" and B of \"other\""),
        "{stderr}"
    );

    // B measured eagerly (device.cuda_graphs = false) under ids from before that setting was
    // part of them: its manifest says so, and no cell is taken for A's.
    let eager = copy_of(&f, &a, "eager");
    edit_manifest(&eager, |m| {
        m["config"]["device"]["cuda_graphs"] = false.into()
    });
    let (code, stdout, stderr) = compare(&f, &a, &eager, "o6");
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains("measured with other execution settings (A: the defaults; B: device.cuda_graphs = false)"),
        "{stdout}"
    );

    // A run against itself compares every cell, the layers cell unit by unit: exit 0.
    let (code, stdout, stderr) = compare(&f, &a, &a, "o5");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("3 cells compared"), "{stdout}");
}

#[test]
fn units_of_a_layers_cell_regress_and_top_k_cells_of_other_layers_are_not_matched() {
    let f = fixture();
    let a = run(&f, "a", &[]);
    pin_all(&a, 1.0);
    let manifest = json(&a.join("manifest.json"));
    let plan: Vec<(String, String, String)> = manifest["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["scope"].as_str().unwrap().to_string(),
                c["quantize"].as_str().unwrap_or("all").to_string(),
            )
        })
        .collect();
    let layers = &plan.iter().find(|c| c.1 == "layers").unwrap().0;
    let top = &plan.iter().find(|c| c.2 == "top:1").unwrap().0;

    // Every unit of the layers cell 3x slower in B, the whole-model cells unchanged.
    let b = copy_of(&f, &a, "b");
    edit_records(&b, |r| {
        if r["cell"]["scope"] == "layers" {
            for units in ["layers", "prefixes"] {
                if let Some(list) = r.get_mut(units).and_then(|l| l.as_array_mut()) {
                    for u in list {
                        pin(&mut u["windows"], 0.3);
                    }
                }
            }
        }
    });
    let (code, stdout, stderr) = compare(&f, &a, &b, "o1");
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "regressed beyond 5 %: cell {layers} (tiny int8-fp32 b2 seq 8 layers quantize=all method=isolated), unit "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("latency 3.00 ["), "{stderr}");
    assert!(
        stdout.contains("3 cells compared: 0 improved, 1 regressed, 2 within noise"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(f.dir.path().join("o1/compare.md")).unwrap();
    assert!(md.contains("**Regressed:**"), "{md}");

    // The top:1 cell of B quantized another layer than A's: the same id, not the same cell.
    let c = copy_of(&f, &a, "c");
    edit_records(&c, |r| {
        if r["cell"]["quantize"] == "top:1" {
            r["quantization"]["quantized"] = serde_json::json!(["pre_classifier"]);
        }
    });
    let (code, stdout, stderr) = compare(&f, &a, &c, "o2");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("not compared: {top} tiny int8-fp32 b2 seq 8 quantize=top:1: quantize = top:1 quantized other layers in each run")),
        "{stdout}"
    );
    assert!(stdout.contains("B: pre_classifier"), "{stdout}");
    assert!(stdout.contains("2 cells compared"), "{stdout}");
}

#[test]
fn compare_writes_neither_into_a_run_nor_over_files_it_did_not_write() {
    let f = fixture();
    let a = run(&f, "a", &[]);
    // Its own earlier output it replaces.
    for _ in 0..2 {
        let (code, _, stderr) = compare(&f, &a, &a, "mine");
        assert_eq!(code, Some(0), "{stderr}");
    }
    let notes = f.dir.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("compare.md"), "my notes\n").unwrap();
    let (code, _, stderr) = compare(&f, &a, &a, "notes");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("not an earlier `runner compare` output"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(notes.join("compare.md")).unwrap(),
        "my notes\n"
    );
    let (code, _, stderr) = compare(&f, &a, &a, "a/sub");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("inside the run directory"), "{stderr}");
    assert!(!a.join("sub").exists(), "a folder was made inside the run");
}

#[test]
fn bad_input_exits_2_naming_it_and_compare_md_keeps_run_ids_as_text() {
    let f = fixture();
    let a = run(&f, "a", &[]);
    let ids: Vec<String> = json(&a.join("manifest.json"))["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();

    // A damaged record: exit 2 (bad input), not 1 (regressed), naming the file.
    let damaged = copy_of(&f, &a, "damaged");
    let record = damaged.join("cells").join(format!("{}.json", ids[0]));
    std::fs::write(&record, b"{\"schema_version\": 1, \"cell\": ").unwrap();
    let (code, _, stderr) = compare(&f, &a, &damaged, "o1");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cells/{}.json", ids[0])),
        "{stderr}"
    );

    // A record whose window ran no loop, or that spent no real energy: refused by name.
    for (what, edit) in [
        ("loops is 0", serde_json::json!({"loops": 0})),
        ("-31.25 J", serde_json::json!({"energy_j": -31.25})),
    ] {
        let bad = copy_of(&f, &a, "bad");
        let path = bad.join("cells").join(format!("{}.json", ids[0]));
        let mut r = json(&path);
        for (k, v) in edit.as_object().unwrap() {
            r["windows"][0][k] = v.clone();
        }
        std::fs::write(&path, r.to_string()).unwrap();
        let (code, _, stderr) = compare(&f, &a, &bad, "o2");
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert!(stderr.contains(what), "{stderr}");
        assert!(
            stderr.contains("delete it to measure the cell again"),
            "{stderr}"
        );
        std::fs::remove_dir_all(&bad).unwrap();
    }

    // One id naming another cell in B (its plan and record edited alike): not matched.
    let edited = copy_of(&f, &a, "edited");
    edit_manifest(&edited, |m| m["plan"][0]["batch_size"] = 4.into());
    let path = edited.join("cells").join(format!("{}.json", ids[0]));
    let mut r = json(&path);
    r["cell"]["batch_size"] = 4.into();
    std::fs::write(&path, r.to_string()).unwrap();
    let (code, stdout, stderr) = compare(&f, &a, &edited, "o4");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "not compared: {} tiny int8-fp32 b2 seq 8 quantize=all: the same id names a different cell in each run",
            ids[0]
        )),
        "{stdout}"
    );

    // --out naming a file.
    let result = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&a)
        .arg("--out")
        .arg(a.join("manifest.json"))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(2), "{}", stderr_of(&result));
    assert!(stderr_of(&result).contains("not a folder"));

    // A run id and host that would be Markdown: text in compare.md.
    let b = copy_of(&f, &a, "b");
    edit_manifest(&b, |m| {
        m["run_id"] = "<img src=x onerror=alert(1)>\n# injected".into();
        m["host"]["hostname"] = "[link](javascript:alert(1)) | x".into();
    });
    let (code, _, stderr) = compare(&f, &a, &b, "o3");
    assert_eq!(code, Some(0), "{stderr}");
    let md = std::fs::read_to_string(f.dir.path().join("o3/compare.md")).unwrap();
    assert!(
        md.starts_with("# runner compare: \\<img src=x onerror=alert(1)> \\# injected against "),
        "{md}"
    );
    assert!(!md.lines().any(|l| l.starts_with("# injected")), "{md}");
    assert!(md.contains("\\[link\\](javascript:alert(1)) \\| x"), "{md}");
    assert!(
        md.contains("`<img src=x onerror=alert(1)> # injected`"),
        "{md}"
    );
}
