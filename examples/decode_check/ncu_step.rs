//! `decode_check ncu-step [PRESET] [WAY] [step|gemvs|none]`: one decode step of the own decoder
//! (seeded random weights, bf16, batch 1, a 512-token prompt, the step at position ~575, the
//! runner's cells' mean context) as its captured CUDA graph, for Nsight Compute: ncu run with
//! `--profile-from-start off --graph-profiling node` profiles only what sits between
//! cuProfilerStart and cuProfilerStop, so the prefill, the capture and the warm-up replays stay
//! out of its replay count.
//!
//! - `step`: one replay of the step's graph is profiled (every node: its duration, its DRAM bytes).
//! - `gemvs`: the layer's GEMVs alone, once each, eagerly: gate|up with its RMSNorm prologue and
//!   the same GEMV without it (the prologue's cost), down + residual, Q|K|V + RMSNorm, o + residual,
//!   and gemv-fold's: gate|up with SwiGLU out, down split over a block's warps, Q|K|V folded, and
//!   gemv_long (session 9's o and down: a lane's loads batched) at down and o; gemv_fold with
//!   BATCH at gate|up and Q|K|V (gemv-lean's until session 11: slower alone on an H100); and the
//!   lm_head as cuBLAS (candle's matmul, every way's but gemv-lean's) beside gemv_fold with BATCH
//!   and the final RMSNorm folded (gemv-lean's since session 11).
//! - `attn`: gemv-fold's attention alone, once each kernel, eagerly: decode_attention_rope (session
//!   8's: partials, fence, atomic ticket) and decode_attention_cluster (session 9's: the splits
//!   merged in a thread-block cluster).
//! - `none`: nothing profiled (the timing run without ncu).
//!
//! Every run prints the step's ms over replays (graph, no profiler attached it is the cell's
//! figure) and each GEMV variant's us inside a graph of 48 calls rotating over 3 copies of its
//! weight (so its weights come from HBM, as in the step, not from the 50 MB L2), and each
//! attention kernel's us inside a graph of 48 calls rotating over 3 caches (the step's shape, the
//! position 575: 1.2 MB of K/V a call, from HBM).

use std::cell::Cell;
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{DecodeKernels, Precision};
use runner::model::workload::greedy;
use runner::ops::decode::gemv::{
    gemv_fold_batched_into, gemv_fold_into, gemv_into_launched, gemv_long_into, gemv_split_into,
    Prologue,
};
use runner::ops::decode::{self, AttentionScratch, CacheAt, Launch, RopeArgs};
use runner::ops::graph::{FixedWork, GraphMode};

use super::{kernels_spec, prompt};

const COPIES: usize = 3;

/// Which GEMV kernel a variant runs: gemv.cu's gemv, or gemv-fold's gemv_fold (RMSNorm at the
/// end; with SwiGLU out) or gemv_split, or gemv_long (16 loads in flight a lane).
#[derive(Clone, Copy)]
enum Kernel {
    Gemv,
    Fold,
    FoldSwiglu,
    Split,
    Long,
    /// gemv-lean's gemv_fold with a lane's loads batched (BATCH).
    FoldBatched,
    FoldBatchedSwiglu,
    /// candle's matmul (cuBLAS), the lm_head as every way runs it.
    Matmul,
}
const CALLS: usize = 48;

