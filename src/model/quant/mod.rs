//! Quantization numerics, with no kernel and no CUDA: what a quantized precision computes, as
//! the reference every kernel is checked against.

pub mod ggml;
pub mod w8a8;
