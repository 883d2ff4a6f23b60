//! Checks the runner's one-kernel attention (src/ops/kernels/fused.cu `attention`) against the
//! batched-GEMM path it replaces (`unfused_attention`), on fresh random inputs on the GPU, in f16
//! and bf16, at DistilBERT's shapes (12 heads of 64) and MiniLM's (12 of 32), and at awkward ones:
//! batch 1, seq 1, seq 512, a length that is no multiple of the 32-query tile or the 64-key chunk,
//! padded rows, a fully masked row. Exits non-zero on any failure; NaN never passes. Also times
//! both (median of 30 synchronized calls).
//!
//!     cargo run --release --features cuda --example attention_check
//!
//! Error: max |path - reference| / max |reference| over the whole context, where the reference is
//! the unfused path in f32 on the same (rounded) inputs. The one kernel must be within the bound
//! AND no worse than 1.25x the unfused half-precision path's own error (which rounds the scores to
//! the storage type before its softmax; the one kernel keeps them in f32).

use candle_core::{DType, Device, Result, Tensor};
use runner::ops::attention::{attention, one_kernel_on, unfused_attention};

mod common;
use common::{rel_err, time_us, Timing};

const TIMING: Timing = Timing {
    samples: 30,
    calls: 10,
};

/// An additive mask (batch, 1, 1, seq): row i attends to its first len(i) keys; with `empty`,
/// row 0 attends to none (every key at f32's lowest).
fn mask(device: &Device, batch: usize, seq: usize, empty: bool) -> Result<Tensor> {
    let mut v = Vec::with_capacity(batch * seq);
    for i in 0..batch {
        let len = if empty && i == 0 {
            0
        } else {
            seq - (i * 37) % seq.max(1)
        };
        v.extend((0..seq).map(|j| if j < len { 0f32 } else { f32::MIN }));
    }
    Tensor::from_vec(v, (batch, 1, 1, seq), device)
}

fn main() -> Result<()> {
    let device = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    // (batch, seq, heads, head_dim, a fully masked row)
    let cases = [
        (64, 128, 12, 64, false),
        (16, 128, 12, 64, false),
        (1, 128, 12, 64, false),
        (1, 1, 12, 64, false),
        (3, 512, 12, 64, true),
        (5, 77, 12, 64, true),
        (16, 128, 12, 32, false),
        (2, 100, 12, 32, true),
    ];
    let bound = |d: DType| if d == DType::F16 { 4e-3 } else { 3e-2 };
    // (bounds: a few roundings of the storage type, relative to the context's largest value)
    let mut failures = 0;
    println!(
        "{:<5} {:>5} {:>4} {:>5} {:>3} {:>5} {:>10} {:>11} {:>8} {:>10} {:>10} result",
        "dtype",
        "batch",
        "seq",
        "heads",
        "D",
        "empty",
        "fused err",
        "unfused err",
        "bound",
        "fused us",
        "unfused us"
    );
    for dtype in [DType::F16, DType::BF16] {
        for &(b, s, h, d, empty) in &cases {
            assert!(one_kernel_on(&device, dtype, d));
            // Q pre-scaled as the model's fused projection is; K, V and the bias at unit scale.
            let x = Tensor::randn(0f32, 1.0, (b * s, 3 * h * d), &device)?.to_dtype(dtype)?;
            let bias = Tensor::randn(0f32, 0.5, 3 * h * d, &device)?.to_dtype(dtype)?;
            let m = mask(&device, b, s, empty)?;
            let fused = attention(&x, &bias, &m, s, h)?;
            let plain = unfused_attention(&x, &bias, &m, s, h)?;
            let reference = unfused_attention(
                &x.to_dtype(DType::F32)?,
                &bias.to_dtype(DType::F32)?,
                &m,
                s,
                h,
            )?;
            let (err, finite) = rel_err(&fused, &reference)?;
            let (plain_err, _) = rel_err(&plain, &reference)?;
            let ok = finite
                && err <= bound(dtype)
                && err <= 1.25 * plain_err.max(1e-4)
                && fused.dims() == plain.dims();
            failures += usize::from(!ok);
            let tf = time_us(&device, TIMING, || attention(&x, &bias, &m, s, h))?;
            let tp = time_us(&device, TIMING, || unfused_attention(&x, &bias, &m, s, h))?;
            println!(
                "{:<5} {b:>5} {s:>4} {h:>5} {d:>3} {empty:>5} {err:>10.2e} {plain_err:>11.2e} {:>8.1e} {tf:>10.1} {tp:>10.1} {}",
                format!("{dtype:?}"),
                bound(dtype),
                if ok { "ok" } else { "FAILED" }
            );
        }
    }
    // The checker itself: a NaN in one key must reach the output and fail the comparison.
    let (b, s, h, d) = (2, 64, 12, 64);
    let mut v = vec![0.25f32; b * s * 3 * h * d];
    v[3 * h * d * 5 + h * d + 7] = f32::NAN;
    let x = Tensor::from_vec(v, (b * s, 3 * h * d), &device)?.to_dtype(DType::F16)?;
    let bias = Tensor::zeros(3 * h * d, DType::F16, &device)?;
    let m = mask(&device, b, s, false)?;
    let (_, finite) = rel_err(
        &attention(&x, &bias, &m, s, h)?,
        &unfused_attention(&x, &bias, &m, s, h)?,
    )?;
    println!("a NaN input is caught by the check: {}", !finite);
    failures += usize::from(finite);
    if failures > 0 {
        eprintln!("{failures} check(s) failed");
        std::process::exit(1);
    }
    println!("all attention checks passed");
    Ok(())
}
