//! Checks every CUTLASS GEMM of the runner (src/ops/kernels/cutlass/, `device.gemm_library =
//! "cutlass"`) on a Hopper GPU against the CPU numerics reference, on fresh random inputs:
//!
//! 1. every W8A8 linear (int8, E4M3; f16, bf16 out; with and without erf GELU) at every linear
//!    shape of DistilBERT/BERT-base (Q/K/V 768 -> 2304, 768 -> 768, 768 -> 3072, 3072 -> 768) at
//!    16 x 128 and 64 x 128 tokens, and the decoder linears of SmolLM2-135M, Qwen2.5-0.5B and
//!    Llama-3.2-1B (Q, K/V, O, gate/up, down) at 16 tokens (a decode step of 16 sequences) and 512
//!    (a prefill); each timed against the cuBLASLt path it replaces, in the same process;
//! 2. FFN-in writing FFN-out's packed 8-bit input (CUTLASS GEMM with bias + GELU, then the row
//!    quantization pass) and FFN-out reading it, against the CPU reference;
//! 3. the float FFN-in (f16/bf16 GEMM with bias + erf GELU in the epilogue) against f32 on the
//!    CPU, timed against cuBLAS + the runner's bias + GELU kernel;
//! 4. a NaN input reaching its row's output, and only it, in every kernel family;
//! 5. DistilBERT-base (random weights) with `device.gemm_library = "cutlass"` in fp16, bf16,
//!    int8-fp16, fp8-fp16, int8-bf16, fp8-bf16: the CUDA-graph replay against the eager pass on
//!    fresh batches (must be equal: same kernels, same order), as examples/graph_check.rs does,
//!    with the per-linear GEMMs the record names.
//!
//!     cargo run --release --features cuda --example cutlass_check
//!
//! Error: max |gpu - cpu| / max |cpu|, bounds as examples/int8_check.rs (the same quantized bytes;
//! int32 / f32 accumulation against the CPU's f32 sums; one rounding to the dtype). Exits 1 on any
//! failure.

use candle_core::{DType, Device, Module, Result, Tensor};
use runner::config::{EightBit, GemmLibrary};
use runner::model::parts::w8a8::EightBitLinear;

mod common;
use common::{across_rounding_bound, linear_bound, rel_err, replay_against_eager, time_us, Timing};

const TIMING: Timing = Timing {
    samples: 15,
    calls: 10,
};

/// (model, rows, in, out) of every linear checked.
fn shapes() -> Vec<(&'static str, usize, usize, usize)> {
    let mut v = Vec::new();
    for rows in [2048, 8192] {
        for (k, n) in [(768, 2304), (768, 768), (768, 3072), (3072, 768)] {
            v.push(("distilbert/bert-base", rows, k, n));
        }
    }
    // (name, hidden, q out, k/v out, intermediate)
    for (name, d, kv, ffn) in [
        ("smollm2-135m", 576, 192, 1536),
        ("qwen2.5-0.5b", 896, 128, 4864),
        ("llama-3.2-1b", 2048, 512, 8192),
    ] {
        for rows in [16, 512] {
            for (k, n) in [(d, d), (d, kv), (d, ffn), (ffn, d)] {
                v.push((name, rows, k, n));
            }
        }
    }
    v
}

