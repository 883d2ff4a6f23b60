//! `cutlass_check --padding`: `device.attention_padding = "skip"`, the one-kernel attention
//! (src/ops/kernels/fused.cu `attention<..., SKIP>`) leaving out the key chunks past each
//! sequence's last unmasked key. On fresh random Q/K/V, bias and padding masks (lengths like the
//! flagship's sentences, uniform ones, full rows, a fully masked row), in f16 and bf16, at
//! DistilBERT's heads (12 of 64) and MiniLM's (12 of 32):
//!
//! 1. the skip kernel's context must be the compute kernel's, bit for bit (a skipped key's
//!    probability is exactly 0 and a skipped chunk rescales by exp(0) = 1), and within the plain
//!    check's bound of the batched-GEMM path in f32 (examples/attention_check.rs); both timed in
//!    CUDA graphs;
//! 2. NaN: in a valid key it reaches its sequence's rows (that head) in both kernels, the same
//!    values; in a query, its row only; in a padding key inside the last computed chunk, as with
//!    compute; in a padding key past it, nowhere (the documented difference: compute spreads it);
//! 3. the whole model (DistilBERT-base, random weights, CUTLASS, fused embeddings) with skip
//!    against compute on the same padded batches: logits equal; both forwards timed in graphs;
//!    then the CUDA-graph replay against eager with skip on (cutlass_check/model.rs).

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{AttentionPadding, EightBit, GemmLibrary};
use runner::ops::attention::{attention, one_kernel_on, set_padding, unfused_attention};

use super::common::rel_err;
use super::{guarded, model, time_us};

/// How a case's sequences are padded.
#[derive(Clone, Copy, Debug)]
enum Lengths {
    /// 2 + (r % 48) tokens: the flagship's Rotten Tomatoes sentences are ~12 tokens on average
    /// (~7 words), almost all under 64.
    Sentences,
    /// 1..=seq, uniform.
    Uniform,
    /// Every key unmasked (no padding).
    Full,
    /// Uniform, and sequence 0 with no unmasked key (the mean of V in both kernels).
    UniformEmpty,
}

fn lengths(kind: Lengths, b: usize, s: usize, seed: u64) -> Vec<usize> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(7);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    (0..b)
        .map(|i| match kind {
            Lengths::Sentences => (2 + next() % 48).min(s),
            Lengths::Uniform => 1 + next() % s,
            Lengths::Full => s,
            Lengths::UniformEmpty if i == 0 => 0,
            Lengths::UniformEmpty => 1 + next() % s,
        })
        .collect()
}

/// (batch, 1, 1, seq) additive mask, as the encoder builds it: 0 kept, f32's lowest masked.
fn mask(gpu: &Device, lens: &[usize], s: usize) -> Result<Tensor> {
    let v: Vec<f32> = lens
        .iter()
        .flat_map(|&len| (0..s).map(move |j| if j < len { 0f32 } else { f32::MIN }))
        .collect();
    Tensor::from_vec(v, (lens.len(), 1, 1, s), gpu)
}

fn run(p: AttentionPadding, x: &Tensor, bias: &Tensor, m: &Tensor, s: usize) -> Result<Tensor> {
    set_padding(p);
    attention(x, bias, m, s, 12)
}

/// max |a - b| over every value, with NaN where both are NaN counted as equal and NaN against a
/// number as infinite.
fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let a: Vec<f32> = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    if a.len() != b.len() {
        return Ok(f32::INFINITY);
    }
    Ok(a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| match (x.is_nan(), y.is_nan()) {
            (true, true) => m,
            (false, false) => m.max((x - y).abs()),
            _ => f32::INFINITY,
        }))
}

pub fn padding_checks(gpu: &Device) -> usize {
    println!(
        "{:<5} {:>5} {:>4} {:>3} {:<13} {:>6} {:>14} {:>9} {:>8} {:>10} {:>8} {:>7} result (attention_padding: skip against compute)",
        "dtype", "batch", "seq", "D", "lengths", "keys%", "|skip-compute|", "err f32", "bound", "compute us", "skip us", "speedup"
    );
    let cases = [
        (64, 128, 64, Lengths::Sentences),
        (16, 128, 64, Lengths::Sentences),
        (64, 128, 64, Lengths::Uniform),
        (64, 128, 64, Lengths::Full),
        (16, 128, 64, Lengths::Full),
        (3, 512, 64, Lengths::UniformEmpty),
        (5, 77, 64, Lengths::Sentences),
        (1, 1, 64, Lengths::Full),
        (16, 128, 32, Lengths::Sentences),
        (2, 100, 32, Lengths::UniformEmpty),
    ];
    let mut failures = 0;
    for dtype in [DType::F16, DType::BF16] {
        for (i, &(b, s, d, kind)) in cases.iter().enumerate() {
            let label = format!("padding {dtype:?} b{b} s{s} d{d} {kind:?}");
            failures += guarded(&label, || {
                kernel_case(gpu, dtype, (b, s, d), kind, i as u64)
            });
        }
    }
    failures += guarded("padding NaN", || nan_case(gpu));
    failures
}

