//! `cutlass_check --half2`: session 14's FFN-in codes kernel with the GELU in f16 pairs
//! (i8_codes_gelu_pp128h2: gemm_rows.cuh's CodesHalf2Op) on fresh random inputs, in the order a
//! call cut short should keep:
//!
//! 1. every int8 codes kernel forced in turn at 8192 and 2048 rows: codes within one step of the
//!    standard kernel's, how many differ, timed (lean.rs's sweep);
//! 2. the range f16 does not have, against i8_codes_gelu_pp128rows (the f32 epilogue, checked
//!    against the CPU in session 10), within one step: columns whose pre-activation passes
//!    f16's 65504 (bias +-60000, weights x 4000: satfinite), columns with |y| in the hundreds
//!    (weights x 400: y^2 past f16's range), steps 1e-3 of the usual (y / 2s past 65504), steps
//!    1e4 of it (codes ~0); GELU of y <= -30000 exactly code 0. Where y < -0.5 and the step is
//!    tiny, both kernels' tanh.approx is the error (|GELU error| <= 4e-4 |y|, thousands of steps
//!    at y / 2s ~ 1e5): those values are counted, not bounded;
//! 3. the static FFN against the CPU (codes within one step, saturation, FFN-out on the codes, a
//!    NaN row reaching its row only) with the new kernel forced;
//! 4. DistilBERT-base int8-fp16 (static FFN steps) with it forced: graph replay against eager;
//! 5. session 15's E4M3 codes kernels (gemm_rows.cuh's CodesE4m3Half2Op, 128x64 and 64x128
//!    ping-pong): every E4M3 codes kernel forced in turn at 8192 and 2048 rows against the
//!    standard one (e4m3_codes_f16_gelu_co128, f32 erf), within one E4M3 step of the larger code
//!    plus the fitted tanh's 6e-4 |y| / s (E4M3's steps are relative, so a small code moves by
//!    the GELU's absolute error), timed; then the static FFN and fp8-fp16 static's graph replay
//!    with each forced;
//! 6. the E4M3 codes kernels with FP8 fast accumulation (written in session 15 without a GPU):
//!    against the promoted standard kernel within the same bound plus fast accumulation's
//!    (8e-3 of the largest |y|, in steps), timed; fp8-fp16 fast static's graph replay with each
//!    forced.

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{EightBit, GeluEpilogue};
use runner::ops::cutlass;

use super::ffn::decode;
use super::static_ffn::e4m3_step;
use super::{guarded, time_us};

const NEW: &str = "i8_codes_gelu_pp128h2";
const F32_EPILOGUE: &str = "i8_codes_gelu_pp128rows";
const E4M3_NEW: [&str; 2] = [
    "e4m3_codes_f16_gelu_pp128x64h2",
    "e4m3_codes_f16_gelu_pp64h2",
];
const E4M3_FAST: [&str; 2] = [
    "e4m3_codes_f16_gelu_co128fast",
    "e4m3_codes_f16_gelu_pp128fasth2",
];

pub fn half2_checks(gpu: &Device, cpu: &Device) -> usize {
    cutlass::set_gelu_epilogue(GeluEpilogue::Lean);
    let find = |name: &str| cutlass::INSTANCES.iter().find(|i| i.name == name);
    let (Some(new), Some(f32_epilogue)) = (find(NEW), find(F32_EPILOGUE)) else {
        println!("half2: no {NEW} or {F32_EPILOGUE} in this build FAILED");
        return 1;
    };
    let mut failures = guarded("codes kernels 8192", || {
        super::lean::codes_variants(gpu, cpu, 8192)
    });
    failures += guarded("codes kernels 2048", || {
        super::lean::codes_variants(gpu, cpu, 2048)
    });
    failures += guarded("half2 range", || range_check(gpu, cpu, new, f32_epilogue));
    println!("half2: static FFN with {NEW} forced");
    cutlass::force(Some(new));
    failures += super::static_ffn::static_checks(gpu, cpu);
    println!("half2: the model with {NEW} forced");
    failures += super::model::graph_checks_named(gpu, &["int8-fp16 static"]);
    cutlass::force(None);
    for fast in [false, true] {
        failures += guarded("E4M3 codes kernels 8192", || {
            e4m3_variants(gpu, cpu, 8192, fast)
        });
        failures += guarded("E4M3 codes kernels 2048", || {
            e4m3_variants(gpu, cpu, 2048, fast)
        });
    }
    for name in E4M3_NEW {
        failures += with_forced(name, || {
            println!("half2: static FFN with {name} forced (E4M3; int8 as its rule picks)");
            let f = super::static_ffn::static_checks(gpu, cpu);
            println!("half2: the model with {name} forced");
            f + super::model::graph_checks_named(gpu, &["fp8-fp16 static"])
        });
    }
    for name in E4M3_FAST {
        failures += with_forced(name, || {
            println!("half2: the model with FP8 fast accumulation and {name} forced");
            super::model::graph_checks_named(gpu, &["fp8-fp16 fast static"])
        });
    }
    cutlass::set_gelu_epilogue(GeluEpilogue::Standard);
    failures
}

