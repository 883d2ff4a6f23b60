//! The per-kernel profile of one fused decode step of a layer (decode_check profile), the fused
//! path's launches and the decode GEMV's (`decode_kernels = "gemv"`), each launch of
//! the step alone, `REPEAT` times inside one captured CUDA graph (the cost a node has in the step's
//! graph, launch gaps included), bf16, at the presets' shapes, batch 1 and 8, the cache 640
//! positions long and the step at position 575 (the mean context of 512 + 128). Each line gives
//! the bytes the launch must move, so NOTES can put it against the floor at the measured bandwidth.
//! Then each way's whole layer as one chain of its launches (`chain=`), REPEAT layers in one
//! graph: the fused path's 10 launches, the gemv path's 7, and the same 7 with Programmatic
//! Dependent Launch (gemv-pdl, Q into a buffer as in the decoder), and gemv-pdl's with its
//! GEMVs streaming their weights by TMA bulk copies (gemv-bulk): the gaps between launches,
//! which the per-launch figures leave out, are in these. `b1` among the arguments: batch 1 only.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use runner::ops::decode::gemv::{
    gemv_bulk_into, gemv_into_launched, swiglu_into_launched, Prologue,
};
use runner::ops::decode::{self, AttentionScratch, CacheAt, Launch, RopeArgs};
use runner::ops::graph::{FixedWork, GraphMode};

const REPEAT: usize = 50;
/// A layer of the `decode_kernels = "gemv"` step: each launch and its count.
const GEMV_STEP: [(&str, usize); 7] = [
    ("gemv_qkv (rms prologue)", 1),
    ("rope_kv_write", 1),
    ("decode_attention (one launch, preallocated)", 1),
    ("gemv_o (residual epilogue)", 1),
    ("gemv_gate_up (rms prologue)", 1),
    ("swiglu_rows (into a buffer)", 1),
    ("gemv_down (residual epilogue)", 1),
];
const REPLAYS: usize = 20;

/// us per call of `op` inside a graph of REPEAT calls (median of REPLAYS replays), for an `op`
/// that may change its own input (a launch or chain adding into its residual buffer): `restore`
/// puts the input back before the eager reference and before capture, so the replay is checked
/// against an eager run from the same state (session 6's gemv chains were not, failed that check
/// and ran eagerly).
fn in_graph_restored(
    dev: &Device,
    op: &dyn Fn() -> Result<Tensor>,
    restore: &dyn Fn() -> Result<()>,
) -> Result<(f64, String)> {
    let work = || {
        let mut last = op()?;
        for _ in 1..REPEAT {
            last = op()?;
        }
        Ok(last)
    };
    let fixed = FixedWork::stateful(dev, GraphMode::Auto, "a profiled launch", work, restore);
    let mut times = Vec::new();
    for _ in 0..REPLAYS {
        dev.synchronize()?;
        let t = Instant::now();
        fixed.run()?;
        dev.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e6 / REPEAT as f64);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok((times[times.len() / 2], fixed.describe()))
}

fn randn(shape: &[usize], dev: &Device) -> Result<Tensor> {
    (Tensor::randn(0f32, 1f32, shape, dev)? * 0.05)?.to_dtype(DType::BF16)
}

fn gemm(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.matmul(&w.t()?)
}

