//! Every bad input the generate workload refuses before anything is measured, through the real
//! binary on the CPU: broken GGUF files, a tokenizer larger than the vocabulary, absurd
//! config.json values, a context beyond the model, a decoder too large for memory. Split from
//! tests/llm_decoders.rs (which runs the decoders that work).

mod common;

use common::{gguf, llm_experiment, Fixture};

/// `runner plan` on a broken input: exit 2, and every `expected` fragment in the message.
fn refused(fx: &Fixture, expected: &[&str]) {
    let out = fx.runner().arg("plan").arg(&fx.file).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
}

/// The run itself on a broken input (what `plan` cannot see: tokenizers, memory): exit 2 before
/// anything is measured or written.
fn refused_run(fx: &Fixture, expected: &[&str]) {
    let out = fx.dir.path().join("run");
    let run = fx
        .runner()
        .arg(&fx.file)
        .args(["--out", out.to_str().unwrap()])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&run.get_output().stderr).to_string();
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert!(!out.exists(), "nothing is written before the refusal");
}

fn gguf_model(bytes: &[u8]) -> Fixture {
    let fx = llm_experiment(
        "[models.g]\narchitecture = \"llama\"\nweights = \"m.gguf\"\n",
        "precision = [\"fp32\"]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    std::fs::write(fx.dir.path().join("m.gguf"), bytes).unwrap();
    fx
}

#[test]
fn broken_gguf_files_are_named_with_what_is_wrong() {
    let fx = gguf_model(b"PK\x03\x04 not a gguf at all, a zip");
    refused(&fx, &["m.gguf: not a GGUF file", "models.g"]);

    let whole = gguf::header(&[("token_embd.weight", &[64, 320], 0)], 64 * 320 * 4);
    let fx = gguf_model(&whole[..whole.len() - 1000]);
    refused(
        &fx,
        &["truncated: tensor token_embd.weight needs bytes up to"],
    );
    let fx = gguf_model(&whole[..40]);
    refused(&fx, &["truncated in the header"]);

    let fx = gguf_model(&gguf::header(
        &[("blk.0.attn_q.weight", &[256, 64], 16)],
        4096,
    ));
    refused(
        &fx,
        &["tensor blk.0.attn_q.weight is stored as iq2_xxs, which candle cannot run"],
    );

    let fx = gguf_model(&gguf::header(
        &[("token_embd.weight", &[1 << 31, 1 << 31], 0)],
        16,
    ));
    refused(&fx, &["tensor token_embd.weight has absurd dimensions"]);
}

#[test]
fn a_gguf_whose_tokenizer_lists_more_tokens_than_its_embeddings_is_refused() {
    let fx = gguf_model(b"");
    gguf::tiny_llama(
        &fx.dir.path().join("m.gguf"),
        candle_core::quantized::GgmlDType::Q8_0,
        288,
        320,
    );
    refused_run(
        &fx,
        &[
            "the tokenizer",
            "has 320 tokens but the model's vocabulary has 288",
        ],
    );
}

/// A Hugging Face folder holding `config` and a one-tensor safetensors file (its header is all
/// that is read before the checks that refuse these).
fn folder_model(config: &str) -> Fixture {
    let fx = llm_experiment(
        "[models.f]\narchitecture = \"llama\"\nweights = \"ckpt\"\n",
        "precision = [\"fp32\"]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let dir = fx.dir.path().join("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let t =
        candle_core::Tensor::zeros(4, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &[("model.norm.weight".to_string(), t)].into_iter().collect(),
        dir.join("model.safetensors"),
    )
    .unwrap();
    fx
}

const LLAMA_CONFIG: &str = r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-05}"#;

#[test]
fn absurd_config_json_and_a_tokenizer_larger_than_the_vocabulary_are_refused() {
    let fx =
        folder_model(&LLAMA_CONFIG.replace("\"hidden_size\": 64", "\"hidden_size\": 1000000000"));
    refused(
        &fx,
        &["config.json: hidden_size = 1000000000 is beyond any real decoder"],
    );
    let fx = folder_model(
        &LLAMA_CONFIG.replace("\"model_type\": \"llama\"", "\"model_type\": \"qwen2\""),
    );
    refused(
        &fx,
        &["model_type \"qwen2\" is not a llama config: set architecture = \"qwen2\""],
    );
    // No tokenizer.json in the folder: the dataset's BERT vocabulary (30,522) would index past
    // this model's 1,000 embeddings.
    let fx = folder_model(LLAMA_CONFIG);
    refused_run(
        &fx,
        &["has 30522 tokens but the model's vocabulary has 1000"],
    );
}

#[test]
fn a_context_beyond_the_model_and_new_tokens_zero_are_refused() {
    let fx = llm_experiment(
        "[models.t]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\n",
        "prompt_len = [500]\nnew_tokens = [20]",
    );
    refused(
        &fx,
        &["prompt_len 500 + new_tokens 20 = 520 exceeds model \"t\"'s context of 512 tokens"],
    );
    let fx = llm_experiment(
        "[models.t]\narchitecture = \"llama\"\npreset = \"llama-tiny\"\n",
        "new_tokens = [0]",
    );
    refused(&fx, &["matrix.new_tokens[0] = 0: new_tokens must be >= 1"]);
    let fx = llm_experiment(
        "[models.t]\narchitecture = \"lama\"\npreset = \"llama-tiny\"\n",
        "",
    );
    refused(
        &fx,
        &[
            "unknown architecture \"lama\" (did you mean `llama`?)",
            "decoders (candle-transformers): llama, granite",
        ],
    );
    let fx = llm_experiment(
        "[models.t]\narchitecture = \"llama\"\npreset = \"llama-9t\"\n",
        "",
    );
    refused(
        &fx,
        &["unknown preset \"llama-9t\" for llama; known: smollm2-135m"],
    );
    let fx = llm_experiment("[models.t]\narchitecture = \"llama\"\n", "");
    refused(
        &fx,
        &["architecture \"llama\" with random weights needs a preset"],
    );
}

#[test]
fn a_decoder_too_large_for_memory_is_refused_with_the_figures_before_anything_runs() {
    let fx = llm_experiment(
        "[models.big]\narchitecture = \"llama\"\npreset = \"llama-3.1-8b\"\n",
        "precision = [\"fp32\"]\nbatch_size = [64]\nprompt_len = [8000]\nnew_tokens = [100]",
    );
    refused_run(
        &fx,
        &[
            "big fp32 batch 64 prompt 8000 + 100 tokens) needs about",
            "GB (weights 32.1 GB, KV cache",
            "of RAM available",
        ],
    );
}
