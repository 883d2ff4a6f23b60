//! Where the decode step's tail spends the time the per-layer head unit does not (issue 30's
//! decode-isolated Σ): the own decoder (SmolLM2-135M's widths cut to 4 layers, bf16, batch 1,
//! a 640-position cache at position 576, as experiments/llm_own_layers.toml's layers cell), its
//! pieces captured as CUDA graphs side by side:
//!
//! - `step`: the whole decode step as the whole-model cell replays it (`fixed_step`);
//! - `head`, `head x6`: the per-layer profiler's head unit (final norm, lm_head, f32, the
//!   position advanced, argmax fed back), once and as the layers cell's K = 6;
//! - `prefix5`, `prefix6`: the embeddings and 4 blocks, and the longest prefix (those + the head);
//! - `flush`, `flush+head`: a copy of 128 MB through the L2 (stand-in for the blocks' memory
//!   traffic), alone and followed by the head;
//! - `chain`, `chain+head`: 370 dependent tiny kernels (stand-in for the blocks' node count
//!   without their bytes), alone and followed by the head;
//! - `block3`, `block3+head`: the last block alone and followed by the head.
//!
//! Each graph's kernel nodes are printed in order (name from the driver), then each graph is timed
//! two ways, samples alternated: back to back (R replays, one synchronize: the GPU's time) and as
//! the runner's loop (one replay + synchronize). Differences answer whether the tail costs more
//! after the blocks (prefix6 - prefix5 against head), and which stand-in reproduces it.
//!
//!     cargo run --release --features cuda --example layers_timeline -- [time|ncu]
//!
//! `ncu`: no timing; one replay of step, head, prefix6 and flush+head between cuProfilerStart and
//! cuProfilerStop, for `ncu --profile-from-start off --graph-profiling node --cache-control none
//! --clock-control none --metrics gpu__time_duration.sum` (each kernel node's own duration, the L2
//! as the previous kernel left it).

#[cfg(feature = "cuda")]
#[path = "layers_timeline/timeline.rs"]
mod timeline;

fn main() {
    #[cfg(feature = "cuda")]
    if let Err(e) = timeline::main() {
        eprintln!("layers_timeline: {e}");
        std::process::exit(1);
    }
    #[cfg(not(feature = "cuda"))]
    {
        eprintln!("layers_timeline needs a CUDA build: --features cuda");
        std::process::exit(2);
    }
}
