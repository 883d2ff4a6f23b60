//! Where a W8A8 linear's time goes on a GPU, against the fp16 GEMM it replaces, at
//! DistilBERT-base's four linears (QKV 768 -> 2304, attention-out 768 -> 768, FFN-in 768 -> 3072
//! with GELU, FFN-out 3072 -> 768) for batch x seq 128 rows:
//!
//! - `float`: cuBLAS GEMM + the runner's bias (+ GELU) kernel, as the float path runs it;
//! - `int8`, `fp8`: the whole W8A8 linear (quantization pass + GEMM + epilogue / dequantization);
//! - `... packed`: the same from an input already quantized (what remains once the quantization
//!   is fused into the kernel that produces the input); for FFN-in, the encoder's fused path:
//!   from the bytes the layer norm wrote, GEMM, GELU kernel writing FFN-out's packed input;
//! - `fp8 fast`: FP8 with cuBLASLt's fast accumulation (no periodic promotion to f32).
//!
//!     cargo run --release --features cuda --example eight_bit_timing -- [BATCH ...]
//!
//! Every time is one CUDA graph of 20 back-to-back calls, replayed 30 times with a synchronize
//! each, median / 20: the cost inside a graph-replayed forward, without cuBLASLt's host-side
//! heuristic query (paid once, at capture). Rates: TFLOP/s of the GEMM's 2·M·K·N.

use candle_core::{DType, Device, Result, Tensor};
use runner::config::EightBit;
use runner::model::parts::w8a8::EightBitLinear;
use runner::ops::eight_bit::Packed8;
use runner::ops::fused;

mod common;
use common::graph_time_us;

/// An input of `x`'s shape quantized per row in `format` and packed, as the encoder's residual +
/// layer norm writes it for the next 8-bit layer (src/ops/eight_bit/norm_quantize.rs): the norm of `x`
/// (zero residual, unit gain), whose values only the times below depend on, not their size.
fn packed_input(x: &Tensor, format: EightBit, gpu: &Device) -> Result<Packed8> {
    let k = x.dim(1)?;
    let gamma_beta = Tensor::stack(
        &[
            Tensor::ones(k, x.dtype(), gpu)?,
            Tensor::zeros(k, x.dtype(), gpu)?,
        ],
        0,
    )?;
    let zero = x.zeros_like()?;
    Ok(
        runner::ops::eight_bit::norm_quantize::add_layer_norm_packed(
            x,
            &zero,
            &gamma_beta,
            1e-12,
            format,
        )?
        .1,
    )
}

fn main() -> Result<()> {
    let batches: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("batch sizes are integers"))
        .collect();
    let batches = if batches.is_empty() {
        vec![16, 64]
    } else {
        batches
    };
    let gpu = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    let dtype = DType::F16;
    let linears = [
        ("qkv", 768usize, 2304usize, false),
        ("attention_out", 768, 768, false),
        ("ffn_in", 768, 3072, true),
        ("ffn_out", 3072, 768, false),
    ];
    println!(
        "{:>5} {:<13} {:>9} {:>9} {:>9} {:>11} {:>9} {:>11} {:>9} {:>13}",
        "batch",
        "linear",
        "float us",
        "int8 us",
        "fp8 us",
        "int8 packed",
        "fp8 fast",
        "fp8 packed",
        "fp8 TF/s",
        "fp8fast pk us"
    );
    for &batch in &batches {
        let rows = batch * 128;
        let mut sums = [0f64; 7];
        for &(name, k, n, gelu) in &linears {
            let w = Tensor::randn(0f32, 0.05, (n, k), &gpu)?;
            let b = Tensor::randn(0f32, 0.1, n, &gpu)?.to_dtype(dtype)?;
            let x = Tensor::randn(0f32, 1.0, (rows, k), &gpu)?.to_dtype(dtype)?;
            let wf = w.to_dtype(dtype)?;
            let float = graph_time_us(&gpu, name, || {
                fused::bias_act(&x.matmul(&wf.t()?)?, &b, gelu)
            })?;
            let int8 = EightBitLinear::quantize(&w, b.clone(), EightBit::Int8)?;
            let mut fp8 = EightBitLinear::quantize(&w, b.clone(), EightBit::Fp8E4M3)?;
            let t_int8 = graph_time_us(&gpu, name, || int8.forward(&x, gelu))?;
            let t_fp8 = graph_time_us(&gpu, name, || fp8.forward(&x, gelu))?;
            let p_int8 = packed_input(&x, EightBit::Int8, &gpu)?;
            let p_fp8 = packed_input(&x, EightBit::Fp8E4M3, &gpu)?;
            // From packed: FFN-in (GELU) as the encoder runs it, quantizing FFN-out's input.
            let next = |format| {
                EightBitLinear::quantize(
                    &Tensor::randn(0f32, 0.05, (768, n), &gpu)?,
                    Tensor::zeros(768, dtype, &gpu)?,
                    format,
                )
            };
            let (next_int8, next_fp8) = (next(EightBit::Int8)?, next(EightBit::Fp8E4M3)?);
            let packed_time = |layer: &EightBitLinear, p: &Packed8, sink: &EightBitLinear| {
                if gelu {
                    // FFN-in as the encoder runs it: from the bytes the attention's layer norm
                    // wrote, GEMM, then GELU + quantization of FFN-out's input.
                    graph_time_us(&gpu, name, || {
                        layer.forward_gelu_packed(&x, Some(p), sink)?.map_or_else(
                            || candle_core::bail!("no fused GELU kernel"),
                            |q| Ok(q.bytes().clone()),
                        )
                    })
                } else {
                    graph_time_us(&gpu, name, || layer.forward_packed(p))
                }
            };
            let t_int8_packed = packed_time(&int8, &p_int8, &next_int8)?;
            let t_fp8_packed = packed_time(&fp8, &p_fp8, &next_fp8)?;
            fp8.set_fp8_fast_accumulation(true);
            let mut next_fp8 = next_fp8;
            next_fp8.set_fp8_fast_accumulation(true);
            let t_fp8_fast = graph_time_us(&gpu, name, || fp8.forward(&x, gelu))?;
            let t_fp8_fast_packed = packed_time(&fp8, &p_fp8, &next_fp8)?;
            let flop = 2.0 * (rows * k * n) as f64;
            let times = [
                float,
                t_int8,
                t_fp8,
                t_int8_packed,
                t_fp8_fast,
                t_fp8_packed,
                t_fp8_fast_packed,
            ];
            for (s, t) in sums.iter_mut().zip(times) {
                *s += t;
            }
            println!(
                "{batch:>5} {name:<13} {float:>9.1} {t_int8:>9.1} {t_fp8:>9.1} {t_int8_packed:>11.1} {t_fp8_fast:>9.1} {t_fp8_packed:>11.1} {:>9.0} {t_fp8_fast_packed:>13.1}",
                flop / t_fp8_packed / 1e6
            );
        }
        println!(
            "{batch:>5} {:<13} {:>9.1} {:>9.1} {:>9.1} {:>11.1} {:>9.1} {:>11.1} {:>9} {:>13.1}",
            "sum", sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], "", sums[6]
        );
        println!(
            "{batch:>5} {:<13} {:>9} {:>9.2} {:>9.2} {:>11.2} {:>9.2} {:>11.2} {:>9} {:>13.2}",
            "float/8-bit",
            "1",
            sums[0] / sums[1],
            sums[0] / sums[2],
            sums[0] / sums[3],
            sums[0] / sums[4],
            sums[0] / sums[5],
            "",
            sums[0] / sums[6]
        );
    }
    Ok(())
}
