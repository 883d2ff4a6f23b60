//! Helpers for tests that drive the real `runner` binary.
#![allow(dead_code)]

pub mod gguf;
pub mod read_back;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A temporary folder holding one experiment file. Dataset paths point at the repo's datasets.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

/// The `[dataset]` table and a tiny model, for experiments written by tests.
pub fn common_tables() -> String {
    format!(
        r#"
[dataset]
path = "{}"
tokenizer = "{}"
limit = 64

[models.tiny]
architecture = "distilbert"
preset = "distilbert-tiny"
"#,
        repo("datasets/rotten_tomatoes_sentences.tsv").display(),
        repo("datasets/bert-base-uncased-vocab.txt").display()
    )
}

/// A decoder experiment named `name` on the CPU, fast, with no idle baseline: `models` are
/// TOML tables, `matrix` the body of `[matrix]`.
pub fn decoder_experiment(name: &str, models: &str, matrix: &str) -> Fixture {
    Fixture::new(&format!(
        "[experiment]\nname = \"{name}\"\n[device]\nbackend = \"cpu\"\n{FAST_PROTOCOL}idle_settle_s = 0.0\nidle_baseline_s = 0.0\n\
         [dataset]\npath = \"{}\"\ntokenizer = \"{}\"\nlimit = 64\n{models}\n[matrix]\n{matrix}\n",
        repo("datasets/rotten_tomatoes_sentences.tsv").display(),
        repo("datasets/bert-base-uncased-vocab.txt").display(),
    ))
}

/// A decoder experiment named `llm` with `models` (TOML tables) and `matrix`, on the CPU, fast.
pub fn llm_experiment(models: &str, matrix: &str) -> Fixture {
    decoder_experiment("llm", models, matrix)
}

/// A fast protocol for runs in tests.
pub const FAST_PROTOCOL: &str = r#"
[protocol]
warmup_s = 0.05
warmup_min_loops = 3
warmup_max_s = 1.0
stabilize_s = 0.0
min_window_s = 0.05
min_loops = 3
repeats = 6
"#;

impl Fixture {
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exp.toml");
        std::fs::write(&file, toml).unwrap();
        Self { dir, file }
    }

    /// `runner ARGS...` with the fixture's folder as working directory.
    pub fn runner(&self) -> Command {
        let mut cmd = Command::cargo_bin("runner").unwrap();
        cmd.current_dir(self.dir.path());
        // Keep a developer's RUNNER_* settings out of the tests.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RUNNER_")) {
            cmd.env_remove(k);
        }
        cmd
    }

    /// `runner ARGS...` started in the background, as a user's shell would (own stdin, piped
    /// output), for tests that signal or watch it while it runs.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        use std::process::Stdio;
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RUNNER_")) {
            cmd.env_remove(k);
        }
        cmd.spawn().expect("starting the runner")
    }

    /// Replaces machine-specific paths in output, for exact comparisons.
    pub fn normalize(&self, text: &str) -> String {
        let tmp = self.dir.path().canonicalize().unwrap();
        text.replace(&tmp.display().to_string(), "[TMP]")
            .replace(&self.dir.path().display().to_string(), "[TMP]")
            .replace(env!("CARGO_MANIFEST_DIR"), "[REPO]")
    }
}

/// A distilbert-tiny checkpoint in `dir` whose block 1 FFN weights are scaled by 1e30: lin2's
/// output overflows f32 and the layer norm after it turns that into NaN.
pub fn overflowing_checkpoint(dir: &Path) {
    use runner::model::{encoder, Preset};
    let preset = Preset::DISTILBERT_TINY;
    let mut tensors = encoder::random_tensors(&preset, 0).unwrap();
    for lin in ["lin1", "lin2"] {
        let name = format!("distilbert.transformer.layer.1.ffn.{lin}.weight");
        tensors.insert(name.clone(), (&tensors[&name] * 1e30).unwrap());
    }
    encoder::save_hf_dir(dir, &preset, &tensors).unwrap();
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Says that a test skipped, and why: on stderr, and as a line in `$RUNNER_SKIP_LOG` when set,
/// which `scripts/test.sh` (the README's test command) lists at the end, since cargo test shows a
/// skipped test as "ok" and swallows what it printed.
pub fn skipped(test: &str, why: &str) {
    eprintln!("SKIPPED: {why}");
    if let Some(log) = std::env::var_os("RUNNER_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

/// 1-minute load average per core below which the machine counts as otherwise idle: CPU timing
/// bounds are asserted only then (a unit timed during a compile runs several times slower).
pub const QUIET_LOAD: f64 = 0.5;

/// The 1-minute load average per core (`/proc/loadavg`); infinite where it cannot be read, so
/// timing bounds are only asserted where the machine is known to be quiet.
pub fn load_per_core() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::INFINITY, |l| l / cores)
}

/// The first lines of a bad experiment file in the config-error tests.
pub const BAD_HEADER: &str = "[experiment]\nname = \"bad\"\n";

/// Runs `runner plan` (or `run` with `--out`) on `toml`, expects exit 2, returns stderr.
pub fn fails(toml: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let f = Fixture::new(toml);
    let mut cmd = f.runner();
    cmd.arg("plan").arg("exp.toml").args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2; stdout: {} stderr: {}",
        stdout_of(&out),
        stderr_of(&out)
    );
    assert!(
        stdout_of(&out).is_empty(),
        "nothing on stdout: {}",
        stdout_of(&out)
    );
    f.normalize(&stderr_of(&out))
}

pub fn valid_with(matrix: &str) -> String {
    format!("{BAD_HEADER}{}{matrix}", common_tables())
}

/// The Markdown section under `heading` (a `## ` line), up to the next `## ` heading: so that a
/// check of one section's words is not satisfied, or broken, by another section's.
pub fn md_section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section `## {heading}` in: {md}"));
    let body = &md[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |e| e + 4);
    &body[..end]
}

/// An encoder experiment named `e2e` (its description holds markup that reports must escape) on
/// the tiny model, fast, with `matrix` appended.
pub fn tiny_experiment(matrix: &str) -> String {
    format!(
        "[experiment]\nname = \"e2e\"\ndescription = \"end-to-end test <b>not bold</b>\"\n{}{FAST_PROTOCOL}{matrix}",
        common_tables()
    )
}

/// Rewrites the JSON file at `path` (a record, a manifest) with `edit` applied.
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A file's bytes; a missing one panics naming it.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Copies a folder tree (a run, committed evidence), leaving out dot-files.
pub fn copy_tree(from: &Path, to: &Path) {
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
