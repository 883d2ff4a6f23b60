// int8 FFN-in -> f16, scales + f32 bias + GELU (fast erf); 128x128 cooperative. See gemm.cuh.
#include "gemm.cuh"
RUNNER_CUTLASS_GEMM(i8_f16_gelu_co128, int8_t, int32_t, cutlass::half_t, float, true, runner_cutlass::GeluErf, Co128)
