// int8 x int8 -> bf16 with per-token x per-channel scales, the f32 bias and erf GELU (FFN-in). See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(i8_bf16_gelu, int8_t, int32_t, cutlass::bfloat16_t, float, true, cutlass::epilogue::thread::GELU, Tile8)
