// E4M3 x E4M3 -> bf16 (f32 accumulation, promoted along K) with the scales, the bf16 bias and erf GELU (FFN-in). See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_bf16_gelu, cutlass::float_e4m3_t, float, cutlass::bfloat16_t, cutlass::bfloat16_t, true, cutlass::epilogue::thread::GELU, Tile8)
