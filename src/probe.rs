//! A linear probe and the accuracy it gives: a real classifier on top of a real encoder that has
//! none (e.g. all-MiniLM-L6-v2, a sentence-embedding model), trained offline and deterministically.
//!
//! The labelled dataset is shuffled with the experiment's seed and split into `train_examples`
//! and (disjoint) `test_examples`. The fp32 model's mean-pooled outputs of the training split are
//! centred and scaled and a logistic regression is fitted by full-batch Nesterov gradient descent (step
//! 1/L from the data's own Lipschitz bound, L2 penalty, a fixed number of steps), in f64 on the
//! host: no randomness beyond the split, so one seed gives one head on a given device. Every cell
//! of the model then uses this head and reports its accuracy on the test split.

use std::collections::HashMap;

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ProbeSection;
use crate::data::TokenizedSet;
use crate::fidelity;
use crate::model::{hex, Encoder, HeadTensors};

/// How the head was made, stored with every accuracy figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub seed: u64,
    pub train_examples: usize,
    pub test_examples: usize,
    pub l2: f64,
    pub steps: usize,
    /// The precision whose pooled outputs the head was trained on.
    pub trained_on: String,
    /// Accuracy on the training split (fp32), against overfitting.
    pub train_accuracy: f64,
    /// First 16 hex digits of the SHA-256 of the head's f32 weights and bias.
    pub head_sha256: String,
}

/// A trained head: logits = W x + b with W (2, dim), b (2).
#[derive(Debug, Clone)]
pub struct ProbeHead {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub dim: usize,
    pub info: ProbeInfo,
    pub split: Split,
}

impl HeadTensors for ProbeHead {
    /// The head as `weight`/`bias` tensors for a var builder.
    fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        Ok(HashMap::from([
            (
                "weight".to_string(),
                Tensor::from_slice(&self.weight, (2, self.dim), &Device::Cpu)?,
            ),
            (
                "bias".to_string(),
                Tensor::from_slice(&self.bias, 2, &Device::Cpu)?,
            ),
        ]))
    }
}

/// Disjoint example indices of the tokenized set.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Seeded shuffle of `0..n`, then the first `train` and the next `test`.
pub fn split(n: usize, seed: u64, train: usize, test: usize) -> Result<Split> {
    ensure!(
        train + test <= n,
        "the probe needs train_examples + test_examples = {} labelled examples but the dataset has {n}: lower models.*.probe.train_examples/test_examples or raise dataset.limit",
        train + test
    );
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    Ok(Split {
        train: order[..train].to_vec(),
        test: order[train..train + test].to_vec(),
    })
}

/// Trains the head on `features_model`'s (fp32, no classifier) pooled outputs.
pub fn train_head(
    features_model: &Encoder,
    set: &TokenizedSet,
    settings: &ProbeSection,
    seed: u64,
    device: &Device,
) -> Result<ProbeHead> {
    let split = split(
        set.len(),
        seed,
        settings.train_examples as usize,
        settings.test_examples as usize,
    )?;
    let features = fidelity::outputs(features_model, set, &split.train, 64, device)?;
    let labels: Vec<u32> = split.train.iter().map(|&i| set.labels[i]).collect();
    let (w, b) = fit_logistic(&features, &labels, settings.l2, settings.steps as usize);
    let train_correct = features
        .iter()
        .zip(&labels)
        .filter(|(x, &y)| u32::from(dot(&w, x) + b > 0.0) == y)
        .count();
    // Two symmetric rows: logit_1 - logit_0 = w.x + b, so argmax is the regression's decision.
    let dim = w.len();
    let weight: Vec<f32> = w
        .iter()
        .map(|v| (-v / 2.0) as f32)
        .chain(w.iter().map(|v| (v / 2.0) as f32))
        .collect();
    let bias = vec![(-b / 2.0) as f32, (b / 2.0) as f32];
    let mut h = Sha256::new();
    for v in weight.iter().chain(&bias) {
        h.update(v.to_le_bytes());
    }
    Ok(ProbeHead {
        weight,
        bias,
        dim,
        info: ProbeInfo {
            seed,
            train_examples: split.train.len(),
            test_examples: split.test.len(),
            l2: settings.l2,
            steps: settings.steps as usize,
            trained_on: "fp32".into(),
            train_accuracy: train_correct as f64 / labels.len() as f64,
            head_sha256: hex(&h.finalize())[..16].to_string(),
        },
        split,
    })
}

fn dot(w: &[f64], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(a, &b)| a * b as f64).sum()
}