fn main() -> Result<()> {
    if !runner::ops::cutlass::compiled() {
        eprintln!(
            "cutlass_check: this binary has no CUTLASS GEMMs ({})",
            runner::ops::cutlass::BUILD
        );
        std::process::exit(2);
    }
    let gpu = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    let cpu = Device::Cpu;
    println!("CUTLASS: {}", runner::ops::cutlass::BUILD);
    let mut failures = 0;
    println!(
        "{:<20} {:<4} {:<5} {:>5} {:>5} {:>5} {:>5} {:>11} {:>8} {:>10} {:>11} {:>7} result",
        "model",
        "fmt",
        "dtype",
        "rows",
        "in",
        "out",
        "gelu",
        "max rel err",
        "bound",
        "cutlass us",
        "cublaslt us",
        "speedup"
    );
    for (format, dtype) in [
        (EightBit::Int8, DType::F16),
        (EightBit::Int8, DType::BF16),
        (EightBit::Fp8E4M3, DType::F16),
        (EightBit::Fp8E4M3, DType::BF16),
    ] {
        for (model, m, k, n) in shapes() {
            for gelu in [false, true] {
                let w = Tensor::randn(0f32, 0.05, (n, k), &cpu)?;
                let b = Tensor::randn(0f32, 0.1, n, &cpu)?.to_dtype(dtype)?;
                let x = Tensor::randn(0f32, 1.0, (m, k), &cpu)?.to_dtype(dtype)?;
                let reference = EightBitLinear::quantize(&w, b.clone(), format)?;
                let mut layer =
                    EightBitLinear::quantize(&w.to_device(&gpu)?, b.to_device(&gpu)?, format)?;
                let xg = x.to_device(&gpu)?;
                let t_lt = time_us(&gpu, TIMING, || layer.forward(&xg, gelu))?;
                layer.set_gemm_library(GemmLibrary::Cutlass);
                if let Err(why) = layer.cutlass(gelu) {
                    println!("{model:<20} {} {dtype:?} {m} {k} {n} {gelu}: no CUTLASS kernel: {why} FAILED", format.name());
                    failures += 1;
                    continue;
                }
                let got = layer.forward(&xg, gelu)?;
                let want = reference.forward(&x, gelu)?;
                let (err, finite) = rel_err(&got, &want)?;
                let bound = linear_bound(dtype);
                let ok = finite && err <= bound && got.dims() == want.dims();
                failures += usize::from(!ok);
                let t_cu = time_us(&gpu, TIMING, || layer.forward(&xg, gelu))?;
                println!(
                    "{model:<20} {:<4} {:<5} {m:>5} {k:>5} {n:>5} {gelu:>5} {err:>11.2e} {bound:>8.1e} {t_cu:>10.1} {t_lt:>11.1} {:>6.2}x {}",
                    format.name(),
                    format!("{dtype:?}"),
                    t_lt / t_cu,
                    if ok { "ok" } else { "FAILED" }
                );
            }
        }
    }
    failures += ffn_checks(&gpu, &cpu)?;
    failures += float_checks(&gpu, &cpu)?;
    failures += nan_checks(&gpu, &cpu)?;
    failures += graph_checks(&gpu)?;
    if failures > 0 {
        eprintln!("cutlass_check: {failures} check(s) failed");
        std::process::exit(1);
    }
    println!("cutlass_check: all passed");
    Ok(())
}

/// FFN-in (GELU, writing FFN-out's packed input) then FFN-out, both through CUTLASS.
fn ffn_checks(gpu: &Device, cpu: &Device) -> Result<usize> {
    let mut failures = 0;
    println!(
        "{:<4} {:<5} {:>5} {:>5} {:>5} {:>11} {:>8} {:>10} {:>11} {:>7} result (FFN, packed between)",
        "fmt", "dtype", "rows", "dim", "ffn", "vs cpu", "bound", "cutlass us", "cublaslt us", "speedup"
    );
    for (format, dtype) in [
        (EightBit::Int8, DType::F16),
        (EightBit::Int8, DType::BF16),
        (EightBit::Fp8E4M3, DType::F16),
        (EightBit::Fp8E4M3, DType::BF16),
    ] {
        for &(m, d, h) in &[(8192, 768, 3072), (2048, 768, 3072), (512, 896, 4864)] {
            let w1 = Tensor::randn(0f32, 0.05, (h, d), cpu)?;
            let b1 = Tensor::randn(0f32, 0.1, h, cpu)?.to_dtype(dtype)?;
            let w2 = Tensor::randn(0f32, 0.05, (d, h), cpu)?;
            let b2 = Tensor::randn(0f32, 0.1, d, cpu)?.to_dtype(dtype)?;
            let x = Tensor::randn(0f32, 1.0, (m, d), cpu)?.to_dtype(dtype)?;
            let (r1, r2) = (
                EightBitLinear::quantize(&w1, b1.clone(), format)?,
                EightBitLinear::quantize(&w2, b2.clone(), format)?,
            );
            let (mut g1, mut g2) = (
                EightBitLinear::quantize(&w1.to_device(gpu)?, b1.to_device(gpu)?, format)?,
                EightBitLinear::quantize(&w2.to_device(gpu)?, b2.to_device(gpu)?, format)?,
            );
            if !g1.gelu_packs_for(&g2) {
                // FFN-in wider than the fused GELU kernel's row (FUSED_ROW_MAX): the two layers
                // run in turn, each checked above.
                println!(
                    "{} {dtype:?} {m} {d} {h}: no packed FFN (wider than FUSED_ROW_MAX)",
                    format.name()
                );
                continue;
            }
            let xg = x.to_device(gpu)?;
            let fused = |g1: &EightBitLinear, g2: &EightBitLinear| -> Result<Tensor> {
                let packed = g1
                    .forward_gelu_packed(&xg, None, g2)?
                    .ok_or_else(|| candle_core::Error::msg("no packed FFN for this shape"))?;
                g2.forward_packed(&packed)
            };
            let t_lt = time_us(gpu, TIMING, || fused(&g1, &g2))?;
            g1.set_gemm_library(GemmLibrary::Cutlass);
            g2.set_gemm_library(GemmLibrary::Cutlass);
            let got = fused(&g1, &g2)?;
            let want = r2.forward(&r1.forward(&x, true)?, false)?;
            let (err, finite) = rel_err(&got, &want)?;
            let bound = across_rounding_bound(format, dtype);
            let ok = finite && err <= bound;
            failures += usize::from(!ok);
            let t_cu = time_us(gpu, TIMING, || fused(&g1, &g2))?;
            println!(
                "{:<4} {:<5} {m:>5} {d:>5} {h:>5} {err:>11.2e} {bound:>8.1e} {t_cu:>10.1} {t_lt:>11.1} {:>6.2}x {}",
                format.name(),
                format!("{dtype:?}"),
                t_lt / t_cu,
                if ok { "ok" } else { "FAILED" }
            );
        }
    }
    Ok(failures)
}

