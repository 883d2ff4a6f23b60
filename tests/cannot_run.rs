//! Values that pass the type checks but cannot run, and inputs that would exhaust a resource:
//! each refused with exit 2, naming the key, file or option, before anything is measured.

mod common;
use common::*;

use std::time::{Duration, Instant};

fn experiment(extra: &str) -> String {
    format!(
        "[experiment]\nname = \"bounds\"\n{}{FAST_PROTOCOL}{extra}\n[matrix]\nbatch_size = [1]\nseq_len = [8]\n",
        common_tables()
    )
}

/// `runner plan exp.toml --set ...`: exit 2 with every `expected` text in stderr.
fn refused_plan(f: &Fixture, args: &[&str], expected: &[&str]) {
    let out = f.runner().arg("plan").args(args).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for e in expected {
        assert!(stderr.contains(e), "{args:?}: expected {e:?} in {stderr}");
    }
}

#[test]
fn numbers_past_their_bounds_are_refused_with_the_reason() {
    let f = Fixture::new(&experiment(""));
    let long_name = format!("experiment.name={}", "a".repeat(300));
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "protocol.stabilize_s=1e300",
            vec!["protocol.stabilize_s", "at most 86400"],
        ),
        (
            "protocol.cooldown_s=1e20",
            vec!["protocol.cooldown_s", "one day"],
        ),
        (
            "protocol.min_window_s=1e30",
            vec!["protocol.min_window_s", "at most"],
        ),
        (
            "protocol.repeats=1000000000",
            vec!["protocol.repeats", "at most 1000"],
        ),
        (
            "protocol.min_loops=4000000000",
            vec!["protocol.min_loops", "at most"],
        ),
        (
            "matrix.batch_size=[9223372036854775807]",
            vec!["matrix.batch_size[0]", "at most 8192"],
        ),
        (
            "matrix.batch_size=[50000000]",
            vec!["matrix.batch_size[0]", "GPU's memory"],
        ),
        (
            "dataset.limit=100000000000",
            vec!["dataset.limit", "at most"],
        ),
        (
            "sensor.sample_interval_ms=100000000",
            vec!["sensor.sample_interval_ms", "at most"],
        ),
        (
            "device.cpu_workers=100000",
            vec!["device.cpu_workers", "at most 256"],
        ),
        (
            &long_name,
            vec!["experiment.name is 300 characters long", "at most 100"],
        ),
    ];
    for (set, expected) in cases {
        refused_plan(&f, &["exp.toml", "--set", set], &expected);
    }
    // At the bounds, the plan is made and the lower bound of the time is given.
    let out = f
        .runner()
        .args([
            "plan",
            "exp.toml",
            "--set",
            "protocol.repeats=1000",
            "--set",
            "matrix.batch_size=[8192]",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("the protocol alone takes at least"),
        "{}",
        stdout_of(&out)
    );
}

#[test]
fn runner_plan_gives_the_protocols_lower_bound_of_the_time() {
    let f = Fixture::new(&experiment(""));
    let out = f
        .runner()
        .args([
            "plan",
            "exp.toml",
            "--set",
            "protocol.min_window_s=10",
            "--set",
            "protocol.warmup_s=1",
            "--set",
            "matrix.batch_size=[1,2,3]",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // 3 cells x (1 s warm-up + 3 windows x 10 s) = 93 s.
    assert!(
        stdout_of(&out).contains("the protocol alone takes at least 93 s for 3 cell(s)"),
        "{}",
        stdout_of(&out)
    );
}

#[test]
fn inputs_that_would_fail_every_cell_are_refused_at_preparation() {
    let f = Fixture::new(&experiment(""));
    let dir = f.dir.path();
    // A tokenizer with more ids than the model's 30522 embeddings.
    let mut vocab = std::fs::read_to_string(repo("datasets/bert-base-uncased-vocab.txt")).unwrap();
    for i in 0..10 {
        vocab.push_str(&format!("extra{i}\n"));
    }
    std::fs::write(dir.join("big-vocab.txt"), vocab).unwrap();
    // Ratings that are not numbers a sentence gets.
    std::fs::write(
        dir.join("nan.tsv"),
        "1\t0.5\tgood\n2\tnan\tbad line\n3\t-1\tbad\n",
    )
    .unwrap();
    std::fs::write(dir.join("inf.tsv"), "1\tinf\tgood\n").unwrap();
    // A checkpoint with an integer tensor.
    let ckpt = dir.join("int-weights");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("config.json"), "{}").unwrap();
    let header = br#"{"distilbert.embeddings.word_embeddings.weight":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0, 0, 0, 0]);
    std::fs::write(ckpt.join("model.safetensors"), st).unwrap();

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--set", "dataset.tokenizer=big-vocab.txt"],
            vec![
                "dataset.tokenizer",
                "vocabulary (30532 tokens) is larger than model tiny's (30522)",
            ],
        ),
        (
            vec!["--set", "dataset.path=nan.tsv"],
            vec!["nan.tsv:2", "not a finite number"],
        ),
        (
            vec!["--set", "dataset.path=inf.tsv"],
            vec!["inf.tsv:1", "not a finite number"],
        ),
        (
            vec!["--set", "models.tiny.weights=int-weights"],
            vec![
                "models.tiny.weights",
                "word_embeddings.weight (I32)",
                "not floating point",
            ],
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["exp.toml", "--out", "run"];
        args.extend(&extra);
        let out = f.runner().args(&args).output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{args:?}: expected {e:?} in {stderr}");
        }
        assert!(!dir.join("run").exists(), "{args:?}: a run was started");
    }
}

