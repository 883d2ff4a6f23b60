//! cutlass_check's static FFN (`device.ffn_activation_scales = "static"`): FFN-in's CUTLASS
//! epilogue writing FFN-out's codes with per-column steps (src/ops/kernels/cutlass/
//! gemm_codes.cuh), FFN-out (steps folded into its weights) reading them, on fresh random inputs
//! against the CPU's f32 reference (EightBitLinear::static_ffn_reference):
//!
//! 1. codes: int8's GEMM sums are exact, so a code differs from the CPU's only where the f32
//!    epilogue (the fast erf, the fma order) puts the scaled value on the other side of a
//!    rounding boundary: within one step. E4M3's sums are f32 in another order (the FFN check's
//!    reasoning): |value difference| within one E4M3 step at the code plus the single linear's
//!    bound (2e-3 of the output's range);
//! 2. saturation: the steps come from 0.75 x each column's max, so the largest values saturate:
//!    every value past the largest code's rounding range is +-127 / +-448 with its sign;
//! 3. the row scales all 1; FFN-out on the GPU's codes against the CPU on the same codes: the
//!    single linear's bound;
//! 4. a NaN in one input row: that row's output all NaN, every other finite;
//! 5. timed against the dynamic path (FFN-in's GELU stored in f16, the row pass, FFN-out) on the
//!    same shapes, both through CUTLASS; the end-to-end error of each against the f32 FFN.

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{EightBit, GemmLibrary};
use runner::model::parts::w8a8::{steps_from_absmax, EightBitLinear};

use super::common::rel_err;
use super::ffn::decode;
use super::{guarded, linear_bound, time_us};

pub fn static_checks(gpu: &Device, cpu: &Device) -> usize {
    println!(
        "{:<4} {:>5} {:>5} {:>5} {:>9} {:>9} {:>8} {:>7} {:>6} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} result (static FFN: 1. codes vs CPU (exact, max steps / bound), 2. saturated (count, wrong), 3. rows != 1, FFN-out on the codes; end to end vs f32, static and dynamic; times)",
        "fmt", "rows", "dim", "ffn", "exact", "max/bnd", "sat", "wrong", "rows", "2. vs cpu", "bound", "e2e stat", "e2e dyn", "static us", "dyn us", "speedup"
    );
    let mut failures = 0;
    for format in [EightBit::Int8, EightBit::Fp8E4M3] {
        for &shape in &[(8192, 768, 3072), (2048, 768, 3072)] {
            let label = format!("{} static FFN {shape:?}", format.name());
            failures += guarded(&label, || static_check(gpu, cpu, format, shape, false));
        }
        let label = format!("{} static FFN NaN row", format.name());
        failures += guarded(&label, || {
            static_check(gpu, cpu, format, (2048, 768, 3072), true)
        });
    }
    failures
}

/// DistilBERT's FFN (768 -> 3072 -> 768) with random weights and `m` random f16 rows: the inputs of
/// every codes-kernel sweep (lean.rs, half2.rs). `pre` is FFN-in's f32 output before the GELU (CPU),
/// `steps` the static steps at 0.75 x each column's largest |GELU output|.
pub struct RandomFfn {
    pub w1: Tensor,
    pub b1: Tensor,
    pub w2: Tensor,
    pub b2: Tensor,
    pub x: Tensor,
    pub pre: Vec<f32>,
    pub steps: Tensor,
}

impl RandomFfn {
    pub fn new(cpu: &Device, m: usize, format: EightBit) -> Result<Self> {
        let (d, h) = (768, 3072);
        let w1 = Tensor::randn(0f32, 0.05, (h, d), cpu)?;
        let b1 = Tensor::randn(0f32, 0.1, h, cpu)?.to_dtype(DType::F16)?;
        Self::with_ffn_in(cpu, m, format, w1, b1)
    }

    /// The same with FFN-in's weight (3072, 768) and f16 bias given (half2.rs's range check).
    pub fn with_ffn_in(
        cpu: &Device,
        m: usize,
        format: EightBit,
        w1: Tensor,
        b1: Tensor,
    ) -> Result<Self> {
        let (d, h) = (768, 3072);
        let w2 = Tensor::randn(0f32, 0.05, (d, h), cpu)?;
        let b2 = Tensor::randn(0f32, 0.1, d, cpu)?.to_dtype(DType::F16)?;
        let x = Tensor::randn(0f32, 1.0, (m, d), cpu)?.to_dtype(DType::F16)?;
        let plain = EightBitLinear::quantize(&w1, b1.clone(), format)?;
        let xf = x.to_dtype(DType::F32)?;
        let y = plain.forward(&xf, true)?;
        let pre = plain.forward(&xf, false)?.flatten_all()?.to_vec1()?;
        let steps = steps_from_absmax(&y.abs()?.max_keepdim(0)?, format, 0.75)?;
        Ok(Self {
            w1,
            b1,
            w2,
            b2,
            x,
            pre,
            steps,
        })
    }

