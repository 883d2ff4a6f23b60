//! Layers shared by the model families (the runner's `with_tracing`): a part changes behind one
//! import. Parts may use `ops` (the kernels) and `quant` (the numerics); families use parts.

pub mod kv_cache;
pub mod linear;
pub mod rope;
pub mod w8a8;