/// The float FFN-in: f16/bf16 GEMM + bias + erf GELU in one CUTLASS kernel against f32 on the CPU.
fn float_checks(gpu: &Device, cpu: &Device) -> Result<usize> {
    let mut failures = 0;
    println!(
        "{:<5} {:>5} {:>5} {:>5} {:>11} {:>8} {:>10} {:>11} {:>7} result (float bias + GELU GEMM)",
        "dtype", "rows", "in", "out", "vs f32", "bound", "cutlass us", "cublas us", "speedup"
    );
    for dtype in [DType::F16, DType::BF16] {
        for &(m, k, n) in &[
            (8192, 768, 3072),
            (2048, 768, 3072),
            (512, 2048, 8192),
            (16, 576, 1536),
        ] {
            let w = Tensor::randn(0f32, 0.05, (n, k), cpu)?.to_dtype(dtype)?;
            let b = Tensor::randn(0f32, 0.1, n, cpu)?.to_dtype(dtype)?;
            let x = Tensor::randn(0f32, 1.0, (m, k), cpu)?.to_dtype(dtype)?;
            // The reference: the same rounded inputs, in f32.
            let f = |t: &Tensor| t.to_dtype(DType::F32);
            let want = f(&x)?
                .matmul(&f(&w)?.t()?)?
                .broadcast_add(&f(&b)?)?
                .gelu_erf()?;
            let (wg, bg, xg) = (w.to_device(gpu)?, b.to_device(gpu)?, x.to_device(gpu)?);
            let got = runner::ops::float_gemm::linear_bias_gelu(&xg, &wg, &bg)?;
            let (err, finite) = rel_err(&got, &want)?;
            let bound = linear_bound(dtype);
            let ok = finite && err <= bound;
            failures += usize::from(!ok);
            let plain = candle_nn::Linear::new(wg.clone(), None);
            let t_cu = time_us(gpu, TIMING, || {
                runner::ops::float_gemm::linear_bias_gelu(&xg, &wg, &bg)
            })?;
            let t_lt = time_us(gpu, TIMING, || {
                runner::ops::fused::bias_act(&plain.forward(&xg)?, &bg, true)
            })?;
            println!(
                "{:<5} {m:>5} {k:>5} {n:>5} {err:>11.2e} {bound:>8.1e} {t_cu:>10.1} {t_lt:>11.1} {:>6.2}x {}",
                format!("{dtype:?}"),
                t_lt / t_cu,
                if ok { "ok" } else { "FAILED" }
            );
        }
    }
    Ok(failures)
}

