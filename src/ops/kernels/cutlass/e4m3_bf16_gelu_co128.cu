// E4M3 FFN-in -> bf16 (promoted along K), scales + bf16 bias + GELU (fast erf); 128x128 cooperative. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(e4m3_bf16_gelu_co128, cutlass::float_e4m3_t, float, cutlass::bfloat16_t, cutlass::bfloat16_t, true, runner_cutlass::GeluErf, Co128)
