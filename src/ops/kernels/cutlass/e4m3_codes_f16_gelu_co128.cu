// E4M3 FFN-in (f16 model) -> E4M3 codes for FFN-out (static per-column scales), f16 bias + GELU
// (fast erf); 128x128 cooperative, as e4m3_f16_gelu_co128. See gemm_codes.cuh.
#include "gemm_codes.cuh"
RUNNER_CUTLASS_GEMM_CODES(e4m3_codes_f16_gelu_co128, cutlass::float_e4m3_t, cutlass::float_e4m3_t, cutlass::half_t, ClampE4m3, Co128)
