//! cutlass_check's embeddings section (`device.fused_embeddings`): src/ops/embeddings.rs's one
//! kernel against its plain twin (candle's gather, broadcast add and layer norm, on the same GPU)
//! on fresh random tables and ids, f32 / f16 / bf16, DistilBERT (no token-type row) and BERT
//! (with one) at batch 16 and 64 x seq 128. Both compute the sum in the dtype and the norm in
//! f32; they differ in the order of the row's sums only, so after the one rounding to the dtype a
//! value is at most about one unit apart: bounds of max |gpu - plain| / max |plain| of 1e-5 (f32),
//! 2e-3 (f16: one unit at 4 is 2^-8 of ~5) and 1.6e-2 (bf16). Then a NaN planted in one word row
//! must reach exactly the tokens that read it, and an id outside the vocabulary a NaN row of its
//! own, every other row finite. Timings against the plain path print for the prediction in
//! docs/results/2026-12-06-nvidia-h100-cutlass/NOTES.md.

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use runner::ops::embeddings::{embed_layer_norm, embedding_table, plain_embed_layer_norm};

use super::common::rel_err;
use super::{guarded, time_us};

const VOCAB: usize = 30522;
const POSITIONS: usize = 512;
const DIM: usize = 768;
/// DistilBERT's and BERT's layer norm eps.
const EPS: f64 = 1e-12;

pub fn embedding_checks(gpu: &Device) -> usize {
    let mut failures = 0;
    println!(
        "{:<10} {:<5} {:>5} {:>4} {:>11} {:>8} {:>9} {:>9} {:>7} result (embeddings: one kernel against candle's ops)",
        "model", "dtype", "batch", "seq", "max rel err", "bound", "kernel us", "plain us", "speedup"
    );
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for (model, token_type) in [("distilbert", false), ("bert", true)] {
            for batch in [16, 64] {
                let label = format!("embeddings {model} {dtype:?} batch {batch}");
                failures += guarded(&label, || {
                    one_shape(gpu, model, token_type, dtype, batch, 128)
                });
            }
        }
        failures += guarded(&format!("embeddings NaN rows {dtype:?}"), || {
            nan_rows(gpu, dtype)
        });
    }
    failures
}

fn bound(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        _ => 1.6e-2,
    }
}

/// Random tables of the model's shapes in `dtype` on `gpu`: (word, table for the kernel).
fn tables(gpu: &Device, token_type: bool, dtype: DType) -> Result<(Tensor, Tensor)> {
    let word = Tensor::randn(0f32, 1.0, (VOCAB, DIM), gpu)?.to_dtype(dtype)?;
    let position = Tensor::randn(0f32, 0.5, (POSITIONS, DIM), gpu)?.to_dtype(dtype)?;
    let segment = Tensor::randn(0f32, 0.5, DIM, gpu)?.to_dtype(dtype)?;
    let gamma = Tensor::randn(1f32, 0.1, DIM, gpu)?.to_dtype(dtype)?;
    let beta = Tensor::randn(0f32, 0.1, DIM, gpu)?.to_dtype(dtype)?;
    let table = embedding_table(&position, token_type.then_some(&segment), &gamma, &beta)?;
    Ok((word, table))
}

/// Fresh random ids below the vocabulary, (batch, seq) u32 on `gpu`.
fn random_ids(gpu: &Device, batch: usize, seq: usize) -> Result<Tensor> {
    (Tensor::rand(0f32, VOCAB as f32, (batch, seq), gpu)?
        .floor()?
        .clamp(0f32, (VOCAB - 1) as f32))?
    .to_dtype(DType::U32)
}

fn one_shape(
    gpu: &Device,
    model: &str,
    token_type: bool,
    dtype: DType,
    batch: usize,
    seq: usize,
) -> Result<usize> {
    let (word, table) = tables(gpu, token_type, dtype)?;
    let ids = random_ids(gpu, batch, seq)?;
    let got = embed_layer_norm(&ids, &word, &table, EPS)?;
    let want = plain_embed_layer_norm(&ids, &word, &table, EPS)?;
    let (err, finite) = rel_err(&got, &want)?;
    let ok = finite && err <= bound(dtype) && got.dims() == want.dims();
    let kernel = time_us(gpu, || embed_layer_norm(&ids, &word, &table, EPS))?;
    let plain = time_us(gpu, || plain_embed_layer_norm(&ids, &word, &table, EPS))?;
    println!(
        "{model:<10} {:<5} {batch:>5} {seq:>4} {err:>11.3e} {:>8.1e} {kernel:>9.1} {plain:>9.1} {:>6.2}x {}",
        format!("{dtype:?}"),
        bound(dtype),
        plain / kernel,
        if ok { "ok" } else { "FAILED" }
    );
    Ok(usize::from(!ok))
}

/// A NaN in word row 7 reaches exactly the tokens with id 7 (every value of their rows), an id
/// past the vocabulary gives its token a NaN row, every other row is finite.
fn nan_rows(gpu: &Device, dtype: DType) -> Result<usize> {
    let (word, table) = tables(gpu, true, dtype)?;
    let nan_row = Tensor::full(f32::NAN, (1, DIM), gpu)?.to_dtype(dtype)?;
    let word = word.slice_assign(&[7..8, 0..DIM], &nan_row)?;
    let (batch, seq) = (4, 128);
    let mut ids: Vec<u32> = (0..batch * seq)
        .map(|i| (100 + 37 * i % 20000) as u32)
        .collect();
    ids[5] = 7; // batch 0, position 5: the NaN word row
    ids[2 * seq + 9] = 7; // batch 2, position 9
    ids[3 * seq + 1] = VOCAB as u32; // batch 3, position 1: outside the vocabulary
    let expect_nan = |i: usize| i == 5 || i == 2 * seq + 9 || i == 3 * seq + 1;
    let ids_t = Tensor::from_vec(ids, (batch, seq), gpu)?;
    let out = embed_layer_norm(&ids_t, &word, &table, EPS)?
        .to_dtype(DType::F32)?
        .reshape((batch * seq, DIM))?;
    let mut wrong = Vec::new();
    for r in 0..batch * seq {
        let row: Vec<f32> = out.i(r)?.to_vec1()?;
        let all_nan = row.iter().all(|v| v.is_nan());
        let all_finite = row.iter().all(|v| v.is_finite());
        if (expect_nan(r) && !all_nan) || (!expect_nan(r) && !all_finite) {
            wrong.push(r);
        }
    }
    let ok = wrong.is_empty();
    println!(
        "embeddings NaN rows {dtype:?}: a NaN word row reaches exactly its 2 tokens, an out-of-vocabulary id its own row: {} {}",
        if ok { "as expected".to_string() } else { format!("wrong rows {wrong:?}") },
        if ok { "ok" } else { "FAILED" }
    );
    Ok(usize::from(!ok))
}