#[test]
fn experiment_files_that_are_not_small_regular_files_are_refused() {
    let f = Fixture::new(&experiment(""));
    refused_plan(&f, &["/dev/zero"], &["/dev/zero", "not a regular file"]);
    let fifo = f.dir.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let start = Instant::now();
        refused_plan(&f, &["fifo.toml"], &["fifo.toml", "not a regular file"]);
        assert!(start.elapsed() < Duration::from_secs(30));
    }
    refused_plan(&f, &["."], &["is a folder"]);
    let big = format!("{}\n# {}\n", experiment(""), "x".repeat(9 << 20));
    std::fs::write(f.dir.path().join("big.toml"), big).unwrap();
    refused_plan(&f, &["big.toml"], &["big.toml", "larger than 8 MiB"]);
    // A --set key nested tens of thousands of levels deep.
    let deep = format!("{}=1", vec!["a"; 30_000].join("."));
    refused_plan(
        &f,
        &["exp.toml", "--set", &deep],
        &["30000 levels", "no key of an experiment has more than 8"],
    );
}

#[test]
fn include_and_exclude_entries_are_matched_in_linear_time_and_counted() {
    // 500 x 100 axes with 50,000 include entries, each naming one combination.
    let batches: Vec<String> = (1..=500).map(|b| b.to_string()).collect();
    let seqs: Vec<String> = (2..102).map(|s| s.to_string()).collect();
    let mut include = String::new();
    for b in 1..=500 {
        for s in 2..102 {
            include.push_str(&format!(
                "{{ batch_size = {b}, seq_len = {s}, scope = \"model\" }},\n"
            ));
        }
    }
    let matrix = format!(
        "[matrix]\nbatch_size = [{}]\nseq_len = [{}]\ninclude = [\n{include}]\n",
        batches.join(", "),
        seqs.join(", ")
    );
    let toml = format!(
        "[experiment]\nname = \"big\"\n{}{FAST_PROTOCOL}{matrix}",
        common_tables()
    );
    let f = Fixture::new(&toml);
    let start = Instant::now();
    let out = f.runner().args(["plan", "exp.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("50000 cells"));
    // 77 s when matching was quadratic; a few seconds now, even on a loaded machine.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );

    // Exclude entries count toward the limit too.
    let exclude = "{ batch_size = 1 },\n".repeat(50_001);
    let matrix = format!(
        "[matrix]\nbatch_size = [{}]\nseq_len = [{}]\nexclude = [\n{exclude}]\n",
        batches.join(", "),
        seqs.join(", ")
    );
    let toml = format!(
        "[experiment]\nname = \"big\"\n{}{FAST_PROTOCOL}{matrix}",
        common_tables()
    );
    let f = Fixture::new(&toml);
    refused_plan(
        &f,
        &["exp.toml"],
        &["50001 exclude entries", "more than the 100000"],
    );
}

#[test]
fn a_template_that_does_not_compile_stops_the_run_before_the_first_cell() {
    let f = Fixture::new(&experiment(""));
    let t = f.dir.path().join("t");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::copy(repo("templates/report.html.j2"), t.join("report.html.j2")).unwrap();
    std::fs::write(t.join("report.md.j2"), "{% if r.partial %}never closed").unwrap();
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run", "--templates", "t"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("report.md.j2: the report template does not compile"),
        "{stderr}"
    );
    assert!(!f.dir.path().join("run").exists());
}

#[test]
fn a_report_that_fails_to_render_names_the_way_to_render_it_again() {
    let f = Fixture::new(&experiment(""));
    let t = f.dir.path().join("t");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::copy(repo("templates/report.html.j2"), t.join("report.html.j2")).unwrap();
    // Compiles, fails on the data.
    std::fs::write(t.join("report.md.j2"), "{{ r.no_such_thing.at_all }}").unwrap();
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run", "--templates", "t"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("every record is kept"), "{stderr}");
    assert!(stderr.contains("runner report "), "{stderr}");
    let charts = f.dir.path().join("run/charts");
    let leftovers: Vec<_> = std::fs::read_dir(&charts)
        .map(|d| {
            d.map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
