//! `cutlass_check --padding`'s second half: `device.attention_activation_scales = "static"`, the
//! one-kernel attention writing attention-out's int8/E4M3 codes with static per-column steps
//! (src/ops/attention_codes.rs), on fresh random Q/K/V, bias and padding masks, with the padding's
//! keys computed and skipped:
//!
//! 1. every code against the CPU's quantization of the plain kernel's context with the same steps
//!    (steps at 0.75 x each column's max, so the top saturates): int8 equal, E4M3 equal or within
//!    one code; every row scale exactly 1;
//! 2. NaN in one token's query: that row's scale NaN, every other 1; in a valid key: every row of
//!    its sequence NaN, the other sequences' 1;
//! 3. codes + attention-out on them (W x step) against the plain attention + attention-out with
//!    its quantization pass, both timed in CUDA graphs;
//! 4. DistilBERT-base int8-fp16 (random weights, CUTLASS, fused embeddings, static FFN and
//!    attention steps calibrated through the fp32 model) with the padding skipped: graph replay
//!    = eager, and the logits' cosine against the fp32 model.

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{AttentionPadding, EightBit, GemmLibrary};
use runner::model::parts::w8a8::EightBitLinear;
use runner::ops::attention::{attention, set_padding};
use runner::ops::attention_codes::attention_codes;

use super::attention::bytes_of;
use super::common::{batch, replay_against_eager};
use super::{guarded, time_us};

pub fn codes_checks(gpu: &Device) -> usize {
    println!(
        "{:<4} {:<5} {:>3} {:>5} {:>4} {:<5} {:>9} {:>8} {:>6} {:>7} {:>8} {:>9} {:>8} {:>7} result (attention writing attention-out's codes, static steps)",
        "fmt", "dtype", "D", "batch", "seq", "keys", "codes eq", "1 step", "other", "scales", "NaN ok", "codes us", "plain us", "speedup"
    );
    let mut failures = 0;
    for format in [EightBit::Int8, EightBit::Fp8E4M3] {
        for dtype in [DType::F16, DType::BF16] {
            for &(d, b, s, skip) in &[
                (64, 64, 128, true),
                (64, 64, 128, false),
                (64, 16, 128, true),
                (64, 5, 77, true),
                (32, 16, 128, false),
            ] {
                let label = format!("codes {} {dtype:?} d{d} b{b} s{s}", format.name());
                failures += guarded(&label, || one(gpu, format, dtype, d, (b, s), skip));
            }
        }
    }
    set_padding(AttentionPadding::Compute);
    failures += guarded("codes model", || model_check(gpu));
    set_padding(AttentionPadding::Compute);
    failures
}

/// (batch, 1, 1, seq): sequence i keeps its first 1 + (i * 29 + 7) % seq keys.
fn mask(gpu: &Device, b: usize, s: usize) -> Result<Tensor> {
    let v: Vec<f32> = (0..b)
        .flat_map(|i| {
            let len = 1 + (i * 29 + 7) % s;
            (0..s).map(move |j| if j < len { 0f32 } else { f32::MIN })
        })
        .collect();
    Tensor::from_vec(v, (b, 1, 1, s), gpu)
}