/// A NaN in one input row reaches that row's output, and only it: every 8-bit kernel family
/// (plain, GELU, packed FFN) and the float GELU GEMM.
fn nan_checks(gpu: &Device, cpu: &Device) -> Result<usize> {
    let mut failures = 0;
    let (m, k, n) = (300, 256, 512);
    let row = 137;
    let mut v: Vec<f32> = Tensor::randn(0f32, 1.0, (m, k), cpu)?
        .flatten_all()?
        .to_vec1()?;
    v[row * k + 11] = f32::NAN;
    let x = Tensor::from_vec(v, (m, k), gpu)?;
    let only_row = |t: &Tensor| -> Result<bool> {
        let rows: Vec<Vec<f32>> = t.to_dtype(DType::F32)?.to_vec2()?;
        Ok(rows
            .iter()
            .enumerate()
            .all(|(r, v)| v.iter().all(|x| x.is_nan() == (r == row))))
    };
    for dtype in [DType::F16, DType::BF16] {
        let x = x.to_dtype(dtype)?;
        for format in [EightBit::Int8, EightBit::Fp8E4M3] {
            let w1 = Tensor::randn(0f32, 0.05, (n, k), gpu)?;
            let w2 = Tensor::randn(0f32, 0.05, (k, n), gpu)?;
            let b1 = Tensor::zeros(n, dtype, gpu)?;
            let b2 = Tensor::zeros(k, dtype, gpu)?;
            let mut l1 = EightBitLinear::quantize(&w1, b1, format)?;
            let mut l2 = EightBitLinear::quantize(&w2, b2, format)?;
            l1.set_gemm_library(GemmLibrary::Cutlass);
            l2.set_gemm_library(GemmLibrary::Cutlass);
            for gelu in [false, true] {
                let caught = only_row(&l1.forward(&x, gelu)?)?;
                println!(
                    "{} {dtype:?} gelu {gelu}: a NaN input reaches its row's output (and only it): {caught}",
                    format.name()
                );
                failures += usize::from(!caught);
            }
            let packed = l1
                .forward_gelu_packed(&x, None, &l2)?
                .ok_or_else(|| candle_core::Error::msg("no packed FFN"))?;
            let caught = only_row(&l2.forward_packed(&packed)?)?;
            println!(
                "{} {dtype:?} FFN packed between: a NaN input reaches its row's output (and only it): {caught}",
                format.name()
            );
            failures += usize::from(!caught);
        }
        let w = Tensor::randn(0f32, 0.05, (n, k), gpu)?.to_dtype(dtype)?;
        let b = Tensor::zeros(n, dtype, gpu)?;
        let caught = only_row(&runner::ops::float_gemm::linear_bias_gelu(&x, &w, &b)?)?;
        println!("float {dtype:?} bias + GELU GEMM: a NaN input reaches its row's output (and only it): {caught}");
        failures += usize::from(!caught);
    }
    Ok(failures)
}

/// The whole model through CUTLASS: graph replay equal to eager on fresh batches, finite logits.
fn graph_checks(gpu: &Device) -> Result<usize> {
    use runner::model::{encoder, Encoder, Head, Numerics, Preset};
    use runner::ops::graph::GraphMode;
    let preset = Preset::DISTILBERT_BASE_UNCASED;
    let tensors = encoder::random_tensors(&preset, 0).map_err(candle_core::Error::msg)?;
    let mut failures = 0;
    for (name, dtype, eight_bit) in [
        ("fp16", DType::F16, None),
        ("bf16", DType::BF16, None),
        ("int8-fp16", DType::F16, Some(EightBit::Int8)),
        ("fp8-fp16", DType::F16, Some(EightBit::Fp8E4M3)),
        ("int8-bf16", DType::BF16, Some(EightBit::Int8)),
        ("fp8-bf16", DType::BF16, Some(EightBit::Fp8E4M3)),
    ] {
        let vb = candle_nn::VarBuilder::from_tensors(tensors.clone(), dtype, gpu);
        let numerics = Numerics {
            float: dtype,
            quant: None,
            eight_bit,
        };
        let mut model = Encoder::load(vb, &preset, numerics, Head::Checkpoint)?;
        model.set_gemm_library(GemmLibrary::Cutlass);
        let gemms = model.implementation().remove("gemms").unwrap_or_default();
        println!("{name} gemms: {gemms}");
        for &(b, s) in &[(1, 128), (16, 128), (64, 128), (3, 512), (32, 77)] {
            let (ids, mask) = common::batch(gpu, b, s, preset.vocab_size, 1)?;
            let mut forward = model.cell_forward(&ids, &mask, GraphMode::Auto);
            let (max_diff, finite) =
                replay_against_eager(&model, &mut forward, gpu, (b, s), preset.vocab_size)?;
            let graph = forward.execution().is_graph();
            let ok = graph && max_diff == 0.0 && finite;
            failures += usize::from(!ok);
            println!(
                "{name:<9} batch {b:>3} seq {s:>3}: {} max |graph - eager| {max_diff:.3e} finite {finite} {}",
                forward.execution().describe(),
                if ok { "ok" } else { "FAILED" }
            );
        }
    }
    Ok(failures)
}
