//! What `runner report` reads back from the file system is bounded, not trusted: files that are
//! not what they claim (a symlink to /dev/zero, a FIFO, a sparse 2 GB file), `charts/` as a
//! symlink out of the run, an `--out` that is a file; each is refused by name with exit 2,
//! quickly, writing nothing outside the run. Split from tests/read_back.rs (the records' content).

mod common;
use common::read_back::*;
use common::*;

use std::path::Path;
use std::process::Command;

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {path:?}");
}

fn link(to: &Path, path: &Path) {
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(to, path).unwrap();
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
fn a_run_kept_as_its_summary_only_is_never_rendered_over() {
    let (f, run, _) = finished_run();
    let summary = std::fs::read(run.join("summary.csv")).unwrap();
    let report = std::fs::read(run.join("report.md")).unwrap();
    std::fs::remove_dir_all(run.join("cells")).unwrap();
    let out = f.runner().args(["report", "run"]).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no cells/ folder"), "{stderr}");
    assert_eq!(std::fs::read(run.join("summary.csv")).unwrap(), summary);
    assert_eq!(std::fs::read(run.join("report.md")).unwrap(), report);
}

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
