//! Checks the W8A8 tensor-core linears, int8 (src/ops/eight_bit/int8_gemm.rs: runner quantize kernel,
//! cuBLASLt int8 GEMM, runner dequant kernel) and FP8 E4M3 (src/ops/eight_bit/fp8_gemm.rs: runner quantize
//! kernel, cuBLASLt FP8 GEMM with per-token x per-channel scales and the bias in its epilogue; f16
//! and bf16 only), against the CPU numerics reference
//! (src/model/parts/w8a8.rs) on fresh random inputs, in f32, f16 and bf16, with and without GELU, at
//! DistilBERT-base's shapes and awkward ones; a NaN must reach the output. Also times it against
//! the float path it replaces (cuBLAS GEMM + the runner's bias kernel) in the same dtype.
//!
//!     cargo run --release --features cuda --example int8_check
//!
//! Then the FFN with FFN-out's input quantized inside FFN-in's GELU kernel (the default,
//! `device.fuse_quantization`) against the two-pass GPU path (same formulas: the same bytes are
//! expected) and the CPU reference, timed against the two-pass path; a NaN must reach its row.
//! Likewise the residual + layer norm that quantizes its output for the next 8-bit layer
//! (src/ops/eight_bit/norm_quantize.rs): its float output bit for bit the plain norm kernel's, the layer
//! reading its bytes equal to the layer quantizing the norm's output itself.
//!
//! FP8 runs twice: as the cells run it by default (f32 accumulation) and with cuBLASLt's fast
//! accumulation (`device.fp8_fast_accumulation`), held to a 4x looser bound (its partial sums keep
//! fewer bits: the error grows with K).
//!
//! Error: max |gpu - cpu| / max |cpu|. Both quantize to the same int8 values (same formulas); the
//! GPU accumulates exactly in int32 (FP8: in f32) where the CPU sums in f32, and both round once to
//! the dtype (FP8 with GELU: the GEMM's output is rounded once more before bias + GELU).

use candle_core::{DType, Device, Module, Result, Tensor};
use runner::config::EightBit;
use runner::model::parts::w8a8::EightBitLinear;

mod common;
#[path = "int8_check/pairs.rs"]
mod pairs;
use common::{across_rounding_bound, linear_bound, rel_err, time_us, Timing};
use pairs::pair_norm_checks;

const TIMING: Timing = Timing {
    samples: 20,
    calls: 10,
};

/// How much looser the bound is for FP8 with fast accumulation than with f32 accumulation.
const FAST_ACCUMULATION_FACTOR: f32 = 4.0;