/// Every E4M3 codes kernel (of the fast-accumulation kind with `fast`) against the standard one
/// (f32 erf GELU, promoted accumulation) on the same fresh inputs: |code - standard| within one
/// E4M3 step of the larger plus 6e-4 |y| / s (the fitted tanh's |GELU error| <= 4e-4 |y| with room
/// for the f16 pairs), y the CPU's pre-activation, plus with `fast` 8e-3 of the largest |y| / s
/// (fast accumulation's bound elsewhere in these checks); no NaN.
fn e4m3_variants(gpu: &Device, cpu: &Device, m: usize, fast: bool) -> Result<usize> {
    let (h, format) = (3072, EightBit::Fp8E4M3);
    let ffn = super::static_ffn::RandomFfn::new(cpu, m, format)?;
    let pre = &ffn.pre;
    let steps_v: Vec<f32> = ffn.steps.flatten_all()?.to_vec1()?;
    let (g1, g2) = ffn.gpu_pair(gpu, format)?;
    // The same weights with fast accumulation, for the fast kind's kernels.
    let (mut f1, _) = ffn.gpu_pair(gpu, format)?;
    f1.set_fp8_fast_accumulation(true);
    let slack = if fast {
        super::linear_bound(DType::F16, true) * pre.iter().fold(0f32, |a, v| a.max(v.abs()))
    } else {
        0.0
    };
    let xg = ffn.x.to_device(gpu)?;
    let under_test = if fast { &f1 } else { &g1 };
    let codes = || -> Result<Tensor> {
        let p = under_test
            .forward_gelu_codes(&xg, None, &g2)?
            .ok_or_else(|| candle_core::Error::msg("no codes path"))?;
        Ok(p.bytes().clone())
    };
    let codes_kind = |fast_accumulation| cutlass::Kind {
        inputs: cutlass::Inputs::E4m3,
        out: DType::F8E4M3,
        gelu: true,
        fast_accumulation,
    };
    let standard = cutlass::instances(codes_kind(false))
        .find(|i| i.erf == cutlass::Erf::Fast)
        .ok_or_else(|| candle_core::Error::msg("no standard E4M3 codes kernel"))?;
    let decoded = |kernel: &'static cutlass::Instance| -> Result<(Vec<f32>, Vec<f32>)> {
        cutlass::force(Some(kernel));
        let layer = if kernel.kind.fast_accumulation {
            &f1
        } else {
            &g1
        };
        let p = layer
            .forward_gelu_codes(&xg, None, &g2)?
            .ok_or_else(|| candle_core::Error::msg("no codes path"))?;
        decode(&p)
    };
    let (want, _) = decoded(standard)?;
    let mut failures = 0;
    for instance in cutlass::instances(codes_kind(fast)) {
        let (got, scales) = decoded(instance)?;
        let (mut differ, mut worst, mut nan) = (0usize, 0f32, 0usize);
        for (i, (&q, &r)) in got.iter().zip(&want).enumerate() {
            if q.is_nan() || r.is_nan() {
                nan += 1;
                continue;
            }
            if q == r {
                continue;
            }
            differ += 1;
            let larger = if q.abs() > r.abs() { q } else { r };
            let s = steps_v[i % h];
            let bound = e4m3_step(larger) + (6e-4 * pre[i].abs() + slack) / s;
            worst = worst.max((q - r).abs() / bound);
        }
        let us = time_us(gpu, codes)?;
        let ok = worst <= 1.0 && nan == 0 && scales.iter().all(|&s| s == 1.0);
        failures += usize::from(!ok);
        println!(
            "codes e4m3{} {m:>5} 768 3072 {:<32} {:<58} differ from standard {differ:>7} of {} (worst {worst:.3} of the bound; NaN {nan}) {us:>9.1} us {}",
            if fast { " fast" } else { "" },
            instance.name,
            format!("{}, {:?} erf", instance.config.describe(), instance.erf),
            got.len(),
            if ok { "ok" } else { "FAILED" }
        );
    }
    cutlass::force(None);
    Ok(failures)
}

/// `checks` with the kernel `name` forced for its kind (a build without it: one failure).
fn with_forced(name: &str, checks: impl FnOnce() -> usize) -> usize {
    let Some(kernel) = cutlass::INSTANCES.iter().find(|i| i.name == name) else {
        println!("half2: no {name} in this build FAILED");
        return 1;
    };
    cutlass::force(Some(kernel));
    let failures = checks();
    cutlass::force(None);
    failures
}

