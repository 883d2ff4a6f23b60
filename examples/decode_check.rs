//! The runner's own Llama-family decoder on a GPU, against candle-transformers' model on the same
//! (seeded random) weights and against itself replayed as one CUDA graph per decode step:
//!
//! 1. fp32: greedy tokens of both over 64 steps (batch 2) must be identical; worst logit
//!    difference relative to the logits' scale (NaN caught).
//! 2. bf16: the same, reporting agreement and the worst difference (bounded by 5 %).
//! 3. the fixed step replayed as a CUDA graph against the same step run eagerly, step by step
//!    over 32 steps (logits and tokens), NaN caught.
//! 4. ms per decode step at the cell's context (prompt 512 + 128 steps), bf16, batch 1 and 8, for
//!    candle-transformers (eager, Tensor::cat cache), the own decoder eager, and its graph;
//!    samples alternated so drift hits all alike. Printed as CSV lines `timing,...`.
//!
//!     cargo run --release --features cuda --example decode_check -- [PRESETS...]

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{Implementation, Precision};
use runner::model::decoder::DecoderSpec;
use runner::model::workload::greedy;
use runner::ops::graph::{FixedWork, GraphMode};

fn spec(arch: &str, preset: &str, implementation: Implementation) -> DecoderSpec {
    DecoderSpec::resolve(arch, Some(preset), None, 5, implementation).expect("a preset")
}

fn max_abs(t: &Tensor) -> Result<f32> {
    t.to_dtype(DType::F32)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar()
}

fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let d = max_abs(&(a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?)?;
    Ok(d / max_abs(a)?.max(1e-3))
}

fn ids(t: &Tensor) -> Result<Vec<u32>> {
    t.flatten_all()?.to_vec1()
}

fn prompt(device: &Device, batch: usize, len: usize, vocab: usize) -> Result<Tensor> {
    let v: Vec<u32> = (0..batch * len)
        .map(|i| ((i * 7919 + 13) % (vocab - 1)) as u32 + 1)
        .collect();
    Tensor::from_vec(v, (batch, len), device)
}

/// Greedy side by side: (steps with identical tokens, worst relative logit difference).
fn versus(
    arch: &str,
    preset: &str,
    precision: Precision,
    steps: usize,
    dev: &Device,
) -> Result<(usize, f32)> {
    let a_spec = spec(arch, preset, Implementation::Crate);
    let mut a = a_spec
        .load(precision, dev)
        .map_err(candle_core::Error::wrap)?;
    let mut b = spec(arch, preset, Implementation::Own)
        .load(precision, dev)
        .map_err(candle_core::Error::wrap)?;
    let p = prompt(dev, 2, 16, a_spec.shapes.vocab)?;
    b.reserve(2, 16 + steps + 1)?;
    let (mut la, mut lb) = (a.prefill(&p)?, b.prefill(&p)?);
    let mut worst = 0f32;
    for step in 0..=steps {
        let d = rel_diff(&la, &lb)?;
        if d.is_nan() {
            candle_core::bail!("NaN in the logits at step {step}");
        }
        worst = worst.max(d);
        let (ta, tb) = (greedy(&la)?, greedy(&lb)?);
        if ids(&ta)? != ids(&tb)? || step == steps {
            return Ok((step, worst));
        }
        la = a.step(&ta)?;
        lb = b.step(&tb)?;
    }
    unreachable!()
}