/// cuProfilerStart (`on`) or cuProfilerStop: what ncu --profile-from-start off profiles.
#[cfg(feature = "cuda")]
fn profiler(on: bool) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    // SAFETY: plain driver calls on the current context (candle's device made it current).
    let r = unsafe {
        if on {
            sys::cuProfilerStart()
        } else {
            sys::cuProfilerStop()
        }
    };
    if r != sys::CUresult::CUDA_SUCCESS {
        candle_core::bail!("cuProfiler{}: {r:?}", if on { "Start" } else { "Stop" });
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn profiler(_on: bool) -> Result<()> {
    candle_core::bail!("ncu-step: a CUDA build (--features cuda) starts and stops the profiler")
}

fn randn(shape: &[usize], dev: &Device) -> Result<Tensor> {
    (Tensor::randn(0f32, 1f32, shape, dev)? * 0.05)?.to_dtype(DType::BF16)
}

pub fn ncu_step(dev: &Device, args: &[String]) -> Result<()> {
    let preset = args.first().map_or("llama-3.2-1b", String::as_str);
    let way_name = args.get(1).map_or("gemv-pdl", String::as_str);
    let region = args.get(2).map_or("none", String::as_str);
    let ways = [
        DecodeKernels::Fused,
        DecodeKernels::Gemv,
        DecodeKernels::GemvPdl,
        DecodeKernels::GemvBulk,
        DecodeKernels::GemvFold,
        DecodeKernels::GemvCluster,
        DecodeKernels::GemvLean,
    ];
    let Some(&way) = ways.iter().find(|k| k.name() == way_name) else {
        candle_core::bail!(
            "ncu-step: {way_name} is not one of fused, gemv, gemv-pdl, gemv-bulk, gemv-fold, gemv-cluster, gemv-lean"
        );
    };
    let arch = if preset.starts_with("qwen") {
        "qwen2"
    } else {
        "llama"
    };
    let (prompt_len, steps) = (512, 64);
    let s = kernels_spec(arch, preset, way);
    let sh = &s.shapes;
    let (h, i, qkv) = (
        sh.hidden,
        sh.intermediate,
        (sh.heads + 2 * sh.kv_heads) * sh.head_dim,
    );
    let mut m = s
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    m.reserve(1, prompt_len + 2 * steps)?;
    let logits = m.prefill(&prompt(dev, 1, prompt_len, s.shapes.vocab)?)?;
    let first = greedy(&logits)?;
    m.mark()?;
    let fixed = m.fixed_step(&first, 2 * steps)?.expect("a fixed step");
    let g = FixedWork::stateful(
        dev,
        GraphMode::Auto,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    let mut times = Vec::new();
    for _ in 0..5 {
        (fixed.restore)()?;
        dev.synchronize()?;
        let t = Instant::now();
        for _ in 0..steps {
            g.run()?;
        }
        dev.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "ncu_step,{preset},bf16,batch=1,kernels={way_name},positions={prompt_len}..{},ms_per_step={:.4},min={:.4},max={:.4},execution={}",
        prompt_len + steps,
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        g.describe().replace(',', ";")
    );
    if region == "step" {
        // The profiled replay is the step at position prompt + 63 (~575).
        (fixed.restore)()?;
        for _ in 0..steps - 1 {
            g.run()?;
        }
        dev.synchronize()?;
        profiler(true)?;
        g.run()?;
        dev.synchronize()?;
        profiler(false)?;
        println!("ncu_step,profiled,one replay of the step's graph");
    }
    drop(g);
    gemvs(dev, [h, i, qkv, sh.vocab], region == "gemvs")?;
    attentions(
        dev,
        [sh.heads, sh.kv_heads, sh.head_dim],
        prompt_len + steps - 1,
        region == "attn",
    )
}

/// gemv-fold's attention kernels at `heads`, `kv_heads`, `d`, the step at `position`, bf16 b1:
/// us per call inside a graph of CALLS calls over COPIES caches, and (`profile`) once each
/// between cuProfilerStart and Stop.
fn attentions(
    dev: &Device,
    [heads, kv_heads, d]: [usize; 3],
    position: usize,
    profile: bool,
) -> Result<()> {
    let capacity = position + 65;
    let qkv = randn(&[1, (heads + 2 * kv_heads) * d], dev)?;
    let t = Tensor::arange(0u32, capacity as u32, dev)?
        .to_dtype(DType::F32)?
        .reshape((capacity, 1))?
        .broadcast_as((capacity, d / 2))?
        .contiguous()?;
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
        kv_heads,
        head_dim: d,
    };
    let caches = (0..COPIES)
        .map(|_| {
            Ok((
                randn(&[1, kv_heads, capacity, d], dev)?,
                randn(&[1, kv_heads, capacity, d], dev)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let pos = Tensor::new(&[position as u32], dev)?;
    let scratch = AttentionScratch::new([1, heads, kv_heads, d, capacity], DType::BF16, dev)?;
    let bytes = 2 * kv_heads * (position + 1) * d * 2;
    let launch = |cluster: bool, copy: usize| -> Result<Tensor> {
        let (k, v) = &caches[copy % COPIES];
        let at = CacheAt {
            keys: k,
            values: v,
            position: &pos,
            scratch: Some(&scratch),
        };
        if cluster {
            decode::decode_attention_cluster(&qkv, &rope, &at, Launch::Programmatic)
        } else {
            decode::decode_attention_rope(&qkv, &rope, &at, Launch::Programmatic)
        }
    };
    for (name, cluster) in [
        ("decode_attention_rope", false),
        ("decode_attention_cluster", true),
    ] {
        let work = || {
            let mut last = launch(cluster, 0)?;
            for c in 1..CALLS {
                last = launch(cluster, c)?;
            }
            Ok(last)
        };
        let fixed = FixedWork::new(dev, GraphMode::Auto, "an attention kernel", work);
        let mut t = Vec::new();
        for _ in 0..15 {
            dev.synchronize()?;
            let s = Instant::now();
            fixed.run()?;
            dev.synchronize()?;
            t.push(s.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "ncu_attention,{name},heads={heads},kv_heads={kv_heads},d={d},position={position},kv_bytes={bytes},us={:.3},GBps={:.0},execution={}",
            t[t.len() / 2],
            bytes as f64 / t[t.len() / 2] / 1e3,
            fixed.describe().replace(',', ";")
        );
    }
    if profile {
        dev.synchronize()?;
        profiler(true)?;
        launch(false, 0)?;
        launch(true, 1)?;
        dev.synchronize()?;
        profiler(false)?;
        println!(
            "ncu_attention,profiled,decode_attention_rope then decode_attention_cluster, once each"
        );
    }
    Ok(())
}

/// The layer's GEMVs at hidden `h`, intermediate `i`, Q|K|V width `qkv`: us per call inside a graph of CALLS calls
/// over COPIES weight copies, and (`profile`) once each between cuProfilerStart and Stop.
fn gemvs(dev: &Device, [h, i, qkv, vocab]: [usize; 4], profile: bool) -> Result<()> {
    let x = randn(&[1, h], dev)?;
    let norm_w = randn(&[h], dev)?;
    let act = randn(&[1, i], dev)?;
    let weights = |rows: usize, cols: usize| -> Result<Vec<Tensor>> {
        (0..COPIES).map(|_| randn(&[rows, cols], dev)).collect()
    };
    let w_gu = weights(2 * i, h)?;
    let w_down = weights(h, i)?;
    let w_o = weights(h, h)?;
    let w_qkv = weights(qkv, h)?;
    let w_lm = weights(vocab, h)?;
    let lm_out = randn(&[1, vocab], dev)?;
    let gu_out = randn(&[1, 2 * i], dev)?;
    let h_out = randn(&[1, h], dev)?;
    let h_keep = h_out.copy()?;
    let qkv_out = randn(&[1, qkv], dev)?;
    let rms = || Prologue::RmsNorm {
        weight: &norm_w,
        eps: 1e-5,
    };
    let act_out = randn(&[1, i], dev)?;
    // (name, out, x, weights, RMSNorm prologue, residual, kernel: gemv, gemv-fold's fold or split)
    type Variant<'a> = (
        &'a str,
        &'a Tensor,
        &'a Tensor,
        &'a [Tensor],
        bool,
        bool,
        Kernel,
    );
    let variants: [Variant; 14] = [
        (
            "gate_up+rmsnorm",
            &gu_out,
            &x,
            &w_gu,
            true,
            false,
            Kernel::Gemv,
        ),
        (
            "gate_up(no prologue)",
            &gu_out,
            &x,
            &w_gu,
            false,
            false,
            Kernel::Gemv,
        ),
        (
            "gate_up fold+swiglu_out",
            &act_out,
            &x,
            &w_gu,
            true,
            false,
            Kernel::FoldSwiglu,
        ),
        (
            "down+residual",
            &h_out,
            &act,
            &w_down,
            false,
            true,
            Kernel::Gemv,
        ),
        (
            "down split+residual",
            &h_out,
            &act,
            &w_down,
            false,
            true,
            Kernel::Split,
        ),
        (
            "down long+residual",
            &h_out,
            &act,
            &w_down,
            false,
            true,
            Kernel::Long,
        ),
        (
            "qkv+rmsnorm",
            &qkv_out,
            &x,
            &w_qkv,
            true,
            false,
            Kernel::Gemv,
        ),
        ("qkv fold", &qkv_out, &x, &w_qkv, true, false, Kernel::Fold),
        ("o+residual", &h_out, &x, &w_o, false, true, Kernel::Gemv),
        (
            "o long+residual",
            &h_out,
            &x,
            &w_o,
            false,
            true,
            Kernel::Long,
        ),
        (
            "gate_up fold_batched+swiglu_out",
            &act_out,
            &x,
            &w_gu,
            true,
            false,
            Kernel::FoldBatchedSwiglu,
        ),
        (
            "qkv fold_batched",
            &qkv_out,
            &x,
            &w_qkv,
            true,
            false,
            Kernel::FoldBatched,
        ),
        (
            "lm_head cublas",
            &lm_out,
            &x,
            &w_lm,
            false,
            false,
            Kernel::Matmul,
        ),
        (
            "lm_head fold_batched+rms",
            &lm_out,
            &x,
            &w_lm,
            true,
            false,
            Kernel::FoldBatched,
        ),
    ];
    let restore = || h_out.slice_set(&h_keep, 0, 0);
    let launch = |out: &Tensor, xin: &Tensor, w: &Tensor, norm: bool, residual: bool, k: Kernel| {
        let p = if norm { rms() } else { Prologue::None };
        let s = Launch::Stream;
        match k {
            Kernel::Gemv => gemv_into_launched(out, xin, w, p, None, residual, s),
            Kernel::Fold => gemv_fold_into(out, xin, w, p, None, false, s),
            Kernel::FoldSwiglu => gemv_fold_into(out, xin, w, p, None, true, s),
            Kernel::Split => gemv_split_into(out, xin, w, None, residual, s),
            Kernel::Long => gemv_long_into(out, xin, w, None, residual, s),
            Kernel::FoldBatched => gemv_fold_batched_into(out, xin, w, p, None, false, s),
            Kernel::FoldBatchedSwiglu => gemv_fold_batched_into(out, xin, w, p, None, true, s),
            Kernel::Matmul => xin.matmul(&w.t()?).map(|_| ()),
        }
    };
    for (name, out, xin, ws, norm, residual, kernel) in variants {
        let next = Cell::new(0usize);
        let call = || -> Result<Tensor> {
            let w = &ws[next.get() % COPIES];
            next.set(next.get() + 1);
            launch(out, xin, w, norm, residual, kernel)?;
            Ok(out.clone())
        };
        let work = || {
            let mut last = call()?;
            for _ in 1..CALLS {
                last = call()?;
            }
            Ok(last)
        };
        let fixed = FixedWork::stateful(dev, GraphMode::Auto, "a GEMV variant", work, &restore);
        let mut t = Vec::new();
        for _ in 0..15 {
            dev.synchronize()?;
            let s = Instant::now();
            fixed.run()?;
            dev.synchronize()?;
            t.push(s.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let bytes = ws[0].elem_count() * 2;
        println!(
            "ncu_gemv,{name},rows={},cols={},weight_bytes={bytes},us={:.3},GBps={:.0},execution={}",
            ws[0].dims()[0],
            ws[0].dims()[1],
            t[t.len() / 2],
            bytes as f64 / t[t.len() / 2] / 1e3,
            fixed.describe().replace(',', ";")
        );
    }
    if profile {
        restore()?;
        dev.synchronize()?;
        profiler(true)?;
        for (_, out, xin, ws, norm, residual, kernel) in variants {
            launch(out, xin, &ws[0], norm, residual, kernel)?;
        }
        dev.synchronize()?;
        profiler(false)?;
        println!("ncu_gemv,profiled,each variant once in the order above");
    }
    Ok(())
}
