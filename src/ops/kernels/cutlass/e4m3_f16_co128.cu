// E4M3 x E4M3 -> f16 (promoted to f32 along K), scales + f16 bias; 128x128 cooperative. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_f16_co128, cutlass::float_e4m3_t, float, cutlass::half_t, cutlass::half_t, true, runner_cutlass::Identity, Co128)
