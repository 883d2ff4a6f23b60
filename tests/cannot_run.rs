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
    // 3 cells x (1 s warm-up + 6 windows x 10 s) = 183 s.
    assert!(
        stdout_of(&out).contains("the protocol alone takes at least 4 min for 3 cell(s)"),
        "{}",
        stdout_of(&out)
    );
}

/// A distilbert-tiny checkpoint in `dir` as the runner writes one, then `edit`ed: config.json as
/// JSON, and the safetensors header as JSON with the data kept.
fn checkpoint(
    dir: &std::path::Path,
    edit_config: impl Fn(&mut serde_json::Value),
    edit_header: impl Fn(&mut serde_json::Value),
) {
    use runner::model::{encoder, Preset};
    let preset = Preset::DISTILBERT_TINY;
    let tensors = encoder::random_tensors(&preset, 0).unwrap();
    encoder::save_hf_dir(dir, &preset, &tensors).unwrap();
    let config = dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    edit_config(&mut c);
    std::fs::write(&config, c.to_string()).unwrap();
    let st = dir.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit_header(&mut header);
    let header = header.to_string().into_bytes();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&st, out).unwrap();
}

#[test]
fn inputs_that_would_fail_every_cell_are_refused_at_preparation_by_plan_and_run_alike() {
    let f = Fixture::new(&experiment(""));
    let dir = f.dir.path();
    // A tokenizer with more ids than the model's 30522 embeddings.
    let mut vocab = std::fs::read_to_string(repo("datasets/bert-base-uncased-vocab.txt")).unwrap();
    for i in 0..10 {
        vocab.push_str(&format!("extra{i}\n"));
    }
    std::fs::write(dir.join("big-vocab.txt"), &vocab).unwrap();
    // Fewer tokens than the model's vocabulary, but ids past it: the largest id counts.
    let sparse = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "[PAD]": 1, "good": 40000},
                  "unk_token": "[UNK]"}
    });
    std::fs::write(dir.join("sparse.json"), sparse.to_string()).unwrap();
    // A template that adds three special tokens where seq_len asks for two.
    let mut template = sparse.clone();
    template["model"]["vocab"] =
        serde_json::json!({"[UNK]": 0, "[PAD]": 1, "[CLS]": 2, "[SEP]": 3, "[X]": 4});
    template["post_processor"] = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                   {"SpecialToken": {"id": "[X]", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {
            "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
            "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]},
            "[X]": {"id": "[X]", "ids": [4], "tokens": ["[X]"]}
        }
    });
    std::fs::write(dir.join("template.json"), template.to_string()).unwrap();
    // Ratings that are not numbers a sentence gets.
    std::fs::write(
        dir.join("nan.tsv"),
        "1\t0.5\tgood\n2\tnan\tbad line\n3\t-1\tbad\n",
    )
    .unwrap();
    std::fs::write(dir.join("inf.tsv"), "1\tinf\tgood\n").unwrap();
    // A dataset of 2 GB (sparse: no disk is used).
    std::fs::File::create(dir.join("huge.tsv"))
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    // A checkpoint with an integer tensor.
    let ckpt = dir.join("int-weights");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("config.json"), "{}").unwrap();
    let header = br#"{"distilbert.embeddings.word_embeddings.weight":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0, 0, 0, 0]);
    std::fs::write(ckpt.join("model.safetensors"), st).unwrap();
    // Checkpoints whose config.json or header says what the runner would not run, or cannot load.
    let word = "distilbert.embeddings.word_embeddings.weight";
    checkpoint(
        &dir.join("relu"),
        |c| c["activation"] = "relu".into(),
        |_| {},
    );
    checkpoint(
        &dir.join("eps"),
        |c| c["layer_norm_eps"] = 1e-5.into(),
        |_| {},
    );
    checkpoint(
        &dir.join("negative"),
        |_| {},
        |h| h[word]["shape"] = serde_json::json!([-1, 64]),
    );
    checkpoint(
        &dir.join("overflow"),
        |_| {},
        |h| h[word]["shape"] = serde_json::json!([u64::MAX, 4]),
    );
    checkpoint(
        &dir.join("offsets"),
        |_| {},
        |h| h[word]["data_offsets"] = serde_json::json!([0, 1u64 << 40]),
    );
    checkpoint(
        &dir.join("reshaped"),
        |_| {},
        |h| {
            // 64 x 64 of the same bytes declared 32 x 128: a valid header, the wrong tensor.
            let name = "distilbert.transformer.layer.0.attention.q_lin.weight";
            h[name]["shape"] = serde_json::json!([32, 128]);
        },
    );
    checkpoint(
        &dir.join("missing"),
        |_| {},
        |h| {
            h.as_object_mut()
                .unwrap()
                .remove("distilbert.transformer.layer.1.ffn.lin2.weight");
        },
    );
    // A config.json of a gigabyte (sparse), hashed and parsed whole before.
    checkpoint(&dir.join("huge-config"), |_| {}, |_| {});
    std::fs::File::create(dir.join("huge-config/config.json"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();

    let weights = |w: &str| format!("models.tiny.weights={w}");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["dataset.tokenizer=big-vocab.txt".into()],
            vec![
                "dataset.tokenizer",
                "the tokenizer gives ids up to 30531, but models.tiny's vocabulary has 30522",
            ],
        ),
        (
            vec!["dataset.tokenizer=sparse.json".into()],
            vec!["sparse.json", "ids up to 40000"],
        ),
        (
            vec![
                "dataset.tokenizer=template.json".into(),
                "matrix.seq_len=[2]".into(),
            ],
            vec![
                "dataset.tokenizer",
                "template.json",
                "adds 3 special tokens to every example where seq_len = 2",
            ],
        ),
        (
            vec!["dataset.path=nan.tsv".into()],
            vec!["nan.tsv:2", "not a finite number"],
        ),
        (
            vec!["dataset.path=inf.tsv".into()],
            vec!["inf.tsv:1", "not a finite number"],
        ),
        (
            vec!["dataset.path=huge.tsv".into()],
            vec!["huge.tsv is 2.0 GiB, more than the 1.0 GiB a dataset can be"],
        ),
        (
            vec![weights("int-weights")],
            vec![
                "models.tiny.weights",
                "word_embeddings.weight (I32)",
                "not floating point",
            ],
        ),
        (
            vec![weights("relu")],
            vec![
                "relu/config.json: activation is \"relu\"",
                "implements \"gelu\"",
            ],
        ),
        (vec![weights("eps")], vec!["layer_norm_eps is 0.00001"]),
        (
            vec![weights("negative")],
            vec!["word_embeddings.weight", "is not a list of sizes >= 0"],
        ),
        (vec![weights("overflow")], vec!["overflows"]),
        (
            vec![weights("offsets")],
            vec!["data_offsets [0, 1099511627776]"],
        ),
        (
            vec![weights("reshaped")],
            vec!["q_lin.weight has shape [32, 128], the preset's model needs [64, 64]"],
        ),
        (
            vec![weights("missing")],
            vec!["layer.1.ffn.lin2.weight is missing"],
        ),
        (
            vec![weights("huge-config")],
            vec!["config.json is 1.0 GiB, more than the 1.0 MiB"],
        ),
    ];
    for (sets, expected) in cases {
        let mut set_args = Vec::new();
        for s in &sets {
            set_args.extend(["--set", s.as_str()]);
        }
        // `runner plan` is the dry run of the same preparation: it refuses alike.
        for command in [vec!["plan", "exp.toml"], vec!["exp.toml", "--out", "run"]] {
            let mut args = command.clone();
            args.extend(&set_args);
            let start = Instant::now();
            let out = f.runner().args(&args).output().unwrap();
            let stderr = stderr_of(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            for e in &expected {
                assert!(stderr.contains(e), "{args:?}: expected {e:?} in {stderr}");
            }
            assert!(!dir.join("run").exists(), "{args:?}: a run was started");
            assert!(start.elapsed() < Duration::from_secs(60), "{args:?}");
        }
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

#[test]
fn environment_variables_nested_thousands_deep_are_refused_not_a_stack_overflow() {
    let f = Fixture::new(&experiment(""));
    let lists = format!("{}{}", "[".repeat(1450), "]".repeat(1450));
    let tables = format!("{}1{}", "{a=".repeat(5000), "}".repeat(5000));
    let deep_key = format!("RUNNER_{}", vec!["A"; 40_000].join("__"));
    for (name, value, expected) in [
        (
            "RUNNER_PROTOCOL__REPEATS".to_string(),
            lists.clone(),
            "RUNNER_PROTOCOL__REPEATS: its value nests lists or tables 1450 deep",
        ),
        (
            "RUNNER_PROTOCOL__REPEATS".to_string(),
            tables,
            "nests lists or tables 5000 deep",
        ),
        (deep_key, "1".to_string(), "its name has 40000 levels"),
    ] {
        for command in [vec!["plan", "exp.toml"], vec!["exp.toml", "--out", "run"]] {
            let out = f
                .runner()
                .args(&command)
                .env(&name, &value)
                .output()
                .unwrap();
            let stderr = stderr_of(&out);
            assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
            assert!(stderr.contains(expected), "{stderr}");
        }
    }
    // As an override, the same value is refused too.
    refused_plan(
        &f,
        &["exp.toml", "--set", &format!("protocol.repeats={lists}")],
        &[
            "--set protocol.repeats=",
            "nests lists or tables more than 16 deep",
        ],
    );
}

#[test]
fn a_reader_that_goes_away_ends_nothing_plan_piped_into_head() {
    // 2,000 cells: more lines than a pipe holds, so the runner is still writing when the reader
    // has gone (`runner plan FILE | head -1`).
    let sizes: Vec<String> = (1..=2000).map(|b| b.to_string()).collect();
    let f = Fixture::new(&format!(
        "[experiment]\nname = \"pipe\"\n{}[matrix]\nbatch_size = [{}]\nseq_len = [8]\n",
        common_tables(),
        sizes.join(", ")
    ));
    use std::io::BufRead;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(f.dir.path())
        .args(["plan", "exp.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("ID"), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
