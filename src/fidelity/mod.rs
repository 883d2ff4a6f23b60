//! Fidelity: what a reduced precision does to the model's outputs, against the fp32 model with the
//! same weights on the same inputs (the first [`FIDELITY_EXAMPLES`] examples of the dataset).

pub mod generate;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::data::TokenizedSet;
use crate::model::Encoder;

/// Examples compared per cell (fewer when the dataset is smaller).
pub const FIDELITY_EXAMPLES: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// The precision compared against.
    pub reference: String,
    pub examples: usize,
    /// Cosine similarity of all logits, flattened.
    pub cosine: f64,
    /// The lowest per-example cosine similarity.
    pub min_example_cosine: f64,
    /// Largest absolute difference of any logit.
    pub max_abs_error: f64,
    /// Fraction of examples whose predicted label (argmax) is the reference's.
    pub label_agreement: f64,
    /// Logits per example (the head's width). With two logits the per-example cosine compares
    /// two 2-vectors and swings to -1 on near-ties: the KL and logit-difference figures below are
    /// the meaningful ones there. `None` in records from before it was recorded.
    #[serde(default)]
    pub outputs: Option<usize>,
    /// KL divergence of the candidate's softmax from the reference's, KL(p_ref || p_cand) in
    /// nats: the mean over the examples and the worst example. (A single logit counts as a
    /// binary head whose other logit is 0, as a sigmoid reads it.)
    #[serde(default)]
    pub mean_kl: Option<f64>,
    #[serde(default)]
    pub max_kl: Option<f64>,
    /// Logit-difference error: for each example the largest error of any difference of two
    /// logits, max over i, j of |(c_i - c_j) - (r_i - r_j)| = max(c - r) - min(c - r); with two
    /// logits exactly |(c1 - c0) - (r1 - r0)|, the error of what decides the label. Blind to a
    /// shift of all logits, as the softmax is. The mean over the examples and the worst.
    #[serde(default)]
    pub mean_logit_diff_error: Option<f64>,
    #[serde(default)]
    pub max_logit_diff_error: Option<f64>,
}

/// Logits of the first `n` examples as host f32 rows, in batches of `batch` (the last may be
/// smaller).
pub fn logits(
    model: &Encoder,
    set: &TokenizedSet,
    n: usize,
    batch: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let first: Vec<usize> = (0..n.min(set.len())).collect();
    outputs(model, set, &first, batch, device)
}

/// The model's checked outputs (logits, or pooled vectors for a model without classifier) for
/// the given examples, as host f32 rows, in batches of `batch`.
pub fn outputs(
    model: &Encoder,
    set: &TokenizedSet,
    indices: &[usize],
    batch: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let mut rows = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(batch.max(1)) {
        let (ids, mask) = set.batch(chunk.iter().copied(), device)?;
        let out: Vec<Vec<f32>> = model
            .forward_checked(&ids, &mask)
            .with_context(|| {
                format!(
                    "a batch of {} examples starting with example {}",
                    chunk.len(),
                    chunk[0]
                )
            })?
            .to_dtype(DType::F32)?
            .to_vec2()?;
        rows.extend(out);
    }
    Ok(rows)
}

