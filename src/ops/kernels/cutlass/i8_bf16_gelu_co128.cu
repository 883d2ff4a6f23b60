// int8 FFN-in -> bf16, scales + f32 bias + GELU (fast erf); 128x128 cooperative. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(i8_bf16_gelu_co128, int8_t, int32_t, cutlass::bfloat16_t, float, true, runner_cutlass::GeluErf, Co128)
