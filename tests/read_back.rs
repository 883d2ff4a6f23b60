//! What `runner report` reads back is validated and bounded, not trusted: a record that
//! disagrees with its planned cell, impossible numbers, a manifest that lists a cell twice, files
//! that are not what they claim (a symlink to /dev/zero, a FIFO, a sparse 2 GB file, 100,000
//! windows, a trace of inf samples), `charts/` as a symlink out of the run; each is refused by
//! name with exit 2, quickly, writing nothing outside the run. Text from records reaches
//! report.md as text. Renders of one run are serialized.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn experiment() -> String {
    format!(
        "[experiment]\nname = \"readback\"\n{}{FAST_PROTOCOL}[matrix]\nbatch_size = [1, 2]\nseq_len = [8]\nscope = [\"model\", \"layers\"]\nexclude = [{{ scope = \"layers\", batch_size = 2 }}]\n",
        common_tables()
    )
}

/// A fixture with a finished run in `run/`, its plan's ids (the first is a model cell).
fn finished_run() -> (Fixture, PathBuf, Vec<String>) {
    let f = Fixture::new(&experiment());
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let run = f.dir.path().join("run");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let ids = m["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    (f, run, ids)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_type().unwrap().is_file()
            && !entry.file_name().to_string_lossy().starts_with('.')
        {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `runner report` on a copy of `run` edited by `edit`: (exit code, stderr, seconds taken).
/// A report that hangs (a FIFO read) is killed after 60 s and fails the test.
fn report_of(f: &Fixture, run: &Path, edit: impl FnOnce(&Path)) -> (Option<i32>, String, f64) {
    let copy = f.dir.path().join("copy");
    if copy.exists() {
        std::fs::remove_dir_all(&copy).unwrap();
    }
    copy_tree(run, &copy);
    edit(&copy);
    let start = Instant::now();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(f.dir.path())
        .args(["report", "copy"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code(), stderr, start.elapsed().as_secs_f64());
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("runner report did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {path:?}");
}

fn link(to: &Path, path: &Path) {
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(to, path).unwrap();
}

/// Whether `needle` occurs in `md` other than escaped (`\`) or opening a code span.
fn unescaped(md: &str, needle: &str) -> bool {
    md.match_indices(needle)
        .any(|(i, _)| !matches!(md[..i].chars().last(), Some('\\') | Some('`')))
}

fn record(dir: &Path, id: &str) -> PathBuf {
    dir.join("cells").join(format!("{id}.json"))
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
fn files_that_are_not_what_they_claim_are_refused_quickly_and_nothing_is_written_outside() {
    let (f, run, ids) = finished_run();
    let id = ids[0].clone();
    let outside = f.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("record.json"), b"{}").unwrap();
    type Edit = Box<dyn FnOnce(&Path)>;
    let id2 = id.clone();
    let id3 = id.clone();
    let id4 = id.clone();
    let id5 = id.clone();
    let outside2 = outside.clone();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "is a symlink to /dev/zero, outside the run directory",
            Box::new(move |d| link(Path::new("/dev/zero"), &record(d, &id2))),
        ),
        (
            "outside the run directory",
            Box::new(move |d| link(&outside2.join("record.json"), &record(d, &id3))),
        ),
        (
            "is not a regular file (a device, FIFO or socket)",
            Box::new(move |d| mkfifo(&record(d, &id4))),
        ),
        (
            "is 2.0 GiB, more than the 64.0 MiB a record can be",
            Box::new(move |d| {
                let file = std::fs::File::create(record(d, &id5)).unwrap();
                file.set_len(2 << 30).unwrap();
            }),
        ),
        (
            "manifest copy/manifest.json is not a regular file",
            Box::new(|d| mkfifo(&d.join("manifest.json"))),
        ),
        (
            "session",
            Box::new(|d| {
                std::fs::create_dir_all(d.join("sessions")).unwrap();
                mkfifo(&d.join("sessions/gpu0-1.json"));
            }),
        ),
        (
            "row 3 power_w is inf",
            Box::new(move |d| {
                std::fs::write(
                    d.join("traces").join(format!("{}.csv", ids[0])),
                    "t_s,power_w\n0.0,50.0\n0.02,inf\n",
                )
                .unwrap()
            }),
        ),
        (
            "power_w is 1e308",
            Box::new(move |d| {
                std::fs::write(
                    d.join("traces").join(format!("{id}.csv")),
                    "t_s,power_w\n0.0,1e308\n",
                )
                .unwrap()
            }),
        ),
    ];
    for (expected, edit) in cases {
        let (code, stderr, secs) = report_of(&f, &run, edit);
        assert_eq!(code, Some(2), "{expected}: {stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(secs < 20.0, "{expected}: {secs} s");
    }

    // charts/ as a symlink: refused, nothing written where it points.
    let (code, stderr, _) = report_of(&f, &run, |d| {
        std::fs::remove_dir_all(d.join("charts")).unwrap();
        std::os::unix::fs::symlink(&outside, d.join("charts")).unwrap();
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("charts is a symlink to"), "{stderr}");
    let written: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(written, ["record.json"], "written outside the run");
}

/// `--out` naming a file is the user's mistake (exit 2, said so), not a failure of the run; a
/// worker's claim file left as a link out of the run is never followed.
#[test]
fn an_out_that_is_a_file_is_refused_and_claims_never_follow_links() {
    let f = Fixture::new(&experiment());
    std::fs::write(f.dir.path().join("notes.txt"), "mine\n").unwrap();
    for extra in [&[][..], &["--resume"][..]] {
        let out = f
            .runner()
            .args(["exp.toml", "--out", "notes.txt"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("notes.txt is a file, not a folder"),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join("notes.txt")).unwrap(),
        "mine\n"
    );

    // Two CPU workers resume a run whose claim for a missing cell is a dangling link out.
    let workers = [
        "--set",
        "device.backend=\"cpu\"",
        "--set",
        "device.cpu_workers=2",
    ];
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .args(workers)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let run = f.dir.path().join("run");
    let ids: Vec<String> = std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    std::fs::remove_file(record(&run, &ids[0])).unwrap();
    std::fs::create_dir_all(run.join(".claims")).unwrap();
    let outside = f.dir.path().join("created-by-runner");
    link(
        &outside,
        &run.join(".claims").join(format!("{}.lock", ids[0])),
    );
    let out = f
        .runner()
        .args(["exp.toml", "--resume", "--out", "run"])
        .args(workers)
        .output()
        .unwrap();
    assert!(!outside.exists(), "a claim was created outside the run");
    let stderr = stderr_of(&out);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("is not a file the runner made"), "{stderr}");

    // The claims folder itself a link out: refused before any worker starts (exit 2).
    std::fs::remove_dir_all(run.join(".claims")).unwrap();
    std::os::unix::fs::symlink(f.dir.path(), run.join(".claims")).unwrap();
    let out = f
        .runner()
        .args(["exp.toml", "--resume", "--out", "run"])
        .args(workers)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(".claims is a symlink to"), "{stderr}");
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