/// Column groups of 256 (of 3072) with the extremes f16 lacks; the rest ordinary.
const LARGE_WEIGHTS: std::ops::Range<usize> = 0..256;
const HUGE_NEGATIVE: std::ops::Range<usize> = 256..512;
const HUGE_POSITIVE: std::ops::Range<usize> = 512..768;
const TINY_STEPS: std::ops::Range<usize> = 768..1024;
const HUGE_STEPS: std::ops::Range<usize> = 1024..1280;

fn range_check(
    gpu: &Device,
    cpu: &Device,
    new: &'static cutlass::Instance,
    f32_epilogue: &'static cutlass::Instance,
) -> Result<usize> {
    let (m, d, h, format) = (2048, 768, 3072, EightBit::Int8);
    let scale: Vec<f32> = (0..h)
        .map(|c| match c {
            c if LARGE_WEIGHTS.contains(&c) => 400.0,
            c if HUGE_NEGATIVE.contains(&c) || HUGE_POSITIVE.contains(&c) => 4000.0,
            _ => 1.0,
        })
        .collect();
    let w1 = Tensor::randn(0f32, 0.05, (h, d), cpu)?.broadcast_mul(&Tensor::from_vec(
        scale,
        (h, 1),
        cpu,
    )?)?;
    let mut bias: Vec<f32> = Tensor::randn(0f32, 0.1, h, cpu)?.to_vec1()?;
    bias[HUGE_NEGATIVE].fill(-60000.0);
    bias[HUGE_POSITIVE].fill(60000.0);
    let b1 = Tensor::from_vec(bias, h, cpu)?.to_dtype(DType::F16)?;
    let mut ffn = super::static_ffn::RandomFfn::with_ffn_in(cpu, m, format, w1, b1)?;
    let pre = &ffn.pre;
    let factor: Vec<f32> = (0..h)
        .map(|c| match c {
            c if TINY_STEPS.contains(&c) => 1e-3,
            c if HUGE_STEPS.contains(&c) => 1e4,
            _ => 1.0,
        })
        .collect();
    ffn.steps = ffn
        .steps
        .broadcast_mul(&Tensor::from_vec(factor, (1, h), cpu)?)?;
    let (g1, g2) = ffn.gpu_pair(gpu, format)?;
    let xg = ffn.x.to_device(gpu)?;
    let codes_of = |kernel: &'static cutlass::Instance| -> Result<Vec<f32>> {
        cutlass::force(Some(kernel));
        let p = g1
            .forward_gelu_codes(&xg, None, &g2)?
            .ok_or_else(|| candle_core::Error::msg("no codes path"))?;
        cutlass::force(None);
        Ok(decode(&p)?.0)
    };
    let want = codes_of(f32_epilogue)?;
    let got = codes_of(new)?;
    let mut failures = 0;
    for (label, columns) in [
        ("weights x 400 (y^2 past f16)", LARGE_WEIGHTS),
        ("bias -60000 (y past -65504)", HUGE_NEGATIVE),
        ("bias +60000 (y past 65504)", HUGE_POSITIVE),
        ("steps x 1e-3 (y / 2s past f16)", TINY_STEPS),
        ("steps x 1e4 (codes ~0)", HUGE_STEPS),
        ("ordinary", 1280..h),
    ] {
        let tiny = columns == TINY_STEPS;
        let (mut compared, mut differ, mut worst, mut left_out) = (0usize, 0usize, 0f32, 0usize);
        let (mut very_negative, mut not_zero) = (0usize, 0usize);
        for row in 0..m {
            for c in columns.clone() {
                let i = row * h + c;
                if pre[i] <= -30000.0 {
                    very_negative += 1;
                    not_zero += usize::from(got[i] != 0.0);
                }
                if tiny && pre[i] < -0.5 {
                    left_out += 1;
                    continue;
                }
                compared += 1;
                differ += usize::from(got[i] != want[i]);
                worst = worst.max((got[i] - want[i]).abs());
            }
        }
        let ok = worst <= 1.0 && not_zero == 0;
        failures += usize::from(!ok);
        println!(
            "half2 range {label:<32} differ from {F32_EPILOGUE} {differ:>7} of {compared:>7} (max {worst} step); y <= -30000: {very_negative}, of them not code 0: {not_zero}{} {}",
            if tiny {
                format!("; y < -0.5 not compared: {left_out}")
            } else {
                String::new()
            },
            if ok { "ok" } else { "FAILED" }
        );
    }
    Ok(failures)
}
