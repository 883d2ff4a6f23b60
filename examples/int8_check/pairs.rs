//! The f16/bf16 residual + layer norm kernels in pairs (src/ops/kernels/norm_row.cuh: `_h2`,
//! `device.pair_norms`, for rows of up to 1024 values) against the kernels they replace (`_vec`,
//! the default), switched with `runner::ops::fused::use_pair_norms`, in one process on the same fresh
//! random inputs: the float output of add_layer_norm, bias_add_layer_norm and
//! add_layer_norm_packed, and the latter's int8 / E4M3 bytes and row scales, bit for bit (NaN
//! rows: NaN in the same places); the float output against candle's plain norm (the kernel_check
//! bound); a NaN input reaching only its row (values and scale); a CUDA graph's replay equal to
//! the eager call; and both kernels timed inside a graph (the cost inside a replayed forward).

use candle_core::{DType, Device, Result, Tensor};
use runner::config::EightBit;
use runner::ops::eight_bit::norm_quantize::add_layer_norm_packed;
use runner::ops::eight_bit::Packed8;
use runner::ops::fused::{
    add_layer_norm, bias_add_layer_norm, plain_add_layer_norm, plain_bias_add_layer_norm,
    use_pair_norms,
};
use runner::ops::graph::{FixedWork, GraphMode};

use crate::common::{graph_time_us, rel_err};

/// Whether `a` and `b` hold the same values bit for bit (any NaN matching any NaN).
fn same_values(a: &Tensor, b: &Tensor) -> Result<bool> {
    let a: Vec<f32> = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok(a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()))
}

/// The codes and the row scales of `bytes` (laid out as [`Packed8`]), without the padding.
fn codes_and_scales(bytes: &Tensor, rows: usize, cols: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let codes = bytes.narrow(0, 0, rows * cols)?.to_vec1::<u8>()?;
    let scales = bytes
        .narrow(0, Packed8::scales_at(rows, cols), 4 * rows)?
        .to_vec1::<u8>()?;
    Ok((codes, scales))
}

/// `f` with the replaced kernels picked, the pair kernels restored whatever `f` returns.
fn with_old<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    use_pair_norms(false);
    let r = f();
    use_pair_norms(true);
    r
}

/// The CUDA graph of `f` replayed once, against `f` called eagerly.
fn replay_equal(gpu: &Device, f: impl Fn() -> Result<Tensor>) -> Result<bool> {
    let eager = f()?;
    let work = FixedWork::new(gpu, GraphMode::Auto, "pair norm", &f);
    if !work.execution().is_graph() {
        println!("not captured as a graph: {}", work.describe());
        return Ok(false);
    }
    let replayed = work.run()?;
    gpu.synchronize()?;
    same_values(&replayed, &eager)
}

