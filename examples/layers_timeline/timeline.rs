//! The graphs of `layers_timeline` (see its doc): captured here, not through `FixedWork`, so that
//! their nodes can be listed.

use std::ffi::CStr;
use std::time::Instant;

use candle_core::cuda_backend::cudarc::driver::{sys, CudaGraph};
use candle_core::{DType, Device, Result, Tensor};
use runner::config::{Implementation, Precision};
use runner::model::decoder::DecoderSpec;
use runner::model::workload::{greedy, CapturedDecoderUnit, DecoderUnit, Phase};

const PROMPT: usize = 512;
const NEW_TOKENS: usize = 128;

struct Graph {
    name: &'static str,
    graph: CudaGraph,
    /// Kernel names in capture order ("memcpy", "memset", "alloc", "free" for other nodes).
    nodes: Vec<String>,
    /// What a replay moves (the whole step advances its position): put back before each sample.
    stateful: bool,
}

fn wrap<E: std::fmt::Debug>(e: E) -> candle_core::Error {
    candle_core::Error::msg(format!("{e:?}"))
}

fn capture(
    dev: &Device,
    name: &'static str,
    work: &dyn Fn() -> Result<Tensor>,
    restore: &dyn Fn() -> Result<()>,
    stateful: bool,
) -> Result<Graph> {
    let cuda = dev.as_cuda_device()?;
    let stream = cuda.cuda_stream();
    let _cache = cuda.enable_cuda_graph_htod_cache();
    restore()?;
    work()?;
    restore()?;
    work()?;
    dev.synchronize()?;
    restore()?;
    dev.synchronize()?;
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .map_err(wrap)?;
    let out = work();
    let ended = stream.end_capture(
        sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH,
    );
    // The output stays alive with the graph's memory: leaked on purpose (a diagnostic's lifetime).
    std::mem::forget(out?);
    let graph = ended
        .map_err(wrap)?
        .ok_or_else(|| candle_core::Error::msg("empty graph"))?;
    graph.upload().map_err(wrap)?;
    let nodes = node_names(&graph)?;
    restore()?;
    dev.synchronize()?;
    Ok(Graph {
        name,
        graph,
        nodes,
        stateful,
    })
}

