//! Checks the runner's fused CUDA kernels (bias + GELU, mask + softmax, QKV bias + head split,
//! head merge, residual + layer norm) against the plain candle path each replaces, on fresh random
//! inputs, in f32, f16 and bf16, at DistilBERT's shapes and at awkward ones (a row count beyond
//! one grid dimension, widths no multiple of the 16-byte vector, an input that starts mid-buffer,
//! which takes the one-value kernels). Exits non-zero on any failure; NaN or infinity never
//! passes. Also times both paths.
//!
//!     cargo run --release --features cuda --example kernel_check

use candle_core::{DType, Result, Tensor};
use runner::ops::fused::{
    add_layer_norm, bias_act, bias_add_layer_norm, masked_softmax, merge_heads,
    plain_add_layer_norm, plain_bias_act, plain_bias_add_layer_norm, plain_masked_softmax,
    plain_merge_heads, plain_qkv_heads, qkv_heads,
};

mod common;
use common::{time_us, Timing};

/// One call a sample: each kernel is timed alone.
const TIMING: Timing = Timing {
    samples: 30,
    calls: 1,
};

/// Largest |a - b| / max(|b|, 1) and whether every value of both is finite.
fn compare(a: &Tensor, b: &Tensor) -> Result<(f32, bool)> {
    let a: Vec<f32> = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let finite = a.iter().chain(&b).all(|v| v.is_finite());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0f32, f32::max);
    Ok((worst, finite))
}

