//! A decoder's fidelity against a reference precision (fp32, or bf16 for models above ~3 B
//! parameters) on the same prompts: the reference generates greedily, then the candidate is
//! teacher-forced on the reference's tokens, so both score the same contexts step by step and one
//! early disagreement does not derail every later comparison. And perplexity on the dataset's
//! text, where the weights are a trained model's.

use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::workload::{greedy, Generate};

/// What the candidate does with the reference's contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateFidelity {
    /// The precision compared against.
    pub reference: String,
    pub prompts: usize,
    /// Next-token distributions compared per prompt: the prefill's, then one per decode step.
    pub steps: usize,
    /// Fraction of those positions where the candidate's greedy token is the reference's.
    pub greedy_agreement: f64,
    /// KL(p_ref || p_cand) of the next-token distributions, in nats: mean and worst position.
    pub mean_kl: f64,
    pub max_kl: f64,
    /// The largest absolute difference of any logit at any compared position.
    pub max_logit_error: f64,
}

/// Mean negative log-likelihood of the dataset's text, teacher-forced one token per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Perplexity {
    pub sequences: usize,
    /// Tokens scored (each sequence's tokens after its first).
    pub tokens: usize,
    pub nll_per_token: f64,
    pub perplexity: f64,
}

/// The reference's run: its greedy tokens and, per prompt and position, its logits.
#[derive(Debug, Clone)]
pub struct ReferenceRun {
    pub precision: String,
    /// (prompts, steps) greedy tokens; the last is never fed back.
    pub tokens: Vec<Vec<u32>>,
    /// [position][prompt] -> logits row.
    pub logits: Vec<Vec<Vec<f32>>>,
}

fn rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(logits.to_dtype(DType::F32)?.to_vec2()?)
}

/// The reference generates `steps` greedy tokens after each of `prompts` (prompts, len). Each
/// prompt runs alone (batch 1): every model runs a batch of one, whatever its batch limits.
pub fn reference_run(
    model: &mut dyn Generate,
    prompts: &Tensor,
    steps: usize,
    precision: &str,
) -> Result<ReferenceRun> {
    let n = prompts.dim(0)?;
    let mut logits_at: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(n); steps];
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        model.reset()?;
        let mut logits = model.prefill(&prompts.narrow(0, i, 1)?)?;
        let mut generated = Vec::with_capacity(steps);
        for (s, at) in logits_at.iter_mut().enumerate() {
            let next = greedy(&logits)?;
            at.push(rows(&logits)?.remove(0));
            generated.push(next.flatten_all()?.to_vec1::<u32>()?[0]);
            if s + 1 < steps {
                logits = model.step(&next)?;
            }
        }
        tokens.push(generated);
    }
    Ok(ReferenceRun {
        precision: precision.to_string(),
        tokens,
        logits: logits_at,
    })
}