fn main() -> Result<()> {
    let gpu = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    let cpu = Device::Cpu;
    // `--pairs`: only the pair norm kernels against the ones they replace (pair_norm_checks).
    if std::env::args().any(|a| a == "--pairs") {
        let failures = pair_norm_checks(&gpu)?;
        if failures > 0 {
            eprintln!("{failures} check(s) failed");
            std::process::exit(1);
        }
        println!("all pair norm checks passed");
        return Ok(());
    }
    // (rows, in, out): DistilBERT-base's four linears at batch 64 x 128 and 16 x 128, and odd ones.
    let shapes = [
        (8192, 768, 2304),
        (8192, 768, 768),
        (8192, 768, 3072),
        (8192, 3072, 768),
        (2048, 768, 3072),
        (2048, 3072, 768),
        (128, 768, 768),
        (3, 64, 12),
    ];
    let bound = linear_bound;
    let mut failures = 0;
    println!(
        "{:<4} {:<5} {:>5} {:>5} {:>5} {:>5} {:>11} {:>8} {:>9} {:>9} {:>7} result",
        "fmt",
        "dtype",
        "rows",
        "in",
        "out",
        "gelu",
        "max rel err",
        "bound",
        "8-bit us",
        "float us",
        "speedup"
    );
    let fp8_widths =
        |k: usize| k.is_multiple_of(runner::ops::eight_bit::fp8_gemm::FP8_WIDTH_MULTIPLE);
    for (format, dtype) in [
        (EightBit::Int8, DType::F16),
        (EightBit::Int8, DType::BF16),
        (EightBit::Int8, DType::F32),
        (EightBit::Fp8E4M3, DType::F16),
        (EightBit::Fp8E4M3, DType::BF16),
    ] {
        for &(m, k, n) in &shapes {
            if format == EightBit::Fp8E4M3 && !fp8_widths(k) {
                continue; // refused before a cell runs (src/model/mod.rs fp8_on_tensor_cores)
            }
            for gelu in [false, true] {
                let w = Tensor::randn(0f32, 0.05, (n, k), &cpu)?;
                let b = Tensor::randn(0f32, 0.1, n, &cpu)?.to_dtype(dtype)?;
                let x = Tensor::randn(0f32, 1.0, (m, k), &cpu)?.to_dtype(dtype)?;
                let reference = EightBitLinear::quantize(&w, b.clone(), format)?;
                let mut on_gpu =
                    EightBitLinear::quantize(&w.to_device(&gpu)?, b.to_device(&gpu)?, format)?;
                assert!(on_gpu.on_tensor_cores());
                let xg = x.to_device(&gpu)?;
                let want = reference.forward(&x, gelu)?;
                let got = on_gpu.forward(&xg, gelu)?;
                let (err, finite) = rel_err(&got, &want)?;
                let ok = finite && err <= bound(dtype) && got.dims() == want.dims();
                failures += usize::from(!ok);
                let float = candle_nn::Linear::new(
                    w.to_dtype(dtype)?.to_device(&gpu)?,
                    Some(b.to_device(&gpu)?),
                );
                let t8 = time_us(&gpu, TIMING, || on_gpu.forward(&xg, gelu))?;
                let tf = time_us(&gpu, TIMING, || {
                    let y = float.forward(&xg)?;
                    if gelu {
                        y.gelu_erf()
                    } else {
                        Ok(y)
                    }
                })?;
                println!(
                    "{:<4} {:<5} {m:>5} {k:>5} {n:>5} {gelu:>5} {err:>11.2e} {:>8.1e} {t8:>9.1} {tf:>9.1} {:>6.2}x {}",
                    format.name(),
                    format!("{dtype:?}"),
                    bound(dtype),
                    tf / t8,
                    if ok { "ok" } else { "FAILED" }
                );
                // FP8 with cuBLASLt's fast accumulation (device.fp8_fast_accumulation), against
                // the f32-accumulating reference: its partial sums keep fewer bits, so its error
                // grows with K (H200, f16: 1.5e-3 at K = 768, 3.7e-3..4.0e-3 at K = 3072, past the
                // f32 bound of 2e-3). Held to FAST_ACCUMULATION_FACTOR times that bound: a wrong
                // layout or scale errs by O(1), far beyond either.
                if on_gpu.set_fp8_fast_accumulation(true) {
                    let got = on_gpu.forward(&xg, gelu)?;
                    let (err, finite) = rel_err(&got, &want)?;
                    let bound = FAST_ACCUMULATION_FACTOR * bound(dtype);
                    let ok = finite && err <= bound && got.dims() == want.dims();
                    failures += usize::from(!ok);
                    let t8 = time_us(&gpu, TIMING, || on_gpu.forward(&xg, gelu))?;
                    println!(
                        "{:<4} {:<5} {m:>5} {k:>5} {n:>5} {gelu:>5} {err:>11.2e} {:>8.1e} {t8:>9.1} {tf:>9.1} {:>6.2}x {} (fast accumulation)",
                        format.name(),
                        format!("{dtype:?}"),
                        bound,
                        tf / t8,
                        if ok { "ok" } else { "FAILED" }
                    );
                }
            }
        }
    }
    failures += ffn_checks(&gpu, &cpu)?;
    failures += norm_checks(&gpu, &cpu)?;
    failures += pair_norm_checks(&gpu)?;
    // The checker itself: a NaN input must reach the output.
    for format in [EightBit::Int8, EightBit::Fp8E4M3] {
        let w = Tensor::randn(0f32, 0.05, (16, 32), &cpu)?;
        let layer = EightBitLinear::quantize(
            &w.to_device(&gpu)?,
            Tensor::zeros(16, DType::F16, &gpu)?,
            format,
        )?;
        let mut v = vec![0.5f32; 4 * 32];
        v[40] = f32::NAN;
        let x = Tensor::from_vec(v, (4, 32), &gpu)?.to_dtype(DType::F16)?;
        let y: Vec<f32> = layer
            .forward(&x, false)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let caught = y[16..32].iter().all(|v| v.is_nan()) && y[..16].iter().all(|v| v.is_finite());
        println!(
            "{}: a NaN input reaches its row's output (and only it): {caught}",
            format.name()
        );
        failures += usize::from(!caught);
    }
    if failures > 0 {
        eprintln!("{failures} check(s) failed");
        std::process::exit(1);
    }
    println!("all int8 and fp8 checks passed");
    Ok(())
}