fn one(
    gpu: &Device,
    format: EightBit,
    dtype: DType,
    d: usize,
    (b, s): (usize, usize),
    skip: bool,
) -> Result<usize> {
    let heads = 12;
    let width = heads * d;
    let rows = b * s;
    let qkv = Tensor::randn(0f32, 0.5, (rows, 3 * width), gpu)?.to_dtype(dtype)?;
    let bias = Tensor::randn(0f32, 0.1, 3 * width, gpu)?.to_dtype(dtype)?;
    let m = mask(gpu, b, s)?;
    set_padding(if skip {
        AttentionPadding::Skip
    } else {
        AttentionPadding::Compute
    });
    let context = attention(&qkv, &bias, &m, s, heads)?.reshape((rows, width))?;
    let ctx: Vec<f32> = context.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let absmax = context.to_dtype(DType::F32)?.abs()?.max_keepdim(0)?;
    let steps = (runner::model::parts::w8a8::steps_from_absmax(&absmax, format, 1.0)? * 0.75)?;
    let inv = steps.recip()?.flatten_all()?;
    let inv_cpu: Vec<f32> = inv.to_vec1()?;
    let codes_of = |qkv: &Tensor| attention_codes(qkv, &bias, &m, (s, heads), &inv, format, skip);
    let (codes, scales) = bytes_of(&codes_of(&qkv)?)?;
    // The CPU's codes of the plain kernel's context, the same f32 product.
    let (mut equal, mut one_step, mut other) = (0usize, 0usize, 0usize);
    for (i, (&c, &v)) in codes.iter().zip(&ctx).enumerate() {
        let t = v * inv_cpu[i % width];
        let (want, got) = match format {
            EightBit::Int8 => (t.round().clamp(-127.0, 127.0), c as i8 as f32),
            EightBit::Fp8E4M3 => (
                float8::F8E4M3::from_f32(t.clamp(-448.0, 448.0)).to_f32(),
                float8::F8E4M3::from_bits(c).to_f32(),
            ),
        };
        let step = match format {
            EightBit::Int8 => 1.0,
            // One E4M3 code apart: 2^-3 of the value (2^-9 at the bottom).
            EightBit::Fp8E4M3 => (want.abs() / 8.0).max(1.0 / 512.0),
        };
        if want.to_bits() == got.to_bits() || want == got {
            equal += 1;
        } else if (want - got).abs() <= step * 1.0001 {
            one_step += 1;
        } else {
            other += 1;
        }
    }
    let scales_ok = scales.iter().all(|v| v.to_bits() == 1f32.to_bits());
    // NaN: token 5's query (head 0) -> its row only; a valid key of sequence 1 (token 0) -> every
    // row of sequence 1.
    let nan_scales = |row: usize, col: usize| -> Result<Vec<bool>> {
        let mut v: Vec<f32> = qkv.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        v[row * 3 * width + col] = f32::NAN;
        let x = Tensor::from_vec(v, (rows, 3 * width), gpu)?.to_dtype(dtype)?;
        let (_, sc) = bytes_of(&codes_of(&x)?)?;
        Ok(sc.iter().map(|v| v.is_nan()).collect())
    };
    let q_row = 5.min(rows - 1);
    let nan_q = nan_scales(q_row, 1)?;
    let mut nan_ok = nan_q
        .iter()
        .enumerate()
        .all(|(r, &n)| n == (r == q_row) && (n || scales[r] == 1.0));
    if b > 1 {
        let nan_k = nan_scales(s, width + 2 * d + 3)?;
        nan_ok &= nan_k.iter().enumerate().all(|(r, &n)| n == (r / s == 1));
    }
    // Codes + attention-out (W x step) against the plain attention + attention-out's pass + GEMM.
    let w = Tensor::randn(0f32, 0.05, (width, width), gpu)?;
    let out_bias = Tensor::randn(0f32, 0.1, width, gpu)?.to_dtype(dtype)?;
    let mut lin = EightBitLinear::quantize(&w, out_bias.clone(), format)?;
    lin.set_gemm_library(GemmLibrary::Cutlass);
    let mut folded = EightBitLinear::with_folded_steps(&w, out_bias, &steps, format)?;
    folded.set_gemm_library(GemmLibrary::Cutlass);
    let t_codes = time_us(gpu, || folded.forward_packed(&codes_of(&qkv)?))?;
    let t_plain = time_us(gpu, || {
        let c = attention(&qkv, &bias, &m, s, heads)?.reshape((rows, width))?;
        lin.forward(&c, false)
    })?;
    set_padding(AttentionPadding::Compute);
    let exact = match format {
        EightBit::Int8 => one_step == 0,
        EightBit::Fp8E4M3 => true,
    };
    let ok = other == 0 && exact && scales_ok && nan_ok;
    println!(
        "{:<4} {:<5} {d:>3} {b:>5} {s:>4} {:<5} {equal:>9} {one_step:>8} {other:>6} {scales_ok:>7} {nan_ok:>8} {t_codes:>9.1} {t_plain:>8.1} {:>6.2}x {}",
        format.name(),
        format!("{dtype:?}"),
        if skip { "skip" } else { "all" },
        t_plain / t_codes,
        if ok { "ok" } else { "FAILED" }
    );
    Ok(usize::from(!ok))
}