/// The candidate's logits at the reference's positions: its prefill, then the reference's tokens
/// fed one step at a time, each prompt alone.
pub fn teacher_forced(
    model: &mut dyn Generate,
    prompts: &Tensor,
    reference: &ReferenceRun,
    device: &Device,
) -> Result<Vec<Vec<Vec<f32>>>> {
    let steps = reference.logits.len();
    let mut logits_at: Vec<Vec<Vec<f32>>> = vec![Vec::new(); steps];
    for (i, fed) in reference.tokens.iter().enumerate() {
        model.reset()?;
        let mut logits = model.prefill(&prompts.narrow(0, i, 1)?)?;
        for (s, at) in logits_at.iter_mut().enumerate() {
            at.push(rows(&logits)?.remove(0));
            if s + 1 < steps {
                logits = model.step(&Tensor::from_vec(vec![fed[s]], (1, 1), device)?)?;
            }
        }
    }
    Ok(logits_at)
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    let log_sum = max + sum.ln();
    row.iter().map(|&x| x as f64 - log_sum).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
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

/// Compares the candidate's logits with the reference's, position by position.
pub fn compare(reference: &ReferenceRun, candidate: &[Vec<Vec<f32>>]) -> Result<GenerateFidelity> {
    ensure!(
        candidate.len() == reference.logits.len(),
        "the candidate scored {} positions, the reference {}",
        candidate.len(),
        reference.logits.len()
    );
    let (mut agree, mut n, mut kl_sum, mut kl_max, mut err_max) =
        (0usize, 0usize, 0f64, 0f64, 0f64);
    for (r_rows, c_rows) in reference.logits.iter().zip(candidate) {
        for (r, c) in r_rows.iter().zip(c_rows) {
            let (lr, lc) = (log_softmax(r), log_softmax(c));
            let kl: f64 = lr.iter().zip(&lc).map(|(a, b)| a.exp() * (a - b)).sum();
            let kl = kl.max(0.0);
            kl_sum += kl;
            kl_max = kl_max.max(kl);
            err_max = r
                .iter()
                .zip(c)
                .fold(err_max, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
            agree += usize::from(argmax(r) == argmax(c));
            n += 1;
        }
    }
    Ok(GenerateFidelity {
        reference: reference.precision.clone(),
        prompts: reference.tokens.len(),
        steps: reference.logits.len(),
        greedy_agreement: agree as f64 / n.max(1) as f64,
        mean_kl: kl_sum / n.max(1) as f64,
        max_kl: kl_max,
        max_logit_error: err_max,
    })
}

/// Perplexity of `sequences` (each the same length), teacher-forced as one batch, one token
/// per step (a prefill of one token per sequence, so any model takes the batch).
pub fn perplexity(
    model: &mut dyn Generate,
    sequences: &[Vec<u32>],
    device: &Device,
) -> Result<Perplexity> {
    let b = sequences.len();
    let t = sequences.first().map_or(0, Vec::len);
    ensure!(
        b > 0 && t > 1 && sequences.iter().all(|s| s.len() == t),
        "perplexity needs sequences of one length, at least two tokens"
    );
    let column = |i: usize| -> Result<Tensor> {
        let ids: Vec<u32> = sequences.iter().map(|s| s[i]).collect();
        Ok(Tensor::from_vec(ids, (b, 1), device)?)
    };
    model.reset()?;
    let mut logits = model.prefill(&column(0)?)?;
    let mut nll = 0f64;
    for i in 1..t {
        for (row, seq) in rows(&logits)?.iter().zip(sequences) {
            nll -= log_softmax(row)[seq[i] as usize];
        }
        if i + 1 < t {
            logits = model.step(&column(i)?)?;
        }
    }
    let tokens = b * (t - 1);
    let nll_per_token = nll / tokens as f64;
    Ok(Perplexity {
        sequences: b,
        tokens,
        nll_per_token,
        perplexity: nll_per_token.exp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_logits_agree_fully_and_a_shift_changes_nothing_but_the_logit_error() {
        let reference = ReferenceRun {
            precision: "fp32".into(),
            tokens: vec![vec![1, 0]],
            logits: vec![vec![vec![0.0, 2.0, 1.0]], vec![vec![3.0, 1.0, 0.0]]],
        };
        let same = compare(&reference, &reference.logits).unwrap();
        assert_eq!(same.greedy_agreement, 1.0);
        assert!(same.mean_kl.abs() < 1e-12 && same.max_logit_error == 0.0);
        let shifted: Vec<Vec<Vec<f32>>> = reference
            .logits
            .iter()
            .map(|p| {
                p.iter()
                    .map(|r| r.iter().map(|x| x + 5.0).collect())
                    .collect()
            })
            .collect();
        let f = compare(&reference, &shifted).unwrap();
        assert!(f.mean_kl.abs() < 1e-9, "softmax ignores a shift");
        assert!((f.max_logit_error - 5.0).abs() < 1e-9);
        let flipped = vec![vec![vec![0.0, 1.0, 2.0]], vec![vec![3.0, 1.0, 0.0]]];
        let f = compare(&reference, &flipped).unwrap();
        assert_eq!(f.greedy_agreement, 0.5);
        assert!(f.max_kl > 0.1);
    }
}
