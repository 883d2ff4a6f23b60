//! Minimal check of candle's quantized matmul (`QMatMul`) for non-finite outputs from finite
//! inputs: every (format, input width, activation dtype) combination runs `ITERATIONS` times on
//! fresh random inputs, with unrelated allocations in between (as inside a model), and reports
//! how many outputs held NaN/inf and the largest error against the dequantized f32 matmul.
//!
//!   cargo run --release --example qmatmul_check            # CPU
//!   (CUDA build: target/cuda/release/examples/qmatmul_check)
//!
//! Written to isolate NaN seen with q8_0/q4_0 and fp16 activations on all-MiniLM-L6-v2 (input
//! widths 384 and 1536) on an H100; see docs/results/*-quantization/NOTES.md.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

const ITERATIONS: usize = 200;

fn main() -> candle_core::Result<()> {
    let device = Device::cuda_if_available(0)?;
    println!("device: {device:?}");
    println!("format  k     n     rows  dtype  non-finite outputs  max |err| vs f32");
    for format in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        for (k, n) in [(384, 384), (384, 1536), (1536, 384), (768, 768)] {
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let rows = 2048;
                let w = Tensor::randn(0f32, 0.05, (n, k), &device)?;
                let q = QMatMul::from_qtensor(QTensor::quantize(&w, format)?)?;
                let w_deq = match &q {
                    QMatMul::QTensor(t) => t.dequantize(&device)?,
                    _ => candle_core::bail!("not quantized"),
                };
                let mut bad = 0;
                let mut max_err = 0f32;
                for _ in 0..ITERATIONS {
                    let x = Tensor::randn(0f32, 1.0, (1, rows, k), &device)?;
                    // Churn the allocator as a model does between layers.
                    let _noise = candle_nn::ops::softmax_last_dim(&x)?.sqr()?;
                    let y = q.forward(&x.to_dtype(dtype)?)?.to_dtype(DType::F32)?;
                    let finite = y.abs()?.sum_all()?.to_scalar::<f32>()?.is_finite();
                    if !finite {
                        bad += 1;
                        continue;
                    }
                    let reference = x.matmul(&w_deq.t()?.unsqueeze(0)?)?;
                    let err = (&y - &reference)?.abs()?.flatten_all()?.max(0)?;
                    max_err = max_err.max(err.to_scalar::<f32>()?);
                }
                println!(
                    "{:<7} {k:<5} {n:<5} {rows:<5} {:<6} {bad:>4} / {ITERATIONS:<13} {max_err:.4}",
                    format!("{format:?}"),
                    format!("{dtype:?}")
                );
            }
        }
    }
    // The layer sequence of all-MiniLM-L6-v2 at batch 16 x seq 128 (2048 token rows), then its
    // 2-label classifier on 16 pooled rows, interleaved as in the model.
    println!(
        "model-like chain (6 x [4 x 384->384, 384->1536, 1536->384], then 384->2 on 16 rows):"
    );
    for (format, pad_to) in [
        (GgmlDType::Q8_0, None),
        (GgmlDType::Q4_0, None),
        (GgmlDType::Q8_0, Some(512)),
        (GgmlDType::Q4_0, Some(512)),
    ] {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            // With pad_to, weights and inputs get zero columns up to a multiple of 512 (the
            // runner's workaround).
            let padded = |k: usize| pad_to.map_or(k, |p: usize| k.next_multiple_of(p));
            let mut shapes = Vec::new();
            for _ in 0..6 {
                shapes.extend([(384, 384); 4]);
                shapes.extend([(384, 1536), (1536, 384)]);
            }
            shapes.push((384, 2));
            let layers = shapes
                .iter()
                .map(|&(k, n)| {
                    let w = Tensor::randn(0f32, 0.05, (n, k), &device)?.pad_with_zeros(
                        1,
                        0,
                        padded(k) - k,
                    )?;
                    QMatMul::from_qtensor(QTensor::quantize(&w, format)?)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let mut bad: std::collections::BTreeMap<String, usize> = Default::default();
            for _ in 0..ITERATIONS / 4 {
                for (i, (layer, &(k, n))) in layers.iter().zip(&shapes).enumerate() {
                    let rows = if n == 2 { 16 } else { 2048 };
                    let x = Tensor::randn(0f32, 1.0, (1, rows, k), &device)?
                        .pad_with_zeros(2, 0, padded(k) - k)?
                        .to_dtype(dtype)?;
                    let y = layer.forward(&x)?.to_dtype(DType::F32)?;
                    if !y.abs()?.sum_all()?.to_scalar::<f32>()?.is_finite() {
                        *bad.entry(format!("#{i} {k}->{n}")).or_default() += 1;
                    }
                }
            }
            println!(
                "{:<7} {:<6} {:<16} non-finite: {}",
                format!("{format:?}"),
                format!("{dtype:?}"),
                if pad_to.is_some() {
                    "padded to 512"
                } else {
                    "as is"
                },
                if bad.is_empty() {
                    "none".to_string()
                } else {
                    format!("{bad:?}")
                }
            );
        }
    }
    Ok(())
}