/// Returns the failures.
pub fn pair_norm_checks(gpu: &Device) -> Result<usize> {
    use_pair_norms(true);
    let eps = 1e-12;
    let mut failures = 0;
    println!(
        "{:<4} {:<5} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} result",
        "fmt",
        "dtype",
        "rows",
        "cols",
        "norm=old",
        "bias=old",
        "bytes=old",
        "vs candle",
        "replay=",
        "old us",
        "pair us",
        "oldq us",
        "pairq us"
    );
    for (format, dtype) in [
        (EightBit::Int8, DType::F16),
        (EightBit::Fp8E4M3, DType::F16),
        (EightBit::Int8, DType::BF16),
        (EightBit::Fp8E4M3, DType::BF16),
    ] {
        // DistilBERT-base at batch 64 and 16 x seq 128, MiniLM, one row, the widest pair rows,
        // and a NaN row (row 5).
        for &(m, d, nan) in &[
            (8192, 768, false),
            (2048, 768, false),
            (1, 384, false),
            (33, 1024, false),
            (77, 64, true),
        ] {
            let mut xv: Vec<f32> = Tensor::randn(0f32, 1.0, m * d, gpu)?.to_vec1()?;
            if nan {
                xv[5 * d + 3] = f32::NAN;
            }
            let x = Tensor::from_vec(xv, (m, d), gpu)?.to_dtype(dtype)?;
            let r = Tensor::randn(0f32, 1.0, (m, d), gpu)?.to_dtype(dtype)?;
            let gb = Tensor::stack(
                &[
                    Tensor::randn(1f32, 0.1, d, gpu)?,
                    Tensor::randn(0f32, 0.1, d, gpu)?,
                ],
                0,
            )?
            .to_dtype(dtype)?;
            let bias = Tensor::randn(0f32, 0.5, (1, d), gpu)?.to_dtype(dtype)?;
            let gbb = Tensor::cat(&[&gb, &bias], 0)?;
            let norm = || add_layer_norm(&x, &r, &gb, eps);
            let bias_norm = || bias_add_layer_norm(&x, &r, &gbb, eps);
            let packed = || add_layer_norm_packed(&x, &r, &gb, eps, format);
            let (y, yb, (yq, pq)) = (norm()?, bias_norm()?, packed()?);
            let (y_old, yb_old, (yq_old, pq_old)) =
                with_old(|| Ok((norm()?, bias_norm()?, packed()?)))?;
            let norm_same = same_values(&y, &y_old)? && same_values(&yq, &y)?;
            let bias_same = same_values(&yb, &yb_old)?;
            let (codes, scales) = codes_and_scales(pq.bytes(), m, d)?;
            let bytes_same = same_values(&yq_old, &y_old)?
                && (codes.clone(), scales.clone()) == codes_and_scales(pq_old.bytes(), m, d)?;
            let scales_at = Packed8::scales_at(m, d);
            let codes_then_scales = || {
                let b = packed()?.1.bytes().clone();
                Tensor::cat(&[b.narrow(0, 0, m * d)?, b.narrow(0, scales_at, 4 * m)?], 0)
            };
            let replay = replay_equal(gpu, codes_then_scales)?
                && replay_equal(gpu, || Ok(packed()?.0))?
                && replay_equal(gpu, norm)?;
            // The kernel_check bound: one rounding step of the storage type.
            let bound = if dtype == DType::F16 { 2e-3 } else { 1.6e-2 };
            let mut ok = norm_same && bias_same && bytes_same && replay;
            let vs_candle = if nan {
                let rows: Vec<Vec<f32>> = y.to_dtype(DType::F32)?.to_vec2()?;
                let only_row = rows
                    .iter()
                    .enumerate()
                    .all(|(i, v)| v.iter().all(|x| x.is_nan() == (i == 5)));
                let s: Vec<f32> = scales
                    .chunks(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let scale_row = s.iter().enumerate().all(|(i, v)| v.is_nan() == (i == 5));
                println!("a NaN input reaches its row (values {only_row}, scale {scale_row}) and only it");
                ok &= only_row && scale_row;
                f32::NAN
            } else {
                let (e, finite) = rel_err(&y, &plain_add_layer_norm(&x, &r, &gb, eps)?)?;
                let (eb, finite_b) = rel_err(&yb, &plain_bias_add_layer_norm(&x, &r, &gbb, eps)?)?;
                ok &= finite && finite_b && e.max(eb) <= bound;
                e.max(eb)
            };
            let (t_old, t_pair, tq_old, tq_pair) = if m >= 2048 {
                let q = || Ok(packed()?.0);
                let (a, c) = with_old(|| {
                    Ok((
                        graph_time_us(gpu, "norm", norm)?,
                        graph_time_us(gpu, "norm+q", q)?,
                    ))
                })?;
                (
                    a,
                    graph_time_us(gpu, "norm", norm)?,
                    c,
                    graph_time_us(gpu, "norm+q", q)?,
                )
            } else {
                (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
            };
            println!(
                "{:<4} {:<5} {m:>5} {d:>5} {norm_same:>9} {bias_same:>9} {bytes_same:>9} {vs_candle:>9.2e} {replay:>9} {t_old:>8.1} {t_pair:>8.1} {tq_old:>8.1} {tq_pair:>8.1} {}",
                format.name(),
                format!("{dtype:?}"),
                if ok { "ok" } else { "FAILED" }
            );
            failures += usize::from(!ok);
        }
    }
    Ok(failures)
}
