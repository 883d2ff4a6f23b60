//! cutlass_check's packed attention (src/ops/attention_packed.rs): the one-kernel attention
//! writing attention-out's 8-bit input itself, against the plain path it replaces (the attention
//! kernel writing the context in f16/bf16, then attention-out's quantization pass and GEMM) on
//! fresh random Q/K/V, bias and padding masks: attention-out's output must be identical (the same
//! bytes into the same GEMM), the packed codes must be the CPU quantization of the plain context
//! (scales bit-equal, codes equal), a NaN in one token's query must reach that token's row only,
//! and both paths are timed in CUDA graphs. (The encoder does not use it: measured slower on an
//! H100, src/ops/attention_packed.rs says by how much.)

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{EightBit, GemmLibrary};
use runner::model::parts::w8a8::EightBitLinear;
use runner::ops::attention::attention;
use runner::ops::attention_packed::{attention_packed, packed_on, PACKED_HEADS};
use runner::ops::eight_bit::Packed8;

use super::{guarded, time_us};

pub fn attention_checks(gpu: &Device) -> usize {
    println!(
        "{:<4} {:<5} {:>4} {:>5} {:>4} {:>12} {:>7} {:>7} {:>9} {:>10} {:>9} {:>7} result (attention writing attention-out's 8-bit input)",
        "fmt", "dtype", "head", "batch", "seq", "out vs plain", "scales", "codes", "NaN row", "packed us", "plain us", "speedup"
    );
    let mut failures = 0;
    for format in [EightBit::Int8, EightBit::Fp8E4M3] {
        for dtype in [DType::F16, DType::BF16] {
            for &(head_dim, b, s) in &[(64, 16, 128), (64, 64, 128), (64, 3, 77), (32, 16, 128)] {
                let label = format!(
                    "attention {} {dtype:?} d{head_dim} b{b} s{s}",
                    format.name()
                );
                failures += guarded(&label, || one(gpu, format, dtype, head_dim, (b, s)));
            }
        }
    }
    failures
}

/// (batch, 1, 1, seq) additive mask: row r keeps its first len(r) keys (len from seq / 2 up).
fn padding_mask(gpu: &Device, b: usize, s: usize, seed: u64) -> Result<Tensor> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut v = Vec::with_capacity(b * s);
    for _ in 0..b {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = s / 2 + (state >> 33) as usize % (s - s / 2 + 1);
        v.extend((0..s).map(|j| if j < len { 0f32 } else { f32::MIN }));
    }
    Tensor::from_vec(v, (b, 1, 1, s), gpu)
}

fn one(
    gpu: &Device,
    format: EightBit,
    dtype: DType,
    head_dim: usize,
    (b, s): (usize, usize),
) -> Result<usize> {
    let head = format!(
        "{:<4} {:<5} {head_dim:>4} {b:>5} {s:>4}",
        format.name(),
        format!("{dtype:?}")
    );
    let heads = PACKED_HEADS;
    let width = heads * head_dim;
    if let Err(why) = packed_on(gpu, dtype, heads, head_dim, format) {
        println!("{head} no packed attention on this GPU: {why} FAILED");
        return Ok(1);
    }
    let rows = b * s;
    let qkv = Tensor::randn(0f32, 0.5, (rows, 3 * width), gpu)?.to_dtype(dtype)?;
    let bias = Tensor::randn(0f32, 0.1, 3 * width, gpu)?.to_dtype(dtype)?;
    let mask = padding_mask(gpu, b, s, rows as u64)?;
    let w = Tensor::randn(0f32, 0.05, (width, width), gpu)?;
    let out_bias = Tensor::randn(0f32, 0.1, width, gpu)?.to_dtype(dtype)?;
    let mut lin = EightBitLinear::quantize(&w, out_bias, format)?;
    lin.set_gemm_library(GemmLibrary::Cutlass);
    let plain = |qkv: &Tensor| -> Result<Tensor> {
        let context = attention(qkv, &bias, &mask, s, heads)?.reshape((rows, width))?;
        lin.forward(&context, false)
    };
    let packed_of = |qkv: &Tensor| attention_packed(qkv, &bias, &mask, s, heads, format);
    let fused = |qkv: &Tensor| lin.forward_packed(&packed_of(qkv)?);
    let (want, got) = (plain(&qkv)?, fused(&qkv)?);
    let diff = (want.to_dtype(DType::F32)? - got.to_dtype(DType::F32)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    let finite = got
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|v| v.is_finite());
    // The codes against the CPU quantization of the plain kernel's context.
    let context = attention(&qkv, &bias, &mask, s, heads)?.reshape((rows, width))?;
    let (q_ref, s_ref) = runner::model::quant::w8a8::quantize_rows(
        &context.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
        format,
    )?;
    let (codes, scales) = bytes_of(&packed_of(&qkv)?)?;
    let s_ref: Vec<f32> = s_ref.flatten_all()?.to_vec1()?;
    let scale_diffs = scales
        .iter()
        .zip(&s_ref)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let ref_bytes: Vec<u8> = match format {
        EightBit::Int8 => q_ref
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|&r| r as i8 as u8)
            .collect(),
        EightBit::Fp8E4M3 => q_ref
            .flatten_all()?
            .to_dtype(DType::F8E4M3)?
            .to_vec1::<float8::F8E4M3>()?
            .iter()
            .map(|f| f.to_bits())
            .collect(),
    };
    let code_diffs = codes.iter().zip(&ref_bytes).filter(|(a, b)| a != b).count();
    // A NaN in token 5's query (head 0) reaches attention-out's row 5 only.
    let nan_row = 5.min(rows - 1);
    let mut v: Vec<f32> = qkv.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    v[nan_row * 3 * width + 1] = f32::NAN;
    let with_nan = Tensor::from_vec(v, (rows, 3 * width), gpu)?.to_dtype(dtype)?;
    let out: Vec<Vec<f32>> = fused(&with_nan)?.to_dtype(DType::F32)?.to_vec2()?;
    let nan_ok = out
        .iter()
        .enumerate()
        .all(|(r, row)| row.iter().all(|x| x.is_nan() == (r == nan_row)));
    let t_packed = time_us(gpu, || fused(&qkv))?;
    let t_plain = time_us(gpu, || plain(&qkv))?;
    let ok = diff == 0.0 && finite && scale_diffs == 0 && code_diffs == 0 && nan_ok;
    println!(
        "{head} {diff:>12.3e} {scale_diffs:>7} {code_diffs:>7} {nan_ok:>9} {t_packed:>10.1} {t_plain:>9.1} {:>6.2}x {}",
        t_plain / t_packed,
        if ok { "ok" } else { "FAILED" }
    );
    Ok(usize::from(!ok))
}

/// The packed codes (raw bytes) and row scales.
pub(crate) fn bytes_of(p: &Packed8) -> Result<(Vec<u8>, Vec<f32>)> {
    let bytes: Vec<u8> = p.bytes().to_device(&Device::Cpu)?.to_vec1()?;
    let (rows, cols) = (p.rows(), p.cols());
    let at = Packed8::scales_at(rows, cols);
    let scales = (0..rows)
        .map(|r| f32::from_le_bytes(bytes[at + 4 * r..at + 4 * r + 4].try_into().unwrap()))
        .collect();
    Ok((bytes[..rows * cols].to_vec(), scales))
}