    /// [`gpu_pair`] on these weights and steps.
    pub fn gpu_pair(
        &self,
        gpu: &Device,
        format: EightBit,
    ) -> Result<(EightBitLinear, EightBitLinear)> {
        gpu_pair(
            gpu,
            (&self.w1, &self.b1, &self.w2, &self.b2),
            &self.steps,
            format,
        )
    }
}

/// FFN-in writing codes with `steps` and FFN-out with them folded in, on the GPU through CUTLASS:
/// the pair every static-steps check runs (here, lean.rs and half2.rs).
pub fn gpu_pair(
    gpu: &Device,
    (w1, b1, w2, b2): (&Tensor, &Tensor, &Tensor, &Tensor),
    steps: &Tensor,
    format: EightBit,
) -> Result<(EightBitLinear, EightBitLinear)> {
    let mut g1 = EightBitLinear::quantize(&w1.to_device(gpu)?, b1.to_device(gpu)?, format)?;
    g1.set_static_output(steps)?;
    let mut g2 =
        EightBitLinear::with_folded_steps(&w2.to_device(gpu)?, b2.to_device(gpu)?, steps, format)?;
    g1.set_gemm_library(GemmLibrary::Cutlass);
    g2.set_gemm_library(GemmLibrary::Cutlass);
    Ok((g1, g2))
}

/// One E4M3 step at code `q` (scale 1): 2^(e - 3) for |q| in [2^e, 2^(e+1)), 2^-9 below 2^-6.
pub(crate) fn e4m3_step(q: f32) -> f32 {
    let e = q.abs().max(2f32.powi(-6)).log2().floor() as i32;
    2f32.powi(e - 3)
}

