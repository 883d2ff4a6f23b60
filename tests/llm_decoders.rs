//! Decoder cells through the real binary, on the CPU: every zoo architecture on its tiny preset
//! with prefill and decode windows in its record, a tiny GGUF llama as stored and dequantized.
//! The bad inputs the generate workload refuses are tests/llm_refusals.rs's.

mod common;

use common::{gguf, llm_experiment};
use predicates::prelude::*;

fn records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| {
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap()
        })
        .collect();
    out.sort_by_key(|r| r["cell"]["model"].as_str().unwrap_or_default().to_string());
    out
}

/// The architectures the README lists, each stepped through a whole cell.
const ARCHITECTURES: [&str; 17] = [
    "llama",
    "granite",
    "mistral",
    "qwen2",
    "qwen3",
    "qwen2_moe",
    "qwen3_moe",
    "mixtral",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3",
    "olmo",
    "olmo2",
    "starcoder2",
    "helium",
    "phi",
];

#[test]
fn every_decoder_architecture_runs_a_cell_with_prefill_and_decode_windows() {
    let models: String = ARCHITECTURES
        .iter()
        .map(|a| format!("[models.{a}]\narchitecture = \"{a}\"\npreset = \"{a}-tiny\"\n"))
        .collect();
    let names: Vec<String> = ARCHITECTURES.iter().map(|a| format!("{a:?}")).collect();
    let fx = llm_experiment(
        &models,
        &format!(
            "model = [{}]\nprecision = [\"fp32\"]\nbatch_size = [2]\nprompt_len = [8]\nnew_tokens = [4]",
            names.join(", ")
        ),
    );
    fx.runner()
        .arg("plan")
        .arg(&fx.file)
        .assert()
        .success()
        .stdout(predicate::str::contains("PROMPT   NEW").and(predicate::str::contains("17 cells")));
    let out = fx.dir.path().join("run");
    fx.runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("prefill ms"));
    let recs = records(&out);
    assert_eq!(recs.len(), ARCHITECTURES.len());
    for r in &recs {
        let model = r["cell"]["model"].as_str().unwrap();
        assert_eq!(r["status"], "ok", "{model}: {}", r["reason"]);
        assert_eq!(r["cell"]["prompt_len"], 8);
        assert_eq!(r["cell"]["new_tokens"], 4);
        let g = &r["generate"];
        // Both phases through the protocol's windows.
        let repeats = r["protocol"]["repeats"].as_u64().unwrap() as usize;
        assert_eq!(
            g["prefill_windows"].as_array().unwrap().len(),
            repeats,
            "{model}"
        );
        assert_eq!(r["windows"].as_array().unwrap().len(), repeats, "{model}");
        assert_eq!(g["decode_steps_per_loop"], 4);
        // Decode windows are per step: loops count steps.
        let w = &r["windows"][0];
        assert_eq!(w["loops"].as_u64().unwrap() % 4, 0, "{model}: {w}");
        assert!(g["kv_cache_bytes"].as_u64().unwrap() > 0);
        let implementation = r["implementation"]["model"].as_str().unwrap();
        assert!(
            implementation.contains("candle-transformers"),
            "{implementation}"
        );
        assert!(r["implementation"]["decode"]
            .as_str()
            .unwrap()
            .contains("outside the window"));
        // The host's side of each decode window: every step as issued (a window's loops x 4
        // steps, summarized), and the measuring thread's CPU time within the window's length.
        let steps = g["decode_host_steps"].as_array().unwrap();
        assert_eq!(steps.len(), repeats, "{model}");
        for (s, w) in steps.iter().zip(r["windows"].as_array().unwrap()) {
            assert_eq!(s["steps"], w["loops"], "{model}: {s} {w}");
            let (p50, max) = (s["p50_ms"].as_f64().unwrap(), s["max_ms"].as_f64().unwrap());
            assert!(p50 > 0.0 && max >= p50, "{model}: {s}");
            let cpu = w["host"]["thread_cpu_s"].as_f64().unwrap();
            assert!(
                cpu > 0.0 && cpu <= w["duration_s"].as_f64().unwrap() * 1.01 + 0.05,
                "{w}"
            );
        }
        // Prefill windows record the thread too.
        assert!(
            g["prefill_windows"][0]["host"]["thread_cpu_s"]
                .as_f64()
                .unwrap()
                > 0.0
        );
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for column in [
        "prefill_ms",
        "prefill_mj_per_prompt_token",
        "decode_ms_per_step",
        "decode_tokens_per_s",
        "decode_mj_per_token",
        "j_per_request",
        "kv_cache_bytes",
        "perplexity",
    ] {
        assert!(header.contains(&column), "summary.csv lacks {column}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Decoders: energy per token"), "{md}");
    assert!(out.join("charts/decode_time_per_token.svg").is_file());
}

