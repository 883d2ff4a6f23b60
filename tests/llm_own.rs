//! The runner's own Llama-family decoder (`implementation = "own"`) through the real binary, on
//! the CPU: cells that run and say so, precisions quantized at load, ids apart from the
//! crate-run model's, and the key refused where it means nothing.

mod common;

use common::{decoder_experiment, Fixture};

fn experiment(models: &str, matrix: &str) -> Fixture {
    decoder_experiment("own", models, matrix)
}

fn records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| {
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap()
        })
        .collect();
    out.sort_by_key(|r| {
        format!(
            "{} {}",
            r["cell"]["model"].as_str().unwrap_or_default(),
            r["cell"]["precision"]
        )
    });
    out
}

#[test]
fn own_decoder_cells_run_quantized_at_load_and_are_told_apart_from_the_crate_model() {
    let fx = experiment(
        "[models.own]\narchitecture = \"qwen2\"\npreset = \"qwen2-tiny\"\nimplementation = \"own\"\n\
         [models.crate]\narchitecture = \"qwen2\"\npreset = \"qwen2-tiny\"\n",
        "model = [\"own\", \"crate\"]\nprecision = [\"fp32\", \"q8_0-bf16\", \"q4k-bf16\"]\nbatch_size = [2]\nprompt_len = [8]\nnew_tokens = [4]",
    );
    let out = fx.dir.path().join("run");
    fx.runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
    let recs = records(&out);
    assert_eq!(recs.len(), 6);
    let cell = |model: &str, precision: &str| {
        recs.iter()
            .find(|r| r["cell"]["model"] == model && r["cell"]["precision"] == precision)
            .unwrap_or_else(|| panic!("no {model} {precision} record"))
    };
    for precision in ["fp32", "q8_0-bf16"] {
        let r = cell("own", precision);
        assert_eq!(r["status"], "ok", "{precision}: {}", r["reason"]);
        let model = r["implementation"]["model"].as_str().unwrap();
        assert!(model.contains("runner's own qwen2"), "{model}");
        assert!(r["implementation"]["kv_cache"]
            .as_str()
            .unwrap()
            .contains("static"));
        assert!(r["generate"]["decode_windowing"]
            .as_str()
            .unwrap()
            .contains("device-held position"));
        // Prefill and decode each say how they executed (eager on the CPU, no reason needed).
        assert_eq!(
            r["implementation"]["prefill_execution"],
            "eager: one prefill of the batch's prompts to the first token's argmax per loop"
        );
        // A decode loop runs every generated token's step, then synchronizes once.
        let new_tokens = r["cell"]["new_tokens"].as_u64().unwrap();
        assert!(new_tokens > 1);
        assert_eq!(
            r["implementation"]["execution"],
            format!("eager: one decode step, {new_tokens} times, per loop")
        );
        // The prefill's attention says which ran (the plain ops: no key, the default).
        assert!(r["implementation"]["prefill_attention"]
            .as_str()
            .unwrap()
            .starts_with("plain: candle's f32 matmul"));
    }
    assert!(cell("own", "q8_0-bf16")["precision_executed"]
        .as_str()
        .unwrap()
        .contains("q8_0"));
    // The q8_0 cell is compared with the own fp32 model (teacher-forced greedy agreement).
    assert!(cell("own", "q8_0-bf16")["generate"]["fidelity"].is_object());
    let q4k = cell("own", "q4k-bf16");
    assert_eq!(q4k["status"], "skipped");
    assert!(q4k["reason"].as_str().unwrap().contains("blocks of 256"));
    let crate_q8 = cell("crate", "q8_0-bf16");
    // candle-transformers' quantized models compute f32 elsewhere: bf16 elsewhere is the own's.
    assert_eq!(crate_q8["status"], "skipped");
    assert_eq!(cell("crate", "fp32")["status"], "ok");
    assert!(cell("crate", "fp32")["implementation"]["prefill_execution"]
        .as_str()
        .unwrap()
        .contains("no fixed prefill to capture"));
    assert_ne!(
        cell("own", "fp32")["cell"]["id"],
        cell("crate", "fp32")["cell"]["id"]
    );
}

/// `runner plan`: exit 2, and every `expected` fragment in the message.
fn refused(models: &str, expected: &[&str]) {
    let fx = experiment(
        models,
        "precision = [\"fp32\"]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.runner().arg("plan").arg(&fx.file).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
}

#[test]
fn implementation_own_is_refused_where_there_is_no_own_implementation() {
    refused(
        "[models.p]\narchitecture = \"phi3\"\npreset = \"phi3-tiny\"\nimplementation = \"own\"\n",
        &["models.p", "phi3", "llama, mistral, qwen2, qwen3"],
    );
    refused(
        "[models.e]\narchitecture = \"distilbert\"\npreset = \"distilbert-base-uncased\"\nimplementation = \"own\"\n",
        &["models.e.implementation", "encoder"],
    );
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"fast\"\n",
        &["implementation", "fast"],
    );
}

