//! What `runner report` reads back is validated and bounded, not trusted: a record that
//! disagrees with its planned cell, impossible numbers (100,000 windows, a trace of inf
//! samples), a manifest that lists a cell twice; each is refused by name with exit 2. Text from
//! records reaches report.md as text. Renders of one run are serialized. Files that are not what
//! they claim are tests/read_back_files.rs's.

mod common;
use common::read_back::*;
use common::*;

use std::process::{Command, Stdio};
use std::time::Duration;

/// Whether `needle` occurs in `md` other than escaped (`\`) or opening a code span.
fn unescaped(md: &str, needle: &str) -> bool {
    md.match_indices(needle)
        .any(|(i, _)| !matches!(md[..i].chars().last(), Some('\\') | Some('`')))
}

#[test]
fn records_that_disagree_with_their_cell_or_hold_impossible_numbers_are_refused_by_name() {
    let (f, run, ids) = finished_run();
    let id = ids[0].clone();
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "the record measured \"tiny\" fp16 batch 64 seq 8 scope model, but the plan's cell",
            Box::new(|r| {
                r["cell"]["precision"] = "fp16".into();
                r["cell"]["batch_size"] = 64.into();
            }),
        ),
        (
            "energy_j is -31.25 J",
            Box::new(|r| r["windows"][0]["energy_j"] = (-31.25).into()),
        ),
        (
            "energy_j is 1e308 J",
            Box::new(|r| r["windows"][1]["energy_j"] = 1e308.into()),
        ),
        (
            "windows[2].loops is 0",
            Box::new(|r| r["windows"][2]["loops"] = 0.into()),
        ),
        (
            "its protocol is not the run's",
            Box::new(|r| r["protocol"]["repeats"] = 1000000.into()),
        ),
        (
            "status ok, but no windows were recorded",
            Box::new(|r| r["windows"] = serde_json::json!([])),
        ),
    ];
    for (expected, edit) in cases {
        let (code, stderr, _) = report_of(&f, &run, |dir| edit_json(&record(dir, &id), edit));
        assert_eq!(code, Some(2), "{expected}: {stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(stderr.contains(&format!("cells/{id}.json")), "{stderr}");
        assert!(
            stderr.contains("delete it to measure the cell again with --resume"),
            "{stderr}"
        );
    }

    // A layers cell's unit with an impossible window is named with its layer.
    let layers = ids
        .iter()
        .find(|id| {
            std::fs::read_to_string(record(&run, id))
                .unwrap()
                .contains("\"layers\": [")
        })
        .unwrap()
        .clone();
    let (code, stderr, _) = report_of(&f, &run, |dir| {
        edit_json(&record(dir, &layers), |r| {
            r["layers"][1]["windows"][0]["loop_ms"][0] = (-1.0).into()
        })
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("layers[1] (\""), "{stderr}");

    // A layers cell's record that holds whole-model windows, or a float cell with a selection.
    let model_windows = {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(record(&run, &id)).unwrap()).unwrap();
        r["windows"].clone()
    };
    let (code, stderr, _) = report_of(&f, &run, |dir| {
        edit_json(&record(dir, &layers), |r| r["windows"] = model_windows)
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("a layers cell's record holds windows of the whole model"),
        "{stderr}"
    );
    let (code, stderr, _) = report_of(&f, &run, |dir| {
        edit_json(
            &record(dir, &id),
            |r| {
                r["quantization"] =
                    serde_json::json!({"selection": "all", "quantized": [], "float": []})
            },
        )
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("a quantization record in a cell of float precision fp32"),
        "{stderr}"
    );

    // A plan listing a cell twice: the count of cells would be wrong, and nothing says partial.
    let (code, stderr, _) = report_of(&f, &run, |dir| {
        edit_json(&dir.join("manifest.json"), |m| {
            let first = m["plan"][0].clone();
            m["plan"].as_array_mut().unwrap().push(first);
        })
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("lists cell {id} a second time")),
        "{stderr}"
    );

    // 100,000 windows of one loop each: refused by count, not rendered for half a minute.
    let (code, stderr, secs) = report_of(&f, &run, |dir| {
        edit_json(&record(dir, &id), |r| {
            let w = serde_json::json!({"loops": 1, "duration_s": 0.01, "loop_ms": [5.0],
                "energy_j": null, "counter_delta_j": null, "tail_correction_j": null,
                "trace_energy_j": null, "counter_ticks": null, "num_power_samples": 0});
            r["windows"] = serde_json::Value::Array(vec![w; 100_000]);
        })
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("100000 windows"), "{stderr}");
    assert!(secs < 20.0, "{secs} s");
}

/// Numbers a record holds that its other numbers do not bear out: a loop count the latencies
/// contradict (energy and throughput are divided by it), counters faster than any sensor, a
/// failed cell without a reason, energies from a sensor that measures none or in some windows
/// only, units named twice or out of order.
#[test]
fn records_whose_parts_disagree_are_refused_by_name() {
    let (f, run, ids) = finished_run();
    let (model, layers) = (ids[0].clone(), ids[1].clone());
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let metered = |r: &mut serde_json::Value| {
        r["sensor"] = serde_json::json!({"kind": "nvml", "measures_energy": true, "note": ""});
        for w in r["windows"].as_array_mut().unwrap() {
            w["energy_j"] = 0.5.into();
            w["counter_delta_j"] = 0.5.into();
            w["tail_correction_j"] = 0.0.into();
            w["counter_ticks"] = 3.into();
        }
    };
    let cases: Vec<(&str, &str, Edit)> = vec![
        (
            "for 4294967295 loops, but the runner keeps 4096 of them",
            &model,
            Box::new(|r| r["windows"][0]["loops"] = u32::MAX.into()),
        ),
        (
            "windows[1].loop_ms holds",
            &model,
            Box::new(|r| r["windows"][1]["loop_ms_stride"] = 7.into()),
        ),
        (
            "18446744073709551615 counter updates",
            &model,
            Box::new(|r| r["windows"][0]["counter_ticks"] = u64::MAX.into()),
        ),
        (
            "status failed, but no reason is recorded",
            &model,
            Box::new(|r| r["status"] = "failed".into()),
        ),
        (
            "status skipped (the cell never ran), but it holds windows",
            &model,
            Box::new(|r| {
                r["status"] = "skipped".into();
                r["reason"] = "shapes".into();
            }),
        ),
        (
            "windows hold energies, but its sensor (\"none\") measures none",
            &model,
            Box::new(|r| {
                for w in r["windows"].as_array_mut().unwrap() {
                    w["energy_j"] = 0.001.into();
                }
            }),
        ),
        (
            "windows: 5 of 6 windows hold an energy",
            &model,
            Box::new(move |r| {
                metered(r);
                r["windows"][2]["energy_j"] = serde_json::Value::Null;
            }),
        ),
        (
            "windows[3].energy_j is 0.9 J, but counter_delta_j + tail_correction_j is 0.5 J",
            &model,
            Box::new(move |r| {
                metered(r);
                r["windows"][3]["energy_j"] = 0.9.into();
            }),
        ),
        (
            "dataset: 169 samples served with 1000 wraparounds",
            &model,
            Box::new(|r| {
                r["dataset"]["samples_served"] = 169.into();
                r["dataset"]["wraparounds"] = 1000.into();
            }),
        ),
        (
            "truncated_examples is 65, more than the dataset's 64 examples",
            &model,
            Box::new(|r| r["truncated_examples"] = 65.into()),
        ),
        (
            "layers[6] (\"embeddings\") is listed a second time",
            &layers,
            Box::new(|r| r["layers"][6]["name"] = "embeddings".into()),
        ),
        (
            "layers[2] (\"transformer_block_0.attention\").parent \"classifier\" is not a layer listed before it",
            &layers,
            Box::new(|r| r["layers"][2]["parent"] = "classifier".into()),
        ),
        (
            "layers[3] (\"transformer_block_0.sa_layer_norm\").index is 1, not after the layer before it",
            &layers,
            Box::new(|r| r["layers"][3]["index"] = 1.into()),
        ),
        (
            "started_at holds a control character",
            &model,
            Box::new(|r| r["started_at"] = "\u{1b}]0;retitled\u{7}\u{1b}[2J".into()),
        ),
        (
            "calls_per_loop is 4294967295",
            &layers,
            Box::new(|r| r["layers"][4]["calls_per_loop"] = u32::MAX.into()),
        ),
    ];
    for (expected, id, edit) in cases {
        let (code, stderr, _) = report_of(&f, &run, |dir| edit_json(&record(dir, id), edit));
        assert_eq!(code, Some(2), "{expected}: {stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(stderr.contains(&format!("cells/{id}.json")), "{stderr}");
    }
    // A manifest's text reaches the terminal too (the summary table, compare's lines).
    let (code, stderr, _) = report_of(&f, &run, |dir| {
        edit_json(&dir.join("manifest.json"), |m| {
            m["run_id"] = "run\r\u{1b}[31mrewritten".into()
        })
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("manifest.json: run_id holds a control character"),
        "{stderr}"
    );

    // The same edits that keep a record consistent pass: a metered record renders.
    let (code, stderr, _) = report_of(&f, &run, |dir| edit_json(&record(dir, &model), metered));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn text_from_records_reaches_report_md_as_text() {
    let (f, run, ids) = finished_run();
    let layers = ids
        .iter()
        .find(|id| {
            std::fs::read_to_string(record(&run, id))
                .unwrap()
                .contains("\"layers\": [")
        })
        .unwrap()
        .clone();
    edit_json(&record(&run, &layers), |r| {
        r["layers"][0]["name"] = "<img src=x onerror=alert(1)>".into();
    });
    edit_json(&run.join("manifest.json"), |m| {
        m["started_at"] = "# Injected heading".into();
        m["run_id"] = "[x](javascript:alert(1))".into();
    });
    let out = f.runner().args(["report", "run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(!unescaped(&md, "<img src=x"), "raw HTML in report.md: {md}");
    assert!(md.contains("\\<img src=x onerror=alert(1)>"), "{md}");
    assert!(!md.lines().any(|l| l.starts_with("# Injected")), "{md}");
    assert!(!unescaped(&md, "[x](javascript"), "{md}");
}

#[test]
fn a_report_waits_for_another_render_of_the_run_and_never_lands_a_stale_one() {
    let (f, run, _) = finished_run();
    // Another render holds the run's render lock: `runner report` waits for it.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(run.join(".render.lock"))
        .unwrap();
    lock.lock().unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(f.dir.path())
        .args(["report", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "runner report rendered while another render held the run"
    );
    lock.unlock().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
