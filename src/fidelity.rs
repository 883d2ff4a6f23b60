//! Fidelity: what a reduced precision does to the model's outputs, against the fp32 model with the
//! same weights on the same inputs (the first [`FIDELITY_EXAMPLES`] examples of the dataset).

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
    for (r, c) in reference.iter().zip(candidate).take(n) {
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
