//! The model against itself: Hugging Face safetensors round trip, and reduced precisions against
//! fp32 on the same weights and inputs.

use candle_core::{Device, Tensor};
use runner::config::Precision;
use runner::data::{build_tokenizer, load_dataset, tokenize};
use runner::model::distilbert::compare_logits;
use runner::model::weights::{random_tensors, save_hf_dir};
use runner::model::{ModelSpec, ModelStore, Preset, WeightsSource};

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
        preset,
        weights,
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
        assert_eq!(
            runner::sweep::dtype_name(model.weight_dtype()),
            precision.name()
        );
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
    assert_eq!(as_vec(&block0), as_vec(&units[6].input));
}