/// The fused FFN (lin2 reading the int8/E4M3 bytes lin1's GELU kernel wrote) against the two-pass
/// GPU path and the CPU reference; returns the failures.
fn ffn_checks(gpu: &Device, cpu: &Device) -> Result<usize> {
    let bound = across_rounding_bound;
    let mut failures = 0;
    println!(
        "{:<4} {:<5} {:>5} {:>5} {:>5} {:>11} {:>11} {:>9} {:>9} {:>9} {:>7} result",
        "fmt",
        "dtype",
        "rows",
        "dim",
        "ffn",
        "vs cpu",
        "vs 2-pass",
        "identical",
        "fused us",
        "2-pass us",
        "speedup"
    );
    for (format, dtype) in [
        (EightBit::Int8, DType::F16),
        (EightBit::Int8, DType::BF16),
        (EightBit::Int8, DType::F32),
        (EightBit::Fp8E4M3, DType::F16),
        (EightBit::Fp8E4M3, DType::BF16),
    ] {
        // DistilBERT-base's FFN at batch 64 and 16 x seq 128, MiniLM's, one row, and a NaN row.
        for &(m, d, h, nan) in &[
            (8192, 768, 3072, false),
            (2048, 768, 3072, false),
            (1, 384, 1536, false),
            (77, 64, 128, true),
        ] {
            let w1 = Tensor::randn(0f32, 0.05, (h, d), cpu)?;
            let b1 = Tensor::randn(0f32, 0.1, h, cpu)?.to_dtype(dtype)?;
            let w2 = Tensor::randn(0f32, 0.05, (d, h), cpu)?;
            let b2 = Tensor::randn(0f32, 0.1, d, cpu)?.to_dtype(dtype)?;
            let mut xv: Vec<f32> = Tensor::randn(0f32, 1.0, (m, d), cpu)?
                .flatten_all()?
                .to_vec1()?;
            if nan {
                xv[5 * d + 3] = f32::NAN;
            }
            let x = Tensor::from_vec(xv, (m, d), cpu)?.to_dtype(dtype)?;
            let (r1, r2) = (
                EightBitLinear::quantize(&w1, b1.clone(), format)?,
                EightBitLinear::quantize(&w2, b2.clone(), format)?,
            );
            let (g1, g2) = (
                EightBitLinear::quantize(&w1.to_device(gpu)?, b1.to_device(gpu)?, format)?,
                EightBitLinear::quantize(&w2.to_device(gpu)?, b2.to_device(gpu)?, format)?,
            );
            if !g1.on_tensor_cores() {
                continue; // FP8 in f32: the reference runs, no fused kernel (src/model/parts/w8a8.rs)
            }
            let xg = x.to_device(gpu)?;
            let fused = |x: &Tensor| -> Result<Tensor> {
                let packed = g1
                    .forward_gelu_packed(x, None, &g2)?
                    .ok_or_else(|| candle_core::Error::msg("no fused kernel for this FFN"))?;
                g2.forward_packed(&packed)
            };
            let two_pass = |x: &Tensor| g2.forward(&g1.forward(x, true)?, false);
            let got = fused(&xg)?;
            let want = r2.forward(&r1.forward(&x, true)?, false)?;
            let plain = two_pass(&xg)?;
            let ok = if nan {
                // The NaN's row (and only it) comes out NaN, on both paths.
                let rows: Vec<Vec<f32>> = got.to_dtype(DType::F32)?.to_vec2()?;
                let caught = rows
                    .iter()
                    .enumerate()
                    .all(|(r, v)| v.iter().all(|x| x.is_nan() == (r == 5)));
                println!(
                    "{:<4} {:<5} {m:>5} {d:>5} {h:>5} a NaN input reaches its row's output (and only it): {caught}",
                    format.name(),
                    format!("{dtype:?}")
                );
                caught
            } else {
                let (e_ref, finite) = rel_err(&got, &want)?;
                let (e_two, _) = rel_err(&got, &plain)?;
                let tf = time_us(gpu, TIMING, || fused(&xg))?;
                let tp = time_us(gpu, TIMING, || two_pass(&xg))?;
                let ok = finite
                    && e_ref <= bound(format, dtype)
                    && e_two <= bound(format, dtype) / 100.0;
                println!(
                    "{:<4} {:<5} {m:>5} {d:>5} {h:>5} {e_ref:>11.2e} {e_two:>11.2e} {:>9} {tf:>9.1} {tp:>9.1} {:>6.2}x {}",
                    format.name(),
                    format!("{dtype:?}"),
                    e_two == 0.0,
                    tp / tf,
                    if ok { "ok" } else { "FAILED" }
                );
                ok
            };
            failures += usize::from(!ok);
        }
    }
    Ok(failures)
}