#[test]
fn decode_kernels_fused_is_refused_where_it_cannot_run() {
    // The test experiments run on the CPU backend: the fused kernels are CUDA kernels.
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"fused\"\n",
        &["models.x.decode_kernels", "CUDA kernels", "device.backend = \"cpu\""],
    );
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\ndecode_kernels = \"fused\"\n",
        &["models.x.decode_kernels", "implementation = \"own\""],
    );
    refused(
        "[models.e]\narchitecture = \"distilbert\"\npreset = \"distilbert-base-uncased\"\ndecode_kernels = \"fused\"\n",
        &["models.e.decode_kernels", "implementation = \"own\""],
    );
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"fast\"\n",
        &["decode_kernels", "fast"],
    );
    // The decode GEMV: CUDA only too, and for decode batches of at most 8.
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv\"\n",
        &["models.x.decode_kernels = \"gemv\"", "CUDA kernels"],
    );
    let fx = experiment(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv\"\n",
        "precision = [\"fp32\"]\nbatch_size = [1, 16]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.runner().arg("plan").arg(&fx.file).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for e in [
        "batches of 1..=8",
        "matrix.batch_size holds 16",
        "decode_kernels = \"fused\"",
    ] {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    // Its decode layers cannot run alone: a per-layer scope is refused before anything runs.
    let fx = experiment(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv\"\n",
        "precision = [\"fp32\"]\nscope = [\"layers\"]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.runner().arg("plan").arg(&fx.file).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("matrix.scope holds \"layers\""), "{err}");
    // gemv with Programmatic Dependent Launch: the same kernels, the same limits, named as such.
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv-pdl\"\n",
        &["models.x.decode_kernels = \"gemv-pdl\"", "CUDA kernels"],
    );
    let fx = experiment(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv-pdl\"\n",
        "precision = [\"fp32\"]\nbatch_size = [1, 9]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.runner().arg("plan").arg(&fx.file).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for e in [
        "decode_kernels = \"gemv-pdl\": the decode GEMV serves batches of 1..=8",
        "matrix.batch_size holds 9",
    ] {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    // gemv-bulk (the bulk-copy GEMVs): the same kernels' limits, named as such.
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv-bulk\"\n",
        &["models.x.decode_kernels = \"gemv-bulk\"", "CUDA kernels"],
    );
    let fx = experiment(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv-bulk\"\n",
        "precision = [\"fp32\"]\nbatch_size = [1, 9]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.runner().arg("plan").arg(&fx.file).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("decode_kernels = \"gemv-bulk\": the decode GEMV serves batches of 1..=8"),
        "{err}"
    );
    // gemv-fold (5 launches a layer): the same kernels' limits, named as such.
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv-fold\"\n",
        &["models.x.decode_kernels = \"gemv-fold\"", "CUDA kernels"],
    );
    let fx = experiment(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\ndecode_kernels = \"gemv-fold\"\n",
        "precision = [\"fp32\"]\nbatch_size = [1, 9]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.runner().arg("plan").arg(&fx.file).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("decode_kernels = \"gemv-fold\": the decode GEMV serves batches of 1..=8"),
        "{err}"
    );
}

#[test]
fn prefill_attention_flash_is_refused_where_it_cannot_run() {
    // The test experiments run on the CPU backend: the flash kernel is a CUDA kernel.
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\nprefill_attention = \"flash\"\n",
        &["models.x.prefill_attention = \"flash\"", "CUDA kernel", "device.backend = \"cpu\""],
    );
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nprefill_attention = \"flash\"\n",
        &["models.x.prefill_attention", "implementation = \"own\""],
    );
    refused(
        "[models.e]\narchitecture = \"distilbert\"\npreset = \"distilbert-base-uncased\"\nprefill_attention = \"flash\"\n",
        &["models.e.prefill_attention", "implementation = \"own\""],
    );
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\nprefill_attention = \"fast\"\n",
        &["prefill_attention", "fast"],
    );
}

#[test]
fn layers_cuts_a_preset_to_its_first_layers_or_is_refused_with_the_reason() {
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\nlayers = 0\n",
        &["models.x.layers = 0", "at least one layer"],
    );
    refused(
        "[models.x]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\nlayers = 3\n",
        &["models.x.layers", "3 layers: preset llama-tiny has 2"],
    );
    refused(
        "[models.e]\narchitecture = \"distilbert\"\npreset = \"distilbert-base-uncased\"\nlayers = 2\n",
        &["models.e.layers", "encoder"],
    );
    refused(
        "[models.x]\narchitecture = \"llama\"\nweights = \"x.gguf\"\nimplementation = \"own\"\nlayers = 1\n",
        &["models.x.layers = 1", "random weights"],
    );
    // A cut runs, says so in its record, and is a cell of its own.
    let fx = experiment(
        "[models.cut]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\nlayers = 1\n\
         [models.whole]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\nimplementation = \"own\"\n",
        "model = [\"cut\", \"whole\"]\nprecision = [\"fp32\"]\nbatch_size = [1]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = fx.dir.path().join("run");
    fx.runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .success();
    let all = records(&out);
    let weights = all[0]["implementation"]["weights"].as_str().unwrap();
    assert!(
        weights.contains("preset llama-tiny (first 1 of 2 layers)"),
        "{weights}"
    );
    assert!(!all[1]["implementation"]["weights"]
        .as_str()
        .unwrap()
        .contains("layers"));
    assert_ne!(all[0]["cell"]["id"], all[1]["cell"]["id"]);
}
