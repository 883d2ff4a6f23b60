//! Where DistilBERT-base's forward time goes on a GPU: each operation one encoder block runs, in
//! the order the encoder runs them, timed alone at the block's shapes (batch x seq 128, dim 768,
//! 12 heads, FFN 3072) in a dtype; their sum per block and for the six blocks; and a GGML q8_0
//! quantized linear beside the float GEMM + bias it replaces.
//!
//!     cargo run --release --features cuda --example op_timing -- [BATCH] [fp16|bf16|fp32]
//!
//! Each time is the median over 30 samples of 20 back-to-back calls then one synchronize, divided
//! by 20: the cost of the operation inside a pipelined forward, not of a launch plus a sync.
//! Rates: TFLOP/s for GEMMs, GB/s (bytes read + written) for the memory-bound kernels.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use runner::model::fused;

const CALLS: usize = 20;

fn time_us(device: &Device, f: impl Fn() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..5 {
        f()?;
    }
    device.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..30 {
        let t = std::time::Instant::now();
        for _ in 0..CALLS {
            f()?;
        }
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let b: usize = args.get(1).map_or(64, |a| a.parse().expect("batch"));
    let dtype = match args.get(2).map_or("fp16", String::as_str) {
        "fp32" => DType::F32,
        "bf16" => DType::BF16,
        _ => DType::F16,
    };
    let device = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    let (s, d, h, f) = (128usize, 768usize, 12usize, 3072usize);
    let (n, hd) = (b * s, d / h);
    let el = dtype.size_in_bytes() as f64;
    let rnd = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &device)?.to_dtype(dtype);
    let gemm = |m: usize, k: usize, nn: usize| 2.0 * (m * k * nn) as f64;
    let tflops = |flop: f64, us: f64| format!("{:.0} TFLOP/s", flop / us / 1e6);
    let gbs = |bytes: f64, us: f64| format!("{:.0} GB/s", bytes / us / 1e3);

    let x = rnd(&[n, d])?;
    let (w_qkv, b_qkv) = (rnd(&[3 * d, d])?, rnd(&[3 * d])?);
    let qkv_out = rnd(&[n, 3 * d])?;
    let (q, k, v) = (
        rnd(&[b, h, s, hd])?,
        rnd(&[b, h, s, hd])?,
        rnd(&[b, h, s, hd])?,
    );
    let scores = rnd(&[b, h, s, s])?;
    let mask = Tensor::zeros((b, 1, 1, s), DType::F32, &device)?;
    let ctx = rnd(&[b, h, s, hd])?;
    let (w_o, b_o) = (rnd(&[d, d])?, rnd(&[d])?);
    let (w1, b1) = (rnd(&[f, d])?, rnd(&[f])?);
    let (w2, b2) = (rnd(&[d, f])?, rnd(&[d])?);
    let hidden = rnd(&[n, f])?;
    let gamma_beta = rnd(&[2, d])?;

    let mut rows: Vec<(String, f64, String)> = Vec::new();
    let mut add = |what: &str, us: f64, rate: String| rows.push((what.to_string(), us, rate));
    let us = time_us(&device, || x.matmul(&w_qkv.t()?))?;
    add(
        "QKV GEMM (n,768)x(768,2304)",
        us,
        tflops(gemm(n, d, 3 * d), us),
    );
    let us = time_us(&device, || fused::qkv_heads(&qkv_out, &b_qkv, s, h))?;
    add(
        "QKV bias + head split (runner kernel)",
        us,
        gbs(2.0 * (n * 3 * d) as f64 * el, us),
    );
    let us = time_us(&device, || q.matmul(&k.t()?))?;
    add("QK^T batched GEMM", us, tflops(gemm(b * h * s, hd, s), us));
    let us = time_us(&device, || fused::masked_softmax(&scores, &mask))?;
    add(
        "mask + softmax (runner kernel)",
        us,
        gbs(2.0 * (b * h * s * s) as f64 * el, us),
    );
    let us = time_us(&device, || scores.matmul(&v))?;
    add("PV batched GEMM", us, tflops(gemm(b * h * s, s, hd), us));
    let us = time_us(&device, || fused::merge_heads(&ctx))?;
    add(
        "head merge (runner kernel)",
        us,
        gbs(2.0 * (n * d) as f64 * el, us),
    );
    let us = time_us(&device, || x.matmul(&w_o.t()?))?;
    add(
        "out-projection GEMM (n,768)x(768,768)",
        us,
        tflops(gemm(n, d, d), us),
    );
    let us = time_us(&device, || fused::bias_act(&x, &b_o, false))?;
    add(
        "its bias add (runner kernel)",
        us,
        gbs(2.0 * (n * d) as f64 * el, us),
    );
    let us = time_us(&device, || {
        fused::add_layer_norm(&x, &x, &gamma_beta, 1e-12)
    })?;
    add(
        "residual + layer norm (runner kernel)",
        us,
        gbs(3.0 * (n * d) as f64 * el, us),
    );
    let us = time_us(&device, || x.matmul(&w1.t()?))?;
    add(
        "FFN-in GEMM (n,768)x(768,3072)",
        us,
        tflops(gemm(n, d, f), us),
    );
    let us = time_us(&device, || fused::bias_act(&hidden, &b1, true))?;
    add(
        "its bias + GELU (runner kernel)",
        us,
        gbs(2.0 * (n * f) as f64 * el, us),
    );
    let us = time_us(&device, || hidden.matmul(&w2.t()?))?;
    add(
        "FFN-out GEMM (n,3072)x(3072,768)",
        us,
        tflops(gemm(n, f, d), us),
    );
    let us = time_us(&device, || fused::bias_act(&x, &b2, false))?;
    add(
        "its bias add (runner kernel)",
        us,
        gbs(2.0 * (n * d) as f64 * el, us),
    );
    let us = time_us(&device, || {
        fused::add_layer_norm(&x, &x, &gamma_beta, 1e-12)
    })?;
    add(
        "residual + layer norm (runner kernel)",
        us,
        gbs(3.0 * (n * d) as f64 * el, us),
    );

    println!(
        "batch {b}, seq {s}, {dtype:?}: microseconds per call in a stream of {CALLS} (median of 30)"
    );
    let (mut total, mut gemms) = (0.0, 0.0);
    for (what, us, rate) in &rows {
        println!("{what:<45} {us:>9.1} us  {rate}");
        total += us;
        if what.contains("GEMM") {
            gemms += us;
        }
    }
    let flop =
        gemm(n, d, 3 * d) + 2.0 * gemm(b * h * s, hd, s) + gemm(n, d, d) + 2.0 * gemm(n, d, f);
    println!(
        "one block: {total:.1} us ({gemms:.1} us in GEMMs, {:.1} us in the rest); six blocks {:.2} ms; {}",
        total - gemms,
        6.0 * total / 1e3,
        tflops(flop, total)
    );

    // A quantized linear as the quantized precisions run it: candle's QMatMul (activations
    // quantized to q8_1, then GGML's MMQ kernels) plus candle's broadcast bias add.
    println!();
    let w1_q = QMatMul::from_qtensor(QTensor::quantize(
        &w1.to_dtype(DType::F32)?,
        GgmlDType::Q8_0,
    )?)?;
    let q_us = time_us(&device, || w1_q.forward(&x))?;
    let qb_us = time_us(&device, || w1_q.forward(&x)?.broadcast_add(&b1))?;
    let f_us = time_us(&device, || {
        fused::bias_act(&x.matmul(&w1.t()?)?, &b1, false)
    })?;
    println!(
        "FFN-in as q8_0 QMatMul {q_us:.1} us ({}), + candle's bias add {qb_us:.1} us; the float GEMM + runner bias kernel {f_us:.1} us: quantized/float = {:.2}x",
        tflops(gemm(n, d, f), q_us),
        qb_us / f_us
    );
    Ok(())
}