/// The residual + layer norm that also writes its output quantized (src/ops/eight_bit/norm_quantize.rs),
/// read by an 8-bit layer, against the norm kernel followed by that layer quantizing its input in
/// a pass (the same bytes: the same outputs are expected), and against the CPU reference layer on
/// the norm kernel's own output (the same bytes again; the norm itself is checked against
/// candle's in kernel_check: with candle's CPU norm as input, values one f16 step apart landed on
/// either side of an int8 rounding boundary, 3.7e-3 at 8192 x 768); timed against the two-pass
/// path. Returns the failures.
fn norm_checks(gpu: &Device, cpu: &Device) -> Result<usize> {
    use runner::ops::eight_bit::norm_quantize::add_layer_norm_packed;
    use runner::ops::fused::add_layer_norm;
    let eps = 1e-12;
    let mut failures = 0;
    println!(
        "{:<4} {:<5} {:>5} {:>5} {:>6} {:>11} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} result",
        "fmt",
        "dtype",
        "rows",
        "cols",
        "offset",
        "vs cpu",
        "norm same",
        "vs 2-pass",
        "norm us",
        "+quant us",
        "fused us",
        "2-pass us"
    );
    for (format, dtype) in [
        (EightBit::Int8, DType::F16),
        (EightBit::Int8, DType::BF16),
        (EightBit::Int8, DType::F32),
        (EightBit::Fp8E4M3, DType::F16),
        (EightBit::Fp8E4M3, DType::BF16),
    ] {
        // DistilBERT-base at batch 64 and 16 x seq 128, MiniLM, one row, a start off the 16-byte
        // grid (the one-value kernel), and a NaN row.
        for &(m, d, offset, nan) in &[
            (8192, 768, 0, false),
            (2048, 768, 0, false),
            (1, 384, 0, false),
            (37, 48, 1, false),
            (77, 64, 0, true),
        ] {
            let mut xv: Vec<f32> = Tensor::randn(0f32, 1.0, m * d + offset, cpu)?.to_vec1()?;
            if nan {
                xv[offset + 5 * d + 3] = f32::NAN;
            }
            let x = Tensor::from_vec(xv, m * d + offset, cpu)?
                .to_dtype(dtype)?
                .narrow(0, offset, m * d)?
                .reshape((m, d))?;
            let r = Tensor::randn(0f32, 1.0, (m, d), cpu)?.to_dtype(dtype)?;
            let gb = Tensor::stack(
                &[
                    Tensor::randn(1f32, 0.1, d, cpu)?,
                    Tensor::randn(0f32, 0.1, d, cpu)?,
                ],
                0,
            )?
            .to_dtype(dtype)?;
            let w = Tensor::randn(0f32, 0.05, (256, d), cpu)?;
            let b = Tensor::randn(0f32, 0.1, 256, cpu)?.to_dtype(dtype)?;
            let reference = EightBitLinear::quantize(&w, b.clone(), format)?;
            let layer = EightBitLinear::quantize(&w.to_device(gpu)?, b.to_device(gpu)?, format)?;
            if !layer.on_tensor_cores() {
                continue; // FP8 in f32: the reference runs, no fused kernel
            }
            // On the GPU, x keeps its offset: the narrow is a view into a larger buffer.
            let x_gpu = Tensor::from_vec(
                x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
                m * d,
                cpu,
            )?;
            let xg = Tensor::cat(&[&Tensor::zeros(offset, DType::F32, cpu)?, &x_gpu], 0)?
                .to_dtype(dtype)?
                .to_device(gpu)?
                .narrow(0, offset, m * d)?
                .reshape((m, d))?;
            let (rg, gbg) = (r.to_device(gpu)?, gb.to_device(gpu)?);
            let fused = || -> Result<(Tensor, Tensor)> {
                let (y, packed) = add_layer_norm_packed(&xg, &rg, &gbg, eps, format)?;
                Ok((y, layer.forward_packed(&packed)?))
            };
            let two_pass = || -> Result<(Tensor, Tensor)> {
                let y = add_layer_norm(&xg, &rg, &gbg, eps)?;
                let out = layer.forward(&y, false)?;
                Ok((y, out))
            };
            let ((y_fused, got), (y_plain, plain)) = (fused()?, two_pass()?);
            let (norm_diff, _) = rel_err(&y_fused, &y_plain)?;
            let ok = if nan {
                let rows: Vec<Vec<f32>> = got.to_dtype(DType::F32)?.to_vec2()?;
                let caught = rows
                    .iter()
                    .enumerate()
                    .all(|(r, v)| v.iter().all(|x| x.is_nan() == (r == 5)));
                println!(
                    "{:<4} {:<5} {m:>5} {d:>5} {offset:>6} a NaN input reaches its row's output (and only it): {caught}",
                    format.name(),
                    format!("{dtype:?}")
                );
                caught
            } else {
                let want = reference.forward(&y_plain.to_device(cpu)?, false)?;
                let (e_ref, finite) = rel_err(&got, &want)?;
                let (e_two, _) = rel_err(&got, &plain)?;
                let t_norm = time_us(gpu, TIMING, || add_layer_norm(&xg, &rg, &gbg, eps))?;
                let t_norm_q = time_us(gpu, TIMING, || {
                    Ok(add_layer_norm_packed(&xg, &rg, &gbg, eps, format)?.0)
                })?;
                let t_fused = time_us(gpu, TIMING, || Ok(fused()?.1))?;
                let t_two = time_us(gpu, TIMING, || Ok(two_pass()?.1))?;
                let ok = finite
                    && norm_diff == 0.0
                    && e_ref <= linear_bound(dtype)
                    && e_two <= linear_bound(dtype) / 100.0;
                println!(
                    "{:<4} {:<5} {m:>5} {d:>5} {offset:>6} {e_ref:>11.2e} {:>9} {e_two:>11.2e} {t_norm:>9.1} {t_norm_q:>9.1} {t_fused:>9.1} {t_two:>9.1} {}",
                    format.name(),
                    format!("{dtype:?}"),
                    norm_diff == 0.0,
                    if ok { "ok" } else { "FAILED" }
                );
                ok
            };
            failures += usize::from(!ok);
        }
    }
    Ok(failures)
}
