// E4M3 x E4M3 -> bf16 (f32 accumulation, promoted along K) with per-token x per-channel scales and the bf16 bias. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_bf16, cutlass::float_e4m3_t, float, cutlass::bfloat16_t, cutlass::bfloat16_t, true, runner_cutlass::Identity, Tile8)
