// int8 x int8 -> f16 with per-token x per-channel scales and the f32 bias (Q/K/V, attention output, FFN-out). See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(i8_f16, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::Identity, Tile8)