/// The model with skip against compute, then its graph replay = eager with skip.
pub fn padding_model_checks(gpu: &Device) -> usize {
    let mut failures = guarded("padding model", || model_case(gpu));
    set_padding(AttentionPadding::Skip);
    failures += model::graph_checks_named(gpu, &["fp16 fused-emb", "int8-fp16 static"]);
    set_padding(AttentionPadding::Compute);
    failures
}

fn kernel_case(
    gpu: &Device,
    dtype: DType,
    (b, s, d): (usize, usize, usize),
    kind: Lengths,
    seed: u64,
) -> Result<usize> {
    let h = 12;
    if !one_kernel_on(gpu, dtype, d) {
        candle_core::bail!("no one-kernel attention for {dtype:?} d{d}");
    }
    let x = Tensor::randn(0f32, 1.0, (b * s, 3 * h * d), gpu)?.to_dtype(dtype)?;
    let bias = Tensor::randn(0f32, 0.5, 3 * h * d, gpu)?.to_dtype(dtype)?;
    let lens = lengths(kind, b, s, seed + 1);
    let m = mask(gpu, &lens, s)?;
    // The keys the skip kernel multiplies, in % of all (whole chunks of 64; an empty row: all).
    let kept: usize = lens
        .iter()
        .map(|&l| {
            if l == 0 {
                s
            } else {
                (l.div_ceil(64) * 64).min(s)
            }
        })
        .sum();
    let keys = 100.0 * kept as f64 / (b * s) as f64;
    let compute = run(AttentionPadding::Compute, &x, &bias, &m, s)?;
    let skip = run(AttentionPadding::Skip, &x, &bias, &m, s)?;
    let diff = max_diff(&skip, &compute)?;
    let reference = unfused_attention(
        &x.to_dtype(DType::F32)?,
        &bias.to_dtype(DType::F32)?,
        &m,
        s,
        h,
    )?;
    let (err, finite) = rel_err(&skip, &reference)?;
    let bound = if dtype == DType::F16 { 4e-3 } else { 3e-2 };
    set_padding(AttentionPadding::Compute);
    let tc = time_us(gpu, || attention(&x, &bias, &m, s, h))?;
    set_padding(AttentionPadding::Skip);
    let ts = time_us(gpu, || attention(&x, &bias, &m, s, h))?;
    set_padding(AttentionPadding::Compute);
    let ok = diff == 0.0 && finite && err <= bound && skip.dims() == compute.dims();
    println!(
        "{:<5} {b:>5} {s:>4} {d:>3} {:<13} {keys:>6.1} {diff:>14.3e} {err:>9.2e} {bound:>8.1e} {tc:>10.1} {ts:>8.1} {:>7.2} {}",
        format!("{dtype:?}"),
        format!("{kind:?}"),
        tc / ts,
        if ok { "ok" } else { "FAILED" }
    );
    Ok(usize::from(!ok))
}

/// Rows (batch * seq) of `t` (batch, seq, width) holding a NaN.
fn nan_rows(t: &Tensor) -> Result<Vec<usize>> {
    let width = t.dim(candle_core::D::Minus1)?;
    let rows: Vec<Vec<f32>> = t.to_dtype(DType::F32)?.reshape(((), width))?.to_vec2()?;
    Ok(rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.iter().any(|v| v.is_nan()))
        .map(|(i, _)| i)
        .collect())
}

