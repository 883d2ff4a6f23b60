//! `cutlass_check --lean`: `device.gelu_epilogue = "lean"` (src/ops/kernels/cutlass/gelu_lean.cuh,
//! the FFN-in GELU epilogue in 17 instructions a value instead of 23) on the GPU, with every
//! kernel of each GELU kind forced in turn on the same fresh random layer and input, against the
//! CPU numerics reference and timed in CUDA graphs:
//!
//! 1. the GELU kinds the flagship runs (int8 and E4M3 writing f16, the f16 float FFN-in): the
//!    standard and the lean erf, cooperative and ping-pong, at FFN-in's shape (8192 rows, then
//!    2048, 768 -> 3072);
//! 2. the static-steps FFN-in (int8 codes): every codes kernel (standard, lean, fitted tanh;
//!    cooperative and ping-pong) forced in turn, its codes against the standard kernel's (at
//!    most one step apart), timed;
//! 3. with the lean setting on, what the rule then picks: the model's graph replay against eager,
//!    the static FFN check, a NaN row through every lean kernel, the float FFN-in check, the
//!    8-bit GELU linears at the decoder shapes; last the plain int8 GEMM's two configurations at
//!    8192 rows (the short-K question: 128x128 ping-pong against 128x256 cooperative, in graphs).

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{EightBit, GeluEpilogue};
use runner::ops::cutlass::{self, Inputs, Kind};

use super::common::rel_err;
use super::ffn::decode;
use super::{guarded, linear_bound, time_us};

pub fn lean_checks(gpu: &Device, cpu: &Device) -> usize {
    cutlass::set_gelu_epilogue(GeluEpilogue::Lean);
    println!(
        "lean GELU epilogue on: the rule picks {}",
        [
            (Inputs::Int8, DType::F16),
            (Inputs::Int8, DType::U8),
            (Inputs::E4m3, DType::F16),
            (Inputs::Float, DType::F16)
        ]
        .iter()
        .filter_map(|&(inputs, out)| cutlass::choose(kind(inputs, out, true), 8192, 3072))
        .map(|i| i.name)
        .collect::<Vec<_>>()
        .join(", ")
    );
    // In the order a call cut short should keep: the 8192-row sweep (the A/B this is for), the
    // codes kernels, the model's graph replay, then the rest.
    let mut failures = sweep(gpu, cpu, 8192);
    failures += guarded("codes kernels 8192", || codes_variants(gpu, cpu, 8192));
    failures += super::model::graph_checks_named(
        gpu,
        &["fp16 fused-emb", "int8-fp16 fused-emb", "int8-fp16 static"],
    );
    failures += super::static_ffn::static_checks(gpu, cpu);
    failures += super::nan_checks_for(gpu, cpu, |i| {
        i.erf == cutlass::Erf::Lean && !i.kind.writes_codes()
    });
    failures += super::float_checks(gpu, cpu, true);
    failures += sweep(gpu, cpu, 2048);
    failures += guarded("codes kernels 2048", || codes_variants(gpu, cpu, 2048));
    for (m, k, n) in [(16, 2048, 8192), (512, 896, 4864), (16, 576, 1536)] {
        for (format, label) in [(EightBit::Int8, "int8"), (EightBit::Fp8E4M3, "fp8")] {
            let what = format!("decoder shape {label} {m} {k} {n} gelu");
            failures += guarded(&what, || {
                super::linear_check(
                    gpu,
                    cpu,
                    "decoder (lean)",
                    format,
                    DType::F16,
                    false,
                    (m, k, n),
                    true,
                )
            });
        }
    }
    for &(m, k, n) in &[(8192, 768, 2304), (8192, 3072, 768)] {
        failures += guarded(&format!("plain int8 {m} {k} {n}"), || {
            let mut f = 0;
            let plain = kind(Inputs::Int8, DType::F16, false);
            super::configs::one_shape(gpu, cpu, plain, EightBit::Int8, m, k, n, &mut f)?;
            Ok(f)
        });
    }
    cutlass::force(None);
    failures
}

/// Every kernel of the FFN-in GELU kinds (int8 and E4M3 to f16, the f16 float FFN-in) forced in
/// turn at `m` x 768 -> 3072.
fn sweep(gpu: &Device, cpu: &Device, m: usize) -> usize {
    let (k, n) = (768, 3072);
    let mut failures = 0;
    for format in [EightBit::Int8, EightBit::Fp8E4M3] {
        failures += guarded(&format!("lean sweep {} {m}", format.name()), || {
            let inputs = match format {
                EightBit::Int8 => Inputs::Int8,
                EightBit::Fp8E4M3 => Inputs::E4m3,
            };
            let mut f = 0;
            let gelu = kind(inputs, DType::F16, true);
            super::configs::one_shape(gpu, cpu, gelu, format, m, k, n, &mut f)?;
            Ok(f)
        });
    }
    failures += guarded(&format!("lean sweep float {m}"), || {
        float_shape(gpu, cpu, (m, k, n))
    });
    cutlass::force(None);
    failures
}