fn main() -> Result<()> {
    let device = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    // Both paths compute in f32 and round once, except candle's GELU on a rounded sum: allow one
    // rounding step of the storage type (and a little for erf's implementations).
    let bound = |d: DType| match d {
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        _ => 1.6e-2,
    };
    let shapes = [
        (128, 768),
        (2048, 3072),
        (8192, 3072),
        (8192, 2304),
        (70_000, 7),
        (3, 5),
    ];
    let mut failures = 0;
    println!(
        "{:<6} {:>7} {:>5} {:>5} {:>11} {:>9} {:>10} {:>10} result",
        "dtype", "rows", "cols", "gelu", "max rel err", "bound", "fused us", "plain us"
    );
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for &(rows, cols) in &shapes {
            for gelu in [false, true] {
                let x = (Tensor::randn(0f32, 3.0, (rows, cols), &device)?).to_dtype(dtype)?;
                let b = Tensor::randn(0f32, 1.0, cols, &device)?.to_dtype(dtype)?;
                let fused = bias_act(&x, &b, gelu)?;
                let plain = plain_bias_act(&x, &b, gelu)?;
                let (err, finite) = compare(&fused, &plain)?;
                let ok = finite && err <= bound(dtype);
                failures += usize::from(!ok);
                let tf = time_us(&device, TIMING, || bias_act(&x, &b, gelu))?;
                let tp = time_us(&device, TIMING, || plain_bias_act(&x, &b, gelu))?;
                println!(
                    "{:<6} {rows:>7} {cols:>5} {gelu:>5} {err:>11.2e} {:>9.1e} {tf:>10.1} {tp:>10.1} {}",
                    format!("{dtype:?}"),
                    bound(dtype),
                    if ok { "ok" } else { "FAILED" }
                );
            }
        }
    }
    // Mask add + softmax: padded keys masked with f32's lowest value, as the encoder's mask.
    println!();
    println!(
        "{:<6} {:>16} {:>11} {:>9} {:>10} {:>10} result",
        "dtype", "scores", "max abs err", "bound", "fused us", "plain us"
    );
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for &(b, h, q, k) in &[
            (1, 12, 128, 128),
            (16, 12, 128, 128),
            (64, 12, 128, 128),
            (2, 3, 5, 37),
            (2, 3, 5, 40),
            (1, 2, 3, 1000),
        ] {
            let scores = (Tensor::randn(0f32, 4.0, (b, h, q, k), &device)?).to_dtype(dtype)?;
            // Sequence i keeps its first k - 7 * i keys (at least one).
            let keep: Vec<f32> = (0..b * k)
                .map(|j| {
                    if j % k < k.saturating_sub(7 * (j / k)).max(1) {
                        0.0
                    } else {
                        f32::MIN
                    }
                })
                .collect();
            let mask = Tensor::from_vec(keep, (b, 1, 1, k), &device)?;
            let fused = masked_softmax(&scores, &mask)?;
            let plain = plain_masked_softmax(&scores, &mask)?;
            let (err, finite) = compare(&fused, &plain)?;
            let bound = match dtype {
                DType::F32 => 1e-6,
                DType::F16 => 1e-3,
                _ => 8e-3,
            };
            let ok = finite && err <= bound;
            failures += usize::from(!ok);
            let tf = time_us(&device, TIMING, || masked_softmax(&scores, &mask))?;
            let tp = time_us(&device, TIMING, || plain_masked_softmax(&scores, &mask))?;
            println!(
                "{:<6} {:>16} {err:>11.2e} {bound:>9.1e} {tf:>10.1} {tp:>10.1} {}",
                format!("{dtype:?}"),
                format!("{b}x{h}x{q}x{k}"),
                if ok { "ok" } else { "FAILED" }
            );
        }
    }

    // Layout kernels and residual + layer norm. `offset` makes the input start one value into its
    // buffer, which the vectorized kernels cannot take.
    println!();
    println!(
        "{:<6} {:<15} {:>18} {:>11} {:>9} {:>10} {:>10} result",
        "dtype", "kernel", "shape", "max rel err", "bound", "fused us", "plain us"
    );
    let random = |dims: &[usize], offset: bool, dtype: DType| -> Result<Tensor> {
        let n: usize = dims.iter().product();
        let flat = Tensor::randn(0f32, 2.0, n + 1, &device)?.to_dtype(dtype)?;
        flat.narrow(0, usize::from(offset), n)?.reshape(dims)
    };
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let one_rounding = match dtype {
            DType::F32 => 1e-6,
            DType::F16 => 1e-3,
            _ => 8e-3,
        };
        let mut report = |kernel: &str,
                          shape: String,
                          err: f32,
                          finite: bool,
                          bound: f32,
                          tf: f64,
                          tp: f64| {
            let ok = finite && err <= bound;
            failures += usize::from(!ok);
            println!(
                "{:<6} {kernel:<15} {shape:>18} {err:>11.2e} {bound:>9.1e} {tf:>10.1} {tp:>10.1} {}",
                format!("{dtype:?}"),
                if ok { "ok" } else { "FAILED" }
            );
        };
        // (batch, seq, heads, head_dim, offset)
        for &(b, s, h, d, offset) in &[
            (1, 128, 12, 64, false),
            (16, 128, 12, 64, false),
            (64, 128, 12, 64, false),
            (3, 5, 2, 3, false),
            (2, 7, 4, 8, true),
        ] {
            let x = random(&[b * s, 3 * h * d], offset, dtype)?;
            let bias = random(&[3 * h * d], false, dtype)?;
            let (err, finite) = compare(
                &qkv_heads(&x, &bias, s, h)?,
                &plain_qkv_heads(&x, &bias, s, h)?,
            )?;
            let tf = time_us(&device, TIMING, || qkv_heads(&x, &bias, s, h))?;
            let tp = time_us(&device, TIMING, || plain_qkv_heads(&x, &bias, s, h))?;
            let shape = format!("{b}x{s}x{h}x{d}{}", if offset { "+1" } else { "" });
            report(
                "qkv_heads",
                shape.clone(),
                err,
                finite,
                one_rounding,
                tf,
                tp,
            );
            let context = random(&[b, h, s, d], offset, dtype)?;
            let (err, finite) = compare(&merge_heads(&context)?, &plain_merge_heads(&context)?)?;
            let tf = time_us(&device, TIMING, || merge_heads(&context))?;
            let tp = time_us(&device, TIMING, || plain_merge_heads(&context))?;
            report("merge_heads", shape, err, finite, 0.0, tf, tp);
        }
        // Mean and variance in f32 in both; candle takes E[x^2] - E[x]^2, the kernel two passes.
        let norm_bound = match dtype {
            DType::F32 => 1e-4,
            DType::F16 => 2e-3,
            _ => 1.6e-2,
        };
        for &(rows, cols, offset) in &[
            (128, 768, false),
            (2048, 768, false),
            (8192, 768, false),
            (70_000, 7, false),
            (5, 37, false),
            (33, 768, true),
        ] {
            let x = random(&[rows, cols], offset, dtype)?;
            let residual = random(&[rows, cols], false, dtype)?;
            let gamma_beta = random(&[2, cols], false, dtype)?;
            let eps = 1e-12;
            let (err, finite) = compare(
                &add_layer_norm(&x, &residual, &gamma_beta, eps)?,
                &plain_add_layer_norm(&x, &residual, &gamma_beta, eps)?,
            )?;
            let tf = time_us(&device, TIMING, || {
                add_layer_norm(&x, &residual, &gamma_beta, eps)
            })?;
            let tp = time_us(&device, TIMING, || {
                plain_add_layer_norm(&x, &residual, &gamma_beta, eps)
            })?;
            let shape = format!("{rows}x{cols}{}", if offset { "+1" } else { "" });
            report(
                "add_layer_norm",
                shape.clone(),
                err,
                finite,
                norm_bound,
                tf,
                tp,
            );
            // With the preceding linear's bias as a third row (the attention output's and
            // FFN-out's GEMMs run without it): against the bias kernel + add + norm in turn,
            // and timed against the two runner kernels it replaces.
            let gamma_beta_bias =
                Tensor::cat(&[&gamma_beta, &random(&[1, cols], false, dtype)?], 0)?;
            let (err, finite) = compare(
                &bias_add_layer_norm(&x, &residual, &gamma_beta_bias, eps)?,
                &plain_bias_add_layer_norm(&x, &residual, &gamma_beta_bias, eps)?,
            )?;
            let tf = time_us(&device, TIMING, || {
                bias_add_layer_norm(&x, &residual, &gamma_beta_bias, eps)
            })?;
            let bias = gamma_beta_bias.get(2)?;
            let tp = time_us(&device, TIMING, || {
                add_layer_norm(&bias_act(&x, &bias, false)?, &residual, &gamma_beta, eps)
            })?;
            report(
                "bias_add_layer_norm",
                shape,
                err,
                finite,
                norm_bound,
                tf,
                tp,
            );
        }
    }

    // The checker itself: a NaN in the input must not pass.
    let mut v = vec![0.5f32; 4 * 8];
    v[5] = f32::NAN;
    let x = Tensor::from_vec(v, (4, 8), &device)?;
    let b = Tensor::zeros(8, DType::F32, &device)?;
    let (_, finite) = compare(&bias_act(&x, &b, true)?, &plain_bias_act(&x, &b, true)?)?;
    println!("a NaN input is caught by the check: {}", !finite);
    failures += usize::from(finite);
    if failures > 0 {
        eprintln!("{failures} check(s) failed");
        std::process::exit(1);
    }
    println!("all checks passed");
    Ok(())
}