#[test]
fn a_gguf_llama_runs_as_stored_and_dequantized_with_its_own_tokenizer() {
    let fx = llm_experiment(
        "[models.g]\narchitecture = \"llama\"\nweights = \"tiny.gguf\"\n",
        "precision = [\"fp32\", \"q8_0\", \"q4_0\", \"bf16\", \"q4k-bf16\"]\nbatch_size = [1, 2]\nprompt_len = [8]\nnew_tokens = [4]",
    );
    gguf::tiny_llama(
        &fx.dir.path().join("tiny.gguf"),
        candle_core::quantized::GgmlDType::Q8_0,
        320,
        320,
    );
    let out = fx.dir.path().join("run");
    fx.runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
    let recs = records(&out);
    let cell = |p: &str, b: u64| {
        recs.iter()
            .find(|r| r["cell"]["precision"] == p && r["cell"]["batch_size"] == b)
            .unwrap_or_else(|| panic!("no {p} b{b} record"))
    };
    for b in [1, 2] {
        let fp32 = cell("fp32", b);
        assert_eq!(fp32["status"], "ok", "{}", fp32["reason"]);
        assert!(fp32["precision_executed"]
            .as_str()
            .unwrap()
            .contains("dequantized"));
        assert!(fp32["generate"]["tokenizer"]
            .as_str()
            .unwrap()
            .contains("GGUF metadata"));
        // A GGUF file's weights are real: perplexity is measured.
        assert!(fp32["generate"]["perplexity"]["perplexity"]
            .as_f64()
            .unwrap()
            .is_finite());
    }
    let stored = cell("q8_0", 1);
    assert_eq!(stored["status"], "ok", "{}", stored["reason"]);
    assert!(stored["precision_executed"]
        .as_str()
        .unwrap()
        .starts_with("q8_0 linears as stored"));
    assert_eq!(stored["generate"]["fidelity"]["reference"], "fp32");
    let reason = |p: &str, b: u64| cell(p, b)["reason"].as_str().unwrap().to_string();
    assert_eq!(cell("q8_0", 2)["status"], "skipped");
    assert!(
        reason("q8_0", 2).contains("input tensor is not contiguous"),
        "{}",
        reason("q8_0", 2)
    );
    assert!(
        reason("q4_0", 1).contains("stores its weights as q8_0"),
        "{}",
        reason("q4_0", 1)
    );
    assert!(
        reason("bf16", 1).contains("compute in f32"),
        "{}",
        reason("bf16", 1)
    );
    assert!(
        reason("q4k-bf16", 1).contains("compute in f32"),
        "{}",
        reason("q4k-bf16", 1)
    );
    // The report ranks decoder cells on decode, in a decoder's units: never "no whole-model
    // cell" over measured cells, never per batch and per inference.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(!md.contains("No whole-model cell was measured"), "{md}");
    assert!(md.contains("- **lowest time per decode step**: "), "{md}");
    assert!(md.contains("- **highest decode throughput**: "), "{md}");
    assert!(
        md.contains("Each batch size against the smallest, per precision (per generated token)"),
        "{md}"
    );
    assert!(
        md.contains("fp32 b2 takes ") && md.contains(" the time per generated token of fp32 b1"),
        "{md}"
    );
    assert!(
        md.contains("| ms/decode step median [95 % CI] | tokens/s |"),
        "{md}"
    );
    assert!(!md.contains("ms/batch"), "{md}");
    assert!(md.contains("Latency is per decode step"), "{md}");
}

