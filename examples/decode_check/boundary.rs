//! `decode_check boundary [PRESET] [LAYERS] [WAY]`: what a graph boundary costs a decode step.
//! The whole-model cell replays one captured graph per step (128 replays, one synchronize); the
//! per-layer method's units replay one graph of K calls, so a unit never pays the step's own
//! graph launch. This times the same fixed step captured 1, 2, 8 and 32 steps to a graph, 128
//! steps per sample, the four alternated (5 samples, median): t(k) = t_inside + boundary / k, so
//! t(1) - t(32) is 31/32 of one boundary. Every sample runs the same 128 steps from the same
//! mark, so each way's last logits must equal the one-step graph's to the bit (checked).

use std::time::Instant;

use candle_core::{Device, Result};
use runner::config::{DecodeKernels, Precision};
use runner::model::workload::greedy;
use runner::ops::graph::{FixedWork, GraphMode};

use super::{kernels_spec, prompt, rel_diff};

const STEPS_PER_GRAPH: [usize; 4] = [1, 2, 8, 32];

pub fn boundary(
    dev: &Device,
    arch: &str,
    preset: &str,
    layers: Option<i64>,
    kernels: DecodeKernels,
) -> Result<bool> {
    let (prompt_len, steps, samples) = (512, 128, 5);
    let mut s = kernels_spec(arch, preset, kernels);
    if let Some(n) = layers {
        s.cut_layers(n).map_err(candle_core::Error::wrap)?;
    }
    let p = prompt(dev, 1, prompt_len, s.shapes.vocab)?;
    let mut m = s
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    m.reserve(1, prompt_len + steps)?;
    let first = greedy(&m.prefill(&p)?)?;
    m.mark()?;
    let fixed = m.fixed_step(&first, steps)?.expect("a fixed step");
    let run = &fixed.run;
    let works: Vec<(usize, FixedWork)> = STEPS_PER_GRAPH
        .iter()
        .map(|&k| {
            let work = move || {
                let mut out = run()?;
                for _ in 1..k {
                    out = run()?;
                }
                Ok(out)
            };
            let what = format!("{k} decode steps");
            let w = FixedWork::stateful(dev, GraphMode::Auto, &what, work, &*fixed.restore);
            (k, w)
        })
        .collect();
    let mut times = vec![Vec::new(); works.len()];
    let mut last = vec![None; works.len()];
    for _ in 0..samples {
        for (i, (k, w)) in works.iter().enumerate() {
            (fixed.restore)()?;
            dev.synchronize()?;
            let t = Instant::now();
            let mut out = None;
            for _ in 0..steps / k {
                out = Some(w.run()?);
            }
            dev.synchronize()?;
            times[i].push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
            last[i] = Some(out.expect("steps >= k").copy()?);
        }
    }
    let name = layers.map_or(preset.to_string(), |n| format!("{preset}-{n}l"));
    let reference = last[0].clone().expect("a sample ran");
    let mut ok = true;
    let mut medians = Vec::new();
    for (((k, w), t), l) in works.iter().zip(&mut times).zip(&last) {
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let d = rel_diff(&reference, l.as_ref().expect("a sample ran"))?;
        ok &= d == 0.0 && w.execution().is_graph();
        medians.push(t[t.len() / 2]);
        println!(
            "boundary,{name},bf16,batch=1,kernels={},steps_per_graph={k},ms_per_step={:.4},min={:.4},max={:.4},last_logits_vs_one_step_graph={d:.2e},execution={}",
            kernels.name(),
            t[t.len() / 2],
            t[0],
            t[t.len() - 1],
            w.describe().replace(',', ";")
        );
    }
    let (one, many) = (medians[0], medians[medians.len() - 1]);
    let k = *STEPS_PER_GRAPH.last().unwrap() as f64;
    println!(
        "boundary_summary,{name},kernels={},one_graph_per_step_ms={one:.4},{k}_steps_per_graph_ms={many:.4},boundary_us_per_graph={:.2},share_of_step={:.1}%,{}",
        kernels.name(),
        (one - many) * 1e3 * k / (k - 1.0),
        (one - many) / one * 100.0,
        if ok { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}
