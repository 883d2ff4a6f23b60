//! Where DistilBERT-base's forward time goes on a GPU: each operation one encoder block runs, in
//! the order and the form the encoder runs them on CUDA now (fused Q/K/V GEMM without bias, the
//! one-kernel attention, GEMMs whose bias the layer norm adds, ...), timed alone at the block's
//! shapes (batch x seq 128, dim 768, 12 heads, FFN 3072), with each one's floor; their sum per
//! block and for the six blocks. Then the same block in W8A8 FP8 (`fp8-<float>`) as the encoder
//! runs it: Q/K/V and FFN-in reading the bytes the layer norms wrote, FFN-out the GELU kernel's.
//!
//!     cargo run --release --features cuda --example op_timing -- [BATCH] [fp16|bf16]
//!
//! Each time is one CUDA graph of 20 back-to-back calls, replayed 30 times with a synchronize
//! each, median / 20: the cost inside a graph-replayed forward (cuBLASLt's heuristic query is
//! paid once, at capture). Floor: the larger of the GEMM's FLOPs at the dense tensor-core peak
//! (H200: 989 TFLOP/s fp16/bf16, 1979 FP8) and the bytes read + written at 4.8 TB/s.

use candle_core::{DType, Result, Tensor};
use runner::config::EightBit;
use runner::model::parts::w8a8::EightBitLinear;
use runner::ops::eight_bit::norm_quantize;
use runner::ops::{attention, fused};

mod common;
use common::{graph_time_us, GRAPH_CALLS};

const HALF_PEAK: f64 = 989e12;
const FP8_PEAK: f64 = 1979e12;
const BANDWIDTH: f64 = 4.8e12;

/// One timed operation: what, microseconds, FLOPs, bytes moved, and the peak its FLOPs run at.
struct Op {
    what: &'static str,
    us: f64,
    flop: f64,
    bytes: f64,
    peak: f64,
}

impl Op {
    fn floor_us(&self) -> f64 {
        (self.flop / self.peak).max(self.bytes / BANDWIDTH) * 1e6
    }
}

