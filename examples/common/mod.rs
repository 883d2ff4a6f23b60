//! Helpers the GPU check and timing examples share (`mod common;` in each): timing a call, the
//! error of a result against its reference, the bounds of an 8-bit layer against the CPU, and a
//! fresh random batch for the whole model's graph-against-eager check.
// Each example uses some of them.
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Tensor};
use runner::config::EightBit;
use runner::model::Encoder;
use runner::ops::graph::{CellForward, FixedWork, GraphMode};

/// How an eager timing samples: `samples` samples of `calls` back-to-back calls each.
#[derive(Clone, Copy)]
pub struct Timing {
    pub samples: usize,
    pub calls: usize,
}

/// The median microseconds per call of `f` on `device`, eagerly: 3 warm-up calls, then each
/// sample times `timing.calls` calls up to a synchronize.
pub fn time_us(device: &Device, timing: Timing, f: impl Fn() -> Result<Tensor>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    device.synchronize()?;
    let mut t = Vec::new();
    for _ in 0..timing.samples {
        let s = std::time::Instant::now();
        for _ in 0..timing.calls {
            f()?;
        }
        device.synchronize()?;
        t.push(s.elapsed().as_secs_f64() * 1e6 / timing.calls as f64);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Calls of `f` captured back to back in one CUDA graph by [`graph_time_us`].
pub const GRAPH_CALLS: usize = 20;

/// The median microseconds per call of `f` inside a CUDA graph: [`GRAPH_CALLS`] calls captured
/// as one graph, replayed 30 times with a synchronize each (after 5 warm-up replays). The cost
/// inside a graph-replayed forward, without host-side work paid once at capture. Fails when the
/// work could not be captured.
pub fn graph_time_us(device: &Device, what: &str, f: impl Fn() -> Result<Tensor>) -> Result<f64> {
    let work = FixedWork::new(device, GraphMode::Auto, what, || {
        let mut y = f()?;
        for _ in 1..GRAPH_CALLS {
            y = f()?;
        }
        Ok(y)
    });
    if !work.execution().is_graph() {
        candle_core::bail!("{what}: not captured as a graph: {}", work.describe());
    }
    for _ in 0..5 {
        work.run()?;
    }
    device.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..30 {
        let t = std::time::Instant::now();
        work.run()?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e6 / GRAPH_CALLS as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// max |a - b| / max |b| (b is the reference), and whether every value of both is finite.
pub fn rel_err(a: &Tensor, b: &Tensor) -> Result<(f32, bool)> {
    let a: Vec<f32> = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let finite = a.iter().chain(&b).all(|v| v.is_finite());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    Ok((worst / scale, finite))
}

/// The bound against the CPU for one 8-bit layer on the same input: both quantize it to the same
/// bytes; the GPU accumulates exactly in int32 (FP8: in f32) where the CPU sums in f32, and both
/// round once to the dtype.
pub fn linear_bound(d: DType) -> f32 {
    match d {
        DType::F32 => 2e-4,
        DType::F16 => 2e-3,
        _ => 1.6e-2,
    }
}

/// The bound against the CPU for an 8-bit layer whose input the GPU and the CPU each computed
/// (a GELU, a layer norm): where their values differ in the last bit, one can land on the other
/// side of an 8-bit rounding boundary (int8: 1/127 of the row's largest; E4M3: 1/16 of the
/// value), and the next layer sums thousands of them. Fused against two-pass, the same bytes are
/// expected.
pub fn across_rounding_bound(f: EightBit, d: DType) -> f32 {
    match (f, d) {
        (EightBit::Fp8E4M3, _) | (_, DType::BF16) => 3.2e-2,
        _ => 2e-3,
    }
}

/// A fresh, reproducible batch of `b` rows of `s` token ids below `vocab`, with its attention
/// mask: each row's sentence length is random, padding at the end of rows (a small LCG).
pub fn batch(
    device: &Device,
    b: usize,
    s: usize,
    vocab: usize,
    seed: u64,
) -> Result<(Tensor, Tensor)> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut ids = Vec::with_capacity(b * s);
    let mut mask = Vec::with_capacity(b * s);
    for _ in 0..b {
        let len = 1 + next() % s;
        for j in 0..s {
            ids.push(if j < len { (next() % vocab) as u32 } else { 0 });
            mask.push(u32::from(j < len));
        }
    }
    Ok((
        Tensor::from_vec(ids, (b, s), device)?,
        Tensor::from_vec(mask, (b, s), device)?,
    ))
}

/// The graph replay against the eager pass on the SAME inputs: three fresh batches shaped like
/// the captured one (seeds 2, 3, 4; the capture used seed 1), each fed to `model` eagerly and
/// through `forward`'s input buffers, so a graph that kept reading its capture batch would fail.
/// Returns max |graph - eager| over them (0 when both ran the same kernels in the same order),
/// and whether every replayed logit was finite.
pub fn replay_against_eager(
    model: &Encoder,
    forward: &mut CellForward<'_>,
    device: &Device,
    (b, s): (usize, usize),
    vocab: usize,
) -> Result<(f32, bool)> {
    let mut max_diff = 0f32;
    let mut finite = true;
    for seed in 2..5 {
        let (ids, mask) = batch(device, b, s, vocab, seed)?;
        let eager = model.forward(&ids, &mask)?.to_dtype(DType::F32)?;
        let graph = forward.forward(&[ids, mask])?.to_dtype(DType::F32)?;
        let values: Vec<f32> = graph.flatten_all()?.to_vec1()?;
        finite &= values.iter().all(|v| v.is_finite());
        let d = (graph - eager)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        max_diff = max_diff.max(d);
    }
    Ok((max_diff, finite))
}