/// Binary logistic regression on centred features divided by one global scale (the root mean
/// per-feature variance); returns (w, b) for the raw features. One scale for all features, not one
/// per feature: per-feature standardization would blow up the raw weights of near-constant
/// features (seen on all-MiniLM-L6-v2: |w| up to 7e5), which breaks fp16 and quantized heads.
pub fn fit_logistic(x: &[Vec<f32>], y: &[u32], l2: f64, steps: usize) -> (Vec<f64>, f64) {
    let n = x.len();
    let d = x.first().map_or(0, |r| r.len());
    let nf = n as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| x.iter().map(|r| r[j] as f64).sum::<f64>() / nf)
        .collect();
    let mean_var = (0..d)
        .map(|j| {
            x.iter()
                .map(|r| (r[j] as f64 - mean[j]).powi(2))
                .sum::<f64>()
                / nf
        })
        .sum::<f64>()
        / d.max(1) as f64;
    let scale = mean_var.sqrt().max(1e-12);
    let z: Vec<Vec<f64>> = x
        .iter()
        .map(|r| (0..d).map(|j| (r[j] as f64 - mean[j]) / scale).collect())
        .collect();
    // Lipschitz constant of the mean logistic loss: 0.25 * largest eigenvalue of Z'Z/n (+ l2),
    // the eigenvalue by power iteration from a fixed start.
    let mut v = vec![1.0 / (d as f64 + 1.0).sqrt(); d + 1];
    let mut lambda = 1.0;
    for _ in 0..50 {
        let mut next = vec![0.0; d + 1];
        for r in &z {
            let t = r.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() + v[d];
            for j in 0..d {
                next[j] += r[j] * t / nf;
            }
            next[d] += t / nf;
        }
        lambda = next.iter().map(|a| a * a).sum::<f64>().sqrt();
        v = next.iter().map(|a| a / lambda).collect();
    }
    let step = 1.0 / (0.25 * lambda + l2);
    // Nesterov-accelerated gradient descent on (w, b), b last.
    let mut theta = vec![0.0; d + 1];
    let mut prev = theta.clone();
    for k in 0..steps {
        let momentum = k as f64 / (k as f64 + 3.0);
        let look: Vec<f64> = theta
            .iter()
            .zip(&prev)
            .map(|(t, p)| t + momentum * (t - p))
            .collect();
        let mut grad = vec![0.0; d + 1];
        for (r, &label) in z.iter().zip(y) {
            let logit = r.iter().zip(&look).map(|(a, b)| a * b).sum::<f64>() + look[d];
            let err = 1.0 / (1.0 + (-logit).exp()) - label as f64;
            for j in 0..d {
                grad[j] += err * r[j] / nf;
            }
            grad[d] += err / nf;
        }
        for j in 0..d {
            grad[j] += l2 * look[j];
        }
        prev = theta;
        theta = look.iter().zip(&grad).map(|(l, g)| l - step * g).collect();
    }
    // Undo the centring and scaling: w_raw = w / scale, b_raw = b - sum(w * mean) / scale.
    let w: Vec<f64> = (0..d).map(|j| theta[j] / scale).collect();
    let b = theta[d] - (0..d).map(|j| theta[j] * mean[j]).sum::<f64>() / scale;
    (w, b)
}

/// Accuracy of a model with the probe head on the probe's test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub examples: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Wilson score 95 % interval of the accuracy.
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// Share of the test split's most common label: what always guessing it would score.
    pub majority_rate: f64,
    pub probe: ProbeInfo,
}

pub fn accuracy(
    model: &Encoder,
    set: &TokenizedSet,
    head: &ProbeHead,
    batch: usize,
    device: &Device,
) -> Result<Accuracy> {
    let logits = fidelity::outputs(model, set, &head.split.test, batch, device)?;
    let correct = logits
        .iter()
        .zip(&head.split.test)
        .filter(|(row, &i)| (row[1] > row[0]) == (set.labels[i] == 1))
        .count();
    let n = logits.len();
    let (ci95_low, ci95_high) = wilson(correct, n);
    let positives = head
        .split
        .test
        .iter()
        .filter(|&&i| set.labels[i] == 1)
        .count();
    Ok(Accuracy {
        examples: n,
        correct,
        accuracy: correct as f64 / n as f64,
        ci95_low,
        ci95_high,
        majority_rate: positives.max(n - positives) as f64 / n as f64,
        probe: head.info.clone(),
    })
}

/// Wilson score interval (95 %) for a proportion: sensible near 0 and 1, unlike the normal one.
pub fn wilson(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959964;
    let nf = n as f64;
    let p = successes as f64 / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_checked() {
        let a = split(100, 7, 60, 30).unwrap();
        assert_eq!(a, split(100, 7, 60, 30).unwrap());
        assert_ne!(a, split(100, 8, 60, 30).unwrap());
        let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 90);
        let err = split(100, 7, 80, 30).unwrap_err().to_string();
        assert!(
            err.contains("110 labelled examples but the dataset has 100"),
            "{err}"
        );
    }

    #[test]
    fn logistic_regression_separates_separable_data_and_is_deterministic() {
        // Label = sign of (2 x0 - x1 + 0.5), on a deterministic grid of points.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..20 {
            for j in 0..20 {
                let (a, b) = (i as f32 / 5.0 - 2.0, j as f32 / 5.0 - 2.0);
                let margin = 2.0 * a - b + 0.5;
                if margin.abs() > 0.2 {
                    x.push(vec![a, b, 0.3]);
                    y.push(u32::from(margin > 0.0));
                }
            }
        }
        let (w, b) = fit_logistic(&x, &y, 1e-4, 300);
        let correct = x
            .iter()
            .zip(&y)
            .filter(|(r, &l)| u32::from(dot(&w, r) + b > 0.0) == l)
            .count();
        assert_eq!(correct, x.len());
        // The direction is the true one: w0 / w1 close to -2.
        assert!((w[0] / w[1] + 2.0).abs() < 0.3, "w = {w:?}");
        assert_eq!((w.clone(), b), fit_logistic(&x, &y, 1e-4, 300));
    }

    #[test]
    fn wilson_interval_matches_the_textbook_values() {
        // 81/100: Wilson 95 % interval (0.7222, 0.8749).
        let (lo, hi) = wilson(81, 100);
        assert!(
            (lo - 0.7222).abs() < 5e-4 && (hi - 0.8749).abs() < 5e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(10, 10);
        assert!(
            lo > 0.72 && lo < 0.73 && (hi - 1.0).abs() < 1e-12,
            "{lo} {hi}"
        );
    }
}