fn static_check(
    gpu: &Device,
    cpu: &Device,
    format: EightBit,
    (m, d, h): (usize, usize, usize),
    nan_row: bool,
) -> Result<usize> {
    let dtype = DType::F16;
    let w1 = Tensor::randn(0f32, 0.05, (h, d), cpu)?;
    let b1 = Tensor::randn(0f32, 0.1, h, cpu)?.to_dtype(dtype)?;
    let w2 = Tensor::randn(0f32, 0.05, (d, h), cpu)?;
    let b2 = Tensor::randn(0f32, 0.1, d, cpu)?.to_dtype(dtype)?;
    let mut x = Tensor::randn(0f32, 1.0, (m, d), cpu)?;
    if nan_row {
        let mut v: Vec<f32> = x.flatten_all()?.to_vec1()?;
        v[7 * d + 5] = f32::NAN;
        x = Tensor::from_vec(v, (m, d), cpu)?;
    }
    let x = x.to_dtype(dtype)?;
    // The steps: 0.75 x each column's max |GELU output| on this input, so the top saturates.
    let r1_plain = EightBitLinear::quantize(&w1, b1.clone(), format)?;
    let y = r1_plain.forward(&x.to_dtype(DType::F32)?, true)?;
    let finite_rows = if nan_row {
        y.narrow(0, 8, m - 8)?
    } else {
        y.clone()
    };
    let steps = steps_from_absmax(&finite_rows.abs()?.max_keepdim(0)?, format, 0.75)?;
    let mut r1 = EightBitLinear::quantize(&w1, b1.clone(), format)?;
    r1.set_static_output(&steps)?;
    let r2 = EightBitLinear::with_folded_steps(&w2, b2.clone(), &steps, format)?;
    let (g1, g2) = gpu_pair(gpu, (&w1, &b1, &w2, &b2), &steps, format)?;
    if let Err(why) = g1.static_codes_kernel() {
        println!("{} {m:>5}: no codes kernel ({why}) FAILED", format.name());
        return Ok(1);
    }
    let xg = x.to_device(gpu)?;
    let run = |g1: &EightBitLinear, g2: &EightBitLinear| -> Result<Tensor> {
        let codes = g1
            .forward_gelu_codes(&xg, None, g2)?
            .ok_or_else(|| candle_core::Error::msg("no codes path"))?;
        g2.forward_packed(&codes)
    };
    let got = run(&g1, &g2)?;
    if nan_row {
        let v: Vec<f32> = got
            .to_dtype(DType::F32)?
            .to_device(cpu)?
            .flatten_all()?
            .to_vec1()?;
        let od = got.dim(1)?;
        let row_nan = v[7 * od..8 * od].iter().all(|x| x.is_nan());
        let others = v[..7 * od]
            .iter()
            .chain(&v[8 * od..])
            .all(|x| x.is_finite());
        let ok = row_nan && others;
        println!(
            "{} static FFN: a NaN input reaches its row's output (and only it): {ok} {}",
            format.name(),
            if ok { "ok" } else { "FAILED" }
        );
        return Ok(usize::from(!ok));
    }
    let packed = g1
        .forward_gelu_codes(&xg, None, &g2)?
        .ok_or_else(|| candle_core::Error::msg("no codes path"))?;
    let (codes, scales) = decode(&packed)?;
    let (ref_codes, _) = r1.static_ffn_reference(&x, &r2)?;
    let ref_codes: Vec<f32> = ref_codes.flatten_all()?.to_vec1()?;
    // 1. Codes against the CPU's.
    let steps_v: Vec<f32> = steps.flatten_all()?.to_vec1()?;
    let y_v: Vec<f32> = y.flatten_all()?.to_vec1()?;
    let range = y_v.iter().fold(0f32, |a, v| a.max(v.abs()));
    let slack = linear_bound(dtype, false) * range;
    let (mut exact, mut worst) = (0usize, 0f32);
    for (i, (&q, &r)) in codes.iter().zip(&ref_codes).enumerate() {
        if q == r {
            exact += 1;
            continue;
        }
        let ratio = match format {
            EightBit::Int8 => (q - r).abs(),
            EightBit::Fp8E4M3 => {
                let s = steps_v[i % h];
                let larger = if q.abs() > r.abs() { q } else { r };
                (q - r).abs() * s / (e4m3_step(larger) * s + slack)
            }
        };
        worst = worst.max(ratio);
    }
    // 2. Saturation, from the CPU's f32 values.
    let (top, limit) = match format {
        EightBit::Int8 => (127f32, 128f32),
        EightBit::Fp8E4M3 => (448f32, 480f32),
    };
    let (mut saturated, mut wrong) = (0usize, 0usize);
    for (i, &v) in y_v.iter().enumerate() {
        let scaled = v / steps_v[i % h];
        if scaled.abs() >= limit {
            saturated += 1;
            wrong += usize::from(codes[i] != top.copysign(scaled));
        }
    }
    // 3. Row scales and FFN-out on the same codes.
    let rows_not_one = scales.iter().filter(|&&s| s != 1.0).count();
    let codes_t = Tensor::from_vec(codes.clone(), (m, h), cpu)?;
    let want =
        r2.forward_codes_reference(&codes_t, &Tensor::ones((m, 1), DType::F32, cpu)?, dtype)?;
    let (err2, finite) = rel_err(&got, &want)?;
    let bound = linear_bound(dtype, false);
    // End to end against the f32 FFN, static and dynamic.
    let exact_ffn = x
        .to_dtype(DType::F32)?
        .matmul(&w1.t()?)?
        .broadcast_add(&b1.to_dtype(DType::F32)?)?
        .gelu_erf()?
        .matmul(&w2.t()?)?
        .broadcast_add(&b2.to_dtype(DType::F32)?)?;
    let e2e_static = rel_err(&got, &exact_ffn)?.0;
    let mut d1 = EightBitLinear::quantize(&w1.to_device(gpu)?, b1.to_device(gpu)?, format)?;
    let mut d2 = EightBitLinear::quantize(&w2.to_device(gpu)?, b2.to_device(gpu)?, format)?;
    d1.set_gemm_library(GemmLibrary::Cutlass);
    d2.set_gemm_library(GemmLibrary::Cutlass);
    let dynamic = |d1: &EightBitLinear, d2: &EightBitLinear| -> Result<Tensor> {
        let p = d1
            .forward_gelu_packed(&xg, None, d2)?
            .ok_or_else(|| candle_core::Error::msg("no packed FFN"))?;
        d2.forward_packed(&p)
    };
    let e2e_dynamic = rel_err(&dynamic(&d1, &d2)?, &exact_ffn)?.0;
    let t_static = time_us(gpu, || run(&g1, &g2))?;
    let t_dynamic = time_us(gpu, || dynamic(&d1, &d2))?;
    let ok =
        finite && worst <= 1.0 && wrong == 0 && saturated > 0 && rows_not_one == 0 && err2 <= bound;
    println!(
        "{:<4} {m:>5} {d:>5} {h:>5} {:>9.6} {worst:>9.3} {saturated:>8} {wrong:>7} {rows_not_one:>6} {err2:>9.2e} {bound:>7.1e} {e2e_static:>9.2e} {e2e_dynamic:>9.2e} {t_static:>9.1} {t_dynamic:>9.1} {:>6.2}x {}",
        format.name(),
        exact as f64 / codes.len() as f64,
        t_dynamic / t_static,
        if ok { "ok" } else { "FAILED" }
    );
    Ok(usize::from(!ok))
}
