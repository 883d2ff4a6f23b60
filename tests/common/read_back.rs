//! Helpers of the tests of what `runner report` reads back (tests/read_back.rs,
//! tests/read_back_files.rs): a finished run to edit, and `runner report` on an edited copy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{common_tables, copy_tree, stderr_of, Fixture, FAST_PROTOCOL};

/// Two model cells and a layers cell of the tiny encoder, fast.
pub fn experiment() -> String {
    format!(
        "[experiment]\nname = \"readback\"\n{}{FAST_PROTOCOL}[matrix]\nbatch_size = [1, 2]\nseq_len = [8]\nscope = [\"model\", \"layers\"]\nexclude = [{{ scope = \"layers\", batch_size = 2 }}]\n",
        common_tables()
    )
}

/// A fixture with a finished run in `run/`, its plan's ids (the first is a model cell).
pub fn finished_run() -> (Fixture, PathBuf, Vec<String>) {
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

/// `runner report` on a copy of `run` edited by `edit`: (exit code, stderr, seconds taken).
/// A report that hangs (a FIFO read) is killed after 60 s and fails the test.
pub fn report_of(f: &Fixture, run: &Path, edit: impl FnOnce(&Path)) -> (Option<i32>, String, f64) {
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

/// A cell's record in a run folder.
pub fn record(dir: &Path, id: &str) -> PathBuf {
    dir.join("cells").join(format!("{id}.json"))
}
