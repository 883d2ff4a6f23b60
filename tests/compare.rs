//! `runner compare RUN_A RUN_B` end to end: a run against itself, against a copy with one cell
//! made 2x slower, 2x faster or 3 % slower (beyond its tight interval, within the noise
//! threshold), with a cell missing, and against a directory without records.
//!
//! Run A is a real run of the binary, but its windows are then pinned to tight, known latencies:
//! a CPU run on a loaded machine can have one window 3x the others, and then a 2x slowdown is
//! honestly "within noise" and the test would fail for the machine's sake, not the code's.

mod common;
use common::*;

use std::path::Path;

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

/// Every window of every cell record of `run` gets known, tight latencies: window k's loops
/// all take `base_ms * (1 + k / 1000)` (so medians differ by 0.1 %, and bootstrap intervals are
/// a fraction of a percent wide), each window's duration their sum.
fn pin_windows(run: &Path, base_ms: f64) {
    for entry in std::fs::read_dir(run.join("cells")).unwrap() {
        let path = entry.unwrap().path();
        let mut r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let windows = r["windows"].as_array_mut().unwrap();
        assert!(
            windows.len() >= 3,
            "the protocol asks for 3 windows: {path:?}"
        );
        for (k, w) in windows.iter_mut().enumerate() {
            let ms = base_ms * (1.0 + k as f64 / 1000.0);
            let loops = 20;
            w["loops"] = loops.into();
            w["loop_ms"] = vec![ms; loops].into();
            w["duration_s"] = (ms * loops as f64 / 1e3).into();
            w.as_object_mut().unwrap().remove("loop_ms_stride");
        }
        std::fs::write(&path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
    }
}

/// Every window of the record of `id` in `run` made `factor` times slower.
fn slow_down(run: &Path, id: &str, factor: f64) {
    let path = run.join("cells").join(format!("{id}.json"));
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for w in r["windows"].as_array_mut().unwrap() {
        let d = w["duration_s"].as_f64().unwrap();
        w["duration_s"] = (d * factor).into();
        for ms in w["loop_ms"].as_array_mut().unwrap() {
            *ms = (ms.as_f64().unwrap() * factor).into();
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
}

/// The windows of the record of `id` in `run` made to spread: window k's loops take
/// (1 + k / 10) times what they took.
fn spread(run: &Path, id: &str) {
    let path = run.join("cells").join(format!("{id}.json"));
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (k, w) in r["windows"].as_array_mut().unwrap().iter_mut().enumerate() {
        let factor = 1.0 + k as f64 / 10.0;
        let d = w["duration_s"].as_f64().unwrap();
        w["duration_s"] = (d * factor).into();
        for ms in w["loop_ms"].as_array_mut().unwrap() {
            *ms = (ms.as_f64().unwrap() * factor).into();
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
}

/// The record of `id` in `run` says `implementation` ran (what a CUDA run records per cell).
fn set_implementation(run: &Path, id: &str, implementation: &[(&str, &str)]) {
    let map: serde_json::Map<String, serde_json::Value> = implementation
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    edit_json(&run.join("cells").join(format!("{id}.json")), |r| {
        r["implementation"] = map.into()
    });
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn compare_finds_a_cell_made_twice_as_slow_and_nothing_in_a_run_against_itself() {
    let f = Fixture::new(&format!(
        "[experiment]\nname = \"cmp\"\n{}{FAST_PROTOCOL}[matrix]\nprecision = [\"fp32\"]\nbatch_size = [1, 2]\nseq_len = [16]\n",
        common_tables()
    ));
    let a = f.dir.path().join("a");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    pin_windows(&a, 10.0);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("manifest.json")).unwrap()).unwrap();
    let ids: Vec<String> = manifest["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();

    // A run against itself: every ratio is 1, nothing regressed: exit 0.
    let same = f.dir.path().join("same");
    let out = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&a)
        .arg("--out")
        .arg(&same)
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", stderr_of(&out));
    assert!(
        stdout.contains("2 cells compared: 0 improved, 0 regressed, 2 within noise (0 of them"),
        "{stdout}"
    );
    assert!(stdout.contains("latency 1.000 ["), "{stdout}");
    let md = std::fs::read_to_string(same.join("compare.md")).unwrap();
    assert!(
        md.contains("holds only the noise within these two runs"),
        "{md}"
    );
    assert!(md.contains("same machine"), "{md}");
    assert!(same.join("compare.html").is_file());

    // One cell 2x slower in B: exit 1, the cell named on stderr, the report says regressed.
    // Without --out the files go to a folder of their own in the current directory, named
    // after both runs, never into B's run directory.
    let b = f.dir.path().join("b");
    copy_tree(&a, &b);
    slow_down(&b, &ids[1], 2.0);
    let out = f.runner().arg("compare").arg(&a).arg(&b).output().unwrap();
    let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("regressed beyond 5 %: cell {}", ids[1])),
        "{stderr}"
    );
    assert!(stderr.contains("latency 2.00 ["), "{stderr}");
    assert!(stderr.contains("times slower)"), "{stderr}");
    assert!(!stderr.contains(&ids[0]), "only the slowed cell: {stderr}");
    assert!(!b.join("compare.md").exists(), "nothing written into RUN_B");
    let run_id = manifest["run_id"].as_str().unwrap();
    let default = f.dir.path().join(format!("compare-{run_id}-vs-{run_id}"));
    assert!(
        stdout.contains(&format!("wrote compare-{run_id}-vs-{run_id}/compare.md")),
        "{stdout}"
    );
    let md = std::fs::read_to_string(default.join("compare.md")).unwrap();
    assert!(md.contains("**regressed**"), "{md}");
    // The absolute medians of both runs: 10.02 ms in A, 20.05 ms in B (pinned windows), and
    // B/A with its interval (brackets escaped for Markdown).
    assert!(
        md.contains("| 10.02 | 20.05 | 2.00 \\[1.99, 2.01\\] |"),
        "{md}"
    );
    assert!(md.contains(" times slower |"), "{md}");
    // A threshold above the regression lets it pass.
    let out = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--threshold", "150"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout_of(&out));
    // A threshold no regression can pass is no gate: refused, as a negative or NaN one is.
    for bad in ["1e308", "1001", "NaN"] {
        let out = f
            .runner()
            .arg("compare")
            .arg(&a)
            .arg(&b)
            .arg(format!("--threshold={bad}"))
            .output()
            .unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("give a percentage from 0 to 1000"),
            "{stderr}"
        );
    }

    // Twice as fast in B: improved (exit 0), in green, as hyperfine says it.
    let fast = f.dir.path().join("fast");
    copy_tree(&a, &fast);
    slow_down(&fast, &ids[1], 0.5);
    let out = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&fast)
        .args(["--out", "o-fast"])
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", stderr_of(&out));
    assert!(
        stdout.contains("2 cells compared: 1 improved, 0 regressed, 1 within noise"),
        "{stdout}"
    );
    assert!(stdout.contains("times faster; improved"), "{stdout}");
    let md = std::fs::read_to_string(f.dir.path().join("o-fast/compare.md")).unwrap();
    assert!(md.contains("**improved**"), "{md}");
    let html = std::fs::read_to_string(f.dir.path().join("o-fast/compare.html")).unwrap();
    assert!(html.contains("<tr class=\"improved\">"), "{html}");

    // 3 % slower in B: beyond its tight within-run interval, but under the default 5 % noise
    // threshold (two runs of one cell differ by that much): within noise, and said why. With
    // --noise-threshold 1 it regressed.
    let drift = f.dir.path().join("drift");
    copy_tree(&a, &drift);
    slow_down(&drift, &ids[1], 1.03);
    let out = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&drift)
        .args(["--out", "o-drift"])
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", stderr_of(&out));
    assert!(
        stdout.contains("0 improved, 0 regressed, 2 within noise (1 of them beyond the within-run interval but under the 5 % noise threshold)"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(f.dir.path().join("o-drift/compare.md")).unwrap();
    assert!(
        md.contains("latency +3.0 %: beyond this pair's within-run interval, but under the 5 % noise threshold (within noise)"),
        "{md}"
    );
    let out = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&drift)
        .args(["--out", "o-drift", "--noise-threshold", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("regressed beyond 1 %: cell {}", ids[1])),
        "{}",
        stderr_of(&out)
    );

    // One cell's windows in B spread by 10 % steps (CV ~17 %, above the 5 % threshold): the
    // machine was not steady, and the verdict says so.
    let unsteady = f.dir.path().join("unsteady");
    copy_tree(&a, &unsteady);
    spread(&unsteady, &ids[1]);
    let out = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&unsteady)
        .args(["--out", "o-unsteady"])
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains(
            "1 cell(s) on unsteady windows (a run's window CV above the 5 % noise threshold)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("; not judged (unsteady windows: CV 0.2 % in A, 15.1 % in B)"),
        "{stdout}"
    );
    assert!(stdout.contains("1 within noise (0 of them beyond the within-run interval but under the 5 % noise threshold), 1 not judged"), "{stdout}");
    let md = std::fs::read_to_string(f.dir.path().join("o-unsteady/compare.md")).unwrap();
    assert!(md.contains("**1 cell(s) ran on unsteady windows**"), "{md}");

    // B's record of one cell says other code ran (the step rule changed between two commits; a
    // graph's node count moved): said beside its verdict, and with both texts, escaped, in
    // compare.md and compare.html. A count alone is told apart from a change of words.
    let (old_code, new_code) = (f.dir.path().join("old-code"), f.dir.path().join("new-code"));
    copy_tree(&a, &old_code);
    copy_tree(&a, &new_code);
    let old_steps = "static per-column steps | <b>kept</b>";
    set_implementation(
        &old_code,
        &ids[1],
        &[
            ("ffn_activation_scales", old_steps),
            ("execution", "graph (2779 nodes)"),
        ],
    );
    set_implementation(
        &new_code,
        &ids[1],
        &[
            (
                "ffn_activation_scales",
                "one static step for the whole tensor",
            ),
            ("execution", "graph (2801 nodes)"),
        ],
    );
    // B's manifest names another build of the runner: both builds are shown.
    let mut version = String::new();
    edit_json(&new_code.join("manifest.json"), |m| {
        m["runner_commit"] = "fedcba987654".into();
        version = m["runner_version"].as_str().unwrap().to_string();
    });
    let out = f
        .runner()
        .arg("compare")
        .arg(&old_code)
        .arg(&new_code)
        .args(["--out", "o-code"])
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains(&format!(", runner {version} built from fedcba987654)")),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", stderr_of(&out));
    assert!(
        stdout.contains("1 cell(s) ran other code in A and B (their records' implementation differs in ffn_activation_scales;"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} tiny fp32 b2 seq 16: ", ids[1]))
            && stdout.contains("(ran other code: ffn_activation_scales)"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(f.dir.path().join("o-code/compare.md")).unwrap();
    assert!(
        md.contains(&format!("| runner {version} built from fedcba987654 |")),
        "{md}"
    );
    let section = md_section(&md, "What ran differs");
    assert!(
        md.contains("(ran other code: ffn_activation_scales)"),
        "{md}"
    );
    assert!(
        section.contains("(the same words, other numbers)"),
        "{section}"
    );
    assert!(
        section.contains("B: one static step for the whole tensor"),
        "{section}"
    );
    assert!(
        !section.contains("<b>kept</b>"),
        "unescaped markup: {section}"
    );
    let html = std::fs::read_to_string(f.dir.path().join("o-code/compare.html")).unwrap();
    assert!(
        html.contains("<h2 id=\"implementation\">What ran differs</h2>"),
        "{html}"
    );
    assert!(
        html.contains("static per-column steps | &lt;b&gt;kept&lt;&#x2f;b&gt;"),
        "{html}"
    );
    // A run against itself ran nothing different.
    let out = f
        .runner()
        .arg("compare")
        .arg(&new_code)
        .arg(&new_code)
        .args(["--out", "o-code-same"])
        .output()
        .unwrap();
    assert!(
        !stdout_of(&out).contains("ran other code"),
        "{}",
        stdout_of(&out)
    );

    // A cell B planned but has no record of is said to be exactly that.
    std::fs::remove_file(b.join("cells").join(format!("{}.json", ids[1]))).unwrap();
    let out = f.runner().arg("compare").arg(&a).arg(&b).output().unwrap();
    let stdout = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", stderr_of(&out));
    assert!(
        stdout.contains(&format!(
            "not compared: {} tiny fp32 b2 seq 16: planned in B too, but B has no record of it",
            ids[1]
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1 cells compared"), "{stdout}");

    // A run directory that kept only its summary: a usage error that says what is missing.
    let bare = f.dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    for file in ["manifest.json", "summary.csv"] {
        std::fs::copy(a.join(file), bare.join(file)).unwrap();
    }
    let out = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&bare)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "has no cell records (cells/*.json); it holds only manifest.json, summary.csv"
        ),
        "{stderr}"
    );
}
