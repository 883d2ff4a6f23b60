//! `decode_check steps [PRESET] [BATCH...]`: one whole decode step of the own decoder as its
//! captured CUDA graph, per `decode_kernels` way (fused, gemv-pdl, gemv-fold, gemv-cluster, gemv-lean, or those named), on the same seeded
//! random weights and prompt: ms per step over 128 steps after a 512-token prompt (the runner's
//! cells' context), samples alternated between the ways so drift hits all alike; the graph's node
//! count; and the first replayed step's logits against the fused way's (each way's arithmetic
//! differs, so a bound, not equality). The per-launch profile (profile.rs) times launches alone;
//! this times the step as the runner's cells replay it, launch gaps and programmatic overlap
//! included.

use std::time::Instant;

use candle_core::{Device, Result};
use runner::config::{DecodeKernels, Precision};
use runner::model::workload::greedy;
use runner::ops::graph::{FixedWork, GraphMode};

use super::{kernels_spec, prompt, rel_diff};

/// The ways timed when the command names none (`steps PRESET [BATCH...] [WAY...]`).
pub const WAYS: [DecodeKernels; 5] = [
    DecodeKernels::Fused,
    DecodeKernels::GemvPdl,
    DecodeKernels::GemvFold,
    DecodeKernels::GemvCluster,
    DecodeKernels::GemvLean,
];

/// `ways`: those to time (the first is the logits' reference).
pub fn steps(
    dev: &Device,
    arch: &str,
    preset: &str,
    batch: usize,
    ways: &[DecodeKernels],
) -> Result<()> {
    let (prompt_len, steps, samples) = (512, 128, 3);
    let mut loaded = Vec::new();
    let mut first = None;
    for &kernels in ways {
        let s = kernels_spec(arch, preset, kernels);
        let p = prompt(dev, batch, prompt_len, s.shapes.vocab)?;
        let mut m = s
            .load(Precision::Bf16, dev)
            .map_err(candle_core::Error::wrap)?;
        m.reserve(batch, prompt_len + steps)?;
        let logits = m.prefill(&p)?;
        if first.is_none() {
            first = Some(greedy(&logits)?);
        }
        m.mark()?;
        loaded.push((kernels, m));
    }
    let first = first.expect("the ways loaded");
    let mut models = Vec::new();
    for (kernels, m) in &mut loaded {
        let fixed = m.fixed_step(&first, steps)?.expect("a fixed step");
        models.push((*kernels, fixed));
    }
    let mut graphs = Vec::new();
    for (kernels, fixed) in &models {
        let g = FixedWork::stateful(
            dev,
            GraphMode::Auto,
            "one decode step",
            &fixed.run,
            &*fixed.restore,
        );
        (fixed.restore)()?;
        let logits = g.run()?.copy()?;
        graphs.push((*kernels, g, logits, Vec::new()));
    }
    for _ in 0..samples {
        for ((_, g, _, times), (_, fixed)) in graphs.iter_mut().zip(&models) {
            (fixed.restore)()?;
            dev.synchronize()?;
            let t = Instant::now();
            for _ in 0..steps {
                g.run()?;
            }
            dev.synchronize()?;
            times.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
    }
    let (reference_way, reference) = (graphs[0].0, graphs[0].2.clone());
    for (kernels, g, logits, times) in &mut graphs {
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let d = rel_diff(&reference, logits)?;
        println!(
            "step,{preset},bf16,batch={batch},kernels={},ms_per_step={:.4},min={:.4},max={:.4},first_step_logits_vs_{}={d:.2e},execution={}",
            kernels.name(),
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            reference_way.name(),
            g.describe().replace(',', ";")
        );
    }
    Ok(())
}
