//! The runner's GPU operations, one floor below `model`: fused kernels each beside its plain
//! candle twin, the one-kernel attention, the W8A8 tensor-core GEMMs, and CUDA-graph capture of
//! any fixed piece of work. No operation knows a model type (tests/layering.rs: `ops` imports
//! only `config`), so every family (encoders, decoders) calls the same launchers.
//!
//! - `fused.rs`: bias + GELU, Q/K/V head split, residual + layer norm, masked softmax, head merge
//! - `attention.rs`: the encoder's attention as one kernel
//! - `attention_packed.rs`: that kernel writing attention-out's 8-bit input (thread-block clusters;
//!   measured slower than the pass it removes, so only cutlass_check runs it)
//! - `attention_codes.rs`: that kernel writing attention-out's 8-bit codes with static per-column
//!   steps (no cluster, no pass)
//! - `decode.rs`: a decoder's decode-step kernels (residual + RMSNorm, rotary + KV write, split-K
//!   attention, SwiGLU), each beside its plain twin
//! - `prefill.rs`: the prefill's flash-style causal attention over the KV cache, beside its plain twin
//! - `embeddings.rs`: an encoder's gather + position add + layer norm as one kernel
//! - `eight_bit/`: int8 and FP8 GEMMs (cuBLASLt, or CUTLASS with fused epilogues), quantizing
//!   norms and GELUs, `Packed8`
//! - `cutlass.rs`: the CUTLASS GEMMs' extern "C" entry points (static library, build/cutlass.rs)
//! - `float_gemm.rs`: the f16/bf16 FFN-in with bias + erf GELU in a CUTLASS epilogue
//! - `graph.rs`: capture once, replay per loop (`CellForward`, `FixedWork`), with what ran
//! - `kernels/`: the CUDA sources, compiled to PTX by build.rs with the `cuda` feature;
//!   `kernels/cutlass/` to a static library

pub mod attention;
pub mod attention_codes;
pub mod attention_packed;
pub mod cutlass;
pub mod decode;
pub mod eight_bit;
pub mod embeddings;
pub mod float_gemm;
pub mod fused;
pub mod graph;
pub mod prefill;

pub use fused::fused_on;
