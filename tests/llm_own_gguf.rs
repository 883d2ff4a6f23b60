//! The runner's own decoder on the real SmolLM2-135M-Instruct weights (Q4_1 GGUF, fetched by
//! scripts/fetch-smollm2.sh; skipped, and listed by scripts/test.sh, when they are missing):
//! the file dequantized to fp32, its Q/K rows unpermuted from llama.cpp's rotary layout, against
//! candle-transformers' quantized_llama on the same file dequantized (the crate's fp32 path):
//! greedy tokens identical over 32 steps on three prompts, logits within 1e-4 of their scale (measured: 1.7e-6)
//! (both sum the same f32 products in different orders: rotary halves against interleaved
//! pairs, one attention against another; a wrong unpermutation moves them by O(1)).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{repo, skipped};
use runner::config::{Implementation, Precision};
use runner::model::decoder::DecoderSpec;
use runner::model::workload::greedy;

const GGUF: &str = "weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The largest logit difference, relative to the logits' largest magnitude.
const LOGIT_BOUND: f32 = 1e-4;

fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn own_decoder_reads_the_gguf_file_and_matches_quantized_llama_over_32_greedy_steps() {
    let path = repo(GGUF);
    if !path.is_file() {
        skipped(
            "tests/llm_own_gguf.rs (own decoder on the SmolLM2 GGUF)",
            &format!(
                "{} is missing; run scripts/fetch-smollm2.sh",
                path.display()
            ),
        );
        return;
    }
    let crate_spec =
        DecoderSpec::resolve("llama", None, Some(&path), 0, Implementation::Crate).unwrap();
    let own_spec =
        DecoderSpec::resolve("llama", None, Some(&path), 0, Implementation::Own).unwrap();
    // As stored is the crate's: the own decoder refuses it with the reason.
    let refused = own_spec
        .refuses(Precision::parse("q4_1").unwrap())
        .expect("q4_1 refused");
    assert!(refused.contains("dequantized"), "{refused}");
    let (tokenizer, _) = crate_spec.tokenizer().unwrap().expect("its own tokenizer");
    let device = Device::Cpu;
    let mut reference = crate_spec.load(Precision::Fp32, &device).unwrap();
    let mut own = own_spec.load(Precision::Fp32, &device).unwrap();
    let weights = &own.implementation()["weights"];
    assert!(weights.contains("unpermuted"), "{weights}");
    let mut worst = 0f32;
    for prompt in [
        "The capital of France is",
        "Once upon a time, there was a little robot who",
        "def fibonacci(n):",
    ] {
        let ids = tokenizer.encode(prompt, false).unwrap().get_ids().to_vec();
        let prompt_ids = Tensor::from_vec(ids.clone(), (1, ids.len()), &device).unwrap();
        reference.reset().unwrap();
        own.reset().unwrap();
        let mut a = reference.prefill(&prompt_ids).unwrap();
        let mut b = own.prefill(&prompt_ids).unwrap();
        let mut generated = Vec::new();
        for step in 0..32 {
            let d = max_abs(
                &(a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap(),
            );
            worst = worst.max(d / max_abs(&a).max(1e-3));
            let (ta, tb) = (greedy(&a).unwrap(), greedy(&b).unwrap());
            let (ta_id, tb_id) = (
                ta.flatten_all().unwrap().to_vec1::<u32>().unwrap()[0],
                tb.flatten_all().unwrap().to_vec1::<u32>().unwrap()[0],
            );
            assert_eq!(
                ta_id, tb_id,
                "{prompt:?}, step {step}: quantized_llama chose {ta_id}, the own decoder {tb_id}"
            );
            generated.push(tb_id);
            a = reference.step(&ta).unwrap();
            b = own.step(&tb).unwrap();
        }
        println!(
            "own decoder, SmolLM2-135M GGUF dequantized, greedy (= quantized_llama's):\n  {prompt}|{}",
            tokenizer.decode(&generated, false).unwrap()
        );
    }
    println!("largest logit difference / logit scale over 3 x 33 positions: {worst:.2e}");
    assert!(
        worst < LOGIT_BOUND,
        "logits differ by {worst:.2e} of their scale (bound {LOGIT_BOUND:.0e})"
    );
}