/// The graph's nodes in the order the driver lists them (capture order for a stream capture).
fn node_names(graph: &CudaGraph) -> Result<Vec<String>> {
    let mut count = 0usize;
    // SAFETY: null asks for the count; then an array of that many handles is filled; each
    // kernel node's function name is a driver-owned C string.
    unsafe {
        sys::cuGraphGetNodes(graph.cu_graph(), std::ptr::null_mut(), &mut count)
            .result()
            .map_err(wrap)?;
        let mut nodes = vec![std::ptr::null_mut(); count];
        sys::cuGraphGetNodes(graph.cu_graph(), nodes.as_mut_ptr(), &mut count)
            .result()
            .map_err(wrap)?;
        let mut names = Vec::with_capacity(count);
        for node in nodes {
            let mut kind = sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
            sys::cuGraphNodeGetType(node, &mut kind)
                .result()
                .map_err(wrap)?;
            let name = match kind {
                sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL => {
                    let mut p: sys::CUDA_KERNEL_NODE_PARAMS = std::mem::zeroed();
                    sys::cuGraphKernelNodeGetParams_v2(node, &mut p)
                        .result()
                        .map_err(wrap)?;
                    let mut s: *const std::ffi::c_char = std::ptr::null();
                    let got = sys::cuFuncGetName(&mut s, p.func).result();
                    let n = match got {
                        Ok(()) if !s.is_null() => CStr::from_ptr(s).to_string_lossy().into_owned(),
                        _ => "kernel(?)".into(),
                    };
                    let short: String = n.chars().take(90).collect();
                    format!(
                        "{short} grid {}x{}x{} block {}",
                        p.gridDimX, p.gridDimY, p.gridDimZ, p.blockDimX
                    )
                }
                sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEMCPY => "memcpy".into(),
                sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEMSET => "memset".into(),
                sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_ALLOC => "alloc".into(),
                sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_FREE => "free".into(),
                other => format!("{other:?}"),
            };
            names.push(name);
        }
        Ok(names)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn main() -> Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "time".into());
    let dev = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    let mut spec =
        DecoderSpec::resolve("llama", Some("smollm2-135m"), None, 0, Implementation::Own)
            .map_err(wrap)?;
    spec.cut_layers(4).map_err(wrap)?;
    let vocab = spec.shapes.vocab;
    let ids: Vec<u32> = (0..PROMPT)
        .map(|i| ((i * 7919 + 13) % (vocab - 1)) as u32 + 1)
        .collect();
    let prompt = Tensor::from_vec(ids, (1, PROMPT), &dev)?;

    // The whole step, as the whole-model cell replays it, at the layers cell's position.
    let mut whole = spec.load(Precision::Bf16, &dev).map_err(wrap)?;
    whole.reserve(1, PROMPT + NEW_TOKENS)?;
    let mut tokens = greedy(&whole.prefill(&prompt)?)?;
    for _ in 0..NEW_TOKENS / 2 {
        tokens = greedy(&whole.step(&tokens)?)?;
    }
    whole.mark()?;
    let fixed = whole
        .fixed_step(&tokens, NEW_TOKENS / 2)?
        .expect("a fixed step");

    // The per-layer profiler's units and prefixes on a second copy (same seed, same weights).
    let mut model = spec.load(Precision::Bf16, &dev).map_err(wrap)?;
    model.reserve(1, PROMPT + NEW_TOKENS)?;
    let layers = model.layers().expect("the own decoder has layers");
    let captured = layers.capture(Phase::Decode, &prompt, NEW_TOKENS / 2)?;
    let layers = &*layers;
    let unit = |u: DecoderUnit| captured.units.iter().find(|c| c.unit == u).expect("a unit");
    let head = unit(DecoderUnit::Head);
    let block3 = unit(DecoderUnit::Block(3));
    let ids = &captured.ids;

    // Stand-ins: 128 MB copied through the L2; 370 dependent one-element kernels.
    let big = Tensor::zeros(64 << 20, DType::U8, &dev)?;
    let sink = Tensor::zeros(64 << 20, DType::U8, &dev)?;
    let one = Tensor::ones(1, DType::F32, &dev)?;
    let flush = || -> Result<()> { sink.slice_set(&big, 0, 0) };
    let chain = || -> Result<Tensor> {
        let mut x = one.clone();
        for _ in 0..370 {
            x = (&x + &one)?;
        }
        Ok(x)
    };
    let tail_after = |x: Tensor| -> Result<Tensor> {
        let c = CapturedDecoderUnit {
            unit: DecoderUnit::Head,
            input: x,
        };
        layers.run_unit(Phase::Decode, &c)
    };
    let none = || -> Result<()> { Ok(()) };

    let mut graphs = vec![
        capture(&dev, "step", &fixed.run, &*fixed.restore, true)?,
        capture(
            &dev,
            "head",
            &|| layers.run_unit(Phase::Decode, head),
            &none,
            false,
        )?,
        capture(
            &dev,
            "head x6",
            &|| {
                for _ in 0..5 {
                    layers.run_unit(Phase::Decode, head)?;
                }
                layers.run_unit(Phase::Decode, head)
            },
            &none,
            false,
        )?,
        capture(
            &dev,
            "prefix5",
            &|| layers.run_prefix(Phase::Decode, ids, 5),
            &none,
            false,
        )?,
        capture(
            &dev,
            "prefix6",
            &|| layers.run_prefix(Phase::Decode, ids, 6),
            &none,
            false,
        )?,
        capture(
            &dev,
            "flush",
            &|| {
                flush()?;
                Ok(one.clone())
            },
            &none,
            false,
        )?,
        capture(
            &dev,
            "flush+head",
            &|| {
                flush()?;
                layers.run_unit(Phase::Decode, head)
            },
            &none,
            false,
        )?,
        capture(&dev, "chain", &chain, &none, false)?,
        capture(
            &dev,
            "chain+head",
            &|| {
                chain()?;
                layers.run_unit(Phase::Decode, head)
            },
            &none,
            false,
        )?,
        capture(
            &dev,
            "block3",
            &|| layers.run_unit(Phase::Decode, block3),
            &none,
            false,
        )?,
        capture(
            &dev,
            "block3+head",
            &|| tail_after(layers.run_unit(Phase::Decode, block3)?),
            &none,
            false,
        )?,
    ];
    for g in &graphs {
        println!("== nodes of {} ({}):", g.name, g.nodes.len());
        for (i, n) in g.nodes.iter().enumerate() {
            println!("  {i:4} {n}");
        }
    }
    if mode == "ncu" {
        // SAFETY: profiler start/stop take no arguments; with no profiler attached they do nothing.
        unsafe { sys::cuProfilerStart() }.result().map_err(wrap)?;
        for name in ["step", "head", "prefix6", "flush+head", "block3+head"] {
            let g = graphs.iter().find(|g| g.name == name).expect("captured");
            if g.stateful {
                (fixed.restore)()?;
            }
            g.graph.launch().map_err(wrap)?;
            dev.synchronize()?;
            println!("ncu: replayed {name}");
        }
        unsafe { sys::cuProfilerStop() }.result().map_err(wrap)?;
        return Ok(());
    }
    // Timing: rounds alternate the graphs; per graph, back to back (64 replays, one synchronize)
    // and the runner's loop (64 x replay + synchronize); microseconds per replay.
    let replays = 64;
    let rounds = 15;
    let mut back: Vec<Vec<f64>> = vec![Vec::new(); graphs.len()];
    let mut looped: Vec<Vec<f64>> = vec![Vec::new(); graphs.len()];
    for _ in 0..rounds {
        for (i, g) in graphs.iter_mut().enumerate() {
            for (sync_each, out) in [(false, &mut back[i]), (true, &mut looped[i])] {
                if g.stateful {
                    (fixed.restore)()?;
                }
                dev.synchronize()?;
                let t = Instant::now();
                for _ in 0..replays {
                    g.graph.launch().map_err(wrap)?;
                    if sync_each {
                        dev.synchronize()?;
                    }
                }
                dev.synchronize()?;
                out.push(t.elapsed().as_secs_f64() * 1e6 / replays as f64);
            }
        }
    }
    println!("graph,nodes,kernels,us_back_to_back,us_replay_sync");
    let mut us = std::collections::BTreeMap::new();
    for (i, g) in graphs.iter().enumerate() {
        let kernels = g.nodes.iter().filter(|n| n.contains(" grid ")).count();
        let (b, l) = (median(back[i].clone()), median(looped[i].clone()));
        println!("{},{},{kernels},{b:.2},{l:.2}", g.name, g.nodes.len());
        us.insert(g.name, (b, l));
    }
    let d = |a: &str, b: &str| (us[a].0 - us[b].0, us[a].1 - us[b].1);
    for (what, (b, l)) in [
        (
            "head after the blocks: prefix6 - prefix5",
            d("prefix6", "prefix5"),
        ),
        (
            "head after a 128 MB copy: flush+head - flush",
            d("flush+head", "flush"),
        ),
        (
            "head after 370 tiny kernels: chain+head - chain",
            d("chain+head", "chain"),
        ),
        (
            "head after block 3: block3+head - block3",
            d("block3+head", "block3"),
        ),
        ("step - prefix6", d("step", "prefix6")),
    ] {
        println!("{what}: {b:.2} us back to back, {l:.2} us replay+sync");
    }
    Ok(())
}