fn print_block(title: &str, ops: &[Op]) {
    println!("{title}");
    println!(
        "{:<58} {:>8} {:>9} {:>7} {:>10}",
        "operation", "us", "floor us", "x floor", "rate"
    );
    let (mut total, mut floor, mut gemms) = (0.0, 0.0, 0.0);
    for op in ops {
        let rate = if op.flop > 0.0 {
            format!("{:.0} TFLOP/s", op.flop / op.us / 1e6)
        } else {
            format!("{:.0} GB/s", op.bytes / op.us / 1e3)
        };
        println!(
            "{:<58} {:>8.1} {:>9.1} {:>7.1} {rate:>10}",
            op.what,
            op.us,
            op.floor_us(),
            op.us / op.floor_us()
        );
        total += op.us;
        floor += op.floor_us();
        if op.flop > 0.0 {
            gemms += op.us;
        }
    }
    println!(
        "one block: {total:.1} us (floor {floor:.1}; {gemms:.1} us in operations with GEMMs); six blocks {:.3} ms\n",
        6.0 * total / 1e3
    );
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let b: usize = args.get(1).map_or(64, |a| a.parse().expect("batch"));
    let dtype = match args.get(2).map_or("fp16", String::as_str) {
        "bf16" => DType::BF16,
        _ => DType::F16,
    };
    let device = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    let (s, d, h, f) = (128usize, 768usize, 12usize, 3072usize);
    let n = b * s;
    let el = dtype.size_in_bytes() as f64;
    let rnd = |shape: &[usize], sd: f32| Tensor::randn(0f32, sd, shape, &device)?.to_dtype(dtype);
    let gemm = |m: usize, k: usize, nn: usize| 2.0 * (m * k * nn) as f64;
    // Bytes of a GEMM: A, B and C in the dtype (`a`, `w` bytes per input and weight value).
    let gemm_bytes = |m: usize, k: usize, nn: usize, a: f64, w: f64| {
        (m * k) as f64 * a + (k * nn) as f64 * w + (m * nn) as f64 * el
    };
    let nd = (n * d) as f64;

    let x = rnd(&[n, d], 1.0)?;
    let residual = rnd(&[n, d], 1.0)?;
    let w_qkv = rnd(&[3 * d, d], 0.05)?;
    let b_qkv = rnd(&[3 * d], 0.1)?;
    let projected = rnd(&[n, 3 * d], 1.0)?;
    let mask = Tensor::zeros((b, 1, 1, s), DType::F32, &device)?;
    let w_o = rnd(&[d, d], 0.05)?;
    let (w1, b1) = (rnd(&[f, d], 0.05)?, rnd(&[f], 0.1)?);
    let w2 = rnd(&[d, f], 0.05)?;
    let hidden = rnd(&[n, f], 1.0)?;
    let gamma_beta = rnd(&[2, d], 1.0)?;
    let gamma_beta_bias = rnd(&[3, d], 1.0)?;
    let attention_floor_bytes = (n * 3 * d) as f64 * el + nd * el;
    let attention_flop = 2.0 * gemm(b * h * s, d / h, s);

    let mut ops = Vec::new();
    let mut time = |what: &'static str, flop: f64, bytes: f64, peak: f64, us: f64| {
        ops.push(Op {
            what,
            us,
            flop,
            bytes,
            peak,
        })
    };
    let us = graph_time_us(&device, "qkv", || x.matmul(&w_qkv.t()?))?;
    time(
        "QKV GEMM (n,768)x(768,2304), no bias",
        gemm(n, d, 3 * d),
        gemm_bytes(n, d, 3 * d, el, el),
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "attention", || {
        attention::attention(&projected, &b_qkv, &mask, s, h)
    })?;
    time(
        "attention, one kernel (QKV bias, QK^T, softmax, PV)",
        attention_flop,
        attention_floor_bytes,
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "out", || x.matmul(&w_o.t()?))?;
    time(
        "out-projection GEMM (n,768)x(768,768), no bias",
        gemm(n, d, d),
        gemm_bytes(n, d, d, el, el),
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "norm", || {
        fused::bias_add_layer_norm(&x, &residual, &gamma_beta_bias, 1e-12)
    })?;
    time(
        "its bias + residual + layer norm (runner kernel)",
        0.0,
        3.0 * nd * el,
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "ffn_in", || x.matmul(&w1.t()?))?;
    time(
        "FFN-in GEMM (n,768)x(768,3072)",
        gemm(n, d, f),
        gemm_bytes(n, d, f, el, el),
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "gelu", || fused::bias_act(&hidden, &b1, true))?;
    time(
        "its bias + erf GELU (runner kernel)",
        0.0,
        2.0 * (n * f) as f64 * el,
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "ffn_out", || hidden.matmul(&w2.t()?))?;
    time(
        "FFN-out GEMM (n,3072)x(3072,768), no bias",
        gemm(n, f, d),
        gemm_bytes(n, f, d, el, el),
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "norm", || {
        fused::bias_add_layer_norm(&x, &residual, &gamma_beta_bias, 1e-12)
    })?;
    time(
        "its bias + residual + layer norm (runner kernel)",
        0.0,
        3.0 * nd * el,
        HALF_PEAK,
        us,
    );
    print_block(
        &format!(
            "batch {b}, seq {s}, {dtype:?}, float block: us per call in a CUDA graph of {GRAPH_CALLS}"
        ),
        &ops,
    );

    // The same block in FP8, as the encoder runs it with device.fuse_quantization (default).
    let f32w = |t: &Tensor| t.to_dtype(DType::F32);
    let fp8 =
        |w: &Tensor, bias: Tensor| EightBitLinear::quantize(&f32w(w)?, bias, EightBit::Fp8E4M3);
    let zero = |k: usize| Tensor::zeros(k, dtype, &device);
    let parts = [
        fp8(&w_qkv.narrow(0, 0, d)?, zero(d)?)?,
        fp8(&w_qkv.narrow(0, d, d)?, zero(d)?)?,
        fp8(&w_qkv.narrow(0, 2 * d, d)?, zero(d)?)?,
    ];
    let (qkv8, _) =
        EightBitLinear::fuse_outputs(&[(&parts[0], 1.0), (&parts[1], 1.0), (&parts[2], 1.0)])?;
    let out8 = fp8(&w_o, rnd(&[d], 0.1)?)?;
    let lin1 = fp8(&w1, b1.clone())?;
    let lin2 = fp8(&w2, rnd(&[d], 0.1)?)?;
    if !(qkv8.on_tensor_cores() && lin1.gelu_packs_for(&lin2)) {
        candle_core::bail!("FP8 is not on tensor cores here ({dtype:?})");
    }
    let format = EightBit::Fp8E4M3;
    let (_, packed_x) =
        norm_quantize::add_layer_norm_packed(&x, &residual, &gamma_beta, 1e-12, format)?;
    let packed_hidden = lin1
        .forward_gelu_packed(&x, Some(&packed_x), &lin2)?
        .ok_or_else(|| candle_core::Error::msg("no fused GELU kernel"))?;
    let mut ops = Vec::new();
    let mut time = |what: &'static str, flop: f64, bytes: f64, peak: f64, us: f64| {
        ops.push(Op {
            what,
            us,
            flop,
            bytes,
            peak,
        })
    };
    let us = graph_time_us(&device, "qkv8", || qkv8.forward_packed(&packed_x))?;
    time(
        "QKV FP8 GEMM from the norm's bytes",
        gemm(n, d, 3 * d),
        gemm_bytes(n, d, 3 * d, 1.0, 1.0),
        FP8_PEAK,
        us,
    );
    let us = graph_time_us(&device, "attention", || {
        attention::attention(&projected, &b_qkv, &mask, s, h)
    })?;
    time(
        "attention, one kernel (as the float block)",
        attention_flop,
        attention_floor_bytes,
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "out8", || out8.forward(&x, false))?;
    time(
        "out-projection: quantization pass + FP8 GEMM + bias",
        gemm(n, d, d),
        gemm_bytes(n, d, d, 1.0, 1.0) + nd * (el + 1.0),
        FP8_PEAK,
        us,
    );
    let us = graph_time_us(&device, "norm8", || {
        Ok(norm_quantize::add_layer_norm_packed(&x, &residual, &gamma_beta, 1e-12, format)?.0)
    })?;
    time(
        "residual + layer norm writing float + E4M3 (runner kernel)",
        0.0,
        3.0 * nd * el + nd,
        HALF_PEAK,
        us,
    );
    let us = graph_time_us(&device, "ffn_in8", || {
        lin1.forward_gelu_packed(&x, Some(&packed_x), &lin2)?
            .map(|p| p.bytes().clone())
            .ok_or_else(|| candle_core::Error::msg("no fused GELU kernel"))
    })?;
    time(
        "FFN-in FP8 GEMM + bias/GELU/E4M3 kernel (from the norm's)",
        gemm(n, d, f),
        gemm_bytes(n, d, f, 1.0, 1.0) + (n * f) as f64 * (el + 1.0),
        FP8_PEAK,
        us,
    );
    let us = graph_time_us(&device, "ffn_out8", || lin2.forward_packed(&packed_hidden))?;
    time(
        "FFN-out FP8 GEMM + bias (from the GELU's bytes)",
        gemm(n, f, d),
        gemm_bytes(n, f, d, 1.0, 1.0),
        FP8_PEAK,
        us,
    );
    let us = graph_time_us(&device, "norm8", || {
        Ok(norm_quantize::add_layer_norm_packed(&x, &residual, &gamma_beta, 1e-12, format)?.0)
    })?;
    time(
        "residual + layer norm writing float + E4M3 (runner kernel)",
        0.0,
        3.0 * nd * el + nd,
        HALF_PEAK,
        us,
    );
    print_block(
        &format!("batch {b}, seq {s}, fp8-{dtype:?} block (E4M3 GEMMs, f32 accumulation)"),
        &ops,
    );
    Ok(())
}