/// Compares `candidate` logits with `reference` logits, row by row.
pub fn compare(reference_name: &str, reference: &[Vec<f32>], candidate: &[Vec<f32>]) -> Fidelity {
    let n = reference.len().min(candidate.len());
    let (mut dot, mut nr, mut nc) = (0f64, 0f64, 0f64);
    let mut min_example_cosine = f64::INFINITY;
    let mut max_abs_error = 0f64;
    let mut agree = 0usize;
    let (mut kl_sum, mut kl_max, mut diff_sum, mut diff_max) = (0f64, 0f64, 0f64, 0f64);
    for (r, c) in reference.iter().zip(candidate).take(n) {
        let kl = softmax_kl(r, c);
        let diff = logit_diff_error(r, c);
        kl_sum += kl;
        kl_max = kl_max.max(kl);
        diff_sum += diff;
        diff_max = diff_max.max(diff);
        let (mut d, mut a, mut b) = (0f64, 0f64, 0f64);
        for (&x, &y) in r.iter().zip(c) {
            let (x, y) = (x as f64, y as f64);
            d += x * y;
            a += x * x;
            b += y * y;
            max_abs_error = max_abs_error.max((x - y).abs());
        }
        dot += d;
        nr += a;
        nc += b;
        min_example_cosine = min_example_cosine.min(cosine(d, a, b));
        if argmax(r) == argmax(c) {
            agree += 1;
        }
    }
    Fidelity {
        reference: reference_name.to_string(),
        examples: n,
        cosine: cosine(dot, nr, nc),
        min_example_cosine,
        max_abs_error,
        label_agreement: agree as f64 / n.max(1) as f64,
        outputs: reference.first().map(Vec::len),
        mean_kl: Some(kl_sum / n.max(1) as f64),
        max_kl: Some(kl_max),
        mean_logit_diff_error: Some(diff_sum / n.max(1) as f64),
        max_logit_diff_error: Some(diff_max),
    }
}

/// A row of logits in f64; a single logit becomes the binary head `[0, x]` it stands for.
fn widened(row: &[f32]) -> Vec<f64> {
    match row {
        [x] => vec![0.0, *x as f64],
        _ => row.iter().map(|&x| x as f64).collect(),
    }
}

/// `log softmax(row)`, computed stably.
fn log_softmax(row: &[f64]) -> Vec<f64> {
    let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_sum = row.iter().map(|x| (x - top).exp()).sum::<f64>().ln() + top;
    row.iter().map(|x| x - log_sum).collect()
}

/// KL(softmax(reference) || softmax(candidate)) in nats; never negative.
fn softmax_kl(reference: &[f32], candidate: &[f32]) -> f64 {
    let (p, q) = (
        log_softmax(&widened(reference)),
        log_softmax(&widened(candidate)),
    );
    let kl: f64 = p
        .iter()
        .zip(&q)
        .map(|(&lp, &lq)| {
            if lp == f64::NEG_INFINITY {
                0.0
            } else {
                lp.exp() * (lp - lq)
            }
        })
        .sum();
    kl.max(0.0)
}

/// max(c - r) - min(c - r): the largest error of a difference of two logits.
fn logit_diff_error(reference: &[f32], candidate: &[f32]) -> f64 {
    let errors = widened(candidate)
        .into_iter()
        .zip(widened(reference))
        .map(|(c, r)| c - r);
    let (lo, hi) = errors.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), e| {
        (lo.min(e), hi.max(e))
    });
    if hi >= lo {
        hi - lo
    } else {
        0.0
    }
}

