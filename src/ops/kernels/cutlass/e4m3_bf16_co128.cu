// E4M3 x E4M3 -> bf16 (promoted along K), scales + bf16 bias; 128x128 cooperative. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_bf16_co128, cutlass::float_e4m3_t, float, cutlass::bfloat16_t, cutlass::bfloat16_t, true, runner_cutlass::Identity, Co128)