fn kind(inputs: Inputs, out: DType, gelu: bool) -> Kind {
    Kind {
        inputs,
        out,
        gelu,
        fast_accumulation: false,
    }
}

/// The f16 FFN-in (bias + GELU) through each of its kernels against f32 on the CPU, timed.
fn float_shape(gpu: &Device, cpu: &Device, (m, k, n): (usize, usize, usize)) -> Result<usize> {
    let dtype = DType::F16;
    let w = Tensor::randn(0f32, 0.05, (n, k), cpu)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 0.1, n, cpu)?.to_dtype(dtype)?;
    let x = Tensor::randn(0f32, 1.0, (m, k), cpu)?.to_dtype(dtype)?;
    let f = |t: &Tensor| t.to_dtype(DType::F32);
    let want = f(&x)?
        .matmul(&f(&w)?.t()?)?
        .broadcast_add(&f(&b)?)?
        .gelu_erf()?;
    let (wg, bg, xg) = (w.to_device(gpu)?, b.to_device(gpu)?, x.to_device(gpu)?);
    let mut failures = 0;
    for instance in cutlass::instances(kind(Inputs::Float, dtype, true)) {
        cutlass::force(Some(instance));
        let run = || runner::ops::float_gemm::linear_bias_gelu(&xg, &wg, &bg);
        let (err, finite) = rel_err(&run()?, &want)?;
        let us = time_us(gpu, run)?;
        cutlass::force(None);
        let bound = linear_bound(dtype, false);
        let ok = finite && err <= bound;
        failures += usize::from(!ok);
        println!(
            "config f16  false true  {m:>5} {k:>5} {n:>5} {:<24} {:<66} {err:>11.2e} {bound:>8.1e} {us:>9.1} {}",
            instance.name,
            format!("{}, {:?} erf", instance.config.describe(), instance.erf),
            if ok { "ok" } else { "FAILED" }
        );
    }
    Ok(failures)
}

/// FFN-in writing int8 codes (static steps at 0.75 x each column's max) through every codes
/// kernel in turn: codes against the standard kernel's, FFN-in timed alone.
pub fn codes_variants(gpu: &Device, cpu: &Device, m: usize) -> Result<usize> {
    let format = EightBit::Int8;
    let ffn = super::static_ffn::RandomFfn::new(cpu, m, format)?;
    let (g1, g2) = ffn.gpu_pair(gpu, format)?;
    let xg = ffn.x.to_device(gpu)?;
    let codes = || -> Result<Tensor> {
        let p = g1
            .forward_gelu_codes(&xg, None, &g2)?
            .ok_or_else(|| candle_core::Error::msg("no codes path"))?;
        Ok(p.bytes().clone())
    };
    let codes_kind = kind(Inputs::Int8, DType::U8, true);
    let standard = cutlass::instances(codes_kind)
        .find(|i| i.erf == cutlass::Erf::Fast)
        .ok_or_else(|| candle_core::Error::msg("no standard codes kernel"))?;
    cutlass::force(Some(standard));
    let p = g1
        .forward_gelu_codes(&xg, None, &g2)?
        .ok_or_else(|| candle_core::Error::msg("no codes path"))?;
    let (want, _) = decode(&p)?;
    let mut failures = 0;
    for instance in cutlass::instances(codes_kind) {
        cutlass::force(Some(instance));
        let p = g1
            .forward_gelu_codes(&xg, None, &g2)?
            .ok_or_else(|| candle_core::Error::msg("no codes path"))?;
        let (got, scales) = decode(&p)?;
        let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let us = time_us(gpu, codes)?;
        let ok = worst <= 1.0 && scales.iter().all(|&s| s == 1.0);
        failures += usize::from(!ok);
        println!(
            "codes int8 {m:>5} 768 3072 {:<24} {:<58} differ from standard {differ:>7} of {} (max {worst} step) {us:>9.1} us {}",
            instance.name,
            format!("{}, {:?} erf", instance.config.describe(), instance.erf),
            got.len(),
            if ok { "ok" } else { "FAILED" }
        );
    }
    cutlass::force(None);
    Ok(failures)
}