#[test]
fn quantized_at_load_precisions_and_per_layer_scope_are_refused_for_non_llama_crate_decoders_by_name(
) {
    let fx = llm_experiment(
        "[models.t]\narchitecture = \"qwen2\"\npreset = \"qwen2-tiny\"\n",
        "precision = [\"q4k-bf16\", \"int8-bf16\"]\nscope = [\"model\", \"layers\"]\nbatch_size = [1]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.dir.path().join("run");
    fx.runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
    for r in records(&out) {
        assert_eq!(r["status"], "skipped");
        let reason = r["reason"].as_str().unwrap();
        if r["cell"]["scope"] == "layers" {
            assert!(reason.contains("no per-layer profile"), "{reason}");
        } else {
            // GGML formats run through the crate's quantized models, of which only llama's
            // rewinds; W8A8 needs the crate's private linears.
            assert!(
                reason.contains("at load")
                    && (reason.contains("only quantized_llama is Clone")
                        && reason.contains("architecture qwen2")
                        || reason.contains(
                            "candle-transformers' qwen2 keeps its linear layers private"
                        )),
                "{reason}"
            );
        }
    }
}

#[test]
fn a_decoder_record_read_back_is_checked_against_its_cell() {
    let fx = llm_experiment(
        "[models.t]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\n",
        "batch_size = [1]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.dir.path().join("run");
    fx.runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
    let file = std::fs::read_dir(out.join("cells"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    r["generate"]["decode_steps_per_loop"] = 7.into();
    std::fs::write(&file, serde_json::to_string(&r).unwrap()).unwrap();
    fx.runner()
        .arg("report")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "7 decode steps per loop, but the cell has prompt_len 8 and new_tokens 2",
        ));
}

#[test]
fn decoder_cell_ids_name_the_prompt_and_the_generation_and_nothing_else() {
    let ids = |matrix: &str, extra_model: bool| -> Vec<String> {
        let mut models =
            String::from("[models.t]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\n");
        if extra_model {
            models.push_str("[models.u]\narchitecture = \"qwen2\"\npreset = \"qwen2-tiny\"\n");
        }
        let fx = llm_experiment(&models, matrix);
        let out = fx.runner().arg("plan").arg(&fx.file).assert().success();
        String::from_utf8_lossy(&out.get_output().stdout)
            .lines()
            .filter(|l| l.contains(" t "))
            .map(|l| l[..12].to_string())
            .collect()
    };
    let base = ids(
        "model = [\"t\"]\nprompt_len = [8]\nnew_tokens = [2, 4]",
        false,
    );
    assert_eq!(base.len(), 2);
    assert_ne!(base[0], base[1], "new_tokens is part of the id");
    assert_eq!(
        base,
        ids(
            "model = [\"t\"]\nprompt_len = [8]\nnew_tokens = [2, 4]",
            false
        )
    );
    // Another model in the file, or the encoders' seq_len axis, changes no decoder cell's id.
    assert_eq!(
        base,
        ids(
            "model = [\"t\", \"u\"]\nprompt_len = [8]\nnew_tokens = [2, 4]\nseq_len = [64]",
            true
        )
    );
    let longer = ids(
        "model = [\"t\"]\nprompt_len = [16]\nnew_tokens = [2, 4]",
        false,
    );
    assert!(
        longer.iter().all(|id| !base.contains(id)),
        "prompt_len is part of the id"
    );
}

#[test]
fn on_the_cpu_the_plan_says_how_long_the_decoder_cells_it_runs_take() {
    let fx = llm_experiment(
        "[models.t]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\n",
        "precision = [\"fp32\", \"int8-bf16\"]\nbatch_size = [1, 2]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.runner().arg("plan").arg(&fx.file).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    // int8-bf16 is refused for a crate decoder: only the two fp32 cells are priced.
    let line = text
        .lines()
        .find(|l| l.contains("on this CPU the 2 cell(s) it runs take about"))
        .unwrap_or_else(|| panic!("no CPU estimate in:\n{text}"));
    assert!(
        line.contains("GFLOP/s") && line.contains("GB/s"),
        "the rates it priced them at: {line}"
    );
    assert!(text.trim_end().ends_with("4 cells"), "{text}");
}

#[test]
fn a_llama_quantized_at_load_runs_candles_quantized_kernels_and_stays_close_to_fp32() {
    let fx = llm_experiment(
        "[models.t]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\n",
        "precision = [\"fp32\", \"q8_0\", \"q4k\", \"q8_0-bf16\"]\nbatch_size = [1, 2]\nprompt_len = [8]\nnew_tokens = [4]",
    );
    let out = fx.dir.path().join("run");
    fx.runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
    let all = records(&out);
    let find = |precision: &str, batch: u64| {
        all.iter()
            .find(|r| r["cell"]["precision"] == precision && r["cell"]["batch_size"] == batch)
            .unwrap_or_else(|| panic!("no {precision} batch {batch} record"))
    };
    let q8 = find("q8_0", 1);
    assert_eq!(q8["status"], "ok", "{q8}");
    let executed = q8["precision_executed"].as_str().unwrap();
    assert!(
        executed.starts_with("q8_0 linears") && executed.contains("f32 embeddings"),
        "{executed}"
    );
    let imp = &q8["implementation"];
    assert!(
        imp["model"].as_str().unwrap().contains("quantized_llama"),
        "{imp}"
    );
    assert!(imp["linear"].as_str().unwrap().contains("QMatMul"), "{imp}");
    // Prefill and decode measured; fidelity against fp32: q and k permuted right, the function
    // is the fp32 model's up to q8_0's rounding (a wrong permutation moves the logits by O(1)).
    let g = &q8["generate"];
    assert_eq!(g["prefill_windows"].as_array().unwrap().len(), 6);
    let f = &g["fidelity"];
    assert_eq!(f["reference"], "fp32");
    assert!(f["mean_kl"].as_f64().unwrap() < 1e-4, "{f}");
    assert!(f["max_logit_error"].as_f64().unwrap() < 0.05, "{f}");
    // q8_0 linears, f32 for the rest: fewer bytes than fp32.
    assert!(
        g["weight_bytes"].as_u64().unwrap()
            < find("fp32", 1)["generate"]["weight_bytes"]
                .as_u64()
                .unwrap()
    );
    let reason = |p: &str, b: u64| {
        find(p, b)["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        reason("q8_0", 2).contains("not contiguous for two prompts or more"),
        "{}",
        reason("q8_0", 2)
    );
    assert!(
        reason("q4k", 1).contains("hidden_size 64 is not a multiple of q4k's 256-value blocks"),
        "{}",
        reason("q4k", 1)
    );
    for b in [1, 2] {
        assert!(
            reason("q8_0-bf16", b).contains("computes everything outside its quantized linears")
                && reason("q8_0-bf16", b).contains("use q8_0"),
            "{}",
            reason("q8_0-bf16", b)
        );
    }
}
