//! Where DistilBERT-base's forward time goes on a GPU: each kind of operation the encoder runs, timed
//! alone at one block's shapes (batch x seq 128, dim 768, 12 heads, FFN 3072), in a dtype.
//!
//!     cargo run --release --features cuda --example op_timing -- [BATCH] [fp16|bf16|fp32]
//!
//! Prints microseconds per call (median of 50 synchronized calls) and the achieved rate: TFLOP/s
//! for GEMMs, GB/s (bytes read + written) for the memory-bound kernels.

use candle_core::{DType, Device, Result, Tensor, D};

fn time_us(device: &Device, mut f: impl FnMut() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..5 {
        f()?;
    }
    device.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        f()?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
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
    let device = Device::new_cuda(0)?;
    let (s, d, h, f) = (128usize, 768usize, 12usize, 3072usize);
    let n = b * s;
    let el = dtype.size_in_bytes() as f64;
    let rnd = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &device)?.to_dtype(dtype);
    let x = rnd(&[n, d])?;
    let x3 = x.reshape((b, s, d))?;
    let w1 = rnd(&[f, d])?;
    let b1 = rnd(&[f])?;
    let hidden = rnd(&[n, f])?;
    let scores = rnd(&[b, h, s, s])?;
    let mask = Tensor::zeros((b, 1, 1, s), dtype, &device)?;
    let qkv = rnd(&[b, s, 3 * d])?;
    let ctx = rnd(&[b, h, s, d / h])?;
    let ln_w = rnd(&[d])?;
    let ln_b = rnd(&[d])?;
    let gemm_flop = 2.0 * n as f64 * d as f64 * f as f64;
    let rows: Vec<(&str, f64, String)> = vec![
        {
            let us = time_us(&device, || x.matmul(&w1.t()?))?;
            (
                "GEMM 2-D (n,768)x(768,3072)",
                us,
                format!("{:.0} TFLOP/s", gemm_flop / us / 1e6),
            )
        },
        {
            let wb = w1.broadcast_left(b)?.t()?;
            let us = time_us(&device, || x3.matmul(&wb))?;
            (
                "GEMM batched over sequences (candle Linear on 3-D)",
                us,
                format!("{:.0} TFLOP/s", gemm_flop / us / 1e6),
            )
        },
        {
            let us = time_us(&device, || hidden.broadcast_add(&b1))?;
            (
                "bias add, broadcast (n,3072)+(3072)",
                us,
                format!("{:.0} GB/s", 2.0 * (n * f) as f64 * el / us / 1e3),
            )
        },
        {
            let us = time_us(&device, || hidden.gelu_erf())?;
            (
                "erf GELU (n,3072)",
                us,
                format!("{:.0} GB/s", 2.0 * (n * f) as f64 * el / us / 1e3),
            )
        },
        {
            let us = time_us(&device, || &x + &x)?;
            (
                "residual add (n,768)",
                us,
                format!("{:.0} GB/s", 3.0 * (n * d) as f64 * el / us / 1e3),
            )
        },
        {
            let us = time_us(&device, || {
                candle_nn::ops::layer_norm(&x, &ln_w, &ln_b, 1e-12)
            })?;
            (
                "layer norm (n,768)",
                us,
                format!("{:.0} GB/s", 2.0 * (n * d) as f64 * el / us / 1e3),
            )
        },
        {
            let us = time_us(&device, || scores.broadcast_add(&mask))?;
            (
                "mask add, broadcast (b,12,128,128)+(b,1,1,128)",
                us,
                format!("{:.0} GB/s", 2.0 * (b * h * s * s) as f64 * el / us / 1e3),
            )
        },
        {
            let us = time_us(&device, || candle_nn::ops::softmax_last_dim(&scores))?;
            (
                "softmax (b,12,128,128)",
                us,
                format!("{:.0} GB/s", 2.0 * (b * h * s * s) as f64 * el / us / 1e3),
            )
        },
        {
            let us = time_us(&device, || {
                qkv.reshape((b, s, 3, h, d / h))?
                    .permute((2, 0, 3, 1, 4))?
                    .contiguous()
            })?;
            (
                "QKV head split (permute + contiguous)",
                us,
                format!("{:.0} GB/s", 2.0 * (n * 3 * d) as f64 * el / us / 1e3),
            )
        },
        {
            let us = time_us(&device, || ctx.transpose(1, 2)?.reshape((b, s, d)))?;
            (
                "context merge (transpose + reshape copy)",
                us,
                format!("{:.0} GB/s", 2.0 * (n * d) as f64 * el / us / 1e3),
            )
        },
        {
            let q = rnd(&[b, h, s, d / h])?;
            let k = rnd(&[b, h, s, d / h])?;
            let flop = 2.0 * (b * h * s * s * (d / h)) as f64;
            let us = time_us(&device, || q.matmul(&k.t()?))?;
            (
                "QK^T batched GEMM",
                us,
                format!("{:.0} TFLOP/s", flop / us / 1e6),
            )
        },
        {
            let us = time_us(&device, || hidden.to_dtype(DType::F32))?;
            (
                "cast to f32 (n,3072)",
                us,
                format!("{:.0} GB/s", (n * f) as f64 * (el + 4.0) / us / 1e3),
            )
        },
        {
            let sum = x.sum_keepdim(D::Minus1)?;
            let us = time_us(&device, || x.broadcast_sub(&sum))?;
            (
                "broadcast sub (n,768)-(n,1)",
                us,
                format!("{:.0} GB/s", 2.0 * (n * d) as f64 * el / us / 1e3),
            )
        },
    ];
    println!("batch {b}, seq {s}, {dtype:?}: microseconds per call (median of 50, synchronized)");
    for (what, us, rate) in rows {
        println!("{what:<55} {us:>9.1} us  {rate}");
    }
    Ok(())
}
