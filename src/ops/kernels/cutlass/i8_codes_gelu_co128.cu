// int8 FFN-in -> int8 codes for FFN-out (static per-column scales), f32 bias + GELU (fast erf);
// 128x128 cooperative, as i8_f16_gelu_co128. See gemm_codes.cuh.
#include "gemm_codes.cuh"
RUNNER_CUTLASS_GEMM_CODES(i8_codes_gelu_co128, int8_t, int8_t, float, RoundI8, Co128)
