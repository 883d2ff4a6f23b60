// E4M3 x E4M3 -> f16 (f32 accumulation, promoted along K) with per-token x per-channel scales and the f16 bias. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_f16, cutlass::float_e4m3_t, float, cutlass::half_t, cutlass::half_t, true, runner_cutlass::Identity, Tile8)
