//! `runner FILE` end to end on the CPU, and `runner report DIR` reproducing its reports.

mod common;
use common::*;

#[test]
fn smoke_run_writes_every_output_and_report_reproduces_the_same_bytes() {
    let f = Fixture::new(&tiny_experiment(
        "[matrix]\nprecision = [\"fp32\", \"bf16\"]\nbatch_size = [2, 4]\nseq_len = [16]\n",
    ));
    let run = f.dir.path().join("run");
    // No RAPL, as in CI, whatever this machine has (tests/rapl.rs meters a fake one).
    let out = f
        .runner()
        .args([
            "exp.toml",
            "--set",
            "sensor.powercap_root=\"/nonexistent/powercap\"",
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no GPU: running on the CPU"), "{stderr}");
    assert!(
        stderr.contains("runner: energy not measured: the cells ran on the CPU, and RAPL is not present: /nonexistent/powercap does not exist"),
        "{stderr}"
    );
    // The time: estimated from the cells' cost before the first, and compared at the end.
    assert!(
        stderr.contains("runner: estimated ~") && stderr.contains("measured matmul rate (fp32 "),
        "{stderr}"
    );
    assert!(
        stderr.contains("runner: the estimate before the first cell was ~"),
        "{stderr}"
    );

    // Every output file.
    for file in [
        "manifest.json",
        "report.html",
        "report.md",
        "summary.csv",
        "charts/latency.svg",
        "charts/throughput.svg",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(&run.join("manifest.json"))).unwrap();
    assert_eq!(manifest["schema_version"], 1);
    assert_eq!(manifest["device"]["backend"], "cpu");
    assert!(manifest["ended_at"].is_string());
    assert!(manifest["crate_versions"]["candle-core"].is_string());
    assert!(manifest["sessions"][0]["estimated_s"].as_f64().unwrap() > 0.0);
    let plan = manifest["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 4);

    // One record per cell, with the precision that really executed.
    for cell in plan {
        let id = cell["id"].as_str().unwrap();
        let record: serde_json::Value =
            serde_json::from_slice(&read(&run.join("cells").join(format!("{id}.json")))).unwrap();
        assert_eq!(record["schema_version"], 1);
        assert_eq!(record["status"], "ok");
        assert_eq!(record["precision_executed"], cell["precision"]);
        // Which kernels ran, named per part of the model.
        assert_eq!(
            record["implementation"]["attention"],
            "Q, K, V in one GEMM (gemm crate, query pre-scaled); QK^T and PV as batched GEMMs (gemm crate); mask add + softmax in f32 (candle CPU); no fused attention kernel"
        );
        assert_eq!(
            record["implementation"]["linear"],
            "candle matmul (gemm crate) + bias add"
        );
        // Per linear too: the CPU's GEMMs are the gemm crate's, never cuBLAS or a runner kernel.
        let gemms = record["implementation"]["gemms"].as_str().unwrap();
        assert!(
            gemms.contains(
                "ffn_in: candle matmul on the CPU (gemm crate), bias add + erf GELU as candle ops"
            ) && gemms
                .contains("qkv: candle matmul on the CPU (gemm crate), bias add as candle ops"),
            "{gemms}"
        );
        assert!(
            !gemms.contains("cuBLAS") && !gemms.contains("runner kernel"),
            "{gemms}"
        );
        // How the forward ran: on the CPU always kernel by kernel (nothing to capture).
        assert_eq!(
            record["implementation"]["execution"],
            "eager (kernel by kernel)"
        );
        assert_eq!(record["sensor"]["measures_energy"], false);
        let windows = record["windows"].as_array().unwrap();
        assert_eq!(windows.len(), 6);
        for w in windows {
            assert!(w["duration_s"].as_f64().unwrap() >= 0.05);
            assert!(w["loops"].as_u64().unwrap() >= 3);
            assert!(w["energy_j"].is_null(), "no sensor, no invented energy");
        }
        assert!(record["dataset"]["samples_served"].as_u64().unwrap() > 0);
        // Fidelity against fp32: for reduced precisions only, on the same inputs.
        if cell["precision"] == "fp32" {
            assert!(record.get("fidelity").is_none());
        } else {
            let f = &record["fidelity"];
            assert_eq!(f["reference"], "fp32");
            assert_eq!(f["examples"], 64, "the dataset's 64 examples (limit = 64)");
            assert!(f["cosine"].as_f64().unwrap() > 0.999, "{f}");
            assert!(f["label_agreement"].as_f64().unwrap() >= 0.9, "{f}");
            assert!(f["max_abs_error"].as_f64().unwrap() < 0.05, "{f}");
            // The two-logit head's meaningful figures: KL of the softmax, logit-difference error
            // (at most twice the max abs error).
            assert_eq!(f["outputs"], 2, "{f}");
            let kl = f["max_kl"].as_f64().unwrap();
            assert!((0.0..0.01).contains(&kl), "{f}");
            let diff = f["max_logit_diff_error"].as_f64().unwrap();
            assert!(
                diff <= 2.0 * f["max_abs_error"].as_f64().unwrap() + 1e-12,
                "{f}"
            );
        }
    }

    // summary.csv: one row per cell, the notebook's columns, empty energy where not measured.
    let csv = String::from_utf8(read(&run.join("summary.csv"))).unwrap();
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    for column in [
        "energy_per_inference_mj",
        "avg_power_w",
        "latency_per_loop_ms",
        "total_time_s",
        "num_loops",
        "num_power_samples",
        "precision_executed",
    ] {
        assert!(header.contains(&column), "summary.csv lacks {column}");
    }
    let energy_col = header
        .iter()
        .position(|c| *c == "energy_per_inference_mj")
        .unwrap();
    let latency_col = header
        .iter()
        .position(|c| *c == "latency_per_loop_ms")
        .unwrap();
    let data: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(data.len(), 4);
    for row in &data {
        assert_eq!(
            row[energy_col], "",
            "energy is empty, not zero, when not measured"
        );
        assert!(row[latency_col].parse::<f64>().unwrap() > 0.0);
    }

    // The HTML report is self-contained, escapes user text, and says energy was not measured.
    let html = String::from_utf8(read(&run.join("report.html"))).unwrap();
    assert!(html.contains("<svg"), "charts are inline");
    assert!(!html.contains("<script src") && !html.contains("<link") && !html.contains("<img"));
    assert!(
        html.contains("end-to-end test &lt;b&gt;not bold&lt;&#x2f;b&gt;")
            || html.contains("end-to-end test &lt;b&gt;not bold&lt;/b&gt;"),
        "user text is escaped"
    );
    assert!(html.contains("Energy was not measured"));
    assert!(html.contains("Fidelity against fp32"));
    // A two-logit head: KL and logit-difference error, not the degenerate per-example cosine.
    assert!(html.contains("softmax KL, nats (mean / worst)"));
    assert!(!html.contains("lowest per-example cosine"));
    let md = String::from_utf8(read(&run.join("report.md"))).unwrap();
    assert!(md.contains("![Latency per batch (median, ms)](charts/latency.png)"));
    // "What ran": a compact table of each set of kernels, every part in full below it.
    assert!(
        md.contains(
            "| set | cells | activation | attention | embeddings | execution | gemms | layer norm | linear |\n"
        ),
        "{md}"
    );
    assert!(
        md.contains("| 1 | fp32 b2, fp32 b4, bf16 b2, bf16 b4 | erf GELU |"),
        "{md}"
    );
    assert!(
        md.contains("- **activation**: erf GELU (candle kernel)"),
        "{md}"
    );
    // Which embeddings ran: candle's three kernels by default.
    assert!(
        md.contains(
            "- **embeddings**: candle: gather (index_select), broadcast add of the position"
        ),
        "{md}"
    );
    // PNG beside the Markdown (fonts are bundled, so this works on any machine).
    let png = read(&run.join("charts/latency.png"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // `runner report` rebuilds the same bytes from the stored records.
    let files = [
        "report.html",
        "report.md",
        "summary.csv",
        "charts/latency.svg",
        "charts/throughput.svg",
    ];
    let before: Vec<Vec<u8>> = files.iter().map(|f| read(&run.join(f))).collect();
    for f_ in files {
        std::fs::remove_file(run.join(f_)).unwrap();
    }
    let out = f.runner().arg("report").arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    for (file, old) in files.iter().zip(before) {
        assert!(
            read(&run.join(file)) == old,
            "{file} differs after `runner report`"
        );
    }
}

#[test]
fn the_readme_smoke_experiment_runs_from_the_repository_root() {
    let out_dir = tempfile::tempdir().unwrap();
    let run = out_dir.path().join("smoke");
    let out = assert_cmd::Command::cargo_bin("runner")
        .unwrap()
        .current_dir(repo(""))
        .args(["experiments/smoke.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&read(&run.join("manifest.json"))).unwrap();
    let cells = manifest["plan"].as_array().unwrap().len();
    assert_eq!(std::fs::read_dir(run.join("cells")).unwrap().count(), cells);
    assert!(stdout_of(&out).contains("report.html"));
}

#[test]
fn a_partial_run_is_reported_as_partial() {
    let f = Fixture::new(&tiny_experiment(
        "[matrix]\nbatch_size = [2, 4]\nseq_len = [16]\n",
    ));
    let run = f.dir.path().join("run");
    f.runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .assert()
        .success();
    // Remove one record and mark the run unfinished, as a crash would leave it.
    let victim = std::fs::read_dir(run.join("cells"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&victim).unwrap();
    let manifest_path = run.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&read(&manifest_path)).unwrap();
    manifest["ended_at"] = serde_json::Value::Null;
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();

    f.runner().arg("report").arg(&run).assert().success();
    let md = String::from_utf8(read(&run.join("report.md"))).unwrap();
    assert!(
        md.contains("**Partial run:** 1 of 2 planned cells have records; the run did not finish (last session: completed). Complete it with `runner run exp.toml --resume --out "),
        "{md}"
    );
    assert!(md.contains("**no record** (not run yet)"));
    // The missing cell is named by its axes (an encoder's seq, not an empty prompt), and the
    // batch size it does not share is not said to be every cell's.
    assert!(
        md.contains(" tiny fp32 b2 seq 16: **no record**")
            || md.contains(" tiny fp32 b4 seq 16: **no record**"),
        "{md}"
    );
    assert!(!md.contains("prompt  +"), "{md}");
    assert!(md.contains("varying: batch"), "{md}");
    assert!(
        !md.contains("every cell: model tiny, precision fp32, batch"),
        "{md}"
    );
}

#[test]
fn models_whose_names_map_to_one_file_name_keep_their_own_tradeoff_charts() {
    // `tiny.v2` and `tiny_v2` are both `tiny_v2` in a file name.
    let toml = tiny_experiment(
        "[models.\"tiny.v2\"]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\n\
         [models.tiny_v2]\narchitecture = \"distilbert\"\npreset = \"distilbert-tiny\"\n\
         [matrix]\nmodel = [\"tiny_v2\", \"tiny.v2\"]\nprecision = [\"fp32\", \"bf16\"]\n\
         batch_size = [2]\nseq_len = [16]\n",
    );
    let f = Fixture::new(&toml);
    let run = f.dir.path().join("run");
    f.runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .assert()
        .success();
    let md = String::from_utf8(read(&run.join("report.md"))).unwrap();
    let mut charts: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("![") && l.contains("(charts/tradeoff-fidelity-"))
        .collect();
    assert_eq!(charts.len(), 2, "{md}");
    charts.dedup_by_key(|l| l.split_once("](").unwrap().1);
    assert_eq!(charts.len(), 2, "two models, two chart files: {md}");
}

#[test]
fn help_counts_skipped_cells_as_success_like_the_readme() {
    let f = Fixture::new("");
    let out = f.runner().arg("--help").output().unwrap();
    let help = stdout_of(&out);
    assert!(
        help.contains("0 every cell was measured or skipped"),
        "{help}"
    );
    assert!(help.contains("130 interrupted (Ctrl-C, SIGTERM,"), "{help}");
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    assert!(
        readme.contains("| 0 | every cell was measured or skipped"),
        "README's exit codes"
    );
    assert!(
        readme.contains("| 130 | interrupted by Ctrl-C, SIGTERM or SIGHUP"),
        "README's exit codes"
    );
}

#[test]
fn out_folder_holding_a_run_is_not_overwritten() {
    let f = Fixture::new(&tiny_experiment(
        "[matrix]\nbatch_size = [2]\nseq_len = [16]\n",
    ));
    let run = f.dir.path().join("run");
    f.runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .assert()
        .success();
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr_of(&out).contains("already holds a run"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn default_results_folder_is_results_experiment_run_id() {
    let f = Fixture::new(&tiny_experiment(
        "[matrix]\nbatch_size = [2]\nseq_len = [16]\n",
    ));
    f.runner().arg("exp.toml").assert().success();
    let runs: Vec<_> = std::fs::read_dir(f.dir.path().join("results/e2e"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    assert!(run.join("report.html").is_file());
    let name = run.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with('Z') && name.contains('T'),
        "run id is a UTC timestamp: {name}"
    );
}

#[test]
fn quantized_precisions_and_a_probe_head_run_end_to_end() {
    // A tiny BERT with a linear probe; q4k cannot run (64-wide layers), which must be a skipped
    // cell with the reason, not a failure.
    let toml = format!(
        r#"[experiment]
name = "quant"
{FAST_PROTOCOL}
[dataset]
path = "{}"
tokenizer = "{}"

[models.bert]
architecture = "bert"
preset = "bert-tiny"
head = "probe"

[models.bert.probe]
train_examples = 200
test_examples = 100

[matrix]
precision = ["fp32", "q8_0", "q4_0-bf16", "q4k"]
batch_size = [8]
seq_len = [16]

[report]
baseline = "fp32"
"#,
        repo("datasets/rotten_tomatoes_sentences.tsv").display(),
        repo("datasets/bert-base-uncased-vocab.txt").display()
    );
    let f = Fixture::new(&toml);
    let run = f.dir.path().join("run");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let csv = String::from_utf8(read(&run.join("summary.csv"))).unwrap();
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header = rows.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    let by_precision = |p: &str| {
        rows.iter()
            .find(|r| &r[col("precision")] == p)
            .unwrap_or_else(|| panic!("no {p} row"))
    };
    assert_eq!(
        &by_precision("q8_0")[col("precision_executed")],
        "q8_0 linears (QMatMul) + fp32"
    );
    assert_eq!(
        &by_precision("q4_0-bf16")[col("precision_executed")],
        "q4_0 linears (QMatMul) + bf16"
    );
    // Its record names the CPU's QMatMul and candle ops per linear, no runner kernel.
    let id = &by_precision("q8_0")[col("cell_id")];
    let record: serde_json::Value =
        serde_json::from_slice(&read(&run.join("cells").join(format!("{id}.json")))).unwrap();
    let gemms = record["implementation"]["gemms"].as_str().unwrap();
    assert!(
        gemms.contains(
            "ffn_in: GGML QMatMul on the CPU (candle's kernels), bias + erf GELU as candle ops"
        ),
        "{gemms}"
    );
    assert!(!gemms.contains("runner kernel"), "{gemms}");
    let q4k = by_precision("q4k");
    assert_eq!(&q4k[col("status")], "skipped");
    assert!(q4k[col("reason")].contains("multiple of 256"));
    for p in ["fp32", "q8_0", "q4_0-bf16"] {
        let r = by_precision(p);
        let accuracy: f64 = r[col("accuracy")].parse().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{p}: {accuracy}");
        assert_eq!(&r[col("accuracy_examples")], "100");
    }
    // Savings against the baseline on every non-baseline measured cell, none on the baseline.
    assert_eq!(&by_precision("fp32")[col("latency_saving_pct")], "");
    let saving: f64 = by_precision("q8_0")[col("latency_saving_pct")]
        .parse()
        .unwrap();
    assert!(saving.is_finite());
    assert!(!by_precision("q8_0")[col("fidelity_cosine_vs_fp32")].is_empty());
    let md = String::from_utf8(read(&run.join("report.md"))).unwrap();
    for section in [
        "## Savings against fp32",
        "## Accuracy (linear probe)",
        "## Cost against quality",
        "Pareto front: ",
    ] {
        assert!(md.contains(section), "missing {section:?}");
    }
    for chart in ["tradeoff-fidelity-bert-s16", "tradeoff-accuracy-bert-s16"] {
        assert!(run.join(format!("charts/{chart}.svg")).is_file());
        assert!(run.join(format!("charts/{chart}.png")).is_file());
    }
}

#[test]
fn a_model_that_overflows_fails_its_cell_and_says_in_which_layer() {
    // distilbert-tiny whose block 1 FFN weights are scaled by 1e30 (lin2's output overflows f32,
    // the layer norm after it turns that into NaN): the cell fails with
    // the place named, the run goes on and exits 1.
    let f = Fixture::new("");
    overflowing_checkpoint(&f.dir.path().join("overflowing"));
    let toml =
        tiny_experiment("[matrix]\nprecision = [\"fp32\"]\nbatch_size = [2]\nseq_len = [16]\n")
            .replace(
                "preset = \"distilbert-tiny\"",
                "preset = \"distilbert-tiny\"\nweights = \"overflowing\"",
            );
    std::fs::write(&f.file, toml).unwrap();
    let out = f
        .runner()
        .args(["exp.toml", "--out", "run"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("first non-finite output: transformer_block_1.ffn"),
        "{stderr}"
    );
    let csv = String::from_utf8(read(&f.dir.path().join("run/summary.csv"))).unwrap();
    assert!(csv.contains("failed"), "{csv}");
}