/// `only`: preset names to profile (all when empty).
pub fn profile(dev: &Device, only: &[String]) -> Result<()> {
    // (name, hidden, intermediate, heads, kv_heads, head_dim, vocab, layers)
    let presets = [
        ("smollm2-135m", 576, 1536, 9, 3, 64, 49152, 30),
        ("qwen2.5-0.5b", 896, 4864, 14, 2, 64, 151936, 24),
        ("llama-3.2-1b", 2048, 8192, 32, 8, 64, 128256, 16),
    ];
    let (capacity, position) = (640, 575);
    for (name, h, i, heads, kv, d, vocab, layers) in presets {
        if only.iter().any(|o| o != "b1") && !only.iter().any(|o| o == name) {
            continue;
        }
        let batches: &[usize] = if only.iter().any(|o| o == "b1") {
            &[1]
        } else {
            &[1, 8]
        };
        for &b in batches {
            let x = randn(&[b, h], dev)?;
            let res = randn(&[b, h], dev)?;
            let norm_w = randn(&[h], dev)?;
            let w_qkv = randn(&[(heads + 2 * kv) * d, h], dev)?;
            let w_o = randn(&[h, heads * d], dev)?;
            let w_gu = randn(&[2 * i, h], dev)?;
            let w_down = randn(&[h, i], dev)?;
            let w_head = randn(&[vocab, h], dev)?;
            let qkv = gemm(&x, &w_qkv)?;
            let gu = gemm(&x, &w_gu)?;
            let act = randn(&[b, i], dev)?;
            let ctx = randn(&[b, heads * d], dev)?;
            let keys = randn(&[b, kv, capacity, d], dev)?;
            let values = randn(&[b, kv, capacity, d], dev)?;
            let pos = Tensor::new(&[position as u32], dev)?;
            let t = Tensor::arange(0u32, capacity as u32, dev)?
                .to_dtype(DType::F32)?
                .reshape((capacity, 1))?
                .broadcast_as((capacity, d / 2))?;
            let (cos, sin) = (
                t.cos()?.to_dtype(DType::BF16)?,
                t.sin()?.to_dtype(DType::BF16)?,
            );
            let rope = RopeArgs {
                cos: &cos,
                sin: &sin,
                bias: None,
                qk_norm: None,
                heads,
                kv_heads: kv,
                head_dim: d,
            };
            let at = CacheAt {
                keys: &keys,
                values: &values,
                position: &pos,
                scratch: None,
            };
            let scratch = AttentionScratch::new([b, heads, kv, d, capacity], DType::BF16, dev)?;
            println!(
                "profile,{name},bf16,batch={b},attention_splits={}",
                scratch.splits()
            );
            let fused_at = CacheAt {
                scratch: Some(&scratch),
                ..at
            };
            let q = decode::rope_kv_write(&qkv, &rope, &at)?;
            let s = 2usize; // bf16 bytes
            let kv_read = 2 * b * kv * (position + 1) * d * s;
            // The decode GEMV's outputs, written in place (as the gemv step's buffers are).
            let qkv_out = qkv.copy()?;
            let gu_out = gu.copy()?;
            let h_out = res.copy()?;
            let act_out = act.copy()?;
            let rms = Prologue::RmsNorm {
                weight: &norm_w,
                eps: 1e-5,
            };
            let into = |out: &Tensor,
                        x: &Tensor,
                        w: &Tensor,
                        p: Prologue,
                        residual: bool|
             -> Result<Tensor> {
                gemv_into_launched(out, x, w, p, None, residual, Launch::Stream)?;
                Ok(out.clone())
            };
            let bulk = |out: &Tensor,
                        x: &Tensor,
                        w: &Tensor,
                        p: Prologue,
                        residual: bool|
             -> Result<Tensor> {
                gemv_bulk_into(out, x, w, p, None, residual, Launch::Stream)?;
                Ok(out.clone())
            };
            // (launch, per-layer count in the fused step, bytes it must move); the count in the
            // gemv step is in GEMV_STEP.
            type Op<'a> = Box<dyn Fn() -> Result<Tensor> + 'a>;
            let mut ops: Vec<(&str, usize, usize, Op)> = vec![
                (
                    "add_rms_norm",
                    2,
                    (3 * b * h + h) * s,
                    Box::new(|| Ok(decode::add_rms_norm(&x, &res, &norm_w, 1e-5)?.0)),
                ),
                (
                    "gemm_qkv",
                    1,
                    ((heads + 2 * kv) * d * h + b * h) * s,
                    Box::new(|| gemm(&x, &w_qkv)),
                ),
                (
                    "rope_kv_write",
                    1,
                    2 * b * (heads + 2 * kv) * d * s,
                    Box::new(|| decode::rope_kv_write(&qkv, &rope, &at)),
                ),
                (
                    "decode_attention (one launch, preallocated)",
                    1,
                    kv_read,
                    Box::new(|| decode::decode_attention(&q, &fused_at)),
                ),
                (
                    "decode_attention_wide (one launch, preallocated, gemv-bulk's wide merge)",
                    0,
                    kv_read,
                    Box::new(|| decode::decode_attention_wide(&q, &fused_at, Launch::Stream)),
                ),
                (
                    "decode_attention_two_pass (before; not in the step)",
                    0,
                    kv_read,
                    Box::new(|| decode::decode_attention_two_pass(&q, &at)),
                ),
                (
                    "gemm_o",
                    1,
                    (heads * d * h) * s,
                    Box::new(|| gemm(&ctx, &w_o)),
                ),
                (
                    "gemm_gate_up",
                    1,
                    (2 * i * h) * s,
                    Box::new(|| gemm(&x, &w_gu)),
                ),
                ("swiglu", 1, 3 * b * i * s, Box::new(|| decode::swiglu(&gu))),
                (
                    "gemm_down",
                    1,
                    (i * h) * s,
                    Box::new(|| gemm(&act, &w_down)),
                ),
                (
                    "lm_head (once a step)",
                    0,
                    vocab * h * s,
                    Box::new(|| gemm(&x, &w_head)),
                ),
            ];
            let gemv_ops: Vec<(&str, usize, usize, Op)> = vec![
                (
                    "gemv_qkv (rms prologue)",
                    0,
                    ((heads + 2 * kv) * d * h + b * h) * s,
                    Box::new(|| into(&qkv_out, &x, &w_qkv, rms, false)),
                ),
                (
                    "gemv_o (residual epilogue)",
                    0,
                    (heads * d * h + 2 * b * h) * s,
                    Box::new(|| into(&h_out, &ctx, &w_o, Prologue::None, true)),
                ),
                (
                    "gemv_gate_up (rms prologue)",
                    0,
                    (2 * i * h + b * h) * s,
                    Box::new(|| into(&gu_out, &x, &w_gu, rms, false)),
                ),
                (
                    "gemv_down (swiglu prologue, residual epilogue; not in the step)",
                    0,
                    (i * h + 2 * b * i) * s,
                    Box::new(|| into(&h_out, &gu, &w_down, Prologue::SwiGlu, true)),
                ),
                (
                    "swiglu_rows (into a buffer)",
                    0,
                    3 * b * i * s,
                    Box::new(|| {
                        swiglu_into_launched(&act_out, &gu, Launch::Stream)?;
                        Ok(act_out.clone())
                    }),
                ),
                (
                    "gemv_down (residual epilogue)",
                    0,
                    (i * h + b * i + 2 * b * h) * s,
                    Box::new(|| into(&h_out, &act, &w_down, Prologue::None, true)),
                ),
            ];
            ops.extend(gemv_ops);
            let bulk_ops: Vec<(&str, usize, usize, Op)> = vec![
                (
                    "gemv_bulk_qkv (rms prologue)",
                    0,
                    ((heads + 2 * kv) * d * h + b * h) * s,
                    Box::new(|| bulk(&qkv_out, &x, &w_qkv, rms, false)),
                ),
                (
                    "gemv_bulk_o (residual epilogue)",
                    0,
                    (heads * d * h + 2 * b * h) * s,
                    Box::new(|| bulk(&h_out, &ctx, &w_o, Prologue::None, true)),
                ),
                (
                    "gemv_bulk_gate_up (rms prologue)",
                    0,
                    (2 * i * h + b * h) * s,
                    Box::new(|| bulk(&gu_out, &x, &w_gu, rms, false)),
                ),
                (
                    "gemv_bulk_down (residual epilogue)",
                    0,
                    (i * h + b * i + 2 * b * h) * s,
                    Box::new(|| bulk(&h_out, &act, &w_down, Prologue::None, true)),
                ),
            ];
            ops.extend(bulk_ops);
            let (mut layer_us, mut gemv_layer_us) = (0.0, 0.0);
            // The residual launches add into h_out on every call: restored before the eager
            // reference and the capture, so they are timed as graphs too (session 6 timed them
            // eagerly: their replay check failed).
            let h0 = h_out.copy()?;
            let restore = || h_out.slice_set(&h0, 0, 0);
            for (op, count, bytes, f) in &ops {
                match in_graph_restored(dev, f.as_ref(), &restore) {
                    Ok((us, how)) => {
                        layer_us += us * *count as f64;
                        let in_gemv = GEMV_STEP.iter().find(|g| g.0 == *op).map_or(0, |g| g.1);
                        gemv_layer_us += us * in_gemv as f64;
                        let nodes = how
                            .split('(')
                            .nth(1)
                            .and_then(|s| s.split(' ').next())
                            .and_then(|n| n.parse::<usize>().ok())
                            .map_or("?".to_string(), |n| format!("{}", n / REPEAT));
                        println!(
                            "profile,{name},bf16,batch={b},launch={op},per_layer={count},per_layer_gemv={in_gemv},us={us:.2},bytes={bytes},graph_nodes_per_call={nodes}"
                        );
                    }
                    Err(e) => println!("profile,{name},bf16,batch={b},launch={op},error: {e}"),
                }
            }
            println!(
                "profile,{name},bf16,batch={b},layer_sum_us={layer_us:.1},layers={layers},layers_x_sum_ms={:.3}",
                layer_us * layers as f64 / 1e3
            );
            println!(
                "profile,{name},bf16,batch={b},kernels=gemv,layer_sum_us={gemv_layer_us:.1},layers={layers},layers_x_sum_ms={:.3}",
                gemv_layer_us * layers as f64 / 1e3
            );
            // Each way's layer as one chain of launches, as the decoder runs it: the gemv ones
            // reading and writing the step buffers; gemv's rope allocating its Q, gemv-pdl's
            // writing it into a buffer (no allocation node between two launches).
            let q_buf = Tensor::zeros((b, heads * d), DType::BF16, dev)?;
            let gemv_layer = |l: Launch, bulk: bool| -> Result<Tensor> {
                let (r, n) = (
                    Prologue::RmsNorm {
                        weight: &norm_w,
                        eps: 1e-5,
                    },
                    Prologue::None,
                );
                let gemv_into_launched = if bulk {
                    gemv_bulk_into
                } else {
                    gemv_into_launched
                };
                gemv_into_launched(&qkv_out, &h_out, &w_qkv, r, None, false, l)?;
                let q1 = match l {
                    Launch::Stream => decode::rope_kv_write(&qkv_out, &rope, &at)?,
                    Launch::Programmatic => {
                        decode::rope_kv_write_into(&qkv_out, &rope, &at, &q_buf, l)?
                    }
                };
                let c = if bulk {
                    decode::decode_attention_wide(&q1, &fused_at, l)?
                } else {
                    decode::decode_attention_launched(&q1, &fused_at, l)?
                };
                gemv_into_launched(&h_out, &c, &w_o, n, None, true, l)?;
                gemv_into_launched(&gu_out, &h_out, &w_gu, r, None, false, l)?;
                swiglu_into_launched(&act_out, &gu_out, l)?;
                gemv_into_launched(&h_out, &act_out, &w_down, n, None, true, l)?;
                Ok(h_out.clone())
            };
            let fused_layer = || -> Result<Tensor> {
                let (normed, r1) = decode::add_rms_norm(&x, &res, &norm_w, 1e-5)?;
                let qkv1 = gemm(&normed, &w_qkv)?;
                let q1 = decode::rope_kv_write(&qkv1, &rope, &at)?;
                let c = decode::decode_attention(&q1, &fused_at)?;
                let a = gemm(&c, &w_o)?;
                let (normed, _) = decode::add_rms_norm(&a, &r1, &norm_w, 1e-5)?;
                let act1 = decode::swiglu(&gemm(&normed, &w_gu)?)?;
                gemm(&act1, &w_down)
            };
            let chains: [(&str, Op); 4] = [
                ("fused (10 launches)", Box::new(fused_layer)),
                (
                    "gemv (7 launches)",
                    Box::new(|| gemv_layer(Launch::Stream, false)),
                ),
                (
                    "gemv-pdl (7 launches, all programmatic)",
                    Box::new(|| gemv_layer(Launch::Programmatic, false)),
                ),
                (
                    "gemv-bulk (7 launches, all programmatic, bulk-copy GEMVs, wide attention merge)",
                    Box::new(|| gemv_layer(Launch::Programmatic, true)),
                ),
            ];
            for (way, f) in &chains {
                match in_graph_restored(dev, f.as_ref(), &restore) {
                    Ok((us, how)) => println!(
                        "profile,{name},bf16,batch={b},chain={way},us_per_layer={us:.2},layers={layers},layers_x_chain_ms={:.3},{}",
                        us * layers as f64 / 1e3,
                        how.replace(',', ";")
                    ),
                    Err(e) => println!("profile,{name},bf16,batch={b},chain={way},error: {e}"),
                }
            }
        }
    }
    Ok(())
}