/// DistilBERT-base int8-fp16 with static FFN and attention steps and the padding skipped: graph
/// replay = eager on fresh batches, and the logits' cosine against the fp32 model.
fn model_check(gpu: &Device) -> Result<usize> {
    use runner::model::{encoder, Encoder, Head, Numerics, Preset};
    use runner::ops::graph::GraphMode;
    let preset = Preset::DISTILBERT_BASE_UNCASED;
    let load = |dtype: DType, eight_bit: Option<EightBit>| -> Result<Encoder> {
        let tensors = encoder::random_tensors(&preset, 0).map_err(candle_core::Error::msg)?;
        let vb = candle_nn::VarBuilder::from_tensors(tensors, dtype, gpu);
        let numerics = Numerics {
            float: dtype,
            quant: None,
            eight_bit,
        };
        Encoder::load(vb, &preset, numerics, Head::Checkpoint)
    };
    let reference = load(DType::F32, None)?;
    let mut failures = 0;
    for format in [EightBit::Int8, EightBit::Fp8E4M3] {
        let mut model = load(DType::F16, Some(format))?;
        model.set_gemm_library(GemmLibrary::Cutlass);
        model.set_fused_embeddings(true)?;
        set_padding(AttentionPadding::Skip);
        let calibration = [batch(gpu, 32, 128, preset.vocab_size, 11)?];
        let held_out = [batch(gpu, 32, 128, preset.vocab_size, 12)?];
        if format == EightBit::Int8 {
            model.calibrate_static_ffn(&reference, &calibration, &held_out)?;
        }
        let c = model
            .calibrate_static_attention(&reference, &calibration, &held_out)?
            .ok_or_else(|| candle_core::Error::msg("no W8A8 attention-out calibrated"))?;
        let name = format!("{}-fp16 static attention", format.name());
        let implementation = model.implementation();
        println!("{name}: {}", c.describe());
        for key in ["attention", "activation_quantization"] {
            println!(
                "{name} {key}: {}",
                implementation.get(key).cloned().unwrap_or_default()
            );
        }
        for &(b, s) in &[(16, 128), (64, 128), (32, 77)] {
            let (ids, mask) = batch(gpu, b, s, preset.vocab_size, 1)?;
            let mut forward = model.cell_forward(&ids, &mask, GraphMode::Auto);
            let (diff, finite) =
                replay_against_eager(&model, &mut forward, gpu, (b, s), preset.vocab_size)?;
            let graph = forward.execution().is_graph();
            let (ids, mask) = batch(gpu, b, s, preset.vocab_size, 21)?;
            let got = model.forward(&ids, &mask)?.to_dtype(DType::F32)?;
            let want = reference.forward(&ids, &mask)?;
            let dot = (&got * &want)?.sum_all()?.to_scalar::<f32>()?;
            let norms = got.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt()
                * want.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
            let cosine = dot / norms;
            let ok = graph && diff == 0.0 && finite && cosine.is_finite();
            failures += usize::from(!ok);
            println!(
                "{name} batch {b:>3} seq {s:>3}: {} max |graph - eager| {diff:.3e} finite {finite}; logits' cosine vs fp32 {cosine:.6} {}",
                forward.execution().describe(),
                if ok { "ok" } else { "FAILED" }
            );
        }
    }
    set_padding(AttentionPadding::Compute);
    Ok(failures)
}