/// The fixed step as a graph against the same step eager, step by step.
fn graph_versus_eager(arch: &str, preset: &str, dev: &Device) -> Result<String> {
    let s = spec(arch, preset, Implementation::Own);
    let mut m = s
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    let steps = 32;
    m.reserve(2, 64 + steps)?;
    let first = greedy(&m.prefill(&prompt(dev, 2, 64, s.shapes.vocab)?)?)?;
    m.mark()?;
    let fixed = m
        .fixed_step(&first, steps)?
        .expect("the own decoder has a fixed step");
    let eager = FixedWork::stateful(
        dev,
        GraphMode::Off,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    let graph = FixedWork::stateful(
        dev,
        GraphMode::Auto,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    let mut want = Vec::new();
    (fixed.restore)()?;
    for _ in 0..steps {
        want.push(eager.run()?.copy()?);
    }
    (fixed.restore)()?;
    let mut worst = 0f32;
    let mut same_tokens = 0;
    for w in &want {
        let got = graph.run()?;
        let d = rel_diff(w, &got)?;
        if d.is_nan() {
            candle_core::bail!("NaN in the replayed step");
        }
        worst = worst.max(d);
        same_tokens += usize::from(ids(&greedy(w)?)? == ids(&greedy(&got)?)?);
    }
    Ok(format!(
        "{}; {same_tokens}/{steps} steps with identical tokens, worst logit difference {worst:.2e} of scale",
        graph.describe()
    ))
}

/// Median ms per decode step of each way, alternated.
fn timing(arch: &str, preset: &str, batch: usize, dev: &Device) -> Result<()> {
    let (prompt_len, steps, samples) = (512, 128, 5);
    let s = spec(arch, preset, Implementation::Own);
    let p = prompt(dev, batch, prompt_len, s.shapes.vocab)?;
    let mut crate_run = spec(arch, preset, Implementation::Crate)
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    let first = greedy(&crate_run.prefill(&p)?)?;
    crate_run.mark()?;
    let mut own = s
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    own.reserve(batch, prompt_len + steps)?;
    let t = Instant::now();
    own.prefill(&p)?;
    dev.synchronize()?;
    let own_prefill_ms = t.elapsed().as_secs_f64() * 1e3;
    own.mark()?;
    let fixed = own.fixed_step(&first, steps)?.expect("a fixed step");
    let eager = FixedWork::stateful(
        dev,
        GraphMode::Off,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    let graph = FixedWork::stateful(
        dev,
        GraphMode::Auto,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    let mut t_crate = Vec::new();
    let mut t_eager = Vec::new();
    let mut t_graph = Vec::new();
    for _ in 0..samples {
        crate_run.rewind()?;
        let mut tok = first.clone();
        dev.synchronize()?;
        let t = Instant::now();
        for _ in 0..steps {
            tok = greedy(&crate_run.step(&tok)?)?;
        }
        dev.synchronize()?;
        t_crate.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
        for (work, out) in [(&eager, &mut t_eager), (&graph, &mut t_graph)] {
            (fixed.restore)()?;
            dev.synchronize()?;
            let t = Instant::now();
            for _ in 0..steps {
                work.run()?;
            }
            dev.synchronize()?;
            out.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (c, e, g) = (med(&mut t_crate), med(&mut t_eager), med(&mut t_graph));
    println!(
        "timing,{preset},bf16,batch={batch},prompt={prompt_len},steps={steps},crate_ms_per_step={c:.4},own_eager_ms_per_step={e:.4},own_graph_ms_per_step={g:.4},graph_vs_crate={:.3},own_prefill_ms_once={own_prefill_ms:.2},execution={}",
        g / c,
        graph.describe().replace(',', ";")
    );
    Ok(())
}

fn main() -> Result<()> {
    let dev = Device::new_cuda(0)?;
    for arch in ["llama", "mistral", "qwen2", "qwen3"] {
        let tiny = format!("{arch}-tiny");
        match versus(arch, &tiny, Precision::Fp32, 64, &dev) {
            Ok((agreed, worst)) => println!(
                "versus,{tiny},fp32,{agreed}/64 identical greedy steps,worst {worst:.2e},{}",
                if agreed == 64 && worst <= 1e-4 {
                    "PASS"
                } else {
                    "FAIL"
                }
            ),
            Err(e) => println!("versus,{tiny},fp32,error: {e}"),
        }
        match versus(arch, &tiny, Precision::Bf16, 16, &dev) {
            Ok((agreed, worst)) => println!(
                "versus,{tiny},bf16,{agreed}/16 identical greedy steps,worst {worst:.2e},{}",
                if worst <= 0.05 { "PASS" } else { "FAIL" }
            ),
            Err(e) => println!("versus,{tiny},bf16,error: {e}"),
        }
    }
    for (arch, preset) in [("llama", "smollm2-135m"), ("qwen2", "qwen2.5-0.5b")] {
        match versus(arch, preset, Precision::Fp32, 64, &dev) {
            Ok((agreed, worst)) => println!(
                "versus,{preset},fp32,{agreed}/64 identical greedy steps,worst {worst:.2e}"
            ),
            Err(e) => println!("versus,{preset},fp32,error: {e}"),
        }
        match graph_versus_eager(arch, preset, &dev) {
            Ok(line) => println!("graph,{preset},bf16,{line}"),
            Err(e) => println!("graph,{preset},bf16,error: {e}"),
        }
    }
    let only: Vec<String> = std::env::args().skip(1).collect();
    for (arch, preset) in [
        ("llama", "smollm2-135m"),
        ("qwen2", "qwen2.5-0.5b"),
        ("llama", "llama-3.2-1b"),
    ] {
        if !only.is_empty() && !only.iter().any(|o| o == preset) {
            continue;
        }
        for batch in [1, 8] {
            if let Err(e) = timing(arch, preset, batch, &dev) {
                println!("timing,{preset},bf16,batch={batch},error: {e}");
            }
        }
    }
    Ok(())
}
