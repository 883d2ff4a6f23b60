//! The runner's own decoder against candle-transformers' model on the same weights, on the CPU:
//! tiny random configs of llama, mistral, qwen2 and qwen3.

use candle_core::{DType, Device, Tensor};

use crate::config::{Implementation, Precision, QuantFormat};
use crate::model::decoder::DecoderSpec;
use crate::model::workload::{greedy, Generate};

use super::config::OWN_ARCHITECTURES;

fn spec(arch: &str, implementation: Implementation) -> DecoderSpec {
    DecoderSpec::resolve(
        arch,
        Some(&format!("{arch}-tiny")),
        None,
        11,
        implementation,
    )
    .unwrap_or_else(|e| panic!("{arch}: {e:#}"))
}

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

fn diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap())
}

fn tokens(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Runs both models greedily from the same prompt, each on its own tokens; the largest logit
/// difference relative to the logits' scale, and whether the tokens stayed identical.
fn side_by_side(
    crate_run: &mut dyn Generate,
    own: &mut dyn Generate,
    steps: usize,
) -> (f32, usize) {
    let device = Device::Cpu;
    let prompt = Tensor::from_vec((1u32..=10).collect::<Vec<_>>(), (2, 5), &device).unwrap();
    let (mut a, mut b) = (
        crate_run.prefill(&prompt).unwrap(),
        own.prefill(&prompt).unwrap(),
    );
    let mut worst = 0f32;
    for step in 0..=steps {
        worst = worst.max(diff(&a, &b) / max_abs(&a).max(1e-3));
        let (ta, tb) = (greedy(&a).unwrap(), greedy(&b).unwrap());
        if tokens(&ta) != tokens(&tb) {
            return (worst, step);
        }
        if step == steps {
            break;
        }
        a = crate_run.step(&ta).unwrap();
        b = own.step(&tb).unwrap();
    }
    (worst, steps + 1)
}

/// fp32: greedy tokens identical over 64 steps, logits within 1e-4 of their scale, with a cache
/// reserved too small so that it grows twice on the way (the copy is checked with the rest).
#[test]
fn own_decoder_matches_candle_transformers_over_64_greedy_steps_in_fp32() {
    for arch in OWN_ARCHITECTURES {
        let mut crate_run = spec(arch, Implementation::Crate)
            .load(Precision::Fp32, &Device::Cpu)
            .unwrap();
        let own_spec = spec(arch, Implementation::Own);
        let mut own = own_spec.load(Precision::Fp32, &Device::Cpu).unwrap();
        own.reserve(2, 20).unwrap();
        let (worst, agreed) = side_by_side(crate_run.as_mut(), own.as_mut(), 64);
        eprintln!("{arch} fp32: 65/65 greedy tokens, worst logit difference {worst:.2e} of scale");
        assert_eq!(agreed, 65, "{arch}: tokens differ at step {agreed}");
        assert!(
            worst <= 1e-4,
            "{arch}: logits differ by {worst} of their scale"
        );
        let description = own.implementation();
        assert!(
            description["model"].contains("runner's own"),
            "{description:?}"
        );
        assert!(
            description["kv_cache"].contains("static"),
            "{description:?}"
        );
    }
}

/// bf16 on both sides: the same weights rounded the same way, computed by different kernels
/// (the own decoder's attention in f32 over a bf16 cache, as the crate's llama does).
#[test]
fn own_decoder_stays_within_bf16_rounding_of_candle_transformers() {
    for arch in OWN_ARCHITECTURES {
        let mut crate_run = spec(arch, Implementation::Crate)
            .load(Precision::Bf16, &Device::Cpu)
            .unwrap();
        let mut own = spec(arch, Implementation::Own)
            .load(Precision::Bf16, &Device::Cpu)
            .unwrap();
        let (worst, agreed) = side_by_side(crate_run.as_mut(), own.as_mut(), 8);
        eprintln!(
            "{arch} bf16: {agreed}/9 tokens agree, worst logit difference {worst:.2e} of scale"
        );
        assert!(
            worst <= 0.05,
            "{arch}: bf16 logits differ by {worst} of their scale"
        );
        assert!(agreed >= 1, "{arch}: the first token already differs");
    }
}

/// A rewound static cache repeats the same steps exactly (positions past the mark are masked
/// until rewritten), and a reset starts over at position 0.
#[test]
fn rewinding_the_static_cache_repeats_the_same_steps() {
    let mut own = spec("qwen3", Implementation::Own)
        .load(Precision::Fp32, &Device::Cpu)
        .unwrap();
    own.reserve(1, 32).unwrap();
    let prompt = Tensor::new(&[[3u32, 1, 4, 1, 5, 9]], &Device::Cpu).unwrap();
    let first = greedy(&own.prefill(&prompt).unwrap()).unwrap();
    own.mark().unwrap();
    let run = |own: &mut Box<dyn Generate>| {
        let mut t = first.clone();
        let mut out = Vec::new();
        for _ in 0..5 {
            let l = own.step(&t).unwrap();
            t = greedy(&l).unwrap();
            out.push(l);
        }
        out
    };
    let once = run(&mut own);
    assert_eq!(own.position(), 11);
    own.rewind().unwrap();
    assert_eq!(own.position(), 6);
    for (a, b) in once.iter().zip(run(&mut own)) {
        assert_eq!(diff(a, &b), 0.0);
    }
    own.reset().unwrap();
    let again = own.prefill(&prompt).unwrap();
    assert_eq!(tokens(&greedy(&again).unwrap()), tokens(&first));
}

/// Linears quantized at load (q8_0, bf16 elsewhere) run, say so, and stay close to fp32;
/// formats whose blocks do not divide the layers are refused with the reason.
#[test]
fn quantized_at_load_precisions_run_or_are_refused_with_the_reason() {
    let own = spec("llama", Implementation::Own);
    let q8 = Precision::Quantized(QuantFormat::Q8_0, crate::config::FloatPrecision::Bf16);
    assert_eq!(own.refuses(q8), None);
    let q4k = Precision::Quantized(QuantFormat::Q4K, crate::config::FloatPrecision::Bf16);
    let why = own
        .refuses(q4k)
        .expect("64-wide layers are not whole 256-value blocks");
    assert!(why.contains("blocks of 256"), "{why}");
    let crate_spec = spec("llama", Implementation::Crate);
    assert!(crate_spec.refuses(q8).is_some());
    let mut quantized = own.load(q8, &Device::Cpu).unwrap();
    assert!(
        quantized.executed_precision().contains("q8_0"),
        "{}",
        quantized.executed_precision()
    );
    let mut reference = own.load(Precision::Fp32, &Device::Cpu).unwrap();
    let (worst, _) = side_by_side(reference.as_mut(), quantized.as_mut(), 4);
    assert!(
        worst <= 0.1,
        "q8_0-bf16 logits differ from fp32 by {worst} of their scale"
    );
    assert!(own.weight_bytes(q8) < own.weight_bytes(Precision::Bf16));
}

#[test]
fn own_implementation_is_refused_where_there_is_none() {
    let err = DecoderSpec::resolve("phi3", Some("phi3-tiny"), None, 1, Implementation::Own)
        .unwrap_err()
        .to_string();
    assert!(err.contains("llama, mistral, qwen2, qwen3"), "{err}");
}

/// The fixed decode step (what a CUDA graph captures) gives the same greedy tokens and logits as
/// `step`, feeds its own argmax forward, and `restore` repeats it from the mark exactly.
#[test]
fn the_fixed_step_matches_step_and_restores_to_the_mark() {
    let mut own = spec("llama", Implementation::Own)
        .load(Precision::Fp32, &Device::Cpu)
        .unwrap();
    own.reserve(2, 24).unwrap();
    let prompt = Tensor::from_vec((1u32..=10).collect::<Vec<_>>(), (2, 5), &Device::Cpu).unwrap();
    let first = greedy(&own.prefill(&prompt).unwrap()).unwrap();
    own.mark().unwrap();
    let mut tokens = first.clone();
    let mut stepped = Vec::new();
    for _ in 0..8 {
        let l = own.step(&tokens).unwrap();
        tokens = greedy(&l).unwrap();
        stepped.push(l);
    }
    own.rewind().unwrap();
    assert!(
        own.fixed_step(&first, 20).is_err(),
        "20 steps from 5 pass 24 positions"
    );
    let fixed = own.fixed_step(&first, 8).unwrap().expect("a fixed step");
    for _ in 0..2 {
        (fixed.restore)().unwrap();
        for want in &stepped {
            assert_eq!(diff(want, &(fixed.run)().unwrap()), 0.0);
        }
    }
}

/// The fixed prefill (what one CUDA graph per prompt shape captures) computes the eager
/// prefill's logits exactly, the same every run, and leaves the cache where a prefill does: a
/// decode step after it is the step after an eager prefill.
#[test]
fn the_fixed_prefill_is_the_prefill_every_run_and_leaves_the_cache_as_one() {
    let load = || {
        let mut m = spec("qwen3", Implementation::Own)
            .load(Precision::Fp32, &Device::Cpu)
            .unwrap();
        m.reserve(2, 16).unwrap();
        m
    };
    let prompt = Tensor::from_vec((1u32..=14).collect::<Vec<_>>(), (2, 7), &Device::Cpu).unwrap();
    let mut eager = load();
    let want = eager.prefill(&prompt).unwrap();
    let first = greedy(&want).unwrap();
    let after = eager.step(&first).unwrap();

    let mut own = load();
    // A prefill of another shape first: the fixed one makes its own mask and starts at 0.
    own.prefill(&prompt.narrow(1, 0, 3).unwrap()).unwrap();
    {
        let fixed = own
            .fixed_prefill(&prompt)
            .unwrap()
            .expect("a fixed prefill");
        for _ in 0..3 {
            (fixed.restore)().unwrap();
            assert_eq!(diff(&want, &(fixed.run)().unwrap()), 0.0);
        }
    }
    assert_eq!(own.position(), 7);
    assert_eq!(diff(&after, &own.step(&first).unwrap()), 0.0);
}