/// Cosine from a dot product and two squared norms; identical zero vectors count as 1.
fn cosine(dot: f64, a: f64, b: f64) -> f64 {
    if a == 0.0 && b == 0.0 {
        1.0
    } else if a == 0.0 || b == 0.0 {
        0.0
    } else {
        dot / (a.sqrt() * b.sqrt())
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_logits_are_perfectly_faithful() {
        let r = vec![vec![1.0, -2.0], vec![0.5, 0.25]];
        let f = compare("fp32", &r, &r);
        assert_eq!(f.examples, 2);
        assert!((f.cosine - 1.0).abs() < 1e-12);
        assert!((f.min_example_cosine - 1.0).abs() < 1e-12);
        assert_eq!(f.max_abs_error, 0.0);
        assert_eq!(f.label_agreement, 1.0);
        assert_eq!(f.outputs, Some(2));
        assert_eq!(f.mean_kl, Some(0.0));
        assert_eq!(f.max_kl, Some(0.0));
        assert_eq!(f.mean_logit_diff_error, Some(0.0));
        assert_eq!(f.max_logit_diff_error, Some(0.0));
    }

    #[test]
    fn kl_and_logit_difference_error_of_a_two_logit_head() {
        // Row 0: p = (1/2, 1/2), q = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3);
        // the logit difference moves from 0 to ln 3. Row 1: every logit shifted by 5: the softmax
        // and the differences are unchanged (KL 0, error 0) though max abs error is 5.
        let reference = vec![vec![0.0, 0.0], vec![1.0, -1.0]];
        let candidate = vec![vec![3f32.ln(), 0.0], vec![6.0, 4.0]];
        let f = compare("fp32", &reference, &candidate);
        let kl0 = 0.5 * (4.0f64 / 3.0).ln();
        assert!((f.max_kl.unwrap() - kl0).abs() < 1e-7, "{f:?}");
        assert!((f.mean_kl.unwrap() - kl0 / 2.0).abs() < 1e-7, "{f:?}");
        let d0 = 3f32.ln() as f64;
        assert!(
            (f.max_logit_diff_error.unwrap() - d0).abs() < 1e-12,
            "{f:?}"
        );
        assert!((f.mean_logit_diff_error.unwrap() - d0 / 2.0).abs() < 1e-12);
        assert!((f.max_abs_error - 5.0).abs() < 1e-12);
        assert_eq!(f.outputs, Some(2));
    }

    #[test]
    fn wider_heads_and_single_logits_generalise() {
        // Three logits: errors c - r = (0.5, -0.25, 0): worst difference error 0.75.
        let f = compare("fp32", &[vec![1.0, 2.0, 3.0]], &[vec![1.5, 1.75, 3.0]]);
        assert!((f.max_logit_diff_error.unwrap() - 0.75).abs() < 1e-12);
        assert!(f.max_kl.unwrap() > 0.0);
        // One logit reads as a sigmoid head [0, x]: 0 -> ln 3 is the binary case above.
        let f = compare("fp32", &[vec![0.0]], &[vec![3f32.ln()]]);
        assert!((f.max_kl.unwrap() - 0.5 * (4.0f64 / 3.0).ln()).abs() < 1e-7);
        assert!((f.max_logit_diff_error.unwrap() - 3f32.ln() as f64).abs() < 1e-12);
        // KL is that of the softmax: a large, confident flip costs many nats.
        let f = compare("fp32", &[vec![10.0, 0.0]], &[vec![0.0, 10.0]]);
        // p = (s, 1 - s), q = (1 - s, s), s = sigmoid(10): KL = (2s - 1) ln(s / (1 - s)) = 10 tanh 5.
        assert!(
            (f.max_kl.unwrap() - 10.0 * 5f64.tanh()).abs() < 1e-6,
            "{f:?}"
        );
        assert!((f.max_logit_diff_error.unwrap() - 20.0).abs() < 1e-12);
    }

    #[test]
    fn records_from_before_kl_still_load() {
        let old = r#"{"reference":"fp32","examples":256,"cosine":0.99,"min_example_cosine":-1.0,"max_abs_error":0.01,"label_agreement":1.0}"#;
        let f: Fidelity = serde_json::from_str(old).unwrap();
        assert_eq!(
            (f.outputs, f.mean_kl, f.max_logit_diff_error),
            (None, None, None)
        );
    }

    #[test]
    fn errors_flipped_labels_and_cosines_are_counted_exactly() {
        let reference = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![3.0, 4.0]];
        // Row 0 rotated by 90 degrees (cosine 0, label flips), row 1 unchanged, row 2 off by 0.5.
        let candidate = vec![vec![0.0, 1.0], vec![0.0, 1.0], vec![3.0, 4.5]];
        let f = compare("fp32", &reference, &candidate);
        assert!((f.label_agreement - 2.0 / 3.0).abs() < 1e-12);
        assert!(f.min_example_cosine.abs() < 1e-12);
        assert!((f.max_abs_error - 1.0).abs() < 1e-12);
        // Flattened: dot = 0 + 1 + 9 + 18 = 28; |r|^2 = 27, |c|^2 = 1 + 1 + 29.25 = 31.25.
        let expected = 28.0 / (27f64.sqrt() * 31.25f64.sqrt());
        assert!((f.cosine - expected).abs() < 1e-12);
    }
}
