// int8 FFN-in -> int8 codes for FFN-out (static per-column scales), f32 bias + GELU (GeluLean);
// 128x128 cooperative. See gemm_codes.cuh and gelu_lean.cuh.
#include "gelu_lean.cuh"
#include "gemm_codes.cuh"
RUNNER_CUTLASS_GEMM_CODES_ACT(i8_codes_gelu_co128lean, int8_t, int8_t, float, RoundI8, runner_cutlass::GeluLean, Co128)