/// (what, token row, column of x, rows expected NaN under compute, under skip)
type NanCase = (&'static str, usize, usize, Vec<usize>, Vec<usize>);

fn nan_case(gpu: &Device) -> Result<usize> {
    let (h, d, s) = (12, 64, 128);
    let lens = [100, 30, 128, 50];
    let b = lens.len();
    let m = mask(gpu, &lens, s)?;
    let base: Vec<f32> = Tensor::randn(0f32, 1.0, (b * s, 3 * h * d), gpu)?
        .flatten_all()?
        .to_vec1()?;
    let bias = Tensor::zeros(3 * h * d, DType::F16, gpu)?;
    let width = h * d;
    let seq1: Vec<usize> = (s..2 * s).collect();
    let cases: [NanCase; 4] = [
        (
            "valid key (seq 1, token 5, K of head 3)",
            s + 5,
            width + 3 * d + 7,
            seq1.clone(),
            seq1.clone(),
        ),
        (
            "query (seq 2, token 7, Q of head 0)",
            2 * s + 7,
            11,
            vec![2 * s + 7],
            vec![2 * s + 7],
        ),
        (
            "padding key in the last computed chunk (seq 1, token 40, V of head 5)",
            s + 40,
            2 * width + 5 * d + 1,
            seq1.clone(),
            seq1.clone(),
        ),
        (
            "padding key past it (seq 1, token 100, V of head 5)",
            s + 100,
            2 * width + 5 * d + 1,
            seq1,
            vec![],
        ),
    ];
    let mut failures = 0;
    for (what, row, col, want_compute, want_skip) in cases {
        let mut v = base.clone();
        v[row * 3 * width + col] = f32::NAN;
        let x = Tensor::from_vec(v, (b * s, 3 * width), gpu)?.to_dtype(DType::F16)?;
        let compute = run(AttentionPadding::Compute, &x, &bias, &m, s)?;
        let skip = run(AttentionPadding::Skip, &x, &bias, &m, s)?;
        set_padding(AttentionPadding::Compute);
        let (rc, rs) = (nan_rows(&compute)?, nan_rows(&skip)?);
        // Where neither expects a NaN the two kernels agree bit for bit.
        let clean: Vec<usize> = (0..b * s)
            .filter(|r| !want_compute.contains(r) && !want_skip.contains(r))
            .collect();
        let idx = Tensor::from_vec(
            clean.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            clean.len(),
            gpu,
        )?;
        let diff = max_diff(
            &skip.reshape((b * s, width))?.index_select(&idx, 0)?,
            &compute.reshape((b * s, width))?.index_select(&idx, 0)?,
        )?;
        let ok = rc == want_compute && rs == want_skip && diff == 0.0;
        failures += usize::from(!ok);
        println!(
            "NaN in a {what}: rows with NaN compute {} (want {}), skip {} (want {}); elsewhere |skip-compute| {diff:.1e} {}",
            rc.len(),
            want_compute.len(),
            rs.len(),
            want_skip.len(),
            if ok { "ok" } else { "FAILED" }
        );
    }
    Ok(failures)
}

/// DistilBERT-base (random weights, CUTLASS, fused embeddings) in fp16 and int8-fp16 on padded
/// sentence-length batches: the logits with skip must equal those with compute; both forwards
/// timed in CUDA graphs (eager model.forward captured 20 times a graph).
fn model_case(gpu: &Device) -> Result<usize> {
    use runner::model::{encoder, Encoder, Head, Numerics, Preset};
    let preset = Preset::DISTILBERT_BASE_UNCASED;
    let mut failures = 0;
    for (name, eight_bit) in [("fp16", None), ("int8-fp16", Some(EightBit::Int8))] {
        let tensors = encoder::random_tensors(&preset, 0).map_err(candle_core::Error::msg)?;
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F16, gpu);
        let numerics = Numerics {
            float: DType::F16,
            quant: None,
            eight_bit,
        };
        let mut model = Encoder::load(vb, &preset, numerics, Head::Checkpoint)?;
        model.set_gemm_library(GemmLibrary::Cutlass);
        model.set_fused_embeddings(true)?;
        set_padding(AttentionPadding::Skip);
        let described = model
            .implementation()
            .remove("attention")
            .unwrap_or_default();
        println!("{name} attention (skip): {described}");
        for (b, kind) in [
            (16, Lengths::Sentences),
            (64, Lengths::Sentences),
            (64, Lengths::Uniform),
        ] {
            let s = 128;
            let lens = lengths(kind, b, s, 40 + b as u64);
            let ids: Vec<u32> = lens
                .iter()
                .enumerate()
                .flat_map(|(i, &l)| {
                    (0..s).map(move |j| {
                        if j < l {
                            (1000 + 37 * i + 101 * j) as u32 % 30000
                        } else {
                            0
                        }
                    })
                })
                .collect();
            let keep: Vec<u32> = lens
                .iter()
                .flat_map(|&l| (0..s).map(move |j| u32::from(j < l)))
                .collect();
            let ids = Tensor::from_vec(ids, (b, s), gpu)?;
            let keep = Tensor::from_vec(keep, (b, s), gpu)?;
            // Timed for the sentence lengths only (the check's time is short).
            let timed = matches!(kind, Lengths::Sentences);
            let time = |on: bool| -> Result<f64> {
                set_padding(if on {
                    AttentionPadding::Skip
                } else {
                    AttentionPadding::Compute
                });
                if timed {
                    time_us(gpu, || model.forward(&ids, &keep))
                } else {
                    Ok(f64::NAN)
                }
            };
            let tc = time(false)?;
            let compute = model.forward(&ids, &keep)?;
            let ts = time(true)?;
            let skip = model.forward(&ids, &keep)?;
            set_padding(AttentionPadding::Compute);
            let diff = max_diff(&skip, &compute)?;
            let finite = skip
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            let ok = diff == 0.0 && finite;
            failures += usize::from(!ok);
            println!(
                "model {name} b{b} s{s} {kind:?}: logits |skip-compute| {diff:.1e}, finite {finite}; forward in a graph: compute {tc:.1} us, skip {ts:.1} us ({:.3}x) {}",
                tc / ts,
                if ok { "ok" } else { "FAILED" }
            );
        }
    }
    Ok(failures)
}
